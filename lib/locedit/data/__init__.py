"""The book's facts, in CounterFact's record format, and the code that builds and checks them.

A record (one requested edit) looks like CounterFact's (Meng et al. 2022)::

    {"case_id": 0,
     "requested_rewrite": {"prompt": "The capital of {} is", "relation_id": "P36", "subject": "France",
                           "target_true": {"str": "Paris"}, "target_new": {"str": "Rome"}},
     "paraphrase_prompts": ["The capital city of France is", "France's capital city is"],
     "neighborhood_prompts": ["The capital of ... is", ...],   # other subjects, same relation, same true object
     "attribute_prompts": [...],                               # other subjects whose true object is target_new
     "generation_prompts": ["France is a country where", ...]}

Differences from the released CounterFact file: our paraphrases are plain re-wordings (CounterFact prepends a
random sentence to each); neighbourhood prompts may borrow another relation with the same kind of object when a
relation has too few subjects sharing the object (CounterFact always uses the same relation); target strings
carry no token ids (``"id"`` is optional and ignored); and ``"known"`` (the filter's evidence) is ours.
The reference text that replaces CounterFact's Wikipedia snippets comes from :func:`reference_texts`.
"""

from __future__ import annotations

import json
import random
import warnings
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from locedit._checks import integer
from locedit.data.relations import OBJECT_NOTES, RELATIONS, Relation
from locedit.tokens import first_target_id

if TYPE_CHECKING:
    from locedit.models import Model

FACTS_PATH = Path(__file__).with_name("facts.json")

__all__ = [
    "FACTS_PATH",
    "RELATIONS",
    "Relation",
    "balanced",
    "build_facts",
    "candidates",
    "known_mask",
    "load_facts",
    "reference_texts",
]


def candidates(relations: dict[str, Relation] | None = None) -> list[dict]:
    """Every (relation, subject, object) in the tables, as ``{"relation_id", "subject", "object", "prompt"}``."""
    relations = relations or RELATIONS
    return [
        {"relation_id": r.relation_id, "subject": s, "object": o, "prompt": r.prompt.format(s)}
        for r in relations.values()
        for s, o in r.pairs
    ]


@torch.no_grad()
def known_mask(model: Model, prompts: Sequence[str], targets: Sequence[str], batch_size: int = 64) -> list[dict]:
    """The "known" filter of ROME's known-facts set: is the greedy next token the first token of ``" " + target``?

    The prompt is fed raw (no chat template). Returns one dict per prompt: ``known`` (bool), ``p_true`` (the
    probability of the target's first token) and ``predicted`` (the greedy next token).
    """
    out = []
    for start in range(0, len(prompts), batch_size):
        chunk = list(prompts[start : start + batch_size])
        probs = model.next_token_probs(chunk)
        top = probs.argmax(-1)
        for row, target in enumerate(targets[start : start + batch_size]):
            tid = first_target_id(model, target)
            out.append(
                {
                    "known": bool(top[row] == tid),
                    "p_true": round(float(probs[row, tid]), 4),
                    "predicted": model.tokenizer.decode([int(top[row])]),
                }
            )
    return out


def build_facts(
    model: Model,
    relations: dict[str, Relation] | None = None,
    seed: int = 0,
    min_neighbours: int = 5,
    max_neighbours: int = 10,
) -> tuple[list[dict], dict]:
    """Build CounterFact-style records of the facts ``model`` knows, from the relation tables.

    The filter (recorded here so it can be re-run for any model):

    1. a (subject, relation, object) is *known* when the greedy next token after the raw prompt is the first token
       of ``" " + object`` (:func:`known_mask`);
    2. the counterfactual target is another object of the same relation, drawn with ``random.Random(seed)``,
       whose first token differs from the true object's;
    3. neighbourhood prompts are other subjects with the same relation and the same true object, known ones
       first; if fewer than ``min_neighbours`` exist, known facts of other relations with the same kind of object
       and the same object fill in; a record with still fewer is dropped.

    Returns (records, summary) where summary counts candidates, known facts and kept records per relation.
    """
    relations = relations or RELATIONS
    cands = candidates(relations)
    checks = known_mask(model, [c["prompt"] for c in cands], [c["object"] for c in cands])
    for c, check in zip(cands, checks, strict=True):
        c.update(check)
    known = [c for c in cands if c["known"]]
    by_rel_obj: dict[tuple[str, str], list[dict]] = defaultdict(list)
    by_type_obj: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for c in sorted(cands, key=lambda c: not c["known"]):  # known facts first
        by_rel_obj[c["relation_id"], c["object"]].append(c)
        if c["known"]:
            by_type_obj[relations[c["relation_id"]].object_type, c["object"]].append(c)

    rng = random.Random(seed)
    records, summary = [], {"candidates": defaultdict(int), "known": defaultdict(int), "kept": defaultdict(int)}
    for c in cands:
        summary["candidates"][c["relation_id"]] += 1
    for c in known:
        rel = relations[c["relation_id"]]
        summary["known"][rel.relation_id] += 1
        true_tok = first_target_id(model, c["object"])
        others = [o for o in rel.objects() if o != c["object"] and first_target_id(model, o) != true_tok]
        if not others:
            continue
        new = rng.choice(others)
        neighbours = [n["prompt"] for n in by_rel_obj[rel.relation_id, c["object"]] if n["subject"] != c["subject"]]
        if len(neighbours) < min_neighbours:
            extra = [
                n["prompt"]
                for n in by_type_obj[rel.object_type, c["object"]]
                if n["subject"] != c["subject"] and n["prompt"] not in neighbours
            ]
            neighbours += extra
        if len(neighbours) < min_neighbours:
            continue
        attribute = [n["prompt"] for n in by_rel_obj[rel.relation_id, new] if n["subject"] != c["subject"]]
        records.append(
            {
                "case_id": len(records),
                "requested_rewrite": {
                    "prompt": rel.prompt,
                    "relation_id": rel.relation_id,
                    "subject": c["subject"],
                    "target_true": {"str": c["object"]},
                    "target_new": {"str": new},
                },
                "paraphrase_prompts": [p.format(c["subject"]) for p in rel.paraphrases],
                "neighborhood_prompts": neighbours[:max_neighbours],
                "attribute_prompts": attribute[:max_neighbours],
                "generation_prompts": [g.format(c["subject"]) for g in rel.generation],
                "known": {"model": model.name, "p_true": c["p_true"]},
            }
        )
        summary["kept"][rel.relation_id] += 1
    return records, {k: dict(v) for k, v in summary.items()}


def reference_texts(relations: dict[str, Relation] | None = None) -> dict[tuple[str, str], str]:
    """Reference text for each (relation_id, object): the stand-in for CounterFact's Wikipedia snippets.

    It is every table statement with that relation and object ("Lyon is located in France. …") followed by a
    hand-written note about the object where there is one. The consistency score (RS) compares generated text
    with the reference text of (relation, target_new).
    """
    relations = relations or RELATIONS
    texts: dict[tuple[str, str], list[str]] = defaultdict(list)
    for rel in relations.values():
        for subject, obj in rel.pairs:
            sentence = rel.statement.format(subject, obj)
            texts[rel.relation_id, obj].append(sentence[0].upper() + sentence[1:])
    return {
        key: " ".join(sentences + ([OBJECT_NOTES[key[1]]] if key[1] in OBJECT_NOTES else []))
        for key, sentences in texts.items()
    }


def _from_known_1000(record: dict) -> dict | None:
    """A ``known_1000.json`` record → our format (no counterfactual target, no paraphrases or neighbours).

    The fact is the record's ``prompt`` (the text the model was checked on), with the subject's first occurrence
    replaced by ``{}``; not its ``template``, which differs from the prompt in 478 of the 1,209 records ("In {},
    the language spoken is" against the prompt "In Belgium, the language spoken is a mixture of"). ``None`` when
    the subject does not occur in the prompt, or the prompt holds braces (the caller counts these).
    """
    prompt, subject = record["prompt"], record["subject"]
    if not subject or subject not in prompt or "{" in prompt or "}" in prompt:
        return None
    at = prompt.index(subject)
    return {
        "case_id": record.get("known_id"),
        "requested_rewrite": {
            "prompt": prompt[:at] + "{}" + prompt[at + len(subject) :],
            "relation_id": record.get("relation_id"),
            "subject": subject,
            "target_true": {"str": record["attribute"]},
            "target_new": None,
        },
        "paraphrase_prompts": [],
        "neighborhood_prompts": [],
        "attribute_prompts": [],
        "generation_prompts": [],
    }


def load_facts(path: str | Path | None = None, limit: int | None = None) -> list[dict]:
    """Load facts in CounterFact's record format.

    Args:
        path: ``None`` for the book's own facts file; or a JSON file in one of three formats, told apart by their
            keys: the book's or CounterFact's ``counterfact.json`` (records with ``"requested_rewrite"``; loaded as
            they are), or ROME's ``known_1000.json`` (records with ``"known_id"``/``"template"``; converted, with
            ``target_new`` set to ``None`` and no paraphrase or neighbourhood prompts: usable for tracing and the
            known filter, not for editing metrics). A known_1000 fact is the record's ``prompt`` with the subject
            replaced by ``{}``; records whose subject does not occur in their prompt are skipped, with one warning
            that counts them and names their ``known_id``.
        limit: keep only the first ``limit`` records (an integer ≥ 0; ``None``: all).
    """
    if limit is not None:
        limit = integer(limit, "limit", 0, "pass the number of records to keep, e.g. limit=100, or None for all")
    path = Path(path) if path is not None else FACTS_PATH
    if not path.exists():
        raise FileNotFoundError(f"no facts file at {path}; pass path=None for the book's own facts")
    records = json.loads(path.read_text())
    if not isinstance(records, list) or not records:
        raise ValueError(f"{path} holds no records (expected a non-empty JSON list)")
    first = records[0]
    if "requested_rewrite" in first:
        out = records
    elif "template" in first and "subject" in first:
        converted = [_from_known_1000(r) for r in records]
        skipped = [r.get("known_id") for r, c in zip(records, converted, strict=True) if c is None]
        if skipped:
            warnings.warn(
                f"{path}: skipped {len(skipped)} of {len(records)} known_1000 records whose subject does not occur "
                f"in their prompt (or whose prompt holds braces): known_id {skipped[:10]}"
                + (" ..." if len(skipped) > 10 else ""),
                stacklevel=2,
            )
        out = [c for c in converted if c is not None]
    else:
        raise ValueError(
            f"{path}: unknown record format with keys {sorted(first)}; expected CounterFact records "
            "(with 'requested_rewrite') or known_1000 records (with 'template', 'subject', 'attribute')"
        )
    for r in out:
        r["requested_rewrite"].setdefault("subject", None)
        r.setdefault("paraphrase_prompts", [])
        r.setdefault("neighborhood_prompts", [])
        r.setdefault("generation_prompts", [])
    return out[:limit] if limit is not None else out


def balanced(records: Sequence[dict], n: int, seed: int = 0) -> list[dict]:
    """``n`` records spread over the relations: shuffled (with ``seed``) within each relation, then taken round-robin
    across relations, so a small sample is not all one relation (the book's facts are 80 of 231 ``P17``)."""
    n = integer(n, "n", 1, "pass how many records to draw, e.g. balanced(facts, 50)")
    by_relation: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_relation[r["requested_rewrite"].get("relation_id", "")].append(r)
    rng = random.Random(seed)
    queues = []
    for rel in sorted(by_relation):
        group = list(by_relation[rel])
        rng.shuffle(group)
        queues.append(group)
    out: list[dict] = []
    while len(out) < n and any(queues):
        for q in queues:
            if q and len(out) < n:
                out.append(q.pop(0))
    return out
