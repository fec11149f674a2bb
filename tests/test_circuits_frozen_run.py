"""locedit.circuits.frozen_run: the pieces of path patching's fast pass on tiny models: the replaced attention is
restored whatever happens, the projections equal the hooks' q / k / v sites, a block with its attention replaced by
the clean attention output reproduces the clean residual stream, and bad layers are refused."""

from __future__ import annotations

import pytest
import torch

from conftest import tiny_inputs, tiny_model
from locedit.circuits.frozen_run import LastPosition, attention_replaced, frozen_residuals, projections
from locedit.hooks import Site, run_with


@pytest.fixture(params=["llama", "gpt2", "gemma3_text", "gpt_neox"], scope="module")
def tiny(request):
    return tiny_model(request.param)


def test_attention_is_restored_after_an_exception(tiny):
    module = tiny.spec.part(tiny.hf, "attn", 1)
    before = module.forward
    with pytest.raises(RuntimeError, match="boom"), attention_replaced(tiny, 1, lambda x: x):
        assert module.forward != before
        raise RuntimeError("boom")
    assert "forward" not in module.__dict__ and module.forward == before
    inputs = tiny_inputs()
    with torch.no_grad():
        torch.testing.assert_close(tiny.hf(**inputs).logits, tiny.hf(**inputs).logits)


def test_projections_equal_the_hook_sites(tiny):
    inputs = tiny_inputs(batch=2, seq=5)
    sites = [Site(name, 1) for name in ("q", "k", "v")] + [Site("resid_pre", 1)]
    _, cache = run_with(tiny, inputs, record=sites)
    for name in ("q", "k", "v"):
        got = projections(tiny, name, 1, cache["resid_pre.1"])  # [2, 5, heads, head_dim]
        torch.testing.assert_close(got, cache[f"{name}.1"], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="'z'.*'q', 'k' or 'v'"):
        projections(tiny, "z", 1, cache["resid_pre.1"])


def test_clean_attention_gives_the_clean_stream(tiny):
    """Block 1 at the last position with its attention output set to o_proj of the clean z gives resid_post.1."""
    spec = tiny.spec
    inputs = tiny_inputs(batch=3, seq=6)
    _, cache = run_with(tiny, inputs, record=[Site("resid_pre", 1), Site("resid_post", 1), Site("z", 1)])
    with torch.no_grad():
        attn = spec.part(tiny.hf, "attn_o_proj", 1)(cache["z.1"][:, -1].flatten(-2))
        with attention_replaced(tiny, 1, lambda _normed: attn[None]):
            out = spec.block(tiny.hf, 1)(cache["resid_pre.1"][:, -1][None])
    torch.testing.assert_close(out[0], cache["resid_post.1"][:, -1], atol=1e-5, rtol=1e-5)


def test_senders_must_lie_below_the_layers_read(tiny):
    n, d = 2, tiny.spec.d_model
    heads = (tiny.spec.n_heads, tiny.spec.head_dim)
    rec = LastPosition(
        resid=[torch.zeros(n, d)] * 2, attn=[torch.zeros(n, d)] * 2, z=[torch.zeros(n, *heads)] * 2,
        z_corrupt={1: torch.zeros(n, *heads)}, ld_clean=torch.zeros(n), ld_corrupt=torch.zeros(n),
        answers=torch.zeros(n, 2, dtype=torch.long),
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"every sender must lie below the lowest layer read \(1\)"):
        frozen_residuals(tiny, rec, [(1, 0)], [1])
    with pytest.raises(ValueError, match="rows_per_call"):
        frozen_residuals(tiny, rec, [(0, 0)], [1], rows_per_call=0)
