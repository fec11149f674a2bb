"""locedit.circuits.units: unit layouts, circuits, unit masks vs pruned weights, parameter masks."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import TINY_FAMILIES, tiny_inputs, tiny_model
from locedit.circuits.units import (
    UNIT_KINDS,
    Circuit,
    UnitLayout,
    empty_circuit,
    full_circuit,
    parameter_masks,
    pruned,
    random_circuit,
    unit_layout,
    unit_masks,
)


def _logits(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model.hf(**inputs).logits


def _block_params(model) -> int:
    """Every parameter of the decoder blocks, counted from the model."""
    return sum(p.numel() for p in model.spec.blocks(model.hf).parameters())


def test_smollm2_layout_counts_every_unit_parameter():
    """SmolLM2-135M's sizes (PAPERS.md §0): its units cover exactly its block parameters (it has no biases)."""
    layout = UnitLayout(n_layers=30, d_model=576, d_mlp=1536, n_heads=9, n_kv_heads=3, head_dim=64, n_norms=2)
    assert layout.shape("neuron") == (30, 1536) and layout.shape("head") == (30, 9)
    assert layout.shape("norm") == (30, 2, 576)
    assert layout.neuron_params == 3 * 576
    # q + o of a head plus a third of its group's k and v
    assert layout.params_per_unit("head") == pytest.approx(2 * 64 * 576 + 2 * 64 * 576 / 3)
    per_layer = 3 * 576 * 1536 + (576 * 576) * 2 + 2 * (192 * 576) + 2 * 576
    assert layout.total_params == 30 * per_layer


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_layout_and_total_params_match_the_model(family):
    model = tiny_model(family)
    layout = unit_layout(model)
    assert layout.block_sizes() == model.spec.block_sizes()  # the sizes are the spec's, declared once (arch)
    assert layout.n_norms == (1 if family == "gptj" else 2)
    covered = sum(mask.numel() for mask in parameter_masks(model, full_circuit(layout)).values())
    assert covered == layout.total_params == sum(layout.kind_params(kind) for kind in UNIT_KINDS)
    for kind in UNIT_KINDS:  # one kind's units, all of them, own exactly kind_params (heads with their KV groups)
        only = empty_circuit(layout)
        only.masks[kind] = torch.ones(layout.shape(kind), dtype=torch.bool)
        assert only.n_params == layout.kind_params(kind)
    # what the units leave out: output-projection biases (GPT-2, GPT-J's fc_out, GPT-NeoX), Gemma's extra norms
    assert 0 < layout.total_params <= _block_params(model)
    if family == "llama":
        assert layout.total_params == _block_params(model)


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_unit_masks_and_pruned_give_the_same_logits(family):
    model = tiny_model(family)
    layout = unit_layout(model)
    inputs = tiny_inputs(batch=2, seq=6)
    full = _logits(model, inputs)
    for seed, density in ((0, 0.3), (1, 0.7)):
        circuit = random_circuit(layout, density, seed=seed)
        with unit_masks(model, circuit.masks):
            masked = _logits(model, inputs)
        with pruned(model, circuit):
            cut = _logits(model, inputs)
        assert torch.allclose(masked, cut, atol=1e-5, rtol=1e-4), (masked - cut).abs().max()
        assert not torch.allclose(masked, full, atol=1e-3)  # the circuit changes the model
    assert torch.equal(_logits(model, inputs), full)  # hooks gone, weights restored


def test_float_multipliers_are_differentiable_and_ones_change_nothing():
    model = tiny_model("llama")
    layout = unit_layout(model)
    inputs = tiny_inputs(batch=2, seq=5)
    ones = {kind: torch.ones(layout.shape(kind), requires_grad=True) for kind in UNIT_KINDS}
    with unit_masks(model, ones):
        logits = model.hf(**inputs).logits
    assert torch.allclose(logits, _logits(model, inputs), atol=1e-6)
    logits.square().mean().backward()
    for kind in UNIT_KINDS:
        assert ones[kind].grad is not None and ones[kind].grad.abs().sum() > 0


def test_unit_masks_refuse_bad_shapes_and_kinds():
    model = tiny_model("llama")
    with pytest.raises(ValueError, match="shape"), unit_masks(model, {"neuron": torch.ones(3, 3)}):
        pass
    with pytest.raises(ValueError, match="unknown unit kind"), unit_masks(model, {"layer": torch.ones(2)}):
        pass


@pytest.mark.parametrize("family", ["llama", "gpt2", "gemma3_text"])
def test_pruned_restores_bit_exactly_after_an_exception(family):
    model = tiny_model(family)
    before = {name: p.detach().clone() for name, p in model.hf.named_parameters()}
    circuit = random_circuit(unit_layout(model), 0.4, seed=3)
    with pytest.raises(RuntimeError, match="boom"), pruned(model, circuit):
        changed = [n for n, p in model.hf.named_parameters() if not torch.equal(p, before[n])]
        assert changed  # really pruned inside
        raise RuntimeError("boom")
    for name, param in model.hf.named_parameters():
        assert torch.equal(param, before[name]), name


def test_empty_circuit_zeroes_every_covered_parameter_and_the_gemma_gain():
    model = tiny_model("gemma3_text")
    layout = unit_layout(model)
    with pruned(model, empty_circuit(layout)):
        spec, hf = model.spec, model.hf
        assert spec.part(hf, "mlp_up", 0).weight.abs().sum() == 0
        assert spec.part(hf, "attn_o_proj", 1).weight.abs().sum() == 0
        # Gemma's norm multiplies by (1 + weight): the gain is zeroed by weight = -1
        assert torch.all(spec.part(hf, "mlp_norm", 0).weight == -1)
        out = spec.part(hf, "attn_norm", 0)(torch.randn(3, layout.d_model))
        assert out.abs().max() == 0


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_n_params_counts_the_true_entries_of_parameter_masks(family):
    model = tiny_model(family)
    layout = unit_layout(model)
    for circuit in (random_circuit(layout, 0.2, seed=5), full_circuit(layout), empty_circuit(layout)):
        masks = parameter_masks(model, circuit)
        params = dict(model.hf.named_parameters())
        for name, mask in masks.items():
            assert mask.shape == params[name].shape and mask.dtype == torch.bool
        assert sum(int(mask.sum()) for mask in masks.values()) == circuit.n_params
    assert full_circuit(layout).density == 1.0 and empty_circuit(layout).n_params == 0


def test_kv_group_counted_once_when_any_head_is_in():
    """Llama tiny: 4 heads over 2 KV groups. One head of group 0 brings the group's k/v rows, a second adds none."""
    model = tiny_model("llama")
    layout = unit_layout(model)
    masks = {kind: torch.zeros(layout.shape(kind), dtype=torch.bool) for kind in UNIT_KINDS}
    masks["head"][0, 0] = True
    one = Circuit(layout, {k: v.clone() for k, v in masks.items()})
    masks["head"][0, 1] = True
    two = Circuit(layout, masks)
    assert one.n_params == layout.head_params + layout.kv_group_params
    assert two.n_params == 2 * layout.head_params + layout.kv_group_params
    k_proj = parameter_masks(model, one)["model.layers.0.self_attn.k_proj.weight"]
    assert k_proj[: layout.head_dim].all() and not k_proj[layout.head_dim :].any()


@pytest.mark.parametrize("density", [0.05, 0.15, 0.35, 0.5])
def test_random_circuit_hits_its_density(density):
    layout = UnitLayout(n_layers=30, d_model=576, d_mlp=1536, n_heads=9, n_kv_heads=3, head_dim=64, n_norms=2)
    circuit = random_circuit(layout, density, seed=1)
    assert abs(circuit.density - density) < 1e-3
    # units drawn uniformly: every kind keeps about the same share of its units
    for kind in ("neuron", "norm"):
        assert abs(circuit.unit_density(kind) - circuit.unit_density()) < 0.02
    assert random_circuit(layout, density, seed=1) == circuit
    assert random_circuit(layout, density, seed=2) != circuit
    with pytest.raises(ValueError, match="outside"):
        random_circuit(layout, 1.5)
    # drawn among neurons and heads only: every norm gain kept, still at the density, neurons thinned alike
    assert random_circuit(layout, density, seed=1, kinds=UNIT_KINDS) == circuit
    partial = random_circuit(layout, density, seed=1, kinds=("neuron", "head"))
    assert partial.unit_density("norm") == 1.0 and abs(partial.density - density) < 1e-3
    # (270 heads of ~80k parameters each: their random count moves the neurons' share by a few points)
    assert abs(partial.unit_density("neuron") - density) < 0.05 and abs(partial.unit_density("head") - density) < 0.12
    # its complement thins the same kinds the other way and keeps the norms whole; it round-trips with its kinds
    outside = partial.complement()
    assert outside.kinds == ("neuron", "head") and outside.unit_density("norm") == 1.0
    assert torch.equal(outside.masks["neuron"], ~partial.masks["neuron"]) and outside.complement() == partial
    again = Circuit.from_dict(json.loads(json.dumps(partial.to_dict())))
    assert again == partial and again.kinds == ("neuron", "head") and again != Circuit(partial.layout, partial.masks)
    broken = dict(partial.masks, norm=~partial.masks["norm"])
    with pytest.raises(ValueError, match="kept whole"):
        Circuit(layout, broken, ("neuron", "head"))


def test_complement_counts_and_round_trip():
    model = tiny_model("llama")
    layout = unit_layout(model)
    circuit = random_circuit(layout, 0.3, seed=7)
    assert circuit.complement().complement() == circuit
    assert circuit.n_units() + circuit.complement().n_units() == sum(
        torch.Size(layout.shape(k)).numel() for k in UNIT_KINDS
    )
    assert circuit.unit_density("neuron") == circuit.n_units("neuron") / (layout.n_layers * layout.d_mlp)
    again = Circuit.from_dict(json.loads(json.dumps(circuit.to_dict())))
    assert again == circuit and again.layout == layout
    # the serialised layout's keys (what cached masks were written with)
    assert list(circuit.to_dict()["layout"]) == ["n_layers", "d_model", "d_mlp", "n_heads", "n_kv_heads", "head_dim",
                                                 "n_norms", "gated", "mlp_bias", "qkv_bias", "norm_bias"]  # fmt: skip


def test_circuit_refuses_bad_masks():
    layout = unit_layout(tiny_model("llama"))
    masks = full_circuit(layout).masks
    with pytest.raises(ValueError, match="one mask per unit kind"):
        Circuit(layout, {"neuron": masks["neuron"]})
    with pytest.raises(TypeError, match="bool"):
        Circuit(layout, {**masks, "head": masks["head"].float()})
    with pytest.raises(ValueError, match="shape"):
        Circuit(layout, {**masks, "head": masks["head"][:, :2]})
    with pytest.raises(ValueError, match="unknown unit kind"):
        layout.shape("layer")
    other = tiny_model("gpt2")
    with pytest.raises(ValueError, match="layout"):
        parameter_masks(other, full_circuit(layout))
