"""locedit.circuits.intervention on tiny random models: no heads = the plain model; a head forced to its own
attention changes nothing; forcing elsewhere changes the logits of that prompt only; length groups keep the
prompts' order; the outcome counts fixed items and new mistakes; bad input is named."""

from __future__ import annotations

import pytest
import torch

from conftest import TINY_VOCAB, tiny_model
from locedit.circuits.attention import attention_patterns, force_attention
from locedit.circuits.intervention import (
    head_intervention_effects,
    other_positions,
    steered_logits,
    steering_outcome,
    uniform_weights,
)


def _ids(seed: int, seq: int, batch: int = 2) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(2, TINY_VOCAB, (batch, seq), generator=g).tolist()


def test_positions_and_weights():
    pos = torch.tensor([[3, 5, 7], [2, 4, 6]])
    assert other_positions(pos, [0, 2]).tolist() == [[5, 7], [2, 4]]
    w = uniform_weights(8, torch.tensor([[5, 7], [2, 4]]))
    assert w.shape == (2, 8) and w[0, 5] == w[0, 7] == 0.5 and w[1].sum() == 1 and w[1, 3] == 0
    with pytest.raises(ValueError, match="keep_out must index"):
        other_positions(pos, [0, 3])
    with pytest.raises(ValueError, match=r"positions must lie in 0..7"):
        uniform_weights(8, torch.tensor([[8]]))


@pytest.mark.parametrize("family", ["llama", "gemma3_text"])
def test_steering_with_the_heads_own_attention_changes_nothing(family):
    model = tiny_model(family)
    prompts = _ids(0, 6) + _ids(1, 8, batch=1)  # two lengths, run as two groups
    with torch.no_grad():
        plain = torch.stack([model.hf(input_ids=torch.tensor([p])).logits[0, -1] for p in prompts])
    ours = steered_logits(model, prompts, batch_size=1)
    assert torch.allclose(ours, plain, atol=1e-5)
    # force head (1, 2) onto a single position that its own pattern would hardly choose: logits move
    targets = torch.tensor([[0], [1], [2]])
    moved = steered_logits(model, prompts, [(1, 2)], targets)
    assert not torch.allclose(moved, plain, atol=1e-4)
    # force it to its own attention (the last row of its pattern): nothing changes (one prompt at a time)
    for i, p in enumerate(prompts):
        own = attention_patterns(model, [p], layers=[1])[0, 0, 2, -1]  # [seq]
        assert own[:-1].std() > 0  # not uniform: forcing it to itself is a real check
        with torch.no_grad(), force_attention(model, [(1, 2)], own[None]):
            same = model.hf(input_ids=torch.tensor([p])).logits[0, -1]
        assert torch.allclose(same, plain[i], atol=1e-5)


def test_uniform_forcing_is_the_mean_of_values_and_effects_are_per_head():
    model = tiny_model("llama")
    prompts = _ids(2, 7, batch=3)
    targets = torch.tensor([[1, 3], [2, 4], [0, 5]])
    answers = torch.tensor([[5, 6], [7, 8], [9, 10]])
    a = steered_logits(model, prompts, [(0, 1)], targets)
    b = steered_logits(model, prompts, [(0, 1)], targets, batch_size=1)
    assert torch.allclose(a, b, atol=1e-5)  # batching does not matter
    effects = head_intervention_effects(model, prompts, [(0, 1), (1, 3)], targets, answers)
    assert effects.shape == (2,) and torch.isfinite(effects).all() and (effects != 0).all()
    plain = steered_logits(model, prompts)
    ld = lambda lg: lg.gather(1, answers)[:, 0] - lg.gather(1, answers)[:, 1]  # noqa: E731
    assert effects[0] == pytest.approx(float((ld(a) - ld(plain)).mean()), abs=1e-5)


def test_steering_outcome_counts():
    before = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [0.0, 1.0, 5.0]])
    after = torch.tensor([[0.0, 4.0, 0.0], [3.0, 2.0, 1.0], [0.0, 1.0, 6.0]])
    answers = torch.tensor([[0, 1], [0, 1], [2, 0]])
    candidates = torch.tensor([[0, 1, 2]] * 3)
    out = steering_outcome(before, after, answers, candidates)
    assert out.before.tolist() == [True, False, True] and out.after.tolist() == [False, True, True]
    assert (out.fixed, out.new_mistakes) == (1, 1)
    assert out.accuracy_before == pytest.approx(2 / 3) and out.accuracy_after == pytest.approx(2 / 3)
    assert out.ld_before.tolist() == [2.0, -2.0, 5.0]


def test_bad_input_is_named():
    model = tiny_model("llama")
    prompts = _ids(0, 6)
    with pytest.raises(ValueError, match="give targets"):
        steered_logits(model, prompts, [(0, 1)])
    with pytest.raises(ValueError, match=r"head \(2, 0\): layer = 2 is out of range"):
        steered_logits(model, prompts, [(2, 0)], torch.tensor([[1], [2]]))
    with pytest.raises(ValueError, match="3 rows for 2 prompts"):
        steered_logits(model, prompts, [(0, 0)], torch.tensor([[1], [2], [3]]))
