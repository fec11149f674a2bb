"""locedit.lens: the logit lens reproduces the model's own output at the top layer; decode and ranks are exact; the
read-out ``f`` is the stated formula and the chunked top-k is exact."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import TINY_FAMILIES, tiny_inputs, tiny_model
from locedit.hooks import run_with
from locedit.lens import block_topk, decode, lens_logprobs, logit_lens, readout, token_ranks, top_tokens
from locedit.neurons import neuron_weights
from word_model import PROMPT as WORD_PROMPT
from word_model import tiny_word_llama

PROMPT = "The Eiffel Tower is located in the city of"


@pytest.fixture(scope="module")
def lenses() -> dict:
    """Each real model's logit lens on PROMPT, computed once per module (keyed by model name)."""
    return {}


def _lens(model, lenses: dict) -> torch.Tensor:
    if model.name not in lenses:
        lenses[model.name] = logit_lens(model, PROMPT)
    return lenses[model.name]


def test_logit_lens_top_layer_is_the_model_output(real_model, lenses):
    """The lens after the last block == the model's own final log-probs (Gemma 3: final norm included)."""
    lens = _lens(real_model, lenses)
    inputs = real_model.encode(PROMPT)
    seq = inputs["input_ids"].shape[1]
    spec = real_model.spec
    assert lens.shape == (spec.n_layers, seq, spec.vocab_size)
    with torch.no_grad():
        own = real_model.hf(**inputs).logits[0].float().log_softmax(-1)
    torch.testing.assert_close(lens[-1], own, rtol=0, atol=1e-4)
    # log-probabilities at every layer; earlier layers read something else than the output
    torch.testing.assert_close(lens.exp().sum(-1), torch.ones(spec.n_layers, seq), rtol=0, atol=1e-3)
    assert (lens[0, -1] - own[-1]).abs().max() > 1.0


def test_logit_lens_finds_paris(smollm2, lenses):
    lens = _lens(smollm2, lenses)
    paris = smollm2.token_id(" Paris")
    assert int(lens[-1, -1].argmax()) == paris
    ranks = token_ranks(lens[:, -1], [paris])[:, 0]  # [n_layers]
    assert ranks[-1] == 0 and ranks[0] > 0  # the answer surfaces only in later layers


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_logit_lens_top_layer_tiny(family):
    """The same on every tiny family (tiny models have no tokenizer: decode the recorded residual directly)."""
    model = tiny_model(family)
    inputs = tiny_inputs(batch=1)
    last = f"resid_post.{model.spec.n_layers - 1}"
    logits, cache = run_with(model, inputs, record=[last])
    torch.testing.assert_close(decode(model, cache[last]), logits, rtol=0, atol=1e-5)


@pytest.mark.parametrize("family", [*TINY_FAMILIES, "smollm2", "gemma3"])
def test_decode_without_norm_is_the_unembedding(request, family):
    """decode(norm=False) == W_U @ v: no norm, no output bias (GPT-J has one), no soft-capping."""
    model = request.getfixturevalue(family) if family in ("smollm2", "gemma3") else tiny_model(family)
    torch.manual_seed(0)
    vectors = torch.randn(2, 3, model.spec.d_model)
    W_U = model.spec.unembedding(model.hf)
    expected = torch.einsum("vd,...d->...v", W_U.detach(), vectors)
    logits = decode(model, vectors, norm=False)
    assert logits.shape == (2, 3, model.spec.vocab_size) and logits.dtype == torch.float32
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-4)
    # linear in v, unlike the normed read-out
    torch.testing.assert_close(decode(model, 2 * vectors, norm=False), 2 * logits, rtol=1e-5, atol=1e-4)
    normed = decode(model, vectors)
    assert not torch.allclose(normed, logits, atol=1e-3)


def test_decode_with_norm_applies_the_final_norm(gemma3):
    """Gemma 3: decode(v) == W_U @ final_norm(v), and the norm makes it scale-invariant."""
    spec, hf = gemma3.spec, gemma3.hf
    torch.manual_seed(0)
    v = torch.randn(4, spec.d_model)
    with torch.no_grad():
        expected = spec.part(hf, "final_norm")(v) @ spec.unembedding(hf).T
    torch.testing.assert_close(decode(gemma3, v), expected, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(decode(gemma3, 10 * v), decode(gemma3, v), rtol=1e-4, atol=1e-3)


def test_decode_does_not_change_its_input(smollm2):
    v = torch.randn(3, smollm2.spec.d_model)
    kept = v.clone()
    decode(smollm2, v)
    decode(smollm2, v, norm=False)
    assert torch.equal(v, kept)


def test_top_tokens(smollm2, lenses):
    lens = _lens(smollm2, lenses)
    rows = top_tokens(smollm2, lens[[0, -1], -1], k=5)
    assert len(rows) == 2 and all(len(row) == 5 for row in rows)
    assert rows[1][0][0] == " Paris"
    for row in rows:
        probs = [p for _, p in row]
        assert probs == sorted(probs, reverse=True)
        assert all(0.0 <= p <= 1.0 for p in probs) and sum(probs) <= 1.0 + 1e-6
        assert all(isinstance(t, str) for t, _ in row)
    # probabilities agree with the model's own next-token probabilities
    own = smollm2.top_tokens(PROMPT, k=5)
    assert [t for t, _ in own] == [t for t, _ in rows[1]]
    for (_, p_own), (_, p_lens) in zip(own, rows[1], strict=True):
        assert abs(p_own - p_lens) < 1e-4


def test_token_ranks():
    logits = torch.tensor([[0.1, 3.0, -1.0, 2.0], [5.0, 4.0, 3.0, 2.0]])
    ranks = token_ranks(logits, [1, 3, 2])
    assert ranks.tolist() == [[0, 1, 3], [1, 3, 2]]
    # batched leading dimensions, against a sort
    torch.manual_seed(0)
    logits = torch.randn(3, 2, 50)
    ids = torch.tensor([0, 7, 49])
    ranks = token_ranks(logits, ids)
    assert ranks.shape == (3, 2, 3)
    order = logits.argsort(-1, descending=True)
    expected = (order[..., :, None] == ids).float().argmax(-2)
    assert torch.equal(ranks, expected)


def test_lens_logprobs_matches_logit_lens():
    tiny_llama = tiny_word_llama()
    full = logit_lens(tiny_llama, WORD_PROMPT)
    part = lens_logprobs(tiny_llama, WORD_PROMPT, positions=[0, -1])
    assert part.shape == (3, 2, 64)
    torch.testing.assert_close(part, full[:, [0, -1]])


def test_rmsnorm_readout_is_gain_times_unit_rms():
    """For RMSNorm, f(w) = g ⊙ w·√d/‖w‖ — the formula the chapter states."""
    model = tiny_model("llama")
    w = neuron_weights(model, "up", 0)[:3]
    g = model.spec.part(model.hf, "final_norm").weight
    expected = g * w * math.sqrt(model.spec.d_model) / w.norm(dim=-1, keepdim=True)
    with torch.no_grad():
        torch.testing.assert_close(readout(model, True)(w), expected, rtol=1e-4, atol=1e-5)


def test_layernorm_readout_centres_and_drops_bias():
    model = tiny_model("gpt2")
    final = model.spec.part(model.hf, "final_norm")
    with torch.no_grad():
        final.bias.normal_()
        final.weight.uniform_(0.5, 1.5)
    w = neuron_weights(model, "up", 0)[:3]
    c = w - w.mean(-1, keepdim=True)
    expected = final.weight * c / c.std(-1, correction=0, keepdim=True)
    with torch.no_grad():
        torch.testing.assert_close(readout(model, True)(w), expected, rtol=1e-3, atol=1e-4)


def test_readout_without_norm_is_the_identity():
    x = torch.randn(3, 8)
    assert readout(tiny_model("llama"), False)(x) is x


@pytest.mark.parametrize("block", [1, 7, 128])
def test_block_topk_is_topk(block):
    """Exact against ``torch.topk`` (values; ids up to exact ties, which random floats do not have), with a tail of
    V mod block columns, and when there are too few blocks to skip any."""
    z = torch.randn(37, 1000, generator=torch.Generator().manual_seed(0))
    for k in (1, 5, 16):
        vals, ids = block_topk(z, k, block=block)
        ref_vals, ref_ids = z.topk(k, -1)
        torch.testing.assert_close(vals, ref_vals, rtol=0, atol=0)
        assert torch.equal(ids, ref_ids)
    z[:, -3:] = 100.0  # the tail beyond the last whole block is always searched
    assert set(block_topk(z, 3, block=block)[1][0].tolist()) == {997, 998, 999}
