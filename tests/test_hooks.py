"""locedit.hooks: recording, patching and cleanup, checked against computations that do not go through the hooks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from conftest import TINY_FAMILIES, tiny_inputs, tiny_model
from locedit.arch import SITES
from locedit.hooks import Intervention, Site, all_sites, attach, locate, patch, run_with

CLEAN = "The Eiffel Tower is located in the city of"
CORRUPT = "The Colosseum is located in the city of"


# --- helpers ---------------------------------------------------------------------------------------------------


def _every_site(spec, layers=None) -> list[Site]:
    layers = range(spec.n_layers) if layers is None else layers
    return [Site("embed")] + [Site(name, layer) for name in SITES if name != "embed" for layer in layers]


def _expected_shape(spec, name: str, batch: int, seq: int) -> tuple[int, ...]:
    if name in ("q", "z"):
        return (batch, seq, spec.n_heads, spec.head_dim)
    if name in ("k", "v"):
        return (batch, seq, spec.n_kv_heads, spec.head_dim)
    if name in ("mlp_act", "mlp_up"):
        return (batch, seq, spec.d_mlp)
    return (batch, seq, spec.d_model)


def _hooks(module: nn.Module) -> set[tuple[str, str, int]]:
    """Every forward hook and pre-hook on ``module`` and its children, as (module name, kind, hook id).

    Transformers 5 installs its own output-capturing hooks the first time hidden states are requested, and keeps
    them: the tests compare with a snapshot rather than expect none at all.
    """
    return {
        (name, kind, key)
        for name, m in module.named_modules()
        for kind, hooks in (("forward", m._forward_hooks), ("pre", m._forward_pre_hooks))
        for key in hooks
    }


@torch.no_grad()
def _logits(model, inputs) -> torch.Tensor:
    return model.hf(**inputs).logits


def _linear(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a Linear or GPT-2 Conv1D module (kept as a call on the module itself)."""
    return module(x)


@pytest.fixture(scope="module")
def smol_inputs(smollm2):
    return smollm2.encode(CLEAN)


@pytest.fixture(scope="module")
def smol_clean(smollm2, smol_inputs) -> torch.Tensor:
    """SmolLM2's own logits on CLEAN (computed once: every real-model forward costs CPU time)."""
    return _logits(smollm2, smol_inputs)


# --- recording -------------------------------------------------------------------------------------------------


def test_record_every_site_tiny(tiny):
    """(g) + shapes: recording every site at every layer leaves the logits bit-identical."""
    inputs = tiny_inputs(batch=2, seq=7)
    sites = _every_site(tiny.spec)
    before = _hooks(tiny.hf)
    logits, cache = run_with(tiny, inputs, record=sites)
    assert torch.equal(logits, _logits(tiny, inputs))
    assert set(cache) == {str(s) for s in sites}
    for site in sites:
        assert cache[str(site)].shape == _expected_shape(tiny.spec, site.name, 2, 7), site
    assert _hooks(tiny.hf) == before


def test_record_every_site_real(real_model):
    """(g) + shapes on the real models (first and last layer)."""
    model = real_model
    inputs = model.encode([CLEAN, "Paris is the capital of"])
    batch, seq = inputs["input_ids"].shape
    sites = _every_site(model.spec, [0, model.spec.n_layers - 1])
    before = _hooks(model.hf)
    logits, cache = run_with(model, inputs, record=sites)
    assert torch.equal(logits, _logits(model, inputs))
    for site in sites:
        assert cache[str(site)].shape == _expected_shape(model.spec, site.name, batch, seq), site
    assert _hooks(model.hf) == before


def _check_sites_consistent(model, inputs, layers):
    """The recorded sites mean what SITES says, checked with the model's own modules and hidden states."""
    spec, hf = model.spec, model.hf
    with torch.no_grad():
        out = hf(**inputs, output_hidden_states=True, use_cache=True)
        logits, cache = run_with(model, inputs, record=_every_site(spec, layers))
    assert torch.equal(logits, out.logits)
    embed = cache["embed"]
    if spec.family == "gpt2":  # GPT-2 adds learned position embeddings after the token embedding
        positions = torch.arange(embed.shape[1])
        torch.testing.assert_close(cache["resid_pre.0"], embed + hf.transformer.wpe(positions))
    else:
        torch.testing.assert_close(cache["resid_pre.0"], embed, rtol=0, atol=0)
    gemma = spec.family == "gemma3_text"
    for layer in layers:
        c = {name: cache[f"{name}.{layer}"] for name in SITES if name != "embed"}
        # residual stream: the layer's input is the model's own hidden state, its output the next one
        torch.testing.assert_close(c["resid_pre"], out.hidden_states[layer], rtol=0, atol=0)
        if layer < spec.n_layers - 1:  # the last hidden state is reported after the final norm
            torch.testing.assert_close(c["resid_post"], out.hidden_states[layer + 1], rtol=0, atol=0)
        # v is what attention averages (the cache's values); so is k where no norm or rotary changes it (GPT-2)
        # (a sliding-window layer's cache keeps only the last positions)
        kept = out.past_key_values.layers[layer]
        tail = kept.values.shape[2]
        torch.testing.assert_close(c["v"][:, -tail:].transpose(1, 2), kept.values, rtol=0, atol=0)
        if spec.table.rotary == "none" and spec.table.attn_k_norm is None:
            torch.testing.assert_close(c["k"][:, -tail:].transpose(1, 2), kept.keys, rtol=0, atol=0)
        # attn_out and mlp_out are exactly what the block adds to the residual stream
        torch.testing.assert_close(c["resid_post"], c["resid_pre"] + c["attn_out"] + c["mlp_out"])
        with torch.no_grad():
            # z through the output projection is the attention output (Gemma 3: then its post-norm)
            o = _linear(spec.part(hf, "attn_o_proj", layer), c["z"].flatten(-2))
            if gemma:
                o = spec.part(hf, "attn_out", layer)(o)
            torch.testing.assert_close(o, c["attn_out"])
            # the neuron activations through the down projection are the MLP output
            m = _linear(spec.part(hf, "mlp_down", layer), c["mlp_act"])
            if gemma:
                m = spec.part(hf, "mlp_out", layer)(m)
            torch.testing.assert_close(m, c["mlp_out"])
            # mlp_up is the up projection: act(gate) * up for gated MLPs, act(up) otherwise
            act = spec.part(hf, "mlp_act_fn", layer)
            if spec.gated_mlp:
                mlp_in = _mlp_input(spec, hf, layer, c)
                torch.testing.assert_close(_linear(spec.part(hf, "mlp_up", layer), mlp_in), c["mlp_up"])
                gate = _linear(spec.part(hf, "mlp_gate", layer), mlp_in)
                torch.testing.assert_close(act(gate) * c["mlp_up"], c["mlp_act"])
            else:
                torch.testing.assert_close(act(c["mlp_up"]), c["mlp_act"])


def _mlp_input(spec, hf, layer, c):
    """What the gated MLP at ``layer`` reads (Llama: post_attention_layernorm; Gemma 3: pre_feedforward_layernorm)."""
    block = spec.block(hf, layer)
    mid = c["resid_pre"] + c["attn_out"]
    norm = block.pre_feedforward_layernorm if spec.family == "gemma3_text" else block.post_attention_layernorm
    return norm(mid)


def test_sites_consistent_tiny(tiny):
    _check_sites_consistent(tiny, tiny_inputs(), range(tiny.spec.n_layers))


def test_sites_consistent_real(real_model):
    _check_sites_consistent(real_model, real_model.encode(CLEAN), [0, real_model.spec.n_layers // 2])


def test_record_after_interventions_and_in_order(tiny):
    """Several interventions at one site apply in order; the recording shows the patched value."""
    inputs = tiny_inputs()
    _, clean = run_with(tiny, inputs, record=["mlp_act.1"])
    _, cache = run_with(
        tiny, inputs, [Intervention("mlp_act.1", "add", 1.0), Intervention("mlp_act.1", "scale", 2.0)], ["mlp_act.1"]
    )
    torch.testing.assert_close(cache["mlp_act.1"], (clean["mlp_act.1"] + 1.0) * 2.0)


def test_detach_false_keeps_graph(tiny):
    inputs = tiny_inputs()
    with patch(tiny, record=["resid_post.0"], detach=False) as cache:
        loss = tiny.hf(**inputs).logits.sum()
    resid = cache["resid_post.0"]
    assert resid.requires_grad
    (grad,) = torch.autograd.grad(loss, resid)
    assert grad.shape == resid.shape and grad.abs().sum() > 0
    with patch(tiny, record=["resid_post.0"]) as cache:
        tiny.hf(**inputs)
    assert not cache["resid_post.0"].requires_grad


# --- (a) patched runs equal the same computation done without hooks ---------------------------------------------


def _families_and_smollm2():
    return [*TINY_FAMILIES, "smollm2"]


def _model_and_inputs(request, which):
    """(model, inputs, layers to test, the model's own logits on inputs)."""
    if which == "smollm2":
        return (
            request.getfixturevalue("smollm2"),
            request.getfixturevalue("smol_inputs"),
            [21],
            request.getfixturevalue("smol_clean"),
        )
    model = tiny_model(which)
    inputs = tiny_inputs()
    return model, inputs, [0, 1], _logits(model, inputs)


@pytest.mark.parametrize("which", _families_and_smollm2())
def test_zero_neurons_equals_zeroed_down_proj(request, which):
    """Zero-ablating mlp_act at layer l == the model with that layer's down-projection weight zeroed."""
    model, inputs, layers, clean = _model_and_inputs(request, which)
    spec, hf = model.spec, model.hf
    for layer in layers:
        down = spec.part(hf, "mlp_down", layer)
        logits, cache = run_with(
            model, inputs, [Intervention(Site("mlp_act", layer), "scale", 0.0)], [f"mlp_out.{layer}"]
        )
        with torch.no_grad():  # the MLP now outputs only its bias (zero when it has none), after any post-norm
            expected = down(torch.zeros(1, spec.d_mlp))
            if spec.family == "gemma3_text":
                expected = spec.part(hf, "mlp_out", layer)(expected)
        torch.testing.assert_close(cache[f"mlp_out.{layer}"], expected.expand_as(cache[f"mlp_out.{layer}"]))
        saved = down.weight.detach().clone()
        try:
            with torch.no_grad():
                down.weight.zero_()
            reference = _logits(model, inputs)
        finally:
            with torch.no_grad():
                down.weight.copy_(saved)
        torch.testing.assert_close(logits, reference, rtol=0, atol=1e-5)
        assert not torch.allclose(logits, clean, atol=1e-4)  # the ablation did something


@pytest.mark.parametrize("which", _families_and_smollm2())
def test_zero_head_equals_zeroed_o_proj_columns(request, which):
    """Scaling head h of z by 0 == zeroing the output projection's input columns of head h."""
    model, inputs, layers, clean = _model_and_inputs(request, which)
    spec, hf = model.spec, model.hf
    head = 1
    cols = slice(head * spec.head_dim, (head + 1) * spec.head_dim)
    for layer in layers:
        logits, cache = run_with(
            model, inputs, [Intervention(Site("z", layer), "scale", 0.0, index=[head])], [f"z.{layer}"]
        )
        z = cache[f"z.{layer}"]
        assert torch.all(z[:, :, head] == 0) and z[:, :, head - 1].abs().sum() > 0
        o_proj = spec.part(hf, "attn_o_proj", layer)
        saved = o_proj.weight.detach().clone()
        try:
            with torch.no_grad():
                if spec.table.weights_transposed:  # GPT-2 Conv1D: weight is [in, out]
                    o_proj.weight[cols, :] = 0
                else:
                    o_proj.weight[:, cols] = 0
            reference = _logits(model, inputs)
        finally:
            with torch.no_grad():
                o_proj.weight.copy_(saved)
        torch.testing.assert_close(logits, reference, rtol=0, atol=1e-5)
        assert not torch.allclose(logits, clean, atol=1e-4)


@pytest.mark.parametrize("which", _families_and_smollm2())
def test_add_to_embed_equals_inputs_embeds(request, which):
    """Adding v to the token embedding at one position == feeding the shifted embeddings as inputs_embeds."""
    model, inputs, _, clean = _model_and_inputs(request, which)
    spec, hf = model.spec, model.hf
    torch.manual_seed(0)
    v = torch.randn(spec.d_model)
    position = 2
    logits, _ = run_with(model, inputs, [Intervention("embed", "add", v, positions=[position])])
    with torch.no_grad():
        embeds = spec.part(hf, "embed")(inputs["input_ids"])  # Gemma 3's embedding module includes its scaling
        embeds[:, position] += v
        reference = hf(inputs_embeds=embeds, attention_mask=inputs["attention_mask"]).logits
    torch.testing.assert_close(logits, reference, rtol=0, atol=1e-5)
    assert torch.equal(logits[:, :position], clean[:, :position])  # causal: earlier positions kept


def test_add_to_resid_post_equals_manual_layers(smollm2, smol_inputs, smol_clean):
    """Adding v to resid_post.l at position p == running SmolLM2's remaining decoder layers by hand."""
    spec, hf = smollm2.spec, smollm2.hf
    inputs = smol_inputs
    layer, position = 20, 4
    torch.manual_seed(0)
    v = 3.0 * torch.randn(spec.d_model)
    logits, _ = run_with(smollm2, inputs, [Intervention(Site("resid_post", layer), "add", v, positions=[position])])
    with torch.no_grad():
        hidden = hf(**inputs, output_hidden_states=True).hidden_states[layer + 1].clone()
        hidden[:, position] += v
        position_ids = torch.arange(hidden.shape[1])[None]
        rotary = hf.model.rotary_emb(hidden, position_ids=position_ids)
        for block in hf.model.layers[layer + 1 :]:
            hidden = block(hidden, attention_mask=None, position_embeddings=rotary, position_ids=position_ids)
            hidden = hidden[0] if isinstance(hidden, tuple) else hidden
        reference = hf.lm_head(hf.model.norm(hidden))
    torch.testing.assert_close(logits, reference, rtol=0, atol=1e-4)
    assert (logits - smol_clean).abs().max() > 1e-2


# --- (b) replacing a site with its own recording changes nothing ------------------------------------------------


def _check_self_replace(model, inputs, sites, clean=None):
    logits, cache = run_with(model, inputs, record=sites)
    if clean is None:
        clean = logits
    assert torch.equal(logits, clean)
    for site in sites:
        patched, _ = run_with(model, inputs, [Intervention(site, "replace", cache[str(site)])])
        assert torch.equal(patched, clean), site


def test_replace_with_own_recording_tiny(tiny):
    _check_self_replace(tiny, tiny_inputs(), _every_site(tiny.spec))


def test_replace_with_own_recording_smollm2(smollm2, smol_inputs, smol_clean):
    _check_self_replace(smollm2, smol_inputs, _every_site(smollm2.spec, [7]), smol_clean)


# --- (c) corrupt -> clean patching ------------------------------------------------------------------------------


def test_corrupt_to_clean_all_positions_smollm2(smollm2, smol_inputs, smol_clean):
    clean_in, corrupt_in = smol_inputs, smollm2.encode(CORRUPT)
    assert clean_in["input_ids"].shape == corrupt_in["input_ids"].shape
    sites = [Site("resid_post", layer) for layer in (14, 29)]
    clean, cache = run_with(smollm2, clean_in, record=sites)
    assert torch.equal(clean, smol_clean)
    corrupt = _logits(smollm2, corrupt_in)
    assert not torch.allclose(clean, corrupt, atol=1e-2)
    for site in sites:
        patched, _ = run_with(smollm2, corrupt_in, [Intervention(site, "replace", cache[str(site)])])
        assert torch.equal(patched, clean), site
    # one position of the last layer: only that position's logits become the clean ones
    last = Site("resid_post", 29)
    patched, _ = run_with(smollm2, corrupt_in, [Intervention(last, "replace", cache[str(last)], positions=[-1])])
    assert torch.equal(patched[:, -1], clean[:, -1])
    assert torch.equal(patched[:, :-1], corrupt[:, :-1])


def test_corrupt_to_clean_tiny(tiny):
    clean_in, corrupt_in = tiny_inputs(seed=1), tiny_inputs(seed=2)
    for layer in range(tiny.spec.n_layers):
        site = Site("resid_post", layer)
        clean, cache = run_with(tiny, clean_in, record=[site])
        patched, _ = run_with(tiny, corrupt_in, [Intervention(site, "replace", cache[str(site)])])
        assert torch.equal(patched, clean)


# --- (d) selection touches only what it selects -----------------------------------------------------------------


def _changed(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """Boolean mask of changed entries, reduced over the trailing feature dimension."""
    return (before != after).any(-1)


def test_rows_and_positions_select_only_their_entries():
    torch.manual_seed(0)
    x = torch.randn(3, 5, 8)
    out = Intervention("resid_post.0", "add", 1.0, rows=[1, 2], positions=[0, -1]).apply(x)
    expected = torch.zeros(3, 5, dtype=torch.bool)
    expected[1:, [0, 4]] = True
    assert torch.equal(_changed(x, out), expected)
    torch.testing.assert_close(out[1:, [0, 4]], x[1:, [0, 4]] + 1.0)
    assert torch.equal(x, x.clone())  # apply returns a copy: input untouched
    out = Intervention("resid_post.0", "replace", 0.0, positions=slice(1, 3)).apply(x)
    expected = torch.zeros(3, 5, dtype=torch.bool)
    expected[:, 1:3] = True
    assert torch.equal(_changed(x, out), expected) and torch.all(out[:, 1:3] == 0)


def test_per_row_positions():
    torch.manual_seed(0)
    x = torch.randn(3, 6, 4)
    out = Intervention("resid_pre.0", "replace", 7.0, rows=[0, 2], positions=[[1, 5], [3, 4]]).apply(x)
    expected = torch.zeros(3, 6, dtype=torch.bool)
    expected[0, [1, 5]] = True
    expected[2, [3, 4]] = True
    assert torch.equal(_changed(x, out), expected)
    assert torch.all(out[expected] == 7.0)
    # per-row positions for all rows (rows default to all)
    out = Intervention("resid_pre.0", "scale", 0.0, positions=torch.tensor([[0], [1], [2]])).apply(x)
    assert torch.equal(_changed(x, out), torch.eye(3, 6, dtype=torch.bool))
    with pytest.raises(ValueError, match="rows"):
        Intervention("resid_pre.0", "add", 1.0, rows=[0], positions=[[1], [2]]).apply(x)


def test_index_selects_heads_and_neurons():
    torch.manual_seed(0)
    z = torch.randn(2, 4, 3, 5)  # [batch, seq, heads, head_dim]
    out = Intervention("z.0", "replace", 0.0, positions=[2], index=[1]).apply(z)
    changed = (z != out).any(-1)
    expected = torch.zeros(2, 4, 3, dtype=torch.bool)
    expected[:, 2, 1] = True
    assert torch.equal(changed, expected)
    acts = torch.randn(2, 4, 10)  # [batch, seq, d_mlp]
    out = Intervention("mlp_act.0", "clamp", (None, -5.0), rows=[0], index=[3, 7]).apply(acts)
    changed = acts != out
    expected = torch.zeros(2, 4, 10, dtype=torch.bool)
    expected[0, :, [3, 7]] = True
    assert torch.equal(changed, expected)
    assert torch.all(out[0, :, [3, 7]] == -5.0)


def test_value_forms():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 4)
    source = torch.randn(1, 5, 4)  # a recording's full per-row shape: indexed like the activation
    out = Intervention("resid_post.0", "replace", source, rows=[1], positions=[3]).apply(x)
    assert torch.equal(out[1, 3], source[0, 3])
    assert torch.equal(out[0], x[0]) and torch.equal(out[1, :3], x[1, :3])
    v = torch.randn(4)  # a vector broadcast to every selected position
    out = Intervention("resid_post.0", "add", v, positions=[0, 1]).apply(x)
    torch.testing.assert_close(out[:, :2], x[:, :2] + v)
    seen = []

    def double(selected: torch.Tensor) -> torch.Tensor:
        seen.append(selected.shape)
        return 2 * selected

    out = Intervention("resid_post.0", "replace", double, positions=[4]).apply(x)
    assert seen == [torch.Size([2, 1, 4])]
    torch.testing.assert_close(out[:, 4], 2 * x[:, 4])
    out = Intervention("resid_post.0", "clamp", (-0.1, 0.1)).apply(x)
    assert out.abs().max() <= 0.1 and torch.equal(out, x.clamp(-0.1, 0.1))


def test_rows_in_a_batch_run(tiny):
    """Patching row 1 of a batch leaves row 0's logits as they were."""
    inputs = tiny_inputs(batch=2)
    clean = _logits(tiny, inputs)
    patched, _ = run_with(tiny, inputs, [Intervention("resid_post.0", "scale", 0.5, rows=[1])])
    torch.testing.assert_close(patched[0], clean[0], rtol=0, atol=1e-5)
    assert (patched[1] - clean[1]).abs().max() > 1e-2


# --- (e) hooks are removed on every exit path -------------------------------------------------------------------


def test_hooks_removed_after_normal_exit(tiny):
    before = _hooks(tiny.hf)
    sites = _every_site(tiny.spec)
    with patch(tiny, [Intervention("z.0", "scale", 0.5, index=[0])], record=sites):
        assert len(_hooks(tiny.hf) - before) == len(sites)  # one hook per site, interventions share it
        tiny.hf(**tiny_inputs())
    assert _hooks(tiny.hf) == before


def test_hooks_removed_after_exception_in_block(tiny):
    before = _hooks(tiny.hf)
    with pytest.raises(KeyError), patch(tiny, [Intervention("mlp_out.0", "add", 1.0)], record=["resid_post.1"]):
        tiny.hf(**tiny_inputs())
        assert len(_hooks(tiny.hf) - before) == 2
        raise KeyError("inside the block")
    assert _hooks(tiny.hf) == before


def test_hooks_removed_after_exception_in_hook(tiny):
    def boom(_selected):
        raise RuntimeError("value function failed")

    inputs = tiny_inputs()
    clean = _logits(tiny, inputs)
    before = _hooks(tiny.hf)
    with pytest.raises(RuntimeError, match="value function failed"):
        run_with(tiny, inputs, [Intervention("mlp_act.1", "replace", boom)], record=["resid_post.0", "z.1"])
    assert _hooks(tiny.hf) == before
    # the model still runs cleanly afterwards
    logits, _ = run_with(tiny, inputs)
    assert torch.equal(logits, clean)


def test_hooks_removed_after_bad_site_midway(tiny, monkeypatch):
    """A site that fails after other hooks were registered still leaves no hook behind."""
    import locedit.hooks

    located = []
    real_locate = locedit.hooks.locate

    def locate(spec, model, site):
        located.append(site)
        if len(located) == 3:
            raise IndexError("third site fails")
        return real_locate(spec, model, site)

    monkeypatch.setattr(locedit.hooks, "locate", locate)
    before = _hooks(tiny.hf)
    with pytest.raises(IndexError, match="third"), patch(tiny, record=_every_site(tiny.spec)):
        pass
    assert len(located) == 3
    assert _hooks(tiny.hf) == before
    monkeypatch.undo()
    with pytest.raises(IndexError), patch(tiny, record=["resid_post.0", "mlp_act.1", "resid_post.9"]):
        pass
    assert _hooks(tiny.hf) == before


def test_hooks_removed_after_bad_positions(tiny):
    before = _hooks(tiny.hf)
    with pytest.raises(IndexError, match="positions"):
        run_with(tiny, tiny_inputs(seq=7), [Intervention("resid_post.0", "add", 1.0, positions=[7])])
    assert _hooks(tiny.hf) == before


# --- (f) bad input gives clear errors ---------------------------------------------------------------------------


def test_unknown_site():
    with pytest.raises(ValueError, match="unknown site 'resid'.*resid_post"):
        Site("resid", 0)
    with pytest.raises(ValueError, match="unknown site"):
        Intervention("mlp.3", "add", 1.0)


def test_site_parse_and_layers():
    assert Site.parse("mlp_act.7") == Site("mlp_act", 7)
    assert Site.parse("embed") == Site("embed")
    assert str(Site("z", 3)) == "z.3" and str(Site("embed")) == "embed"
    with pytest.raises(ValueError, match="needs a layer"):
        Site.parse("resid_post")
    with pytest.raises(ValueError, match="takes no layer"):
        Site("embed", 0)
    with pytest.raises(ValueError):
        Site.parse("resid_post.x")


def test_layer_out_of_range(tiny):
    with pytest.raises(IndexError, match=r"layer 2 out of range.*0\.\.1"), patch(tiny, record=["resid_post.2"]):
        pass
    with pytest.raises(IndexError, match="out of range"):
        run_with(tiny, tiny_inputs(), [Intervention("mlp_act.-1", "scale", 0.0)])


def test_index_on_site_without_heads_or_neurons():
    for name in ("resid_post.0", "attn_out.0", "mlp_out.0", "resid_pre.0"):
        with pytest.raises(ValueError, match="heads or neurons"):
            Intervention(name, "scale", 0.0, index=[0])
    with pytest.raises(ValueError, match="heads or neurons"):
        Intervention("embed", "scale", 0.0, index=[0])


def test_out_of_range_selections(tiny):
    inputs = tiny_inputs(batch=2, seq=7)
    bad = [
        (Intervention("resid_post.0", "add", 1.0, positions=[-8]), "positions"),
        (Intervention("resid_post.0", "add", 1.0, rows=[2]), "rows"),
        (Intervention("z.0", "scale", 0.0, index=[tiny.spec.n_heads]), "heads"),
        (Intervention("mlp_act.1", "scale", 0.0, index=[tiny.spec.d_mlp]), "neurons"),
    ]
    before = _hooks(tiny.hf)
    for intervention, what in bad:
        with pytest.raises(IndexError, match=what):
            run_with(tiny, inputs, [intervention])
    assert _hooks(tiny.hf) == before


def test_boolean_masks_are_refused():
    """A boolean mask is not a list of indices (torch would read [True, False] as the indices [1, 0])."""
    x = torch.randn(2, 3, 4)
    with pytest.raises(TypeError, match="boolean mask"):
        Intervention("resid_post.0", "add", 1.0, positions=torch.tensor([True, False, True])).apply(x)
    with pytest.raises(TypeError, match="boolean mask"):
        Intervention("resid_post.0", "add", 1.0, rows=[True, False]).apply(x)


def test_unknown_op():
    with pytest.raises(ValueError, match="unknown op"):
        Intervention("resid_post.0", "multiply", 2.0)


def test_all_sites(smollm2):
    sites = all_sites(smollm2.spec, "mlp_act")
    assert [s.layer for s in sites] == list(range(30)) and {s.name for s in sites} == {"mlp_act"}


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_patch_without_interventions_is_transparent_under_grad(family):
    """(g) with autograd on: recording-only patch() reproduces the logits bit for bit."""
    model = tiny_model(family)
    inputs = tiny_inputs()
    reference = model.hf(**inputs).logits
    with patch(model, record=_every_site(model.spec)):
        logits = model.hf(**inputs).logits
    assert torch.equal(logits, reference)


# --- (h) the site layer: locate and attach -----------------------------------------------------------------------


def test_locate_follows_the_site_table(tiny):
    """Each site resolves to the module and side SITES names for it."""
    spec, hf = tiny.spec, tiny.hf
    for site in _every_site(spec, layers=[1]):
        module, side = locate(spec, hf, site)
        kind = SITES[site.name]
        assert side == kind.side
        expected = spec.block(hf, 1) if kind.part == "block" else spec.part(hf, kind.part, site.layer)
        assert module is expected
    with pytest.raises(IndexError, match="out of range"):
        locate(spec, hf, Site("mlp_out", spec.n_layers))


def test_attach_shapes_heads_and_always_detaches(tiny):
    """Site functions see the site's own shape (z per head) and may replace it; every hook goes on exit."""
    inputs = tiny_inputs()
    clean = _logits(tiny, inputs)
    before = _hooks(tiny.hf)
    seen = {}

    def read(name):
        def fn(x):
            seen[name] = x.shape
            return x

        return fn

    sites = [Site("z", 0), Site("mlp_act", 1), Site("resid_pre", 1)]
    with torch.no_grad(), attach(tiny, {s: read(str(s)) for s in sites}):
        assert torch.equal(tiny.hf(**inputs).logits, clean)
    for s in sites:
        assert seen[str(s)] == _expected_shape(tiny.spec, s.name, *inputs["input_ids"].shape)
    assert _hooks(tiny.hf) == before
    with pytest.raises(RuntimeError, match="inside"), attach(tiny, [(Site("z", 0), lambda x: x * 0)]):
        raise RuntimeError("inside")
    assert _hooks(tiny.hf) == before
    with torch.no_grad(), attach(tiny, [(Site("z", 0), lambda x: x * 0)]):
        zeroed = tiny.hf(**inputs).logits
    assert not torch.equal(zeroed, clean)


# --- (i) record up to a site and stop -----------------------------------------------------------------------------


def test_stop_records_what_the_full_forward_does(smollm2):
    """Stopping after block l reads the same keys and residuals as a whole forward pass, and leaves no hook."""
    inputs = smollm2.encode(["The capital of France is", "Danielle Darrieux's mother tongue is"])
    sites = ["mlp_act.4", "resid_post.6"]
    hooks = lambda: sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in smollm2.hf.modules())  # noqa: E731
    before = hooks()
    with torch.no_grad():
        with patch(smollm2, record=sites) as full:
            smollm2.hf(**inputs)
        with patch(smollm2, record=sites, stop=True) as part:
            smollm2.hf(**inputs)
    for site in sites:
        assert torch.equal(full[site], part[site]), site
    assert hooks() == before
    with pytest.raises(IndexError, match="out of range"), patch(smollm2, record=["resid_post.99"], stop=True):
        smollm2.hf(**inputs)
    assert hooks() == before


def _calls(model) -> tuple[list, list]:
    """Hooks that log each decoder block that ran to its end (its index) and the final norm ("norm"); returns the log
    and the hooks' handles."""
    ran: list = []
    handles = [
        block.register_forward_hook(lambda *_a, j=j: ran.append(j))
        for j, block in enumerate(model.spec.blocks(model.hf))
    ]
    handles.append(model.spec.part(model.hf, "final_norm").register_forward_hook(lambda *_a: ran.append("norm")))
    return ran, handles


# (recorded sites, the blocks that run to their end before the stop)
STOPS = [
    (["embed"], []),
    (["resid_pre.0"], []),
    (["embed", "resid_pre.1"], [0]),
    (["resid_pre.1", "resid_post.0"], [0]),
    (["resid_post.0"], [0]),
    (["z.1", "resid_post.0"], [0, 1]),
    (["mlp_act.0"], [0]),
    (["mlp_up.1", "attn_out.1", "resid_pre.1"], [0, 1]),
    (["resid_post.1"], [0, 1]),
]


@pytest.mark.parametrize(("sites", "blocks"), STOPS, ids=[",".join(s) for s, _ in STOPS])
@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_stop_after_the_last_recorded_site(family, sites, blocks):
    """The forward ends right after the latest recorded site (at a block's input for resid_pre): the later blocks
    and the final norm never run, every recorded value equals the full run's, and no hook is left."""
    model = tiny_model(family)
    inputs = tiny_inputs()
    before = _hooks(model.hf)
    with torch.no_grad(), patch(model, record=sites) as full:
        model.hf(**inputs)
    ran, handles = _calls(model)
    after_forward = []
    try:
        with torch.no_grad(), patch(model, record=sites, stop=True) as part:
            model.hf(**inputs)
            after_forward.append(True)  # never reached: the stop leaves the block
    finally:
        for handle in handles:
            handle.remove()
    assert ran == blocks
    assert not after_forward
    assert set(part) == set(full)
    for site in sites:
        assert torch.equal(part[site], full[site]), site
    assert _hooks(model.hf) == before


def test_stop_lets_other_exceptions_through(tiny):
    inputs = tiny_inputs()
    before = _hooks(tiny.hf)

    def boom(x):
        raise RuntimeError("value function failed")

    with pytest.raises(RuntimeError, match="value function failed"):  # noqa: SIM117
        with patch(tiny, [Intervention("mlp_act.0", "replace", boom)], record=["resid_post.1"], stop=True):
            tiny.hf(**inputs)
    assert _hooks(tiny.hf) == before
    with pytest.raises(KeyError, match="in the block"), patch(tiny, record=["resid_post.0"], stop=True):
        raise KeyError("in the block")
    assert _hooks(tiny.hf) == before
    with pytest.raises(ValueError, match="record"), patch(tiny, stop=True):
        pass
    assert _hooks(tiny.hf) == before


def test_nested_stops_each_catch_their_own(tiny):
    """An inner patch lets an outer patch's stop through (the outer one's block ends there)."""
    inputs = tiny_inputs()
    before = _hooks(tiny.hf)
    reached = []
    with torch.no_grad(), patch(tiny, record=["resid_post.0"], stop=True) as outer:
        with patch(tiny, record=["resid_post.1"], stop=True) as inner:
            tiny.hf(**inputs)
        reached.append("after inner")
    assert not reached and "resid_post.0" in outer and not inner
    with torch.no_grad(), patch(tiny, record=["resid_post.1"], stop=True) as outer:
        with patch(tiny, record=["resid_post.0"], stop=True) as inner:
            tiny.hf(**inputs)
        reached.append("after inner")
    assert reached == ["after inner"] and "resid_post.0" in inner and not outer
    assert _hooks(tiny.hf) == before


# --- (j) layers given as NumPy or torch integers -----------------------------------------------------------------


def test_site_layers_as_numpy_and_torch_integers(tiny):
    layer = torch.argmax(torch.tensor([0.1, 0.9]))  # a 0-d int64 tensor
    for given in (np.int64(1), np.int32(1), torch.tensor(1), layer):
        site = Site("mlp_out", given)
        assert site == Site("mlp_out", 1) and type(site.layer) is int and str(site) == "mlp_out.1"
    assert Site.parse("resid_post.1") == Site("resid_post", np.int64(1))
    inputs = tiny_inputs()
    with torch.no_grad(), patch(tiny, [Intervention(Site("mlp_out", layer), "scale", 0.0)], record=[Site("z", layer)]):
        tiny.hf(**inputs)
    for bad in (True, np.True_, torch.tensor(True), 1.0, np.float64(1.0), torch.tensor(1.0)):
        with pytest.raises(TypeError, match="layer must be an integer"):
            Site("mlp_out", bad)
    with pytest.raises(ValueError, match="must be an integer"):
        Site.parse("resid_post.1.5")
