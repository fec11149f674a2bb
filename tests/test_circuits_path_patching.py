"""locedit.circuits.path_patching (and its fast pass, locedit.circuits.frozen_run): the fast path agrees with the
plain full-forward reference for every receiver component (tiny Llama, GPT-2, Gemma 3, GPT-NeoX and GPT-J models,
SmolLM2 on IOI), computes only the last position from each sender's layer up, treats k / v receivers per KV group,
and refuses bad heads."""

from __future__ import annotations

import importlib

import pytest
import torch

from conftest import TINY_VOCAB, tiny_model
from locedit.circuits import IOI_TEMPLATES as ioi_templates
from locedit.circuits import ioi, path_patching, path_patching_logit_diffs

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


@pytest.mark.parametrize(
    ("receivers", "component"),
    [("logits", "z"), ([(1, 2), (1, 0)], "z"), ([(1, 2), (1, 0)], "q"), ([(1, 3)], "k"), ([(1, 1), (1, 2)], "v")],
)
def test_engine_matches_reference_on_tiny_models(tiny, receivers, component):
    clean, corrupt, answers = _tiny_task()
    fast = path_patching_logit_diffs(tiny, clean, corrupt, answers, receivers=receivers, component=component)
    ref = path_patching_logit_diffs(
        tiny, clean, corrupt, answers, receivers=receivers, component=component, method="reference"
    )
    _agree(fast, ref)
    n_senders = 2 * tiny.spec.n_heads if receivers == "logits" else tiny.spec.n_heads
    assert fast.patched.shape == (4, n_senders)
    change = (ref.patched - ref.clean[:, None]).abs().max()  # the senders' paths do change the LD ...
    assert change > 1e-5 and (fast.patched - ref.patched).abs().max() <= 0.01 * change  # ... and alike
    effects = path_patching(tiny, clean, corrupt, answers, receivers=receivers, component=component)
    assert effects.shape == (2, tiny.spec.n_heads)
    assert effects[1].isnan().all() == (receivers != "logits")


@pytest.mark.parametrize("family", ["gemma3_text", "gpt_neox", "gptj"])
def test_other_families_match_reference(family):
    """Gemma 3's four norms per block and post-norm after attention; GPT-NeoX's and GPT-J's parallel attention
    and MLP (the MLP reads the block's input)."""
    model = tiny_model(family)
    clean, corrupt, answers = _tiny_task(seed=3)
    for receivers, component in [("logits", "z"), ([(1, 0), (1, 3)], "z"), ([(1, 1)], "q"), ([(1, 2)], "v")]:
        fast = path_patching_logit_diffs(model, clean, corrupt, answers, receivers=receivers, component=component)
        _agree(
            fast,
            path_patching_logit_diffs(
                model, clean, corrupt, answers, receivers=receivers, component=component, method="reference"
            ),
        )


def test_kv_receivers_are_per_kv_group():
    """Tiny Llama: 4 query heads over 2 KV heads; heads 0 and 1 share one k, so receivers (1, 0) and (1, 1) are one
    patch, and differ from (1, 2) (the other group)."""
    model = tiny_model("llama")
    clean, corrupt, answers = _tiny_task(seed=4)
    one = path_patching_logit_diffs(model, clean, corrupt, answers, receivers=[(1, 0)], component="k")
    both = path_patching_logit_diffs(model, clean, corrupt, answers, receivers=[(1, 0), (1, 1)], component="k")
    other = path_patching_logit_diffs(model, clean, corrupt, answers, receivers=[(1, 2)], component="k")
    assert torch.equal(one.patched, both.patched)
    assert (one.patched - other.patched).abs().max() > 1e-4
    ref = path_patching_logit_diffs(
        model, clean, corrupt, answers, receivers=[(1, 1), (1, 0)], component="k", method="reference"
    )
    _agree(both, ref)


def test_prompts_of_different_lengths_are_grouped(tiny):
    c1, x1, a1 = _tiny_task(seed=1, n=2, seq=5)
    c2, x2, a2 = _tiny_task(seed=2, n=3, seq=7)
    clean, corrupt = c1.tolist() + c2.tolist(), x1.tolist() + x2.tolist()
    answers = torch.cat([a1, a2])
    senders = [(0, 1), (1, 3)]
    fast = path_patching_logit_diffs(tiny, clean, corrupt, answers, senders=senders)
    _agree(fast, path_patching_logit_diffs(tiny, clean, corrupt, answers, senders=senders, method="reference"))
    alone = path_patching_logit_diffs(tiny, c2, x2, a2, senders=senders)
    assert torch.allclose(fast.patched[2:], alone.patched, atol=TOL)


def test_chunks_of_prompts_agree(tiny, monkeypatch):
    module = importlib.import_module("locedit.circuits.path_patching")  # the module, not the function

    clean, corrupt, answers = _tiny_task(n=3)
    recv = [(1, 2)]
    whole = path_patching_logit_diffs(tiny, clean, corrupt, answers)
    whole_q = path_patching_logit_diffs(tiny, clean, corrupt, answers, receivers=recv, component="q")
    monkeypatch.setattr(module, "ROWS_PER_SWEEP", tiny.spec.n_heads)  # one prompt per engine sweep
    monkeypatch.setattr(module, "PROMPTS_PER_RUN", 2)  # two recording runs
    _agree(path_patching_logit_diffs(tiny, clean, corrupt, answers, rows_per_call=3), whole)  # one sender a call
    _agree(path_patching_logit_diffs(tiny, clean, corrupt, answers, receivers=recv, component="q"), whole_q)


def test_only_the_last_position_from_the_sender_layer_up(tiny):
    """To the logits, attention (its query projection) runs only in the two plain runs (clean, corrupted); every
    patched row joins at its sender's layer and runs through the blocks as one vector per prompt (the prompts along
    the sequence axis, the senders along the batch axis): layer 0 sees its 2 senders, layer 1 those 2 and its own."""
    clean, corrupt, answers = _tiny_task(n=3)
    senders = [(0, 0), (0, 2), (1, 1)]
    calls: list[tuple[int, tuple[int, ...]]] = []
    attends: list[int] = []
    spec = tiny.spec
    handles = [
        spec.block(tiny.hf, j).register_forward_pre_hook(
            lambda _m, args, kwargs, j=j: (
                calls.append((j, tuple((args[0] if args else kwargs["hidden_states"]).shape))) or None
            ),
            with_kwargs=True,
        )
        for j in range(spec.n_layers)
    ] + [
        spec.part(tiny.hf, "attn_q", j).register_forward_hook(lambda *_a, j=j: attends.append(j) or None)
        for j in range(spec.n_layers)
    ]
    try:
        path_patching_logit_diffs(tiny, clean, corrupt, answers, senders=senders)
    finally:
        for h in handles:
            h.remove()
    d = spec.d_model
    assert attends == [0, 1, 0, 1]  # the clean and the corrupted plain runs
    assert calls[:4] == [(0, (3, 6, d)), (1, (3, 6, d))] * 2
    assert calls[4:] == [(0, (2, 3, d)), (1, (2, 3, d)), (1, (1, 3, d))]


def test_smollm2_ioi_matches_reference(smollm2):
    d = ioi(smollm2, n=3, seed=0, templates=ioi_templates[:2])  # two templates: two prompt lengths
    flipped = d.corrupted()
    senders = [(0, 0), (9, 3), (21, 8), (29, 4)]
    fast = path_patching_logit_diffs(smollm2, d, flipped, senders=senders)
    _agree(fast, path_patching_logit_diffs(smollm2, d, flipped, senders=senders, method="reference"))
    assert (fast.clean > 0).all() and (fast.corrupt < fast.clean).all()
    recv = [(25, 4), (27, 0)]
    for component in ("z", "q", "k", "v"):
        fast = path_patching_logit_diffs(smollm2, d, flipped, receivers=recv, component=component, senders=senders[1:3])
        ref = path_patching_logit_diffs(
            smollm2, d, flipped, receivers=recv, component=component, senders=senders[1:3], method="reference"
        )
        _agree(fast, ref)


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
    with pytest.raises(ValueError, match=r"unknown component 'attn': use 'z', 'q', 'k' or 'v'"):
        path_patching(tiny, clean, corrupt, answers, receivers=[(1, 0)], component="attn")
    with pytest.raises(ValueError, match=r"receiver \(0, 3\) is at layer 0, not above sender \(0, 1\)"):
        path_patching(tiny, clean, corrupt, answers, receivers=[(0, 3)], component="k", senders=[(0, 1)])
    with pytest.raises(ValueError, match=r"prompt 1: the clean prompt is 6 tokens and the corrupted one 5"):
        path_patching(tiny, clean.tolist(), [corrupt[0].tolist(), corrupt[1, :5].tolist()], answers)
    with pytest.raises(ValueError, match=r"answers must be \[2, 2\]"):
        path_patching(tiny, clean, corrupt, answers[:1])
