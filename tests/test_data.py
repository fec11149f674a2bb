"""The book's facts file and its loader."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from locedit.data import RELATIONS, candidates, load_facts, reference_texts


def test_facts_file_shape():
    facts = load_facts()
    assert len(facts) >= 150
    relations = Counter(f["requested_rewrite"]["relation_id"] for f in facts)
    assert sum(n >= 5 for n in relations.values()) >= 8
    for f in facts:
        rw = f["requested_rewrite"]
        assert "{}" in rw["prompt"] and rw["subject"]
        assert rw["target_true"]["str"] != rw["target_new"]["str"]
        assert rw["target_new"]["str"] in RELATIONS[rw["relation_id"]].objects()
        assert len(f["paraphrase_prompts"]) == 2
        assert 5 <= len(f["neighborhood_prompts"]) <= 10
        assert rw["prompt"].format(rw["subject"]) not in f["neighborhood_prompts"]
        assert f["generation_prompts"]
    assert [f["case_id"] for f in facts] == list(range(len(facts)))


def test_candidates_and_references():
    cands = candidates()
    assert len(cands) > 500
    refs = reference_texts()
    assert "Lyon is located in France." in refs["P17", "France"]


def test_load_known_1000_and_counterfact(tmp_path):
    known = [{"known_id": 0, "subject": "Vinson Massif", "attribute": "Antarctica", "relation_id": "P30",
              "template": "{} is located in the continent of", "prediction": " Antarctica",
              "prompt": "Vinson Massif is located in the continent of"}]  # fmt: skip
    path = tmp_path / "known_1000.json"
    path.write_text(json.dumps(known))
    (record,) = load_facts(path)
    assert record["requested_rewrite"]["target_true"]["str"] == "Antarctica"
    assert record["requested_rewrite"]["target_new"] is None
    cf = tmp_path / "cf.json"
    cf.write_text(json.dumps(load_facts(limit=3)))
    assert len(load_facts(cf)) == 3


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_facts(tmp_path / "nothing.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"foo": 1}]))
    with pytest.raises(ValueError, match="unknown record format"):
        load_facts(bad)
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    with pytest.raises(ValueError, match="no records"):
        load_facts(empty)


def test_balanced_spreads_relations():
    from locedit.data import balanced

    facts = load_facts()
    relations = {f["requested_rewrite"]["relation_id"] for f in facts}
    sample = balanced(facts, len(relations))
    assert len({f["requested_rewrite"]["relation_id"] for f in sample}) == len(relations)
    assert balanced(facts, 10, seed=1) == balanced(facts, 10, seed=1)
    assert len(balanced(facts, 10_000)) == len(facts)


def _known(known_id, subject, template, prompt, attribute="French"):
    return {"known_id": known_id, "subject": subject, "attribute": attribute, "template": template,
            "prediction": " " + attribute, "prompt": prompt, "relation_id": "P37"}  # fmt: skip


def test_known_1000_prompt_comes_from_the_record_prompt(tmp_path):
    """known_1000's ``template`` and ``prompt`` differ in 478 of 1,209 records: the fact is the ``prompt``."""
    known = [
        _known(0, "Danielle Darrieux", "The mother tongue of {} is", "The mother tongue of Danielle Darrieux is"),
        _known(1, "Belgium", "In {}, the language spoken is", "In Belgium, the language spoken is a mixture of"),
        _known(2, "Rome", "{} is the capital of", "Rome, the capital of Italy, is in", attribute="Italy"),
    ]
    path = tmp_path / "known_1000.json"
    path.write_text(json.dumps(known))
    records = load_facts(path)
    prompts = [r["requested_rewrite"]["prompt"] for r in records]
    assert prompts == [
        "The mother tongue of {} is",
        "In {}, the language spoken is a mixture of",
        "{}, the capital of Italy, is in",
    ]
    for r, k in zip(records, known, strict=True):
        rw = r["requested_rewrite"]
        assert rw["prompt"].format(rw["subject"]) == k["prompt"]


def test_known_1000_subject_missing_from_its_prompt_is_skipped_and_counted(tmp_path):
    known = [
        _known(0, "Danielle Darrieux", "The mother tongue of {} is", "The mother tongue of Danielle Darrieux is"),
        _known(7, "Belgium", "In {}, the language spoken is", "In belgium, the language spoken is"),
    ]
    path = tmp_path / "known_1000.json"
    path.write_text(json.dumps(known))
    with pytest.warns(UserWarning, match=r"skipped 1 of 2 .*known_id \[7\]"):
        records = load_facts(path)
    assert [r["case_id"] for r in records] == [0]


def test_counts_must_be_integers():
    import numpy as np

    from locedit.data import balanced

    facts = load_facts()
    with pytest.raises(TypeError, match="limit must be an integer"):
        load_facts(limit=2.5)
    with pytest.raises(TypeError, match="limit must be an integer"):
        load_facts(limit="10")
    with pytest.raises(ValueError, match="limit must be ≥ 0"):
        load_facts(limit=-1)
    assert len(load_facts(limit=np.int64(3))) == 3
    with pytest.raises(TypeError, match="n must be an integer"):
        balanced(facts, 2.0)
    with pytest.raises(TypeError, match="n must be an integer"):
        balanced(facts, True)
    with pytest.raises(ValueError, match="n must be ≥ 1"):
        balanced(facts, 0)
    assert len(balanced(facts, np.int32(4))) == 4
