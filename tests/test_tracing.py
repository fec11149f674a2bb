"""Causal tracing: the engine's trace equals the plain full-forward trace, restorations that must give the clean or
the corrupted probability do, severed restores cut what they should, buckets are the paper's, bad input fails."""

from __future__ import annotations

import math

import pytest
import torch

from locedit.tracing import (
    BUCKETS,
    Trace,
    TraceError,
    average_effects,
    causal_trace,
    default_window,
    embedding_std,
    subject_range,
)

PROMPT = "The Eiffel Tower is located in the city of"
SUBJECT = "Eiffel Tower"


@pytest.fixture(scope="module")
def small_trace(smollm2) -> Trace:
    n = smollm2.spec.n_layers
    return causal_trace(
        smollm2, PROMPT, SUBJECT, "Paris", kinds=("hidden", "mlp", "hidden-sever-mlp"), samples=2,
        layers=[0, 9, n - 1], window=3,
    )  # fmt: skip


def test_trace_matches_full_reference(smollm2, small_trace):
    n = smollm2.spec.n_layers
    full = causal_trace(
        smollm2, PROMPT, SUBJECT, "Paris", kinds=("hidden", "mlp", "hidden-sever-mlp"), samples=2,
        layers=[0, 9, n - 1], window=3, method="full",
    )  # fmt: skip
    assert math.isclose(full.p_corrupt, small_trace.p_corrupt, abs_tol=1e-5)
    for kind, scores in full.scores.items():
        diff = (scores - small_trace.scores[kind]).abs().max().item()
        assert diff <= 1e-5, f"{kind}: incremental differs from the full reference by {diff:.2e}"


def test_bf16_trace_within_stated_tolerance(smollm2, small_trace):
    """bfloat16 (what chapter 1 uses on hardware with native bf16): every score within 0.03 of float32's (the
    benchmark measured ≤ 0.010 on the full trace), the same noise, the same clean and corrupted runs to 0.03."""
    n = smollm2.spec.n_layers
    bf16 = causal_trace(
        smollm2, PROMPT, SUBJECT, "Paris", kinds=("hidden", "mlp", "hidden-sever-mlp"), samples=2,
        layers=[0, 9, n - 1], window=3, dtype=torch.bfloat16,
    )  # fmt: skip
    assert abs(bf16.p_clean - small_trace.p_clean) <= 0.03 and abs(bf16.p_corrupt - small_trace.p_corrupt) <= 0.03
    for kind, scores in small_trace.scores.items():
        diff = (scores - bf16.scores[kind]).abs().max().item()
        assert diff <= 0.03, f"{kind}: bf16 differs from float32 by {diff:.3f}"


def test_restorations_that_must_give_clean_or_corrupted(smollm2, small_trace):
    t = small_trace
    first, _ = t.subject_range
    assert t.tokens[first].strip() == "E" and t.p_clean > 0.5 > t.p_corrupt  # the model knows it; noise breaks it
    # the last layer's residual at the last token decides the logits: restoring it gives the clean probability
    assert math.isclose(float(t.scores["hidden"][-1, -1]), t.p_clean, rel_tol=1e-4)
    # before the subject nothing is corrupted: restoring there gives the corrupted probability exactly
    for kind in t.scores:
        assert torch.all(t.scores[kind][:, :first] == t.p_corrupt)
    # no MLP above the last layer: severing them changes nothing there
    assert torch.allclose(t.scores["hidden-sever-mlp"][-1], t.scores["hidden"][-1], atol=1e-6)
    # severing the MLPs at the subject's last token can only be told apart from the plain restore if it matters;
    # at layer 0 it removes every later MLP's reading of that token, so the effect must change
    last_subj = t.subject_range[1] - 1
    assert not torch.allclose(t.scores["hidden-sever-mlp"][0, last_subj], t.scores["hidden"][0, last_subj])
    assert t.per_sample["hidden"].shape == (3, len(t.tokens), 2)


def test_same_seed_same_trace(smollm2):
    a = causal_trace(smollm2, PROMPT, SUBJECT, kinds=("hidden",), samples=2, layers=[5], seed=3)
    b = causal_trace(smollm2, PROMPT, SUBJECT, kinds=("hidden",), samples=2, layers=[5], seed=3)
    assert torch.equal(a.scores["hidden"], b.scores["hidden"])
    assert a.target.strip() == "Paris"  # target=None traces the model's own top token


def test_subject_range_and_noise(smollm2):
    first, end = subject_range(smollm2, PROMPT, SUBJECT)
    assert "".join(smollm2.str_tokens(PROMPT)[first:end]).strip() == SUBJECT
    sigma = embedding_std(smollm2, ["Eiffel Tower", "Barack Obama"])
    assert 0 < sigma < 1
    assert default_window(48) == 10 and default_window(30) == 6


def test_bad_input(smollm2):
    with pytest.raises(TraceError, match="not in the prompt"):
        causal_trace(smollm2, PROMPT, "Big Ben")
    with pytest.raises(TraceError, match="empty target"):
        causal_trace(smollm2, PROMPT, SUBJECT, " ")
    with pytest.raises(TraceError, match="unknown trace kind"):
        causal_trace(smollm2, PROMPT, SUBJECT, kinds=("mlps",))
    with pytest.raises(IndexError):
        causal_trace(smollm2, PROMPT, SUBJECT, layers=[smollm2.spec.n_layers])
    with pytest.raises(TraceError, match="no traces"):
        average_effects([], "hidden")


def test_positions_checked_before_any_forward(smollm2, monkeypatch):
    import locedit.tracing

    def no_forward(*_args, **_kwargs):
        raise AssertionError("a forward pass ran before the positions were checked")

    monkeypatch.setattr(locedit.tracing, "record", no_forward)
    with pytest.raises(IndexError, match="out of range"):
        causal_trace(smollm2, PROMPT, SUBJECT, "Paris", positions=[99])


def _fake(tokens: int, subject: tuple[int, int], value_at: dict[int, float]) -> Trace:
    scores = torch.zeros(2, tokens)
    for t, v in value_at.items():
        scores[:, t] = v
    return Trace("p", "s", "o", ["x"] * tokens, subject, 1.0, 0.0, {"hidden": scores}, 0.1, 1, 1)


def test_buckets():
    # tokens: 0 pre, 1-3 subject, 4 first subsequent, 5-6 further, 7 last
    a = _fake(8, (1, 4), {1: 1.0, 2: 2.0, 3: 3.0, 4: 4.0, 5: 5.0, 6: 7.0, 7: 8.0})
    # one-token subject right before the last token: first = last subject, first subsequent = last token
    b = _fake(4, (2, 3), {2: 10.0, 3: 20.0})
    aie, counts = average_effects([a, b], "hidden")
    expected = [(1 + 10) / 2, 2.0, (3 + 10) / 2, (4 + 20) / 2, 6.0, (8 + 20) / 2]
    assert counts.tolist() == [2, 1, 2, 2, 1, 2]
    assert torch.allclose(aie[:, 0], torch.tensor(expected))
    assert len(BUCKETS) == aie.shape[0]
    c = _fake(3, (0, 1), {})
    aie, counts = average_effects([c], "hidden")
    assert counts[1] == 0 and torch.isnan(aie[1]).all()  # no middle tokens anywhere: NaN, not 0


def test_positions_subset(smollm2, small_trace):
    """Restoring only some tokens gives those columns exactly as the full trace, NaN elsewhere."""
    n = smollm2.spec.n_layers
    last_subj = small_trace.subject_range[1] - 1
    part = causal_trace(
        smollm2, PROMPT, SUBJECT, "Paris", kinds=("hidden", "mlp", "hidden-sever-mlp"), samples=2,
        layers=[0, 9, n - 1], window=3, positions=[last_subj, -1],
    )  # fmt: skip
    for kind, scores in part.scores.items():
        assert torch.allclose(scores[:, [last_subj, -1]], small_trace.scores[kind][:, [last_subj, -1]], atol=1e-6)
        assert torch.isnan(scores[:, 0]).all()
    with pytest.raises(IndexError):
        causal_trace(smollm2, PROMPT, SUBJECT, positions=[99])


def test_argument_types_fail_before_any_work(smollm2):
    """Issue #19: a prompt, subject or target that is not a string, or a non-integer sample count or window, is
    refused at once with a message naming the argument (not deep inside the tokenizer or torch.randn)."""
    with pytest.raises(TypeError, match="prompt must be a string"):
        causal_trace(smollm2, [PROMPT], SUBJECT)
    with pytest.raises(TypeError, match="subject must be a string"):
        causal_trace(smollm2, PROMPT, None)
    with pytest.raises(TypeError, match="target must be a string"):
        causal_trace(smollm2, PROMPT, SUBJECT, 42)
    for bad in (2.5, "10", True):
        with pytest.raises(TypeError, match="samples must be an integer"):
            causal_trace(smollm2, PROMPT, SUBJECT, samples=bad)
    with pytest.raises(TypeError, match="window must be an integer"):
        causal_trace(smollm2, PROMPT, SUBJECT, window=2.7)
    with pytest.raises(TypeError, match="each of layers must be an integer"):
        causal_trace(smollm2, PROMPT, SUBJECT, layers=[1.5])
    with pytest.raises(TypeError, match="each of positions must be an integer"):
        causal_trace(smollm2, PROMPT, SUBJECT, positions=[2.0])
    with pytest.raises(TraceError, match="samples must be ≥ 1"):
        causal_trace(smollm2, PROMPT, SUBJECT, samples=0)


def test_trace_records_its_layers(smollm2, small_trace):
    assert small_trace.layers == [0, 9, smollm2.spec.n_layers - 1]
