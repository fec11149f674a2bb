"""CounterFact metrics: probabilities, scores, entropy and TF-IDF."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from locedit.data import load_facts
from locedit.editing import Edit
from locedit.evaluation import TfIdf, evaluate, generate, ngram_entropy, summarize, target_nll, target_prob


def test_target_prob_matches_single_forward(smollm2):
    prompts = ["The capital of France is", "Lyon is located in the country of"]
    targets = ["Paris", "New Zealand"]
    batched = target_prob(smollm2, prompts, targets)
    for i, (p, t) in enumerate(zip(prompts, targets, strict=True)):
        tok = smollm2.tokenizer
        p_ids = tok(p)["input_ids"]
        t_ids = tok(" " + t, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logp = smollm2.hf(input_ids=torch.tensor([p_ids + t_ids])).logits[0].log_softmax(-1)
        nll = -sum(float(logp[len(p_ids) - 1 + j, t_ids[j]]) for j in range(len(t_ids))) / len(t_ids)
        assert math.isclose(float(batched[i]), math.exp(-nll), rel_tol=1e-4)
    assert batched[0] > 0.5  # Paris
    with pytest.raises(ValueError, match="empty target"):
        target_nll(smollm2, ["x"], [""])


def test_target_nll_shared_prompts_equal_one_pass_per_pair(real_model):
    """Prompts scored against several targets (one- and multi-token, prompts of different lengths) run once into
    a cache; every NLL equals a plain teacher-forced pass over prompt + target."""
    tok = real_model.tokenizer
    prompts = ["The capital of France is", "Lyon is located in the country of", "The capital of France is",
               "Lyon is located in the country of", "Danielle Darrieux's mother tongue is"]  # fmt: skip
    targets = ["Paris", "New Zealand", "the city of Rome", "France", "French"]
    fast = target_nll(real_model, prompts, targets, batch_size=2)  # two prompt batches
    for i, (p, t) in enumerate(zip(prompts, targets, strict=True)):
        p_ids = tok(p)["input_ids"]
        t_ids = tok(" " + t, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logp = real_model.hf(input_ids=torch.tensor([p_ids + t_ids])).logits[0].double().log_softmax(-1)
        nll = -sum(float(logp[len(p_ids) - 1 + j, t_ids[j]]) for j in range(len(t_ids))) / len(t_ids)
        assert math.isclose(float(fast[i]), nll, rel_tol=1e-4, abs_tol=1e-4), (p, t)


def test_evaluate_unedited(smollm2):
    records = load_facts(limit=6)
    df = evaluate(smollm2, records)
    assert list(df.columns) == ["case_id", "ES", "EM", "PS", "PM", "NS", "NM"]
    assert len(df) == 6
    summary = df.attrs["summary"]
    # the unedited model knows these facts: the new object rarely wins on the rewrite prompt
    assert summary["ES"] <= 20 and summary["NS"] >= 80
    assert 0 <= summary["S"] <= 100
    both = pd.concat([df, evaluate(smollm2, records[:2])])  # per-record frames concatenate (chapter 1 does it)
    assert len(both) == 8
    with pytest.raises(ValueError, match="no records"):
        evaluate(smollm2, [])


def test_evaluate_and_generate_with_one_edit_per_record(smollm2):
    """evaluate(edits=…) scores each record under its own edit, and samples every record's texts in one batch with
    each row's own edit; a row's text equals the text sampled with that edit applied to the weights."""
    records = load_facts(limit=2)
    name = "model.layers.5.mlp.down_proj.weight"
    weight = dict(smollm2.hf.named_parameters())[name]
    edit = Edit({name: 0.05 * torch.randn(weight.shape, generator=torch.Generator().manual_seed(0))})
    df = evaluate(smollm2, records, edits=[edit, None])
    with edit.applied(smollm2):
        first = evaluate(smollm2, records[:1])
    pd.testing.assert_frame_equal(df.iloc[:1], first, check_exact=False, rtol=1e-6)
    pd.testing.assert_frame_equal(df.iloc[1:].reset_index(drop=True), evaluate(smollm2, records[1:]))
    prompts = [records[0]["generation_prompts"][0]] * 2
    both = generate(smollm2, prompts, max_length=24, edits=[edit, edit])
    plain = generate(smollm2, prompts, max_length=24)
    with edit.applied(smollm2):
        applied = generate(smollm2, prompts, max_length=24)
    assert both == applied and both != plain
    with pytest.raises(ValueError, match="one edit"):
        evaluate(smollm2, records, edits=[None])


def test_summarize_harmonic_mean():
    import pandas as pd

    s = summarize(pd.DataFrame({"case_id": [0, 1], "ES": [100.0, 100.0], "PS": [50.0, 50.0], "NS": [100.0, 0.0]}))
    assert math.isclose(s["S"], 3 / (1 / 100 + 1 / 50 + 1 / 50))


def test_ngram_entropy_and_tfidf():
    assert ngram_entropy("a a a a a a") == 0
    varied = ngram_entropy("the cat sat on the mat and then the dog ran off to the park")
    assert varied > ngram_entropy("the cat the cat the cat the cat the cat the cat")
    vec = TfIdf(["Paris is in France.", "Berlin is in Germany.", "Rome is in Italy."])
    assert vec.similarity("Paris France", "Paris is in France.") > vec.similarity("Paris France", "Rome Italy")
    assert math.isclose(vec.similarity("Berlin is in Germany.", "Berlin is in Germany."), 1.0, rel_tol=1e-9)


def test_evaluate_argument_types(smollm2):
    """Issue #19: one record instead of a list, a record without a requested rewrite, or a non-integer batch size
    fail at once, naming the argument and the fix."""
    records = load_facts(limit=2)
    with pytest.raises(TypeError, match=r"list of CounterFact records.*\[record\]"):
        evaluate(smollm2, records[0])
    with pytest.raises(TypeError, match="records\\[1\\] must be a CounterFact record"):
        evaluate(smollm2, [records[0], "The capital of France is"])
    with pytest.raises(TypeError, match="batch_size must be an integer"):
        evaluate(smollm2, records, batch_size=8.0)
    bad = {**records[0], "requested_rewrite": {**records[0]["requested_rewrite"], "subject": 5}}
    with pytest.raises(TypeError, match="subject must be a string"):
        evaluate(smollm2, [bad])
    bad = {**records[0], "paraphrase_prompts": [None]}
    with pytest.raises(TypeError, match="paraphrase_prompts must be strings"):
        evaluate(smollm2, [bad])
