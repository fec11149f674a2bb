"""The two tasks of chapter 4 (Merullo et al. 2024, *Circuit Component Reuse Across Tasks*): Indirect Object
Identification and Colored Objects, each with its corrupted twin, token positions and answer ids.

**IOI** (Wang et al. 2022). "Then, Mary and John went to the store. John gave a drink to" → " Mary". The indirect
object (IO, Mary) is named once, the subject (S, John) twice: S1 in the first clause, S2 in the second. The 15
templates are written in BABA order (S first) and mirrored to ABBA (IO first); ``order="mixed"`` alternates them.
Template slots: ``{A}`` the IO (once), ``{B}`` the subject (twice: S1 then S2), ``{PLACE}`` and ``{OBJECT}``; a
template ends just before the answer. Corruptions (:meth:`IOIPrompts.corrupted`):

- ``"flipped"`` (this paper's, ``gen_flipped_prompts(("S2", "IO"))``): S2 becomes the IO name, "… Mary gave a
  drink to", so the repeated name is the other one;
- ``"abc"`` (Wang et al.'s baseline): IO, S1 and S2 become three other names, all different.

A corrupted set keeps the clean answers (IO, S), so the logit difference of a corrupted run is measured on the
clean prompt's names.

**Colored Objects** (a simplified BIG-bench task). A 1-shot prompt::

    Q: On the table, I see an orange textbook, a red puzzle, and a purple cup. What color is the textbook?
    A: Orange
    Q: On the table, there is a blue pencil, a black necklace, and a yellow lighter. What color is the pencil?
    A:

answered " Blue" (title case, leading space). The corrupted prompt asks about another object of the same list
(" Black" for the necklace). ``n_objects`` sets 2 or 3 objects per question (2: "a blue pencil and a black
necklace"). :func:`load_colored_objects` reads the authors' released files (``datasets/cobjs_data_42.json`` and
``cobjs_mindiff_data_42.json`` in https://github.com/jmerullo/circuit_reuse): a JSON list of ``[prompt, label]``
pairs, the prompt in the format above, the label its answer (``" Blue"``).

Vocabularies are filtered to words that are a single token with a leading space for the model's tokenizer (SmolLM2
loses "mug", "leash" and "bracelet" from the 17 objects); words passed explicitly must be single tokens, or a
``ValueError`` names the word.

Metrics: :func:`logit_diff` (correct − alternative at the last position: IO − S for IOI, the answer − the corrupted
prompt's answer for Colored Objects) and :func:`accuracy` (the correct token is the top choice over the whole
vocabulary, or among ``candidates``: (IO, S) for IOI, the listed colours for Colored Objects).
"""

from __future__ import annotations

import json
import operator
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch

# --- vocabularies --------------------------------------------------------------------------------------------------

#: The 15 IOI templates in BABA order: ``{B}`` (the subject) is named first and again as S2, ``{A}`` is the IO.
IOI_TEMPLATES: tuple[str, ...] = (
    "Then, {B} and {A} went to the {PLACE}. {B} gave a {OBJECT} to",
    "Then, {B} and {A} had a lot of fun at the {PLACE}. {B} gave a {OBJECT} to",
    "Then, {B} and {A} were working at the {PLACE}. {B} decided to give a {OBJECT} to",
    "Then, {B} and {A} were thinking about going to the {PLACE}. {B} wanted to give a {OBJECT} to",
    "Then, {B} and {A} had a long argument, and afterwards {B} said to",
    "After {B} and {A} went to the {PLACE}, {B} gave a {OBJECT} to",
    "When {B} and {A} got a {OBJECT} at the {PLACE}, {B} decided to give it to",
    "When {B} and {A} got a {OBJECT} at the {PLACE}, {B} decided to give the {OBJECT} to",
    "While {B} and {A} were working at the {PLACE}, {B} gave a {OBJECT} to",
    "While {B} and {A} were commuting to the {PLACE}, {B} gave a {OBJECT} to",
    "After the lunch, {B} and {A} went to the {PLACE}. {B} gave a {OBJECT} to",
    "Afterwards, {B} and {A} went to the {PLACE}. {B} gave a {OBJECT} to",
    "Then, {B} and {A} had a long argument. Afterwards {B} said to",
    "The {PLACE} {B} and {A} went to had a {OBJECT}. {B} gave it to",
    "Friends {B} and {A} found a {OBJECT} at the {PLACE}. {B} gave it to",
)

_NAMES = """Mary John Tom James Dan Sid Martin Amy Paul Robert Anna Lisa Kate Sarah Emma Mark Jack Alex Ryan Laura Rose
    Adam Luke Ben Sam Ann Jane Joe Mike David Michael Peter Simon Eric Kevin Brian Steven Andrew Thomas Daniel Matthew
    Anthony Richard Charles George Edward Henry Jason Scott Jeff Frank Gary Tim Greg Larry Carl Roger Jerry Dennis
    Walter Patrick Harry Arthur Karen Nancy Betty Helen Sandra Carol Ruth Sharon Michelle Kim Jessica Amanda Melissa
    Rebecca Linda Barbara Susan Margaret Jennifer Elizabeth Maria Julie Grace Alice Victoria Claire Lucy Sophie Max
    Leo Oscar Noah Ethan Jacob Owen Nathan Aaron Sean Joshua Justin Rachel Hannah Olivia Ella Mia"""
#: First names for IOI (filtered per tokenizer to single tokens with a leading space).
NAMES: tuple[str, ...] = tuple(_NAMES.split())
PLACES: tuple[str, ...] = ("store", "garden", "restaurant", "school", "hospital", "office", "house", "station")
IOI_OBJECTS: tuple[str, ...] = ("ring", "kiss", "bone", "basketball", "computer", "necklace", "drink", "snack")

#: Colored Objects: the 17 objects, 8 colours, 3 surfaces and 3 openers of the paper's generator.
OBJECTS: tuple[str, ...] = (
    "pencil", "notebook", "pen", "cup", "plate", "jug", "mug", "puzzle", "textbook", "leash", "necklace", "bracelet",
    "bottle", "ball", "envelope", "lighter", "bowl",
)  # fmt: skip
COLORS: tuple[str, ...] = ("red", "orange", "yellow", "green", "blue", "purple", "brown", "black")
SURFACES: tuple[str, ...] = ("table", "desk", "floor")
OPENERS: tuple[str, ...] = ("there is", "you see", "I see")

Order = Literal["mixed", "ABBA", "BABA"]


# --- small checks ----------------------------------------------------------------------------------------------------


def _whole(value: Any, name: str, low: int = 0) -> int:
    """``value`` as a plain int (Python or NumPy / torch integer, never a bool or a float) that is >= ``low``."""
    bad = isinstance(value, bool) or any(k in str(getattr(value, "dtype", "")) for k in ("bool", "float", "complex"))
    try:
        number = None if bad else operator.index(value)
    except TypeError:
        number = None
    if number is None:
        raise TypeError(f"{name} must be an int, not {type(value).__name__} {value!r} (round it with int())")
    if number < low:
        raise ValueError(f"{name} = {number}: give an int >= {low}")
    return number


def _tokenizer(model_or_tokenizer: Any):
    """The tokenizer of a :class:`~locedit.models.Model`, or the argument itself if it is a tokenizer."""
    if hasattr(model_or_tokenizer, "spec") and hasattr(model_or_tokenizer, "hf"):
        tok = model_or_tokenizer.tokenizer
        if tok is None:
            raise ValueError(f"model {model_or_tokenizer.name!r} has no tokenizer: pass a tokenizer instead")
        return tok
    if not callable(model_or_tokenizer):
        raise TypeError(f"expected a Model or a tokenizer, got {type(model_or_tokenizer).__name__}")
    return model_or_tokenizer


def _ids(tok, text: str, special: bool = True) -> list[int]:
    return list(tok(text, add_special_tokens=special)["input_ids"])


def _single(tok, word: str) -> int | None:
    """The id of ``word`` if it is one token, else ``None``."""
    ids = _ids(tok, word, special=False)
    return ids[0] if len(ids) == 1 else None


def single_token_words(tok, words: Sequence[str], what: str, strict: bool, title: bool = False) -> tuple[str, ...]:
    """``words`` that are one token with a leading space (and, with ``title``, in title case too): with ``strict`` a
    ``ValueError`` names the first that is not; otherwise they are dropped."""
    if isinstance(words, str) or not isinstance(words, Sequence):
        raise TypeError(f"{what} must be a list of strings, not {type(words).__name__}")
    kept = []
    for word in words:
        if not isinstance(word, str) or not word.strip() or word != word.strip():
            raise ValueError(f"{what}: {word!r} is not a word; give words without spaces around them ('Mary')")
        forms = [" " + word] + ([" " + word.title()] if title else [])
        bad = [form for form in forms if _single(tok, form) is None]
        if not bad:
            kept.append(word)
        elif strict:
            pieces = [tok.decode([i]) for i in _ids(tok, bad[0], special=False)]
            raise ValueError(
                f"{what}: {bad[0]!r} is {len(pieces)} tokens {pieces} for this tokenizer; every {what[:-1]} must be "
                "a single token with a leading space: remove it, or leave the list at its default (filtered for you)"
            )
    if len(set(kept)) != len(kept):
        raise ValueError(f"{what} has duplicates: {sorted({w for w in kept if kept.count(w) > 1})}")
    return tuple(kept)


def _vocab(tok, given: Sequence[str] | None, default: Sequence[str], what: str, need: int, title: bool = False):
    words = single_token_words(tok, default if given is None else given, what, strict=given is not None, title=title)
    if len(words) < need:
        raise ValueError(f"{what}: {len(words)} single-token words left ({list(words)}); this task needs {need}")
    return words


def _token_at(tok, text: str, ids: list[int], offsets, start: int, end: int) -> int:
    """The position of the token spanning characters ``start..end`` of ``text`` (``start`` at the leading space)."""
    if offsets is not None:
        for i, (a, b) in enumerate(offsets):
            if b == end and a in (start, start + 1):
                return i
    else:  # a slow tokenizer: count the tokens of the prefix (names and colours start a token at their space)
        i = len(_ids(tok, text[:start]))
        if _ids(tok, text[:end])[:-1] == ids[:i] and i < len(ids):
            return i
    raise ValueError(f"{text[start:end]!r} at characters {start}..{end} is not one token of {text!r}")


def _encode(tok, text: str) -> tuple[list[int], list | None]:
    try:
        enc = tok(text, return_offsets_mapping=True)
        return list(enc["input_ids"]), list(enc["offset_mapping"])
    except (NotImplementedError, TypeError, ValueError):
        return _ids(tok, text), None


# --- IOI -------------------------------------------------------------------------------------------------------------

_SLOT = re.compile(r"\{(\w+)\}")
_IOI_SLOTS = ("A", "B", "PLACE", "OBJECT")


def _check_template(template: Any, i: int) -> str:
    if not isinstance(template, str):
        raise TypeError(f"template {i} is a {type(template).__name__}, not a string")
    slots = _SLOT.findall(template)
    unknown = sorted(set(slots) - set(_IOI_SLOTS))
    hint = "e.g. 'Then, {B} and {A} went to the {PLACE}. {B} gave a {OBJECT} to'"
    if unknown:
        raise ValueError(f"template {i} {template!r} has unknown slot(s) {unknown}: use {{A}}, {{B}}, {{PLACE}}, "
                         f"{{OBJECT}}, {hint}")  # fmt: skip
    if slots.count("A") != 1 or slots.count("B") != 2:
        raise ValueError(
            f"template {i} {template!r} has {slots.count('A')} {{A}} and {slots.count('B')} {{B}} slot(s): an IOI "
            f"template needs both name slots, {{A}} (the indirect object) once and {{B}} (the subject) twice, {hint}"
        )
    if template != template.rstrip():
        raise ValueError(f"template {i} {template!r} must end just before the answer, without a trailing space")
    if any(not template[: m.start()].endswith(" ") for m in _SLOT.finditer(template)):
        raise ValueError(f"template {i} {template!r}: every slot must follow a space (the words are filled in with "
                         "their leading space, as the model reads them)")  # fmt: skip
    return template


def _mirror(template: str) -> str:
    """BABA → ABBA: swap the first ``{A}`` and the first ``{B}``."""
    a, b = template.index("{A}"), template.index("{B}")
    first, second = sorted((a, b))
    x, y = template[first : first + 3], template[second : second + 3]
    return template[:first] + y + template[first + 3 : second] + x + template[second + 3 :]


def _fill(template: str, roles: dict[str, str]) -> tuple[str, dict[str, tuple[int, int]]]:
    """Fill ``template`` (slots A, B, PLACE, OBJECT) with ``roles`` (IO, S1, S2, PLACE, OBJECT); returns the text and
    the character span of each name (from its leading space)."""
    out, spans, last, b_seen = [], {}, 0, 0
    for m in _SLOT.finditer(template):
        out.append(template[last : m.start()])
        slot = m.group(1)
        if slot == "A":
            role = "IO"
        elif slot == "B":
            b_seen += 1
            role = "S1" if b_seen == 1 else "S2"
        else:
            role = slot
        text = "".join(out)
        if role in ("IO", "S1", "S2"):
            spans[role] = (len(text), len(text) + len(roles[role]))
        out.append(roles[role])
        last = m.end()
    out.append(template[last:])
    return "".join(out), spans


@dataclass(frozen=True)
class IOIPrompts:
    """IOI prompts, with their token positions and answers.

    Attributes:
        prompts: the prompts (each ends just before the answer).
        io, s: the clean prompt's indirect object and subject names (no leading space), which the answers name
            even in a corrupted set.
        s2: the name at the S2 slot (``s`` when clean, ``io`` when ``"flipped"``, a third name for ``"abc"``).
        templates: each prompt's index into the template list; ``orders``: ``"ABBA"`` or ``"BABA"``.
        places, objects: the words filled in.
        tokens: each prompt's token ids (as the tokenizer encodes it, special tokens included).
        io_pos, s1_pos, s2_pos, end_pos: token positions [N] (long) of the IO, S1 and S2 names and of the last
            token, in the unpadded prompt.
        answers: [N, 2] (long): the ids of " IO" and " S" of the clean prompt (the logit difference is IO − S).
        corruption: ``None``, ``"flipped"`` or ``"abc"``.
    """

    prompts: tuple[str, ...]
    io: tuple[str, ...]
    s: tuple[str, ...]
    s2: tuple[str, ...]
    templates: tuple[int, ...]
    orders: tuple[str, ...]
    places: tuple[str, ...]
    objects: tuple[str, ...]
    tokens: tuple[tuple[int, ...], ...]
    io_pos: torch.Tensor
    s1_pos: torch.Tensor
    s2_pos: torch.Tensor
    end_pos: torch.Tensor
    answers: torch.Tensor
    corruption: str | None = None
    template_texts: tuple[str, ...] = ()  # the template list the indices refer to (BABA order)
    names: tuple[str, ...] = ()  # the name pool (for the "abc" corruption)
    tokenizer: Any = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.prompts)

    @property
    def candidates(self) -> torch.Tensor:
        """[N, 2]: the answers, so that ``accuracy(logits, d.answers, d.candidates)`` is the share with IO > S."""
        return self.answers

    def corrupted(self, kind: Literal["flipped", "abc"] = "flipped", seed: int = 0) -> IOIPrompts:
        """The corrupted twin (same templates, places, objects, token positions and answers): ``"flipped"`` puts the
        IO name at S2 (this paper); ``"abc"`` puts three other distinct names at IO, S1 and S2 (seeded)."""
        if kind not in ("flipped", "abc"):
            raise ValueError(f"unknown corruption {kind!r}: use 'flipped' (S2 -> IO, this paper's) or 'abc'")
        if self.corruption is not None:
            raise ValueError(f"these prompts are already corrupted ({self.corruption!r}): corrupt the clean set")
        rng = random.Random(_whole(seed, "seed"))
        rows = []
        for i in range(len(self)):
            if kind == "flipped":
                roles = {"IO": self.io[i], "S1": self.s[i], "S2": self.io[i]}
            else:
                pool = [n for n in self.names if n not in (self.io[i], self.s[i])]
                io, s1, s2 = rng.sample(pool, 3)
                roles = {"IO": io, "S1": s1, "S2": s2}
            rows.append(roles)
        return _build_ioi(self.tokenizer, self, rows, kind)


def _oriented(template: str, order: str) -> str:
    a_first = template.index("{A}") < template.index("{B}")
    baba = template if not a_first else _mirror(template)
    return baba if order == "BABA" else _mirror(baba)


def _build_ioi(tok, base: IOIPrompts, roles: list[dict[str, str]], corruption: str | None) -> IOIPrompts:
    prompts, tokens, pos = [], [], {"IO": [], "S1": [], "S2": [], "end": []}
    for i, r in enumerate(roles):
        template = _oriented(base.template_texts[base.templates[i]], base.orders[i])
        full = {"IO": " " + r["IO"], "S1": " " + r["S1"], "S2": " " + r["S2"]}
        text, spans = _fill(template.replace(" {", "{"), {**full, "PLACE": " " + base.places[i],
                                                          "OBJECT": " " + base.objects[i]})  # fmt: skip
        ids, offsets = _encode(tok, text)
        for role in ("IO", "S1", "S2"):
            pos[role].append(_token_at(tok, text, ids, offsets, *spans[role]))
        pos["end"].append(len(ids) - 1)
        prompts.append(text)
        tokens.append(tuple(ids))
    return replace(
        base,
        prompts=tuple(prompts),
        s2=tuple(r["S2"] for r in roles),
        tokens=tuple(tokens),
        io_pos=torch.tensor(pos["IO"]),
        s1_pos=torch.tensor(pos["S1"]),
        s2_pos=torch.tensor(pos["S2"]),
        end_pos=torch.tensor(pos["end"]),
        corruption=corruption,
    )


def ioi(
    model_or_tokenizer: Any,
    n: int = 100,
    seed: int = 0,
    order: Order = "mixed",
    *,
    templates: Sequence[str] | None = None,
    names: Sequence[str] | None = None,
    places: Sequence[str] | None = None,
    objects: Sequence[str] | None = None,
) -> IOIPrompts:
    """``n`` IOI prompts (seeded): template, two distinct names, a place and an object drawn at random; ``order``
    ``"mixed"`` alternates ABBA (even rows) and BABA (odd rows).

    ``templates`` default to :data:`IOI_TEMPLATES` (``{A}`` once, ``{B}`` twice, in either order); ``names``,
    ``places`` and ``objects`` default to the built-in lists filtered to single tokens with a leading space (given
    lists must already be). Corrupt with :meth:`IOIPrompts.corrupted`.
    """
    tok = _tokenizer(model_or_tokenizer)
    n, seed = _whole(n, "n", 1), _whole(seed, "seed")
    if order not in ("mixed", "ABBA", "BABA"):
        raise ValueError(f"order must be 'mixed', 'ABBA' or 'BABA', not {order!r}")
    texts = tuple(_check_template(t, i) for i, t in enumerate(IOI_TEMPLATES if templates is None else templates))
    if not texts:
        raise ValueError("no templates given")
    name_list = _vocab(tok, names, NAMES, "names", 5)  # 5: two names, and three more for the "abc" corruption
    place_list = _vocab(tok, places, PLACES, "places", 1)
    object_list = _vocab(tok, objects, IOI_OBJECTS, "objects", 1)
    rng = random.Random(seed)
    rows, picks = [], []
    for i in range(n):
        t = rng.randrange(len(texts))
        io, s = rng.sample(name_list, 2)
        o = order if order != "mixed" else ("ABBA" if i % 2 == 0 else "BABA")
        picks.append((t, o, rng.choice(place_list), rng.choice(object_list)))
        rows.append({"IO": io, "S1": s, "S2": s})
    empty = torch.empty(0, dtype=torch.long)
    base = IOIPrompts(
        prompts=(), io=tuple(r["IO"] for r in rows), s=tuple(r["S1"] for r in rows), s2=(),
        templates=tuple(p[0] for p in picks), orders=tuple(p[1] for p in picks),
        places=tuple(p[2] for p in picks), objects=tuple(p[3] for p in picks), tokens=(),
        io_pos=empty, s1_pos=empty, s2_pos=empty, end_pos=empty,
        answers=torch.tensor([[_single(tok, " " + r["IO"]), _single(tok, " " + r["S1"])] for r in rows]),
        template_texts=texts, names=name_list, tokenizer=tok,
    )  # fmt: skip
    return _build_ioi(tok, base, rows, None)


# --- Colored Objects -------------------------------------------------------------------------------------------------


def _article(word: str) -> str:
    return "an" if word[0].lower() in "aeiou" else "a"


def _question(surface: str, opener: str, colors: Sequence[str], objects: Sequence[str], query: int):
    """One question, and the character spans of each colour word (from its leading space) in it."""
    head = f"Q: On the {surface}, {opener} "
    parts, spans, text = [], [], head
    for k, (color, obj) in enumerate(zip(colors, objects, strict=True)):
        if k:
            sep = " and " if len(objects) == 2 else (", and " if k == len(objects) - 1 else ", ")
            text += sep
        text += _article(color)
        spans.append((len(text), len(text) + 1 + len(color)))
        text += f" {color} {obj}"
        parts.append(obj)
    text += f". What color is the {objects[query]}?\nA:"
    return text, spans


@dataclass(frozen=True)
class ColoredObjects:
    """Colored Objects prompts and their corrupted twins (the same prompt asking about another listed object).

    Attributes:
        prompts, corrupt_prompts: the prompts (ending in "A:").
        labels, corrupt_labels: their answers (" Blue": title case, leading space).
        objects, colors: the objects and colours listed in each prompt's last question, in order.
        query, corrupt_query: the index of the object asked about (clean, corrupted).
        tokens, corrupt_tokens: token ids of each prompt.
        answers: [N, 2] (long): ids of (label, corrupt label): the logit difference is clean answer − corrupted one.
        candidates: [N, n_objects]: ids of the listed colours as answers (" Red"), for accuracy among them.
        color_pos: [N, n_objects]: positions of the colour words (" red") in the last question of each prompt.
        end_pos: [N]: the last token's position.
        skipped: indices of loaded items left out (see :func:`load_colored_objects`).
    """

    prompts: tuple[str, ...]
    corrupt_prompts: tuple[str, ...]
    labels: tuple[str, ...]
    corrupt_labels: tuple[str, ...]
    objects: tuple[tuple[str, ...], ...]
    colors: tuple[tuple[str, ...], ...]
    query: tuple[int, ...]
    corrupt_query: tuple[int, ...]
    tokens: tuple[tuple[int, ...], ...]
    corrupt_tokens: tuple[tuple[int, ...], ...]
    answers: torch.Tensor
    candidates: torch.Tensor
    color_pos: torch.Tensor
    end_pos: torch.Tensor
    skipped: tuple[int, ...] = ()

    def __len__(self) -> int:
        return len(self.prompts)

    def corrupted(self) -> ColoredObjects:
        """The same pairs, corrupted prompts first (their answers become the correct ones)."""
        return replace(
            self, prompts=self.corrupt_prompts, corrupt_prompts=self.prompts, labels=self.corrupt_labels,
            corrupt_labels=self.labels, query=self.corrupt_query, corrupt_query=self.query,
            tokens=self.corrupt_tokens, corrupt_tokens=self.tokens, answers=self.answers.flip(1),
        )  # fmt: skip


def _label(color: str) -> str:
    return " " + color.title()


def _build_cobjs(tok, items: list[dict], skipped: tuple[int, ...] = ()) -> ColoredObjects:
    """``items``: dicts with prompt, corrupt_prompt, colors, objects, query, corrupt_query, color_spans (character
    spans of the colours in the last question, relative to the prompt)."""
    tokens, corrupt_tokens, pos, answers, candidates = [], [], [], [], []
    for i, it in enumerate(items):
        ids, offsets = _encode(tok, it["prompt"])
        pos.append([_token_at(tok, it["prompt"], ids, offsets, *span) for span in it["color_spans"]])
        tokens.append(tuple(ids))
        corrupt_tokens.append(tuple(_ids(tok, it["corrupt_prompt"])))
        labels = [_label(it["colors"][it["query"]]), _label(it["colors"][it["corrupt_query"]])]
        ids_ = [_single(tok, lab) for lab in labels]
        if None in ids_:
            raise ValueError(f"item {i}: answer {labels[ids_.index(None)]!r} is not a single token for this tokenizer")
        answers.append(ids_)
        candidates.append([_single(tok, _label(c)) for c in it["colors"]])
    widths = {len(c) for c in candidates}
    if len(widths) > 1:
        raise ValueError(f"items list different numbers of objects ({sorted(widths)}): keep one count per set")
    return ColoredObjects(
        prompts=tuple(it["prompt"] for it in items),
        corrupt_prompts=tuple(it["corrupt_prompt"] for it in items),
        labels=tuple(_label(it["colors"][it["query"]]) for it in items),
        corrupt_labels=tuple(_label(it["colors"][it["corrupt_query"]]) for it in items),
        objects=tuple(tuple(it["objects"]) for it in items),
        colors=tuple(tuple(it["colors"]) for it in items),
        query=tuple(it["query"] for it in items),
        corrupt_query=tuple(it["corrupt_query"] for it in items),
        tokens=tuple(tokens),
        corrupt_tokens=tuple(corrupt_tokens),
        answers=torch.tensor(answers, dtype=torch.long).reshape(-1, 2),
        candidates=torch.tensor(candidates, dtype=torch.long),
        color_pos=torch.tensor(pos, dtype=torch.long),
        end_pos=torch.tensor([len(t) - 1 for t in tokens], dtype=torch.long),
        skipped=skipped,
    )


def colored_objects(
    model_or_tokenizer: Any,
    n: int = 100,
    seed: int = 0,
    n_objects: int = 3,
    shots: int = 1,
    *,
    objects: Sequence[str] | None = None,
    colors: Sequence[str] | None = None,
    surfaces: Sequence[str] = SURFACES,
    openers: Sequence[str] = OPENERS,
) -> ColoredObjects:
    """``n`` Colored Objects prompts (seeded), each ``shots`` answered questions then the one to answer, every
    question listing ``n_objects`` distinct objects in distinct colours; the corrupted twin asks about another
    object of the last question's list.

    ``objects`` and ``colors`` default to :data:`OBJECTS` and :data:`COLORS` filtered to single tokens (colours in
    lower case as written and in title case as answered); given lists must already be single tokens.
    """
    tok = _tokenizer(model_or_tokenizer)
    n, seed = _whole(n, "n", 1), _whole(seed, "seed")
    n_objects, shots = _whole(n_objects, "n_objects", 2), _whole(shots, "shots")
    object_list = _vocab(tok, objects, OBJECTS, "objects", n_objects)
    color_list = _vocab(tok, colors, COLORS, "colors", n_objects, title=True)
    for what, words in (("surfaces", surfaces), ("openers", openers)):
        if isinstance(words, str) or not words or not all(isinstance(w, str) and w for w in words):
            raise ValueError(f"{what} must be a non-empty list of strings, got {words!r}")
    rng = random.Random(seed)

    def draw():
        return (
            rng.choice(list(surfaces)), rng.choice(list(openers)), rng.sample(color_list, n_objects),
            rng.sample(object_list, n_objects), rng.randrange(n_objects),
        )  # fmt: skip

    items = []
    for _ in range(n):
        prefix = ""
        for _shot in range(shots):
            surface, opener, cs, os_, q = draw()
            text, _spans = _question(surface, opener, cs, os_, q)
            prefix += f"{text} {cs[q].title()}\n"
        surface, opener, cs, os_, q = draw()
        other = rng.choice([k for k in range(n_objects) if k != q])
        text, spans = _question(surface, opener, cs, os_, q)
        corrupt, _ = _question(surface, opener, cs, os_, other)
        shift = len(prefix)
        items.append({
            "prompt": prefix + text, "corrupt_prompt": prefix + corrupt, "colors": cs, "objects": os_, "query": q,
            "corrupt_query": other, "color_spans": [(a + shift, b + shift) for a, b in spans],
        })  # fmt: skip
    data = _build_cobjs(tok, items)
    for i in range(len(data)):
        if len(data.tokens[i]) != len(data.corrupt_tokens[i]):  # cannot happen with single-token objects
            raise AssertionError(f"prompt {i}: the corrupted prompt has another length")
    return data


_LAST_Q = re.compile(r"Q: On the (?P<surface>[^,]+), (?P<opener>.+?) (?P<items>an? .+)\. What color is the "
                     r"(?P<query>[^?]+)\?\nA:$")  # fmt: skip
_ITEM = re.compile(r"^an? (\S+) (.+)$")


def _parse_item(prompt: str, where: str) -> dict:
    """The last question of a released prompt: its objects, colours, the queried index, the colours' spans."""
    start = prompt.rfind("Q: ")
    m = _LAST_Q.match(prompt[start:]) if start >= 0 else None
    if m is None:
        raise ValueError(
            f"{where}: the prompt does not end in a question of the form 'Q: On the table, I see a red cup, ... . "
            f"What color is the cup?\\nA:': {prompt[-120:]!r}"
        )
    items_text = m.group("items")
    parts = re.split(r", and |, | and ", items_text)
    colors, objects, spans = [], [], []
    cursor = start + m.start("items")
    for part in parts:
        im = _ITEM.match(part)
        if im is None:
            raise ValueError(f"{where}: cannot read the item {part!r} (expected 'a red cup')")
        at = prompt.index(part, cursor)
        color_start = at + part.index(" ")  # the space before the colour
        spans.append((color_start, color_start + 1 + len(im.group(1))))
        colors.append(im.group(1).lower())
        objects.append(im.group(2))
        cursor = at + len(part)
    query = m.group("query")
    if query not in objects:
        raise ValueError(f"{where}: the question asks about {query!r}, which is not listed ({objects})")
    return {"colors": colors, "objects": objects, "query": objects.index(query), "color_spans": spans}


def _read_pairs(source: str | Path | Sequence, what: str) -> list[tuple[str, str]]:
    if isinstance(source, (str, Path)):
        with open(source) as f:
            source = json.load(f)
    pairs = []
    for i, pair in enumerate(source):
        if not (isinstance(pair, Sequence) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            raise ValueError(f"{what} item {i} is {pair!r:.80}: expected a [prompt, label] pair of strings")
        pairs.append((pair[0], pair[1]))
    return pairs


def load_colored_objects(
    model_or_tokenizer: Any,
    source: str | Path | Sequence,
    corrupt: str | Path | Sequence | None = None,
    seed: int = 0,
    same_length: bool = True,
) -> ColoredObjects:
    """Colored Objects items in the shape of the paper's released files.

    ``source`` (a path, or the loaded list) is a JSON list of ``[prompt, label]`` pairs, as
    ``datasets/cobjs_data_42.json``; ``corrupt`` the matching corrupted pairs (``cobjs_mindiff_data_42.json``: the
    same prompt asking about another listed object) or ``None`` to draw that object here (seeded). Labels must
    match the prompts. With ``same_length``, pairs whose clean and corrupted prompts tokenise to different lengths
    (a multi-token object such as " mug" for SmolLM2) are left out and listed in ``skipped``.
    """
    tok = _tokenizer(model_or_tokenizer)
    rng = random.Random(_whole(seed, "seed"))
    pairs = _read_pairs(source, "source")
    corrupt_pairs = None if corrupt is None else _read_pairs(corrupt, "corrupt")
    if corrupt_pairs is not None and len(corrupt_pairs) != len(pairs):
        raise ValueError(f"source has {len(pairs)} items but corrupt has {len(corrupt_pairs)}: give matching files")
    items, skipped = [], []
    for i, (prompt, label) in enumerate(pairs):
        it = _parse_item(prompt, f"source item {i}")
        if label.strip().lower() != it["colors"][it["query"]]:
            raise ValueError(f"source item {i}: label {label!r} is not the colour of the {it['objects'][it['query']]}")
        if corrupt_pairs is None:
            other = rng.choice([k for k in range(len(it["objects"])) if k != it["query"]])
            head = prompt[: prompt.rfind("What color is the ")]
            corrupt_prompt = f"{head}What color is the {it['objects'][other]}?\nA:"
        else:
            corrupt_prompt, corrupt_label = corrupt_pairs[i]
            c = _parse_item(corrupt_prompt, f"corrupt item {i}")
            if c["objects"] != it["objects"] or c["colors"] != it["colors"]:
                raise ValueError(f"corrupt item {i} lists other objects or colours than source item {i}")
            other = c["query"]
            if corrupt_label.strip().lower() != it["colors"][other]:
                raise ValueError(f"corrupt item {i}: label {corrupt_label!r} is not the colour it asks about")
        if same_length and len(_ids(tok, prompt)) != len(_ids(tok, corrupt_prompt)):
            skipped.append(i)
            continue
        items.append({**it, "prompt": prompt, "corrupt_prompt": corrupt_prompt, "corrupt_query": other})
    if not items:
        raise ValueError(
            "no items left: every pair's prompts tokenise to different lengths (same_length=False keeps them)"
        )
    return _build_cobjs(tok, items, tuple(skipped))


# --- metrics ---------------------------------------------------------------------------------------------------------


def _last(logits: torch.Tensor) -> torch.Tensor:
    if logits.dim() == 3:
        return logits[:, -1]
    if logits.dim() != 2:
        raise ValueError(f"logits must be [batch, seq, vocab] or [batch, vocab], got {tuple(logits.shape)}")
    return logits


def logit_diff(logits: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
    """Logit of the correct answer minus that of the alternative, at the last position: [batch] (float).

    ``logits`` [batch, seq, vocab] (its last position is read) or [batch, vocab]; ``answers`` [batch, 2] ids
    (correct, alternative): :attr:`IOIPrompts.answers` (IO − S) or :attr:`ColoredObjects.answers`.
    """
    last = _last(logits)
    answers = torch.as_tensor(answers, device=last.device).long()
    picked = last.gather(-1, answers[:, :2])
    return (picked[:, 0] - picked[:, 1]).float()


def accuracy(logits: torch.Tensor, answers: torch.Tensor, candidates: torch.Tensor | None = None) -> float:
    """Share of prompts whose correct answer (``answers[:, 0]``) is the top choice at the last position: over the
    whole vocabulary (``candidates=None``), or among the ids ``candidates`` [batch, k] (IOI: the answers, i.e.
    IO > S; Colored Objects: :attr:`ColoredObjects.candidates`, the listed colours), where a tie is not a win."""
    last = _last(logits)
    answers = torch.as_tensor(answers, device=last.device).long()
    correct = answers[:, 0] if answers.dim() == 2 else answers
    if candidates is None:
        return float((last.argmax(-1) == correct).float().mean())
    candidates = torch.as_tensor(candidates, device=last.device).long()
    others = last.gather(1, candidates).masked_fill(candidates == correct[:, None], float("-inf"))
    return float((last.gather(1, correct[:, None])[:, 0] > others.max(-1).values).float().mean())
