"""Colored Objects (a simplified BIG-bench task), a task of chapter 4 (Merullo et al. 2024, *Circuit Component
Reuse Across Tasks*): prompts with their corrupted twins, the colours' token positions and answer ids.

A 1-shot prompt::

    Q: On the table, I see an orange textbook, a red puzzle, and a purple cup. What color is the textbook?
    A: Orange
    Q: On the table, there is a blue pencil, a black necklace, and a yellow lighter. What color is the pencil?
    A:

answered " Blue" (title case, leading space). The corrupted prompt asks about another object of the same list
(" Black" for the necklace). ``n_objects`` sets 2 or 3 objects per question (2: "a blue pencil and a black
necklace"). :func:`load_colored_objects` reads the authors' released files (``datasets/cobjs_data_42.json`` and
``cobjs_mindiff_data_42.json`` in https://github.com/jmerullo/circuit_reuse): a JSON list of ``[prompt, label]``
pairs, the prompt in the format above, the label its answer (``" Blue"``).

Objects and colours are filtered to single tokens with a leading space (:mod:`~locedit.circuits.tokens`; colours in
title case too, as answered); the metrics are in :mod:`~locedit.circuits.metrics`.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from locedit._checks import integer
from locedit.circuits.tokens import (
    encode_with_offsets,
    single_token_id,
    single_token_vocabulary,
    token_at,
    token_ids,
    tokenizer_of,
)

#: The 17 objects, 8 colours, 3 surfaces and 3 openers of the paper's generator.
OBJECTS: tuple[str, ...] = (
    "pencil", "notebook", "pen", "cup", "plate", "jug", "mug", "puzzle", "textbook", "leash", "necklace", "bracelet",
    "bottle", "ball", "envelope", "lighter", "bowl",
)  # fmt: skip
COLORS: tuple[str, ...] = ("red", "orange", "yellow", "green", "blue", "purple", "brown", "black")
SURFACES: tuple[str, ...] = ("table", "desk", "floor")
OPENERS: tuple[str, ...] = ("there is", "you see", "I see")


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
        ids, offsets = encode_with_offsets(tok, it["prompt"])
        pos.append([token_at(tok, it["prompt"], ids, offsets, *span) for span in it["color_spans"]])
        tokens.append(tuple(ids))
        corrupt_tokens.append(tuple(token_ids(tok, it["corrupt_prompt"])))
        labels = [_label(it["colors"][it["query"]]), _label(it["colors"][it["corrupt_query"]])]
        ids_ = [single_token_id(tok, lab) for lab in labels]
        if None in ids_:
            raise ValueError(f"item {i}: answer {labels[ids_.index(None)]!r} is not a single token for this tokenizer")
        answers.append(ids_)
        candidates.append([single_token_id(tok, _label(c)) for c in it["colors"]])
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
    tok = tokenizer_of(model_or_tokenizer)
    n, seed = integer(n, "n", minimum=1), integer(seed, "seed", minimum=0)
    n_objects, shots = integer(n_objects, "n_objects", minimum=2), integer(shots, "shots", minimum=0)
    object_list = single_token_vocabulary(tok, objects, OBJECTS, "objects", n_objects)
    color_list = single_token_vocabulary(tok, colors, COLORS, "colors", n_objects, title=True)
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
    tok = tokenizer_of(model_or_tokenizer)
    rng = random.Random(integer(seed, "seed", minimum=0))
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
        if same_length and len(token_ids(tok, prompt)) != len(token_ids(tok, corrupt_prompt)):
            skipped.append(i)
            continue
        items.append({**it, "prompt": prompt, "corrupt_prompt": corrupt_prompt, "corrupt_query": other})
    if not items:
        raise ValueError(
            "no items left: every pair's prompts tokenise to different lengths (same_length=False keeps them)"
        )
    return _build_cobjs(tok, items, tuple(skipped))
