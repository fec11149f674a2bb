"""Reverse-dictionary prompts: a definition in, the word it defines out (Aljaafari, Carvalho, Freitas 2024).

A prompt *format* is a template with ``{definition}`` where the queried gloss goes; a few-shot format first lists
``shots`` solved examples. The model's answer is read at the last position and compared with the first token of
``" " + word`` (the "known" filter of :func:`locedit.data.known_mask`). Only words that are one token for the
model's tokenizer are kept, so that the first token *is* the word.

Token buckets (:data:`BUCKETS`) follow the causal-tracing figures of chapter 1 with the definition in the role of
the subject: first / middle / last definition token, the first template token after it, further template tokens,
the last token. :func:`definition_span` finds the queried definition's tokens; :func:`trace_concept` traces it
with only those tokens corrupted (the shots are left clean).
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from locedit.concepts.gcide import Concept, ConceptDataError, contains_word
from locedit.models import Model
from locedit.tokens import target_ids
from locedit.tracing import Trace, causal_trace

#: Formats measured in chapter 3; ``{shots}`` is replaced by the solved examples of ``SHOT`` (few-shot formats).
FORMATS: dict[str, str] = {
    "3-shot dictionary": "{shots}Definition: {definition}\nWord:",
    "3-shot quoted": '{shots}The word for "{definition}" is',
    "0-shot dictionary": "Definition: {definition}\nWord:",
    "0-shot quoted": 'The word for "{definition}" is',
    "0-shot called": "{definition} is called a",
}
#: One solved example of each few-shot format (``{word}`` is the shot's word).
SHOT = {
    "3-shot dictionary": "Definition: {definition}\nWord: {word}\n\n",
    "3-shot quoted": 'The word for "{definition}" is {word}.\n',
}
#: The three shots' words (excluded from the queried concepts).
SHOT_WORDS = ("chair", "church", "coat")

#: The six token buckets, in the order of :data:`locedit.tracing.BUCKETS` (the definition plays the subject).
BUCKETS = ("first definition", "middle definition", "last definition", "first after", "further template", "last token")

#: English function words (articles, pronouns, prepositions, conjunctions, auxiliaries, quantifiers).
_FUNCTION_TEXT = """a an the this that these those some any each every no all both either neither other another such
    of in on at by for with from to into onto upon over under about above below between among through during
    before after around against along across behind beside beyond near off out up down within without toward
    towards and or but nor so yet as than if when while where which who whom whose what how why because though
    although whether until unless since be is are was were been being am have has had having do does did it its
    they them their he him his she her we us our you your i me my one ones not very more most less least much
    many few several also usually often commonly generally especially chiefly mostly somewhat like"""
FUNCTION_WORDS = frozenset(_FUNCTION_TEXT.split())


@dataclass(frozen=True)
class ConceptPrompt:
    """One queried concept in one format: ``prompt`` ends where the model should say `` word``."""

    concept: Concept
    format: str
    prompt: str

    @property
    def word(self) -> str:
        return self.concept.word

    @property
    def definition(self) -> str:
        return self.concept.definition


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ConceptDataError(f"unknown prompt format {fmt!r}: choose from {', '.join(FORMATS)}")


def render(fmt: str, definition: str, shots: Sequence[Concept] = ()) -> str:
    """The prompt of ``definition`` in format ``fmt`` (few-shot formats need ``shots``)."""
    check_format(fmt)
    if not definition.strip():
        raise ConceptDataError("empty definition: give the gloss of the word to be named")
    few = "{shots}" in FORMATS[fmt]
    if few and not shots:
        raise ConceptDataError(f"format {fmt!r} needs shots: pass the concepts of SHOT_WORDS")
    solved = "".join(SHOT[fmt].format(definition=s.definition, word=s.word) for s in shots) if few else ""
    return FORMATS[fmt].replace("{shots}", solved).replace("{definition}", definition)


def build_prompts(
    model: Model, concepts: Sequence[Concept], fmt: str, shots: Sequence[Concept] = ()
) -> tuple[list[ConceptPrompt], dict[str, int]]:
    """The prompts of ``concepts`` in ``fmt`` and the counts of those skipped, by reason.

    Skipped (counted, never silently): a shot's own word; a word that is several tokens for the tokenizer (its
    first token would not be the word); a definition holding its word; a prompt longer than the model's context.
    """
    limit = model.context_length
    out, skipped = [], Counter()
    for c in concepts:
        if c.word in {s.word for s in shots}:
            skipped["a shot's word"] += 1
        elif len(target_ids(model, c.word)) != 1:
            skipped["multi-token headword"] += 1
        elif contains_word(c.definition, c.word):
            skipped["definition contains its headword"] += 1
        else:
            prompt = render(fmt, c.definition, shots)
            if limit is not None and len(model.tokenizer(prompt)["input_ids"]) > limit:
                skipped["longer than the context"] += 1
            else:
                out.append(ConceptPrompt(c, fmt, prompt))
    return out, dict(skipped)


def definition_span(model: Model, prompt: str, definition: str) -> tuple[int, int]:
    """(first, last + 1) token positions of ``definition``'s only occurrence in ``prompt``."""
    start = prompt.find(definition)
    if start < 0:
        raise ConceptDataError(f"the definition {definition!r} is not in the prompt {prompt!r}")
    if prompt.rfind(definition) != start:
        raise ConceptDataError(f"the definition {definition!r} occurs twice in the prompt: a shot repeats it")
    enc = model.tokenizer(prompt, return_offsets_mapping=True)
    end = start + len(definition)
    toks = [i for i, (a, b) in enumerate(enc["offset_mapping"]) if b > a and a < end and b > start]
    return toks[0], toks[-1] + 1


def trace_concept(model: Model, item: ConceptPrompt, **kwargs) -> Trace:
    """Causal trace of one concept prompt: only the queried definition's tokens are corrupted (the shots stay
    clean), and P(first token of ``" " + word``) is scored. ``kwargs`` go to :func:`locedit.tracing.causal_trace`
    (pass one ``noise`` for all concepts, e.g. 3 × :func:`locedit.tracing.embedding_std` of their definitions)."""
    definition_span(model, item.prompt, item.definition)  # the only occurrence: causal_trace corrupts the first
    return causal_trace(model, item.prompt, item.definition, item.word, **kwargs)


def bucket_positions(trace: Trace) -> dict[str, list[int]]:
    """Token positions of each of :data:`BUCKETS` in one trace (empty where the prompt has no such token; a
    one-token definition is both its first and last token)."""
    first, end = trace.subject_range
    last = len(trace.tokens) - 1
    return {
        BUCKETS[0]: [first],
        BUCKETS[1]: list(range(first + 1, end - 1)),
        BUCKETS[2]: [end - 1],
        BUCKETS[3]: [end] if end <= last else [],
        BUCKETS[4]: list(range(end + 1, last)),
        BUCKETS[5]: [last],
    }


def bucket_effects(traces: Sequence[Trace], kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Average indirect effect of ``kind`` by :data:`BUCKETS` × layer: within a trace the bucket's *restored*
    tokens are averaged (positions left out of the trace, NaN, are skipped), then the traces that have the bucket.

    Returns (aie [6, n_layers], NaN where no trace has the bucket; counts [6]).
    """
    if not traces:
        raise ConceptDataError("no traces to average: trace at least one concept first")
    n_layers = traces[0].scores[kind].shape[0]
    sums, counts = torch.zeros(len(BUCKETS), n_layers), torch.zeros(len(BUCKETS))
    for trace in traces:
        effect = trace.effect(kind)
        for b, positions in enumerate(bucket_positions(trace).values()):
            cols = [p for p in positions if not bool(torch.isnan(effect[:, p]).all())]
            if cols:
                sums[b] += effect[:, cols].mean(1)
                counts[b] += 1
    aie = sums / counts[:, None].clamp(min=1)
    return torch.where(counts[:, None] > 0, aie, float("nan")), counts


def bucket_sample(model: Model, item: ConceptPrompt) -> list[int]:
    """The positions a cheap trace restores: the first, middle and last definition token and every token after
    the definition (a trace costs about the square of the positions it restores)."""
    first, end = definition_span(model, item.prompt, item.definition)
    length = len(model.tokenizer(item.prompt)["input_ids"])
    return sorted({first, (first + end - 1) // 2, end - 1, *range(end, length)})


def is_function_word(token: str) -> bool:
    """Whether a token (as a string, leading space allowed) is a function word or punctuation."""
    word = token.strip().lower()
    return not re.search(r"[a-z]", word) or word in FUNCTION_WORDS


def word_classes(trace: Trace) -> list[str]:
    """For each token of the traced definition: ``"content"`` or ``"function"`` (punctuation counts as function).
    A word split into several tokens is classed by its first piece's word: its other pieces (no leading space) take
    the class of the piece before them."""
    first, end = trace.subject_range
    classes: list[str] = []
    for t in range(first, end):
        piece = trace.tokens[t]
        continues = classes and not piece.startswith(" ") and re.match(r"[A-Za-z]", piece)
        classes.append(classes[-1] if continues else ("function" if is_function_word(piece) else "content"))
    return classes


def by_frequency(model: Model, items: Sequence[ConceptPrompt]) -> list[ConceptPrompt]:
    """``items`` ordered from the most to the least common word, by the rule that a BPE tokenizer merges frequent
    strings first: a lower token id of ``" " + word`` is a more frequent word (ties keep their order)."""
    return sorted(items, key=lambda i: target_ids(model, i.word)[0])


def sample(items: Sequence, n: int, seed: int = 0) -> list:
    """``n`` items drawn without replacement by ``random.Random(seed)`` (all of them, shuffled, if fewer)."""
    items = list(items)
    return random.Random(seed).sample(items, min(n, len(items)))
