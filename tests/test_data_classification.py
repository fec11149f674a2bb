"""The chapter-5 classification tasks (hierarchy, agreement, persona) and the hierarchy edit requests."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from locedit.data.classification import (
    AGREEMENT_CONDITIONS,
    HIERARCHY,
    HIERARCHY_DOMAINS,
    TASKS,
    ClassificationTask,
    agreement_task,
    hierarchy_choice_task,
    hierarchy_edits,
    hierarchy_pairs,
    hierarchy_task,
    persona_task,
)
from locedit.editing.common import as_request
from locedit.evaluation import evaluate
from locedit.tokens import target_ids

PLURALS = {"children", "men", "women", "mice", "feet", "teeth", "geese", "people", "cacti", "fungi", "oxen",
           "knives", "leaves", "wolves", "shelves", "loaves", "calves", "theses", "analyses", "wives", "phenomena",
           "alumni"}  # fmt: skip


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_is_balanced_distinct_and_splits_into_disjoint_balanced_halves(name):
    task = TASKS[name]()
    assert task.name == name
    assert len(task) >= 200
    assert sum(task.labels) * 2 == len(task)
    assert len(set(task.texts)) == len(task.texts)
    train, test = task.split(0.2, seed=0)
    assert set(train.texts).isdisjoint(test.texts)
    assert sorted(train.texts + test.texts) == sorted(task.texts)
    assert 0.15 < len(test) / len(task) < 0.25
    for half in (train, test):
        assert sum(half.labels) * 2 == len(half)
        assert all(task.labels[task.texts.index(t)] == label for t, label in zip(half.texts, half.labels, strict=True))
    if task.groups is not None:  # a minimal pair's twin is never on the other side
        side = {g: "train" for g in train.groups} | {g: "test" for g in test.groups}
        assert all(side[g] == "train" for g in train.groups)
    assert task.split(0.2, seed=1)[1].texts != test.texts  # the seed matters
    assert task.split(0.2, seed=0)[1].texts == test.texts  # and fixes the split


@pytest.mark.parametrize("name", sorted(TASKS))
def test_subset_is_balanced_and_seeded(name):
    task = TASKS[name]()
    sub = task.subset(40, seed=3)
    assert len(sub) == 40 and sum(sub.labels) == 20
    assert set(sub.texts) <= set(task.texts)
    assert sub.texts == task.subset(40, seed=3).texts
    assert sub.texts != task.subset(40, seed=4).texts


def test_task_refuses_bad_input():
    with pytest.raises(ValueError, match="no texts"):
        ClassificationTask("x", [], [])
    with pytest.raises(ValueError, match="only label"):
        ClassificationTask("x", ["a", "b"], [1, 1])
    with pytest.raises(ValueError, match="0 or 1"):
        ClassificationTask("x", ["a", "b"], [1, 2])
    with pytest.raises(ValueError, match="repeats"):
        ClassificationTask("x", ["a", "a", "b"], [1, 1, 0])
    with pytest.raises(ValueError, match="2 texts but 1 labels"):
        ClassificationTask("x", ["a", "b"], [1])
    task = ClassificationTask("x", ["a", "b", "c", "d"], [1, 0, 1, 0])
    with pytest.raises(ValueError, match="odd"):
        task.subset(3)
    with pytest.raises(ValueError, match="out of range"):
        task.subset(6)
    with pytest.raises(ValueError, match="test_fraction"):
        task.split(1.5)
    with pytest.raises(ValueError, match="one side would have none"):
        task.split(0.1)
    train, test = task.split(0.5)
    assert len(train) == len(test) == 2 and sum(test.labels) == 1


def test_hierarchy_pairs_and_statements():
    pairs = hierarchy_pairs()
    assert len(pairs) >= 120
    domain_of = {h: d for d, hs in HIERARCHY_DOMAINS.items() for h in hs}
    assert set(HIERARCHY) == set(domain_of)
    for p in pairs:
        assert p["false"] != p["true"] and domain_of[p["false"]] == domain_of[p["true"]] == p["domain"]
        assert p["true"] not in p["subject"].lower() and p["false"] not in p["subject"].lower()
    assert len({p["subject"] for p in pairs}) == len(pairs)
    assert Counter(p["false"] for p in pairs).most_common(1)[0][1] < len(pairs) / 5  # false twins spread out
    task = hierarchy_task()
    assert len(task) == 2 * len(pairs)
    assert "A beagle is a kind of dog." in task.texts
    i = task.texts.index("A beagle is a kind of dog.")
    assert task.labels[i] == 1 and task.labels[i + 1] == 0 and task.groups[i] == task.groups[i + 1]
    assert task.texts[i + 1].startswith("A beagle is a kind of ") and task.texts[i + 1] != task.texts[i]


def test_hierarchy_choice_task_asks_for_the_hypernym_between_the_true_and_the_false_one():
    pairs = hierarchy_pairs()
    task = hierarchy_choice_task()
    assert len(task) == len(pairs) // 2 * 2 and 2 * sum(task.labels) == len(task)
    for text, label, answers, pair in zip(task.texts, task.labels, task.answers, pairs[: len(task)], strict=True):
        assert text == f"{pair['subject']} is a kind of"
        assert answers[label] == pair["true"] and answers[1 - label] == pair["false"]
    train, test = task.split(0.2)
    assert len(train) + len(test) == len(task)
    for part in (train, test):
        assert all(task.answers[task.texts.index(t)] == a for t, a in zip(part.texts, part.answers, strict=True))
    with pytest.raises(ValueError, match="answer pairs"):
        ClassificationTask("x", ["a", "b"], [0, 1], answers=[("cat", "dog")])
    with pytest.raises(ValueError, match="two different"):
        ClassificationTask("x", ["a", "b"], [0, 1], answers=[("cat", "dog"), ("dog", " dog")])


def test_hierarchy_edits_are_counterfact_requests_the_editors_accept():
    records = hierarchy_edits()
    pairs = hierarchy_pairs()
    assert len(records) == len(pairs)
    assert [r["case_id"] for r in records] == list(range(len(records)))
    first = records[0]
    assert first["requested_rewrite"]["prompt"] == "{} is a kind of"
    assert first["requested_rewrite"]["subject"] == "A beagle"
    assert first["paraphrase_prompts"] == ["A beagle is a type of", "A beagle falls under the category of"]
    assert first["neighborhood_prompts"] == []
    for r, p in zip(records, pairs, strict=True):
        request = as_request(r)
        assert request.text == f"{p['subject']} is a kind of"
        assert (request.target_true, request.target_new) == (p["true"], p["false"])
        assert f"{request.text} {p['false']}." in hierarchy_task().texts


def test_agreement_conditions_and_pairs():
    task = agreement_task(400, seed=0)
    assert len(task) == 400 and task.groups is not None
    assert Counter(task.groups) == Counter({g: 2 for g in range(200)})
    assert agreement_task(400, seed=0).texts == task.texts
    assert agreement_task(400, seed=1).texts != task.texts
    singular, plural = {"this", "that"}, {"these", "those"}
    irregular = PLURALS | {"child", "man", "woman", "mouse", "foot", "tooth", "goose", "person", "cactus", "fungus",
                           "ox", "knife", "leaf", "wolf", "shelf", "loaf", "calf", "thesis", "analysis", "wife",
                           "phenomenon", "alumnus"}  # fmt: skip
    for k in range(0, 400, 2):
        good, bad = task.texts[k].rstrip(".").split(), task.texts[k + 1].rstrip(".").split()
        assert task.labels[k : k + 2] == [1, 0]
        det_good = next(w for w in good if w in singular | plural)
        det_bad = next(w for w in bad if w in singular | plural)
        assert sum(a != b for a, b in zip(good, bad, strict=True)) == 1  # a minimal pair
        assert (det_good != det_bad) == (k % 4 == 2)  # alternate pairs change the determiner or the noun
        condition = AGREEMENT_CONDITIONS[(k // 2) % 4]
        assert (good[-1] in irregular and bad[-1] in irregular) == condition.startswith("irregular")
        assert (len(good) - good.index(det_good) == 3) == condition.endswith("adjective")
    with pytest.raises(ValueError, match="odd"):
        agreement_task(41)


def test_agreement_grammatical_sentence_agrees():
    task = agreement_task(80, seed=2)
    for text, label in zip(task.texts, task.labels, strict=True):
        words = text.rstrip(".").split()
        det = next(w for w in words if w in {"this", "that", "these", "those"})
        noun = words[-1]
        noun_plural = noun in PLURALS or (noun.endswith("s") and noun not in {"analysis", "thesis", "cactus",
                                                                                    "fungus", "alumnus"})  # fmt: skip
        assert (det in {"these", "those"}) == noun_plural if label == 1 else (det in {"these", "those"}) != noun_plural


def test_persona_statements():
    task = persona_task()
    assert len(task) >= 200 and sum(task.labels) * 2 == len(task)
    assert all(t.endswith(".") and t[0].isupper() for t in task.texts)
    assert "I enjoy meeting new people." in task.texts
    assert task.labels[task.texts.index("I need time alone to recharge.")] == 0


def test_hypernyms_are_single_tokens_and_the_model_knows_most_pairs(smollm2):
    """Every hypernym is one token with its leading space; SmolLM2 prefers the true hypernym after "{subject} is a
    kind of" for at least 100 pairs (the pre-edit baseline of the paper's editing experiment)."""
    for hypernym in HIERARCHY:
        assert len(target_ids(smollm2, hypernym)) == 1, hypernym
    records = hierarchy_edits()
    prompts = [r["requested_rewrite"]["prompt"].format(r["requested_rewrite"]["subject"]) for r in records]
    true = torch.tensor([target_ids(smollm2, r["requested_rewrite"]["target_true"]["str"])[0] for r in records])
    new = torch.tensor([target_ids(smollm2, r["requested_rewrite"]["target_new"]["str"])[0] for r in records])
    probs = smollm2.next_token_probs(prompts)
    rows = torch.arange(len(records))
    right = probs[rows, true] > probs[rows, new]
    assert int(right.sum()) >= 100
    # the CounterFact evaluation reads the same records: ES (new beats true) is 100 minus "right" on these rows
    df = evaluate(smollm2, records[:4])
    assert list(df["ES"]) == [100.0 * float(not r) for r in right[:4]]
