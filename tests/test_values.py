"""The value optimisation ROME and MEMIT share (:mod:`locedit.editing.values`)."""

from __future__ import annotations

import pytest
import torch

from locedit.editing import MEMITHyperParams, ROMEHyperParams
from locedit.editing.common import as_request, context_templates
from locedit.editing.values import ValueHyperParams, _layer_of, optimise_value
from test_editing import FACT, FAST, _tiny_with_tokenizer


@pytest.mark.parametrize("family", ["llama", "gpt2", "gemma3_text"])
@pytest.mark.parametrize("hooked", ["mlp_down", "block"])
def test_value_optimisation_fast_path_matches_whole_prompts(smollm2, family, hooked):
    """The fast path (prefix key/value cache, suffix-only steps from the hooked layer up, logits only where read)
    gives the reference's losses and v*; one request's subject is a single token at the very start of its KL prompt
    (an empty prefix). Gemma 3's sliding window (4) is shorter than the prompts, and its MLP output goes through a
    norm before the residual stream."""
    model = _tiny_with_tokenizer(family, smollm2.tokenizer, n_layers=3)
    hp = ROMEHyperParams(layer=1, **FAST)
    requests = [
        as_request(FACT),
        as_request({"prompt": "{} is the capital of", "subject": "Paris", "target_new": "Spain"}),
    ]
    templates = context_templates(model, hp.context_template_length_params)
    spec = model.spec
    module = spec.part(model.hf, "mlp_down", 1) if hooked == "mlp_down" else spec.block(model.hf, 1)
    assert _layer_of(model, module) == 1
    runs = []
    for fast in (True, False):
        log: list = []
        v_init, v_star = optimise_value(model, requests, module, templates, hp, log=log, fast=fast)
        runs.append((v_init, v_star, torch.tensor([step["loss"] for step in log])))
    (vi_a, vs_a, loss_a), (vi_b, vs_b, loss_b) = runs
    assert torch.allclose(vi_a, vi_b, atol=1e-5)
    assert torch.allclose(loss_a, loss_b, atol=1e-4, rtol=1e-4)
    assert torch.allclose(vs_a, vs_b, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(vs_a, vi_a)  # the optimisation moved


def test_both_editors_settings_are_value_settings_with_their_own_defaults():
    rome_hp, memit_hp = ROMEHyperParams(), MEMITHyperParams()
    assert isinstance(rome_hp, ValueHyperParams) and isinstance(memit_hp, ValueHyperParams)
    assert (rome_hp.v_num_grad_steps, rome_hp.clamp_norm_factor, rome_hp.context_starts) == (20, 4.0, None)
    assert (memit_hp.v_num_grad_steps, memit_hp.clamp_norm_factor, memit_hp.z_batch) == (25, 0.75, 16)
    assert memit_hp.context_template_length_params == ((10, 5),)
    assert ROMEHyperParams(3).layer == 3 and MEMITHyperParams((1, 2)).layers == (1, 2)  # the layer stays positional
    with pytest.raises(TypeError):
        ROMEHyperParams(3, "subject_last")  # the shared settings are keyword-only
