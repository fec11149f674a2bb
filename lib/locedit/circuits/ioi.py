"""Indirect Object Identification (Wang et al. 2022), a task of chapter 4 (Merullo et al. 2024, *Circuit Component
Reuse Across Tasks*): prompts with their corrupted twins, token positions and answer ids.

"Then, Mary and John went to the store. John gave a drink to" → " Mary". The indirect
object (IO, Mary) is named once, the subject (S, John) twice: S1 in the first clause, S2 in the second. The 15
templates are written in BABA order (S first) and mirrored to ABBA (IO first); ``order="mixed"`` alternates them.
Template slots: ``{A}`` the IO (once), ``{B}`` the subject (twice: S1 then S2), ``{PLACE}`` and ``{OBJECT}``; a
template ends just before the answer. Corruptions (:meth:`IOIPrompts.corrupted`):

- ``"flipped"`` (this paper's, ``gen_flipped_prompts(("S2", "IO"))``): S2 becomes the IO name, "… Mary gave a
  drink to", so the repeated name is the other one;
- ``"abc"`` (Wang et al.'s baseline): IO, S1 and S2 become three other names, all different.

A corrupted set keeps the clean answers (IO, S), so the logit difference of a corrupted run is measured on the
clean prompt's names.

Names, places and objects are filtered to single tokens with a leading space (:mod:`~locedit.circuits.tokens`); the
metrics are in :mod:`~locedit.circuits.metrics`.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch

from locedit._checks import integer
from locedit.circuits.tokens import (
    encode_with_offsets,
    single_token_id,
    single_token_vocabulary,
    token_at,
    tokenizer_of,
)

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

Order = Literal["mixed", "ABBA", "BABA"]


# --- templates ------------------------------------------------------------------------------------------------------

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
        rng = random.Random(integer(seed, "seed", minimum=0))
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
        ids, offsets = encode_with_offsets(tok, text)
        for role in ("IO", "S1", "S2"):
            pos[role].append(token_at(tok, text, ids, offsets, *spans[role]))
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
    tok = tokenizer_of(model_or_tokenizer)
    n, seed = integer(n, "n", minimum=1), integer(seed, "seed", minimum=0)
    if order not in ("mixed", "ABBA", "BABA"):
        raise ValueError(f"order must be 'mixed', 'ABBA' or 'BABA', not {order!r}")
    texts = tuple(_check_template(t, i) for i, t in enumerate(IOI_TEMPLATES if templates is None else templates))
    if not texts:
        raise ValueError("no templates given")
    # 5 names: two, and three more for the "abc" corruption
    name_list = single_token_vocabulary(tok, names, NAMES, "names", 5)
    place_list = single_token_vocabulary(tok, places, PLACES, "places", 1)
    object_list = single_token_vocabulary(tok, objects, IOI_OBJECTS, "objects", 1)
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
        answers=torch.tensor([[single_token_id(tok, " " + r[k]) for k in ("IO", "S1")] for r in rows]),
        template_texts=texts, names=name_list, tokenizer=tok,
    )  # fmt: skip
    return _build_ioi(tok, base, rows, None)
