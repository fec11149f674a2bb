"""locedit.circuits.path_patching: the engine path agrees with the plain full-forward reference (tiny Llama and
GPT-2 models, SmolLM2 on IOI), computes only the last position from each sender's layer up, and refuses bad heads."""

from __future__ import annotations

import importlib

import pytest
import torch

from conftest import TINY_VOCAB, tiny_model
from locedit.circuits import IOI_TEMPLATES as ioi_templates
from locedit.circuits import ioi, path_patching, path_patching_logit_diffs, path_patching_reference

TOL = 1e-4  # float32, on logit differences and on effects


def _tiny_task(seed: int = 0, n: int = 4, seq: int = 6):
    """Random prompts with one token corrupted in the middle, and random answer pairs."""
    g = torch.Generator().manual_seed(seed)
    clean = torch.randint(2, TINY_VOCAB, (n, seq), generator=g)
    corrupt = clean.clone()
    corrupt[:, seq // 2] = torch.randint(2, TINY_VOCAB, (n,), generator=g)
    answers = torch.randint(2, TINY_VOCAB, (n, 2), generator=g)
    return clean, corrupt, answers


def _agree(fast, ref) -> None:
    assert fast.senders == ref.senders
    assert (fast.clean - ref.clean).abs().max() <= TOL and (fast.corrupt - ref.corrupt).abs().max() <= TOL
    assert (fast.patched - ref.patched).abs().max() <= TOL
    a, b = fast.effects(), ref.effects()
    assert torch.equal(a.isnan(), b.isnan())
    assert (a.nan_to_num() - b.nan_to_num()).abs().max() <= TOL * max(1.0, float(b.nan_to_num().abs().max()))


@pytest.fixture(params=["llama", "gpt2"], scope="module")
def tiny(request):
    return tiny_model(request.param)


@pytest.mark.parametrize("receivers", ["logits", [(1, 2), (1, 0)]])
def test_engine_matches_reference_on_tiny_models(tiny, receivers):
    clean, corrupt, answers = _tiny_task()
    fast = path_patching_logit_diffs(tiny, clean, corrupt, answers, receivers=receivers)
    ref = path_patching_reference(tiny, clean, corrupt, answers, receivers=receivers)
    _agree(fast, ref)
    n_senders = 2 * tiny.spec.n_heads if receivers == "logits" else tiny.spec.n_heads
    assert fast.patched.shape == (4, n_senders) and fast.patched.std() > 1e-3  # the senders do something
    effects = path_patching(tiny, clean, corrupt, answers, receivers=receivers)
    assert effects.shape == (2, tiny.spec.n_heads)
    assert effects[1].isnan().all() == (receivers != "logits")


def test_prompts_of_different_lengths_are_grouped(tiny):
    c1, x1, a1 = _tiny_task(seed=1, n=2, seq=5)
    c2, x2, a2 = _tiny_task(seed=2, n=3, seq=7)
    clean, corrupt = c1.tolist() + c2.tolist(), x1.tolist() + x2.tolist()
    answers = torch.cat([a1, a2])
    senders = [(0, 1), (1, 3)]
    fast = path_patching_logit_diffs(tiny, clean, corrupt, answers, senders=senders)
    _agree(fast, path_patching_reference(tiny, clean, corrupt, answers, senders=senders))
    alone = path_patching_logit_diffs(tiny, c2, x2, a2, senders=senders)
    assert torch.allclose(fast.patched[2:], alone.patched, atol=TOL)


def test_chunks_of_prompts_agree(tiny, monkeypatch):
    module = importlib.import_module("locedit.circuits.path_patching")  # the module, not the function

    clean, corrupt, answers = _tiny_task(n=3)
    whole = path_patching_logit_diffs(tiny, clean, corrupt, answers)
    monkeypatch.setattr(module, "ROWS_PER_SWEEP", 2 * tiny.spec.n_heads)  # one prompt per sweep
    _agree(path_patching_logit_diffs(tiny, clean, corrupt, answers), whole)


def test_only_the_last_position_from_the_sender_layer_up(tiny):
    """Every patched row joins at its sender's layer and runs one position (the last) with the clean run's prefix
    keys and values: the decoder layers see [rows, 1, d] batches, layer j holding the rows whose sender is at or
    below j."""
    clean, corrupt, answers = _tiny_task(n=3)
    senders = [(0, 0), (0, 2), (1, 1)]
    calls: list[tuple[int, int, int]] = []
    blocks = tiny.spec.blocks(tiny.hf)
    handles = [
        block.register_forward_pre_hook(
            lambda _m, args, kwargs, j=j: (
                calls.append((j, *(args[0] if args else kwargs["hidden_states"]).shape[:2])) or None
            ),
            with_kwargs=True,
        )
        for j, block in enumerate(blocks)
    ]
    try:
        path_patching_logit_diffs(tiny, clean, corrupt, answers, senders=senders)
    finally:
        for h in handles:
            h.remove()
    patched = [(j, rows) for j, rows, seq in calls if seq == 1]
    assert patched == [(0, 3 * 2), (1, 3 * 3)]  # 3 prompts × (2 senders at layer 0; all 3 by layer 1)
    assert all(seq == clean.shape[1] for _, _, seq in calls if seq != 1)  # plain runs: clean, corrupt, records


def test_smollm2_ioi_matches_reference(smollm2):
    d = ioi(smollm2, n=3, seed=0, templates=ioi_templates[:1])  # one template: one length, one sweep
    flipped = d.corrupted()
    senders = [(0, 0), (9, 3), (21, 8), (29, 4)]
    fast = path_patching_logit_diffs(smollm2, d, flipped, senders=senders)
    _agree(fast, path_patching_reference(smollm2, d, flipped, senders=senders))
    assert (fast.clean > 0).all() and (fast.corrupt < fast.clean).all()
    recv = [(25, 4), (27, 0)]
    fast = path_patching_logit_diffs(smollm2, d, flipped, receivers=recv, senders=senders[1:3])
    _agree(fast, path_patching_reference(smollm2, d, flipped, receivers=recv, senders=senders[1:3]))


def test_normalisation():
    from locedit.circuits.path_patching import PathLogitDiffs

    lds = PathLogitDiffs(
        patched=torch.tensor([[2.0, 0.0], [4.0, 0.0]]),
        clean=torch.tensor([4.0, 4.0]),
        corrupt=torch.tensor([0.0, -4.0]),
        senders=((0, 1), (1, 0)),
        shape=(2, 2),
    )
    effects = lds.effects()  # (mean patched - 4) / (-2 - 4)
    assert effects[0, 1] == pytest.approx(1 / 6) and effects[1, 0] == pytest.approx(4 / 6)
    assert effects[0, 0].isnan() and effects[1, 1].isnan()
    per_batch = lds.effects(
        norm_batches=1
    )  # ratios per prompt, averaged: ((2-4)/(0-4) + 0) / 2, ((-4)/(-4) + (-4)/(-8)) / 2
    assert per_batch[0, 1] == pytest.approx(0.25) and per_batch[1, 0] == pytest.approx(0.75)


def test_bad_heads_and_receivers(tiny):
    clean, corrupt, answers = _tiny_task(n=2)
    with pytest.raises(ValueError, match=r"sender \(1, 4\): head = 4 is out of range 0\.\.3.*heads 0\.\.3"):
        path_patching(tiny, clean, corrupt, answers, senders=[(1, 4)])
    with pytest.raises(ValueError, match=r"receiver \(2, 0\): layer = 2 is out of range.*layers 0\.\.1"):
        path_patching(tiny, clean, corrupt, answers, receivers=[(2, 0)])
    with pytest.raises(ValueError, match=r"receiver \(1, 0\) is at layer 1, not above sender \(1, 2\)"):
        path_patching(tiny, clean, corrupt, answers, receivers=[(1, 0)], senders=[(0, 1), (1, 2)])
    with pytest.raises(ValueError, match=r"no senders: the lowest receiver is at layer 0"):
        path_patching(tiny, clean, corrupt, answers, receivers=[(0, 0)])
    with pytest.raises(TypeError, match=r"sender \(0, 1.5\): head must be an integer"):
        path_patching(tiny, clean, corrupt, answers, senders=[(0, 1.5)])
    with pytest.raises(NotImplementedError, match="q / k / v receivers"):
        path_patching(tiny, clean, corrupt, answers, receivers=[(1, 0)], component="k")
    with pytest.raises(ValueError, match=r"prompt 1: the clean prompt is 6 tokens and the corrupted one 5"):
        path_patching(tiny, clean.tolist(), [corrupt[0].tolist(), corrupt[1, :5].tolist()], answers)
    with pytest.raises(ValueError, match=r"answers must be \[2, 2\]"):
        path_patching(tiny, clean, corrupt, answers[:1])
