"""locedit.circuits.composition: module shares of hand-built circuits, Jaccard indices, the random baseline."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from locedit.circuits.composition import (
    MODULES,
    composition,
    intersection_union,
    jaccard,
    only,
    overlap_matrix,
    random_jaccard,
)
from locedit.circuits.heads import hypergeometric_tail
from locedit.circuits.units import Circuit, UnitLayout, empty_circuit, full_circuit, random_circuit

# 2 layers; a neuron owns 3 × 8 = 24 parameters, a head 2 × 2 × 8 = 32 plus its KV group's 32 (2 heads per group)
SMALL = UnitLayout(n_layers=2, d_model=8, d_mlp=12, n_heads=4, n_kv_heads=2, head_dim=2, n_norms=2)
SMOLLM2 = UnitLayout(n_layers=30, d_model=576, d_mlp=1536, n_heads=9, n_kv_heads=3, head_dim=64, n_norms=2)


def build(layout: UnitLayout, neurons=(), heads=(), norms=()) -> Circuit:
    """A circuit holding exactly the listed units."""
    c = empty_circuit(layout)
    masks = {k: m.clone() for k, m in c.masks.items()}
    for unit in neurons:
        masks["neuron"][unit] = True
    for unit in heads:
        masks["head"][unit] = True
    for unit in norms:
        masks["norm"][unit] = True
    return Circuit(layout, masks)


def row(rows, layer, module) -> dict:
    (found,) = [r for r in rows if r["layer"] == layer and r["module"] == module]
    return found


def test_composition_of_a_hand_built_circuit():
    c = build(SMALL, neurons=[(0, 0), (0, 1)], heads=[(1, 0)], norms=[(0, 0, 0), (0, 1, 3), (1, 0, 2)])
    rows = composition(c)
    assert len(rows) == 3 * 4  # 2 layers + "all", 4 rows each
    total = row(rows, "all", "all")
    assert (total["units"], total["params"]) == (6, 48 + 64 + 3) == (c.n_units(), c.n_params)
    assert total["params_total"] == SMALL.total_params == 992
    assert total["param_density"] == pytest.approx(c.density)
    mlp, attention, norm = (row(rows, "all", m) for m in ("mlp", "attention", "norm"))
    assert (mlp["unit_share"], attention["unit_share"], norm["unit_share"]) == pytest.approx((2 / 6, 1 / 6, 3 / 6))
    assert (mlp["param_share"], attention["param_share"], norm["param_share"]) == pytest.approx(
        (48 / 115, 64 / 115, 3 / 115)
    )
    assert mlp["unit_density"] == pytest.approx(2 / 24) and norm["unit_density"] == pytest.approx(3 / 32)
    assert attention["unit_density"] == pytest.approx(1 / 8)
    assert attention["param_density"] == pytest.approx(64 / (2 * (4 * 32 + 2 * 32)))
    # per layer: layer 0 holds two neurons and two norm elements, layer 1 one head and one norm element
    assert row(rows, 0, "mlp")["unit_share"] == row(rows, 0, "norm")["unit_share"] == 0.5
    assert row(rows, 0, "attention")["units"] == 0 and row(rows, 0, "attention")["param_share"] == 0
    assert row(rows, 1, "attention")["param_share"] == pytest.approx(64 / 65)
    for layer in (0, 1, "all"):
        assert sum(row(rows, layer, m)["param_share"] for m in MODULES) == pytest.approx(1)
        assert sum(row(rows, layer, m)["units"] for m in MODULES) == row(rows, layer, "all")["units"]
    assert composition(c, by_layer=False) == rows[-4:]
    with pytest.raises(TypeError, match="Circuit"):
        composition(c.masks)


def test_composition_counts_a_kv_group_once_and_handles_an_empty_layer():
    c = build(SMALL, heads=[(0, 0), (0, 1), (0, 2)])  # group 0 (heads 0, 1) and group 1 (head 2)
    r = row(composition(c), 0, "attention")
    assert r["params"] == 3 * 32 + 2 * 32
    empty_layer = row(composition(c), 1, "all")
    assert empty_layer["units"] == 0 and empty_layer["unit_share"] == 0.0 and empty_layer["param_density"] == 0.0
    assert all(not math.isnan(v) for r in composition(c) for v in r.values() if isinstance(v, float))


def test_smollm2_full_model_norm_share_by_units_and_by_parameters():
    """The whole of SmolLM2: norm elements are 43% of the units but 0.03% of the parameters."""
    rows = composition(full_circuit(SMOLLM2), by_layer=False)
    norm = row(rows, "all", "norm")
    assert norm["units"] == 30 * 2 * 576 and norm["unit_share"] == pytest.approx(34560 / (46080 + 270 + 34560))
    assert norm["param_share"] == pytest.approx(34560 / SMOLLM2.total_params) and norm["param_share"] < 4e-4
    assert all(r["unit_density"] == r["param_density"] == 1.0 for r in rows)


def test_jaccard_identical_disjoint_and_shared_kv_rows():
    a = random_circuit(SMALL, 0.4, seed=1)
    for over in ("units", "params"):
        assert jaccard(a, a, over) == 1.0
    assert jaccard(a, a.complement(), "units") == 0.0
    h0, h1 = build(SMALL, heads=[(0, 0)]), build(SMALL, heads=[(0, 1)])
    assert jaccard(h0, h1, "units") == 0.0
    # the two heads share their KV group: 32 of the 32 + 32 + 32 parameters of the union
    assert intersection_union(h0, h1, "params") == (32, 96)
    assert jaccard(h0, h1, "params") == pytest.approx(1 / 3)
    b = build(SMALL, neurons=[(0, 0), (1, 5)], norms=[(0, 0, 0)])
    c = build(SMALL, neurons=[(0, 0)], norms=[(0, 0, 0), (1, 1, 1)])
    assert jaccard(b, c) == pytest.approx(2 / 4)
    assert jaccard(b, c, "params") == pytest.approx((24 + 1) / (48 + 2))
    assert jaccard(b, c, kind="neuron") == pytest.approx(1 / 2)
    assert jaccard(b, c, kind="norm") == pytest.approx(1 / 2)
    assert only(b, "norm").n_units() == 1


def test_jaccard_refuses_bad_input():
    a = random_circuit(SMALL, 0.3)
    with pytest.raises(ValueError, match="undefined"):
        jaccard(empty_circuit(SMALL), empty_circuit(SMALL))
    with pytest.raises(ValueError, match="undefined"):
        jaccard(build(SMALL, neurons=[(0, 0)]), build(SMALL, neurons=[(0, 1)]), kind="head")
    with pytest.raises(ValueError, match="different models"):
        jaccard(a, random_circuit(SMOLLM2, 0.3))
    with pytest.raises(ValueError, match="over must be"):
        jaccard(a, a, "weights")
    with pytest.raises(ValueError, match="unknown unit kind"):
        jaccard(a, a, kind="mlp")
    with pytest.raises(TypeError, match="Circuit"):
        jaccard(a, a.masks)


def test_random_baseline_matches_the_hypergeometric_law():
    """Neuron-only circuits of 300 and 200 of 1,000 neurons: a random pair shares 60 on average (Jaccard 60/440)."""
    layout = UnitLayout(n_layers=2, d_model=4, d_mlp=500, n_heads=2, n_kv_heads=1, head_dim=2, n_norms=2)
    a = build(layout, neurons=[(i // 500, i % 500) for i in range(300)])
    b = build(layout, neurons=[(i // 500, i % 500) for i in range(100, 300)] + [(1, 499)])
    null = random_jaccard(a, b, n_draws=4000, seed=0)
    expected = 300 * 201 / 1000
    assert null.mean() == pytest.approx(expected / (300 + 201 - expected), abs=0.003)
    # neurons all weigh the same: the parameter Jaccard of the same draws is the unit Jaccard
    assert np.array_equal(random_jaccard(a, b, "params", n_draws=50, seed=3), random_jaccard(a, b, n_draws=50, seed=3))


def test_random_heads_give_the_exact_hypergeometric_p_value():
    layout = UnitLayout(n_layers=4, d_model=4, d_mlp=4, n_heads=16, n_kv_heads=4, head_dim=2, n_norms=2)
    heads = [(i // 16, i % 16) for i in range(64)]
    a = build(layout, heads=heads[:20])
    b = build(layout, heads=heads[12:24] + heads[40:44])  # 16 heads, 8 shared
    m = overlap_matrix({"a": a, "b": b}, n_draws=20_000, seed=0)
    assert m.p_value[0, 1] == pytest.approx(hypergeometric_tail(8, 64, 20, 16), abs=0.004)
    assert m.jaccard[0, 1] == pytest.approx(8 / 28)
    # the random mean overlap is 20 · 16 / 64 = 5 heads; Jaccard of the mean pair about 5 / 31
    assert m.random_mean[0, 1] == pytest.approx(5 / 31, abs=0.01)


def test_overlap_matrix_tells_related_circuits_from_independent_ones():
    base = random_circuit(SMOLLM2, 0.1, seed=0)
    flip = torch.Generator().manual_seed(1)
    noisy = Circuit(
        SMOLLM2, {k: m ^ (torch.rand(m.shape, generator=flip) < 0.05) for k, m in base.masks.items()}
    )  # the base with 5% of the units flipped
    circuits = {"base": base, "noisy": noisy, "other": random_circuit(SMOLLM2, 0.1, seed=2)}
    m = overlap_matrix(circuits, n_draws=200)
    assert np.allclose(np.diag(m.jaccard), 1) and np.allclose(m.jaccard, m.jaccard.T)
    rows = {(r["a"], r["b"]): r for r in m.rows()}
    assert len(rows) == 3
    assert rows["base", "noisy"]["jaccard"] > 0.5 and rows["base", "noisy"]["p_value"] == pytest.approx(1 / 201)
    assert rows["base", "noisy"]["ratio"] > 3
    independent = rows["base", "other"]
    assert abs(independent["jaccard"] - independent["random_mean"]) < 4 * independent["random_std"]
    assert independent["p_value"] > 0.01
    heads_only = overlap_matrix(circuits, "params", kind="head", n_draws=100)
    assert heads_only.kind == "head" and heads_only.jaccard[0, 1] > heads_only.random_mean[0, 1]
    with pytest.raises(ValueError, match="at least two"):
        overlap_matrix({"base": base})
    with pytest.raises(ValueError, match="holds no"):
        overlap_matrix({"base": base, "empty": empty_circuit(SMOLLM2)})
