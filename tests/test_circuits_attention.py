"""locedit.circuits.attention: attention patterns rebuilt from the recorded queries and keys agree with the
model's own eager attention (tiny Llama, GPT-2 and Gemma 3 models, SmolLM2); forced attention sets a head's output
at the last position to weights @ V and nothing else, and leaves no hook behind."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch

from conftest import TINY_VOCAB, tiny_model
from locedit.circuits.attention import attention_patterns, force_attention
from locedit.hooks import patch

TOL = 1e-5


@contextmanager
def _eager(model):
    """The model with the eager attention implementation (which can return its probabilities), restored after."""
    before = model.hf.config._attn_implementation
    model.hf.set_attn_implementation("eager")
    try:
        yield
    finally:
        model.hf.set_attn_implementation(before)


def _eager_patterns(model, ids: torch.Tensor) -> torch.Tensor:
    with _eager(model), torch.no_grad():
        out = model.hf(input_ids=ids, output_attentions=True)
    return torch.stack(out.attentions, 1).float()  # [batch, layers, heads, seq, seq]


def _ids(seed: int = 0, batch: int = 3, seq: int = 9) -> torch.Tensor:
    return torch.randint(2, TINY_VOCAB, (batch, seq), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("family", ["llama", "gpt2", "gemma3_text"])
def test_patterns_match_eager_attention_tiny(family):
    model = tiny_model(family)  # llama: 4 query heads over 2 KV heads; gemma3: norms, 1 KV head, window 4 < 9
    ids = _ids()
    ours = attention_patterns(model, ids)
    assert ours.shape == (3, 2, 4, 9, 9) and ours.dtype == torch.float32
    assert (ours - _eager_patterns(model, ids)).abs().max() <= TOL
    assert torch.allclose(ours.sum(-1), torch.ones(3, 2, 4, 9))
    assert (ours.triu(1) == 0).all()  # causal
    if family == "gemma3_text":  # sliding window of 4: query 8 sees keys 5..8 only
        assert (ours[..., 8, :5] == 0).all() and (ours[..., 8, 5:] > 0).all()
    one = attention_patterns(model, ids.tolist(), layers=[1])
    assert torch.equal(one, ours[:, 1:])


def test_patterns_match_eager_attention_smollm2(smollm2):
    ids = smollm2.encode(["When Mary and John went to the store, John gave a drink to"])["input_ids"]
    layers = [0, 9, 29]
    ours = attention_patterns(smollm2, ids, layers=layers)
    assert ours.shape == (1, 3, 9, ids.shape[1], ids.shape[1])  # 9 query heads (over 3 KV heads)
    assert (ours - _eager_patterns(smollm2, ids)[:, layers]).abs().max() <= TOL


def test_patterns_refuse_what_they_do_not_support():
    ids = _ids()
    with pytest.raises(NotImplementedError, match=r"family 'gptj' applies a 'interleaved' rotary"):
        attention_patterns(tiny_model("gptj"), ids)
    with pytest.raises(ValueError, match="prompt 1 is 3 tokens and prompt 0 4"):
        attention_patterns(tiny_model("llama"), [[2, 3, 4, 5], [2, 3, 4]])
    with pytest.raises(IndexError, match="out of range"):
        attention_patterns(tiny_model("llama"), ids, layers=[2])


def _hooks(module) -> set:
    return {(n, k) for n, m in module.named_modules() for k in (*m._forward_hooks, *m._forward_pre_hooks)}


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_forced_heads_output_weights_at_v(family):
    model = tiny_model(family)
    ids = _ids(batch=2, seq=7)
    weights = torch.zeros(2, 7)
    weights[0, [1, 3]] = 0.5
    weights[1, 2] = 1.0
    heads = [(0, 1), (1, 3)]
    record = ["z.0", "z.1", "v.0", "v.1"]
    before, hooks = model.hf(input_ids=ids).logits, _hooks(model.hf)
    with torch.no_grad(), patch(model, record=record) as clean:
        clean_logits = model.hf(input_ids=ids).logits
    with torch.no_grad(), force_attention(model, heads, weights), patch(model, record=record) as forced:
        forced_logits = model.hf(input_ids=ids).logits
    group = model.spec.n_heads // model.spec.n_kv_heads
    for layer, h in heads:
        z, v = forced[f"z.{layer}"], forced[f"v.{layer}"]
        expected = torch.einsum("bs,bsd->bd", weights, v[:, :, h // group])
        assert torch.allclose(z[:, -1, h], expected, atol=1e-6)
        assert not torch.allclose(z[:, -1, h], clean[f"z.{layer}"][:, -1, h], atol=1e-3)
        others = [k for k in range(model.spec.n_heads) if k != h]
        assert torch.equal(z[:, :-1], clean[f"z.{layer}"][:, :-1])  # earlier positions: untouched
        if layer == 0:  # below any change, the other heads are the clean ones
            assert torch.equal(z[:, -1, others], clean["z.0"][:, -1, others])
    assert not torch.allclose(forced_logits[:, -1], clean_logits[:, -1], atol=1e-4)
    assert torch.equal(model.hf(input_ids=ids).logits, before) and _hooks(model.hf) == hooks


def test_force_attention_cleans_up_and_checks():
    model = tiny_model("llama")
    hooks = _hooks(model.hf)
    weights = torch.full((1, 5), 0.2)
    with pytest.raises(RuntimeError, match="boom"), force_attention(model, [(1, 0)], weights):
        raise RuntimeError("boom")
    assert _hooks(model.hf) == hooks
    runs = r"weights are \[1, 5\] \[batch, seq\] but the forward pass runs \[1, 6\]"
    with pytest.raises(ValueError, match=runs), torch.no_grad(), force_attention(model, [(1, 0)], weights):
        model.hf(input_ids=_ids(batch=1, seq=6))
    assert _hooks(model.hf) == hooks
    with pytest.raises(ValueError, match="non-negative, each row summing to 1"):
        force_attention(model, [(1, 0)], torch.ones(1, 5)).__enter__()
    with pytest.raises(ValueError, match=r"head \(1, 4\): head = 4 is out of range"):
        force_attention(model, [(1, 4)], weights).__enter__()
    assert _hooks(model.hf) == hooks
