"""locedit.viz.unit_circuits: chapter 5's figures from hand-made rows and arrays and from real compositions and
overlaps of random circuits of a tiny model; traces, axis titles, no NaN in the data, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import tiny_model
from locedit.circuits.composition import composition, overlap_matrix
from locedit.circuits.units import empty_circuit, random_circuit, unit_layout
from locedit.viz import composition_figure, density_sweep_figure, jaccard_heatmap, mask_training_figure


def finite(trace, field: str = "y") -> np.ndarray:
    values = np.asarray(getattr(trace, field), dtype=float)
    assert np.isfinite(values).all(), f"{trace.name}: {field} holds NaN"
    return values


def row(layer, module, units, units_total, params, params_total) -> dict:
    return {"layer": layer, "module": module, "units": units, "units_total": units_total, "params": params,
            "params_total": params_total, "unit_density": units / units_total, "param_density": params / params_total,
            "unit_share": 0.0, "param_share": 0.0}  # fmt: skip


# 2 layers; a head owns 10 parameters, a neuron 4, a norm element 1
HAND = [
    row(0, "attention", 1, 4, 10, 40), row(0, "mlp", 2, 8, 8, 32), row(0, "norm", 5, 16, 5, 16),
    row(1, "attention", 0, 4, 0, 40), row(1, "mlp", 4, 8, 16, 32), row(1, "norm", 8, 16, 8, 16),
    row(0, "all", 8, 28, 23, 88), row("all", "norm", 13, 32, 13, 32),  # ignored: the figure sums per-layer rows
]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_circuits():
    layout = unit_layout(tiny_model("llama"))
    return layout, {name: random_circuit(layout, 0.3, seed=s) for s, name in enumerate(("hierarchy", "agreement"))}


def test_composition_figure_shares_by_units_and_params():
    fig = composition_figure(HAND, title="hand-made")
    assert [t.type for t in fig.data] == ["bar"] * 3 and fig.layout.barmode == "stack"
    assert [t.name.split(":")[0] for t in fig.data] == ["attention", "mlp", "norm"]
    shares = {t.name.split(":")[0]: finite(t) for t in fig.data}
    np.testing.assert_allclose(shares["mlp"], [2 / 20, 4 / 20])  # 20 units in the circuit
    np.testing.assert_allclose(sum(s.sum() for s in shares.values()), 1.0)
    assert fig.data[2].name == "norm: 65.0%" and list(fig.data[0].x) == [0, 1]
    assert fig.layout.xaxis.title.text == "layer" and fig.layout.yaxis.title.text == "share of the circuit's units"
    # customdata: count, module total, share of the layer's part, density
    np.testing.assert_allclose(np.asarray(fig.data[1].customdata[1], dtype=float), [4, 8, 4 / 12, 0.5])
    assert "{" not in fig.data[1].hovertemplate.replace("%{", "")
    by_params = composition_figure(HAND, by="params")
    np.testing.assert_allclose(finite(by_params.data[0]), [10 / 47, 0.0])  # 47 parameters in the circuit
    assert by_params.layout.yaxis.title.text == "share of the circuit's parameters"


def test_composition_figure_density_lines():
    fig = composition_figure(HAND, mode="density")
    assert [t.type for t in fig.data] == ["scatter"] * 3 and all(t.mode == "lines+markers" for t in fig.data)
    np.testing.assert_allclose(finite(fig.data[2]), [5 / 16, 8 / 16])
    assert fig.data[0].name == "attention: 12.5% kept"  # 1 of 8 heads over both layers
    assert fig.layout.yaxis.title.text == "share of the module's units kept"


def test_composition_figure_of_a_real_random_circuit(tiny_circuits):
    layout, circuits = tiny_circuits
    rows = composition(circuits["hierarchy"])
    for by in ("units", "params"):
        fig = composition_figure(rows, by=by)
        assert len(fig.data) == 3 and all(len(t.x) == layout.n_layers for t in fig.data)
        assert sum(finite(t).sum() for t in fig.data) == pytest.approx(1.0)
        density = composition_figure(rows, by=by, mode="density")
        kept = {r["module"]: r[f"{by[:-1]}_density"] for r in rows if r["layer"] == 0}
        assert [finite(t)[0] for t in density.data] == pytest.approx([kept[m] for m in ("attention", "mlp", "norm")])
    # an empty circuit draws zero bars, not NaN
    empty = composition_figure(composition(empty_circuit(layout)))
    assert all((finite(t) == 0).all() for t in empty.data) and empty.data[0].name == "attention: 0.0%"


def test_composition_figure_errors():
    with pytest.raises(ValueError, match="non-empty list"):
        composition_figure([])
    with pytest.raises(ValueError, match=r"lacks \['params_total'"):
        composition_figure([{k: v for k, v in HAND[0].items() if k not in ("params_total",)}])
    with pytest.raises(ValueError, match="by_layer=True"):
        composition_figure([r for r in HAND if r["layer"] == "all"])
    with pytest.raises(ValueError, match="two rows for layer 0"):
        composition_figure(HAND + [HAND[0]])
    with pytest.raises(ValueError, match=r"no row for \(layer, module\) \[\(1, 'attention'\)\]"):
        composition_figure([r for r in HAND if not (r["layer"] == 1 and r["module"] == "attention")])
    with pytest.raises(ValueError, match="by must be"):
        composition_figure(HAND, by="heads")
    with pytest.raises(ValueError, match="mode must be"):
        composition_figure(HAND, mode="bars")
    with pytest.raises(TypeError, match="not a dict"):
        composition_figure([HAND[0], 3])


def test_density_sweep_figure():
    densities = [0.1, 0.01, 0.05]  # unsorted: the curves are drawn in density order
    series = {
        "circuit": [0.2, 0.9, 0.5],
        "complement": [0.7, 0.6, 0.65],
        "random": [0.8, 0.7, 0.75],
        "full model": 0.95,
    }
    errors = {"circuit": [0.05, 0.02, 0.04], "full model": 0.01}
    fig = density_sweep_figure(densities, series, chance=0.5, errors=errors, ylabel="post-edit success", title="t")
    assert [t.name for t in fig.data] == list(series)
    circuit, _, _, full = fig.data
    np.testing.assert_allclose(finite(circuit, "x"), [0.01, 0.05, 0.1])
    np.testing.assert_allclose(finite(circuit), [0.9, 0.5, 0.2])
    np.testing.assert_allclose(np.asarray(circuit.error_y.array), [0.02, 0.04, 0.05])
    assert circuit.mode == "lines+markers" and circuit.line.color == "#c0392b"
    np.testing.assert_allclose(finite(full), [0.95] * 3)  # a level across the sweep, dotted
    assert full.line.dash == "dot" and np.asarray(full.error_y.array).tolist() == [0.01] * 3
    assert fig.data[1].error_y.array is None
    (chance,) = fig.layout.shapes
    assert chance.y0 == chance.y1 == 0.5 and chance.line.dash == "dash"
    assert fig.layout.xaxis.type == "log" and list(fig.layout.xaxis.ticktext) == ["1%", "5%", "10%"]
    assert fig.layout.yaxis.title.text == "post-edit success" and fig.layout.xaxis.title.text.startswith("circuit")
    linear = density_sweep_figure([0.0, 0.5], {"circuit": np.array([0.5, 0.6])}, log_x=False)
    assert linear.layout.xaxis.type == "linear" and not linear.layout.shapes


def test_density_sweep_figure_errors():
    with pytest.raises(ValueError, match="one value per density"):
        density_sweep_figure([0.1, 0.2], {"circuit": [0.5]})
    with pytest.raises(ValueError, match="NaN"):
        density_sweep_figure([0.1, 0.2], {"circuit": [0.5, float("nan")]})
    with pytest.raises(ValueError, match="> 0 on a log axis"):
        density_sweep_figure([0.0, 0.2], {"circuit": [0.5, 0.6]})
    with pytest.raises(ValueError, match="1-D"):
        density_sweep_figure([[0.1, 0.2]], {"circuit": [0.5, 0.6]})
    with pytest.raises(ValueError, match="non-empty"):
        density_sweep_figure([0.1], {})
    with pytest.raises(ValueError, match=r"errors for \['random'\]"):
        density_sweep_figure([0.1], {"circuit": [0.5]}, errors={"random": [0.1]})
    with pytest.raises(ValueError, match=">= 0"):
        density_sweep_figure([0.1], {"circuit": [0.5]}, errors={"circuit": [-0.1]})


def test_jaccard_heatmap_hand_made():
    names = ["hierarchy", "agreement", "persona"]
    jac = np.array([[1.0, 0.3, 0.1], [0.3, 1.0, 0.2], [0.1, 0.2, 1.0]])
    rand = np.array([[0.2, 0.1, 0.1], [0.1, 0.2, 0.0], [0.1, 0.0, 0.2]])
    p = np.array([[0.001, 0.004, 0.5], [0.004, 0.001, 0.02], [0.5, 0.02, 0.001]])
    fig = jaccard_heatmap(names, jac, rand, p, title="overlap")
    (trace,) = fig.data
    np.testing.assert_allclose(finite(trace, "z"), jac)
    assert list(trace.x) == names and list(trace.y) == names and fig.layout.yaxis.autorange == "reversed"
    assert trace.text[0][1] == "0.30<br>rand 0.10<br>p 0.004"
    assert tuple(trace.customdata[0][1]) == (0.1, "×3.0", 0.004) and trace.customdata[1][2][1] == "random: 0"
    assert "random %{customdata[0]" in trace.hovertemplate and "p = %{customdata[2]" in trace.hovertemplate
    assert (trace.zmin, trace.zmax) == (0, 1) and fig.layout.xaxis.title.text == "task"


def test_jaccard_heatmap_of_real_overlaps(tiny_circuits):
    _, circuits = tiny_circuits
    m = overlap_matrix(circuits, n_draws=50)
    fig = jaccard_heatmap(m.names, m.jaccard, m.random_mean, m.p_value)
    z = finite(fig.data[0], "z")
    assert z.shape == (2, 2) and z[0, 0] == 1.0 and z[0, 1] == pytest.approx(m.jaccard[0, 1])
    assert fig.data[0].text[0][1].startswith(f"{m.jaccard[0, 1]:.2f}<br>rand {m.random_mean[0, 1]:.2f}")


def test_jaccard_heatmap_errors():
    ok = np.eye(2)
    with pytest.raises(ValueError, match=r"random_mean must be \[len\(names\), len\(names\)\] = \[2, 2\]"):
        jaccard_heatmap(["a", "b"], ok, np.eye(3), ok)
    with pytest.raises(ValueError, match="NaN"):
        jaccard_heatmap(["a", "b"], np.array([[1, np.nan], [np.nan, 1]]), ok, ok + 0.5)
    with pytest.raises(ValueError, match=r"lie in \[0, 1\]"):
        jaccard_heatmap(["a", "b"], ok * 2, ok, ok + 0.5)
    with pytest.raises(ValueError, match=r"p-values must lie in \(0, 1\]"):
        jaccard_heatmap(["a", "b"], ok, ok, ok)
    with pytest.raises(ValueError, match="names is empty"):
        jaccard_heatmap([], np.zeros((0, 0)), np.zeros((0, 0)), np.zeros((0, 0)))


def test_mask_training_figure():
    log_a = [
        {"step": s, "lambda": 0.1 * s, "faithfulness_loss": 0.5 / (s + 1), "density": 1 - 0.2 * s} for s in range(4)
    ]
    log_b = [{"step": 0, "density": 1.0}, {"step": 1, "density": 0.5, "faithfulness_loss": float("nan")},
             {"step": 2, "density": 0.25, "faithfulness_loss": 0.3}]  # fmt: skip
    log_c = [{"step": 0, "sparsity": 0.9}]  # neither density nor the loss: no trace
    fig = mask_training_figure({"hierarchy": log_a, "agreement": log_b, "persona": log_c}, target_density=0.2)
    assert [(t.name, t.xaxis) for t in fig.data] == [("hierarchy", "x"), ("hierarchy", "x2"), ("agreement", "x"),
                                                      ("agreement", "x2")]  # fmt: skip
    assert [t.showlegend for t in fig.data] == [True, False, True, False]
    assert fig.data[0].line.color == fig.data[1].line.color != fig.data[2].line.color
    np.testing.assert_allclose(finite(fig.data[0]), [1.0, 0.8, 0.6, 0.4])
    np.testing.assert_allclose(finite(fig.data[3], "x"), [2.0])  # the row without a loss and the NaN are left out
    np.testing.assert_allclose(finite(fig.data[3]), [0.3])
    assert fig.layout.yaxis.type == "log" and fig.layout.yaxis.title.text == "share of the block parameters"
    assert fig.layout.yaxis2.title.text == "faithfulness loss" and fig.layout.xaxis.title.text == "step"
    (target,) = fig.layout.shapes
    assert target.y0 == 0.2 and target.line.dash == "dash"
    by_lambda = mask_training_figure({"hierarchy": log_a}, loss_key="lambda")
    np.testing.assert_allclose(finite(by_lambda.data[1]), [0.0, 0.1, 0.2, 0.3])
    collapsed = mask_training_figure({"run": [{"step": 0, "density": 0.0}]})
    assert collapsed.layout.yaxis.type == "linear"  # a density of 0 has no log


def test_mask_training_figure_errors():
    with pytest.raises(ValueError, match="non-empty"):
        mask_training_figure({})
    with pytest.raises(ValueError, match="no log row holds 'step'"):
        mask_training_figure({"run": [{"density": 0.5}]})
    with pytest.raises(ValueError, match="list of dict rows"):
        mask_training_figure({"run": {"step": 0, "density": 0.5}})
    with pytest.raises(TypeError, match="not a dict"):
        mask_training_figure({"run": [3]})
