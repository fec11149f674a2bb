"""Circuits of structured units (chapter 5): what a circuit is made of, how it behaves as its density falls, how
much the circuits of two tasks overlap, and how mask training went.

* :func:`composition_figure`: per layer, the attention / MLP / norm part of one circuit (stacked bars), or the
  density of each module (lines), from the rows of :func:`locedit.circuits.composition.composition`.
* :func:`density_sweep_figure`: a score (accuracy, faithfulness, edit success) against circuit density, one curve
  per set (circuit, complement, random, full model), with standard errors and a chance line.
* :func:`jaccard_heatmap`: task × task Jaccard indices with the random expectation and the p-value in each cell.
* :func:`mask_training_figure`: density and a loss against the step for a few mask-training runs.

Like every view these draw what they are given (plain rows, arrays); they compute no circuit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from numbers import Real
from typing import Literal

import numpy as np
import plotly.graph_objects as go

from locedit.viz.style import BASELINE_COLOUR, OBSERVED_COLOUR, TOP_MARGIN, ArrayLike, plot_title, to_numpy

# seaborn's "deep" palette (the colours of layer_curve): one colour per module, then per extra series
PALETTE = ("#4c72b0", "#dd8452", "#55a868", "#8172b3", "#937860", "#da8bc3", "#8c8c8c", "#ccb974", "#64b5cd")
MODULE_COLOURS = {"attention": "#4c72b0", "mlp": "#dd8452", "norm": "#55a868"}
# the sets of the density sweep: the circuit in the "observed" red, random circuits grey, the full model black
SET_COLOURS = {"circuit": OBSERVED_COLOUR, "complement": "#4c72b0", "random": "#8c8c8c", "full model": "#222222"}
ROW_KEYS = ("layer", "module", "units", "units_total", "params", "params_total", "unit_density", "param_density")


def _colour(name: str, table: Mapping[str, str], index: int) -> str:
    return table.get(name, PALETTE[index % len(PALETTE)])


def _finite(values: np.ndarray, what: str) -> np.ndarray:
    if not np.isfinite(values).all():
        raise ValueError(f"{what} holds NaN or infinite values: drop those points (or fill them) before plotting")
    return values


def _layer_cells(rows: Sequence[Mapping]) -> tuple[list[int], list[str], dict[tuple[int, str], Mapping]]:
    """The per-layer rows of a composition: (layers, modules, (layer, module) → row), checked complete."""
    if isinstance(rows, (str, bytes, Mapping)) or not isinstance(rows, Sequence) or not rows:
        raise ValueError("rows must be the non-empty list of dict rows that composition(circuit) returns")
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise TypeError(f"row {i} is a {type(row).__name__}, not a dict: give the rows of composition(circuit)")
        missing = [key for key in ROW_KEYS if key not in row]
        if missing:
            raise ValueError(f"row {i} lacks {missing}: give the rows of composition(circuit) (all its columns)")
    per_layer = [row for row in rows if row["layer"] != "all" and row["module"] != "all"]
    if not per_layer:
        raise ValueError("the rows hold no per-layer row (only layer 'all'): use composition(circuit, by_layer=True)")
    modules = [m for m in MODULE_COLOURS if any(r["module"] == m for r in per_layer)]
    modules += list(dict.fromkeys(r["module"] for r in per_layer if r["module"] not in modules))
    cells: dict[tuple[int, str], Mapping] = {}
    for row in per_layer:
        key = (int(row["layer"]), str(row["module"]))
        if key in cells:
            raise ValueError(f"two rows for layer {key[0]}, module {key[1]!r}: give the rows of one circuit")
        cells[key] = row
    layers = sorted({layer for layer, _ in cells})
    absent = [(layer, m) for layer in layers for m in modules if (layer, m) not in cells]
    if absent:
        raise ValueError(f"no row for (layer, module) {absent[:3]}: give every row of composition(circuit)")
    return layers, modules, cells


def composition_figure(
    rows: Sequence[Mapping],
    by: Literal["units", "params"] = "units",
    mode: Literal["share", "density"] = "share",
    title: str = "",
    height: int = 380,
) -> go.Figure:
    """Plotly: what one circuit is made of, layer by layer.

    Args:
        rows: the rows of :func:`locedit.circuits.composition.composition` (``by_layer=True``): one dict per
            (layer, module) with ``layer``, ``module`` (``"attention"``, ``"mlp"``, ``"norm"``), ``units``,
            ``units_total``, ``params``, ``params_total``, ``unit_density``, ``param_density``; rows of layer
            ``"all"`` and of module ``"all"`` are ignored (the figure sums the per-layer rows itself).
        by: count units (heads, neurons, norm elements) or the parameters they own. A norm element is one
            parameter and a SmolLM2 neuron 1,728, so the two readings of "how much of the circuit is norm" differ.
        mode: ``"share"``: stacked bars, one segment per module, of the module's units (parameters) at the layer
            as a share of the whole circuit's, so the bars add up to 1 and their heights say where the circuit
            lives; ``"density"``: one line per module of the fraction of the module kept at each layer, so a
            reader sees which modules the circuit keeps at which layers.
        title: figure title; height: pixels.

    Returns:
        A figure with one trace per module (``Bar`` or ``Scatter``), x = layer; the legend gives each module's
        share of the circuit (``"share"``) or its density over all layers (``"density"``).
    """
    if by not in ("units", "params"):
        raise ValueError(f"by must be 'units' or 'params', not {by!r}")
    if mode not in ("share", "density"):
        raise ValueError(f"mode must be 'share' (stacked bars) or 'density' (lines), not {mode!r}")
    layers, modules, cells = _layer_cells(rows)
    noun = "units" if by == "units" else "parameters"
    count = {m: _finite(np.array([float(cells[(ly, m)][by]) for ly in layers]), by) for m in modules}
    total = {m: np.array([float(cells[(ly, m)][f"{by}_total"]) for ly in layers]) for m in modules}
    in_circuit = sum(c.sum() for c in count.values())
    per_layer = sum(count.values())  # [n_layers]: the circuit's units (parameters) at each layer
    fig = go.Figure()
    for i, module in enumerate(modules):
        colour = _colour(module, MODULE_COLOURS, i)
        density = _finite(np.array([float(cells[(ly, module)][f"{by[:-1]}_density"]) for ly in layers]), "density")
        layer_share = np.divide(count[module], per_layer, out=np.zeros(len(layers)), where=per_layer > 0)
        custom = np.stack([count[module], total[module], layer_share, density], axis=1)
        hover = (
            f"layer %{{x}}, {module}<br>%{{customdata[0]:,.0f}} of %{{customdata[1]:,.0f}} {noun} kept "
            f"(density %{{customdata[3]:.2%}})<br>{module}'s part of the layer's circuit %{{customdata[2]:.1%}}"
        )
        if mode == "share":
            share = count[module] / in_circuit if in_circuit else np.zeros(len(layers))
            fig.add_trace(
                go.Bar(
                    x=layers, y=share, name=f"{module}: {share.sum():.1%}", marker_color=colour, customdata=custom,
                    hovertemplate=hover + "<br>share of the circuit %{y:.2%}<extra></extra>",
                )
            )  # fmt: skip
        else:
            kept = count[module].sum() / total[module].sum() if total[module].sum() else 0.0
            fig.add_trace(
                go.Scatter(
                    x=layers, y=density, name=f"{module}: {kept:.1%} kept", mode="lines+markers",
                    line={"color": colour}, customdata=custom, hovertemplate=hover + "<extra></extra>",
                )
            )  # fmt: skip
    ytitle = f"share of the circuit's {noun}" if mode == "share" else f"share of the module's {noun} kept"
    fig.update_layout(
        title=plot_title(title), barmode="stack", height=height, legend={"title": {"text": "module"}},
        xaxis={"title": {"text": "layer"}, "dtick": 1 if len(layers) <= 16 else 2},
        yaxis={"title": {"text": ytitle}, "tickformat": ".0%", "rangemode": "tozero"},
        margin={"l": 60, "r": 20, "t": TOP_MARGIN if title else 40, "b": 50},
    )  # fmt: skip
    return fig


def _series(values: float | ArrayLike, n: int, what: str) -> np.ndarray | float:
    """A series as [n] finite floats, or one finite float (a level that does not depend on density)."""
    array = to_numpy(values)
    if array.ndim == 0:
        return float(_finite(array.reshape(1), what)[0])
    if array.shape != (n,):
        raise ValueError(f"{what} has shape {array.shape}: give one value per density ({n}) or a single number")
    return _finite(array, what)


def density_sweep_figure(
    densities: Sequence[float] | ArrayLike,
    series: Mapping[str, float | Sequence[float] | ArrayLike],
    chance: float | None = None,
    errors: Mapping[str, float | Sequence[float] | ArrayLike] | None = None,
    *,
    ylabel: str = "accuracy",
    xlabel: str = "circuit density (share of the block parameters)",
    title: str = "",
    log_x: bool = True,
    height: int = 380,
) -> go.Figure:
    """Plotly: a score against circuit density, one curve per set, e.g. the chapter's main question, "does the
    circuit resist edits?": post-edit success rate of edits inside the circuit, its complement, random circuits
    of the same density, and the full model.

    Args:
        densities: [n] circuit densities (fractions of the block parameters), > 0 when ``log_x``.
        series: name → [n] values (accuracy, faithfulness, success rate), or a single number for a set whose
            score does not depend on density (``"full model"``: drawn as a dotted level). The names
            ``"circuit"``, ``"complement"``, ``"random"`` and ``"full model"`` get fixed colours.
        chance: the chance level (0.5 for a balanced two-way task), a dashed line; ``None``: none.
        errors: name → standard errors of that series ([n], or one number for a level), drawn as error bars.
        ylabel, xlabel, title: axis titles and figure title.
        log_x: a log density axis (ticks at the given densities, as percentages), since densities span decades.
        height: pixels.

    Returns:
        A figure with one ``Scatter`` per series (in the given order), x sorted by density.
    """
    x = to_numpy(densities)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"densities must be a non-empty 1-D list of densities, got shape {x.shape}")
    _finite(x, "densities")
    if log_x and (x <= 0).any():
        raise ValueError("densities must be > 0 on a log axis: drop the density 0 or pass log_x=False")
    if not isinstance(series, Mapping) or not series:
        raise ValueError("series must be a non-empty {name: values}, e.g. {'circuit': [...], 'random': [...]}")
    errors = dict(errors or {})
    unknown = set(errors) - set(series)
    if unknown:
        raise ValueError(f"errors for {sorted(unknown)}, which are not series: name them as in series")
    order = np.argsort(x, kind="stable")
    x = x[order]
    fig = go.Figure()
    for i, (name, values) in enumerate(series.items()):
        y = _series(values, len(x), f"series {name!r}")
        err = _series(errors[name], len(x), f"errors of {name!r}") if name in errors else None
        if err is not None and (np.ndim(y) != np.ndim(err) or np.any(np.asarray(err) < 0)):
            raise ValueError(f"errors of {name!r} must be >= 0 and shaped like its series (one per density or one)")
        level = np.ndim(y) == 0
        ys = np.full(len(x), y) if level else y[order]
        es = None if err is None else (np.full(len(x), err) if level else err[order])
        colour = _colour(name, SET_COLOURS, i)
        fig.add_trace(
            go.Scatter(
                x=x, y=ys, name=name, mode="lines" if level else "lines+markers",
                line={"color": colour, "dash": "dot" if level else "solid"}, marker={"size": 7},
                error_y=None if es is None else {"type": "data", "array": es, "visible": True, "thickness": 1.2},
                hovertemplate=f"{name}<br>density %{{x:.3%}}<br>{ylabel} %{{y:.3f}}<extra></extra>",
            )
        )  # fmt: skip
    if chance is not None:
        if not math.isfinite(chance):
            raise ValueError(f"chance must be a finite level, not {chance}")
        fig.add_hline(
            y=chance, line={"color": BASELINE_COLOUR, "dash": "dash", "width": 1},
            annotation_text=f"chance {chance:g}", annotation_position="bottom right",
        )  # fmt: skip
    ticks = np.unique(x)
    xaxis = {"title": {"text": xlabel}, "type": "log" if log_x else "linear"}
    if log_x and len(ticks) <= 12:
        xaxis |= {"tickmode": "array", "tickvals": list(ticks), "ticktext": [f"{100 * t:.3g}%" for t in ticks]}
    fig.update_layout(
        title=plot_title(title), height=height, xaxis=xaxis, yaxis={"title": {"text": ylabel}},
        legend={"title": {"text": "set"}}, margin={"l": 60, "r": 20, "t": TOP_MARGIN if title else 40, "b": 50},
    )  # fmt: skip
    return fig


def jaccard_heatmap(
    names: Sequence[str],
    jaccard: ArrayLike,
    random_mean: ArrayLike,
    p_values: ArrayLike,
    title: str = "",
    height: int | None = None,
) -> go.Figure:
    """Plotly: task × task Jaccard indices of circuits, each cell also giving the random expectation and the
    p-value (``OverlapMatrix.jaccard``, ``.random_mean``, ``.p_value`` of :mod:`locedit.circuits.composition`).

    Args:
        names: the n tasks (circuits), in the order of the matrices' rows.
        jaccard: [n, n] observed Jaccard indices in [0, 1].
        random_mean: [n, n] mean Jaccard of random circuits of the same sizes, in [0, 1].
        p_values: [n, n] p-values in (0, 1].
        title: figure title; height: pixels (default from n).

    Returns:
        A figure with one ``Heatmap`` (z = ``jaccard``, rows top to bottom in the order of ``names``), the cells
        written "J / rand / p" and the hover giving the ratio to the random expectation.
    """
    names = [str(name) for name in names]
    n = len(names)
    if n == 0:
        raise ValueError("names is empty: give the tasks whose circuits are compared")
    grids = {}
    for what, values in (("jaccard", jaccard), ("random_mean", random_mean), ("p_values", p_values)):
        grid = to_numpy(values)
        if grid.shape != (n, n):
            raise ValueError(f"{what} must be [len(names), len(names)] = [{n}, {n}], got shape {grid.shape}")
        grids[what] = _finite(grid, what)
    observed, expected, p = grids["jaccard"], grids["random_mean"], grids["p_values"]
    if ((observed < 0) | (observed > 1) | (expected < 0) | (expected > 1)).any():
        raise ValueError("Jaccard indices (observed and random) must lie in [0, 1]")
    if ((p <= 0) | (p > 1)).any():
        raise ValueError("p-values must lie in (0, 1]")
    text = np.empty((n, n), dtype=object)
    custom = np.empty((n, n, 3), dtype=object)  # random mean, observed / random, p
    for i in range(n):
        for j in range(n):
            text[i, j] = f"{observed[i, j]:.2f}<br>rand {expected[i, j]:.2f}<br>p {p[i, j]:.2g}"
            ratio = f"×{observed[i, j] / expected[i, j]:.1f}" if expected[i, j] > 0 else "random: 0"
            custom[i, j] = (float(expected[i, j]), ratio, float(p[i, j]))
    fig = go.Figure(
        go.Heatmap(
            z=observed, x=names, y=names, text=text, texttemplate="%{text}", textfont={"size": 11},
            customdata=custom, colorscale="Blues", zmin=0, zmax=1, xgap=2, ygap=2,
            colorbar={"title": {"text": "Jaccard"}},
            hovertemplate="%{y} vs %{x}<br>Jaccard %{z:.3f}<br>random %{customdata[0]:.3f} "
            "(observed %{customdata[1]})<br>p = %{customdata[2]:.2g}<extra></extra>",
        )
    )  # fmt: skip
    fig.update_layout(
        title=plot_title(title), height=height or min(max(160 + 90 * n, 320), 800),
        xaxis={"title": {"text": "task"}}, yaxis={"title": {"text": "task"}, "autorange": "reversed"},
        margin={"l": 80, "r": 20, "t": TOP_MARGIN if title else 40, "b": 50}, plot_bgcolor="white",
    )  # fmt: skip
    return fig


def _log_points(rows: Sequence[Mapping], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of the rows holding a finite ``step`` and ``key``."""
    points = []
    for row in rows:
        if not isinstance(row, Mapping):
            raise TypeError(f"a log row is a {type(row).__name__}, not a dict: give LearnedCircuit.log")
        step, value = row.get("step"), row.get(key)
        if isinstance(step, Real) and isinstance(value, Real) and math.isfinite(value):
            points.append((float(step), float(value)))
    return [s for s, _ in points], [v for _, v in points]


def mask_training_figure(
    logs: Mapping[str, Sequence[Mapping]],
    loss_key: str = "faithfulness_loss",
    target_density: float | None = None,
    title: str = "",
    height: int = 360,
) -> go.Figure:
    """Plotly: mask training runs, the circuit's density (left) and a loss (right) against the step.

    Args:
        logs: run name → its log (``LearnedCircuit.log``): one dict per step with ``step``, ``density`` and
            ``loss_key``. A run whose rows lack a key gets no trace in that panel, and rows with a missing or
            non-finite value are left out of it, so partial logs still draw.
        loss_key: the log column of the right panel (``"faithfulness_loss"``, ``"sparsity"``, ``"lambda"``).
        target_density: the density the runs stop at, a dashed line; ``None``: none.
        title: figure title; height: pixels.

    Returns:
        A figure with two panels; each run has one colour and up to two ``Scatter`` traces (density, loss) in
        one legend group. The density axis is logarithmic when every density drawn is > 0.
    """
    from plotly.subplots import make_subplots

    if not isinstance(logs, Mapping) or not logs:
        raise ValueError("logs must be a non-empty {run name: list of log rows}, e.g. {'hierarchy': learned.log}")
    loss_label = loss_key.replace("_", " ")
    fig = make_subplots(rows=1, cols=2, subplot_titles=("circuit density", loss_label), horizontal_spacing=0.14)
    densities: list[float] = []
    for i, (name, rows) in enumerate(logs.items()):
        if isinstance(rows, (str, bytes, Mapping)) or not isinstance(rows, Sequence):
            raise ValueError(f"the log of {name!r} must be a list of dict rows, not a {type(rows).__name__}")
        colour = PALETTE[i % len(PALETTE)]
        shown = False
        for col, key in ((1, "density"), (2, loss_key)):
            steps, values = _log_points(rows, key)
            if not steps:
                continue
            if key == "density":
                densities += values
            fig.add_trace(
                go.Scatter(
                    x=steps, y=values, name=name, legendgroup=name, showlegend=not shown, mode="lines",
                    line={"color": colour}, hovertemplate=f"{name}<br>step %{{x}}<br>{key} %{{y:.4g}}<extra></extra>",
                ),
                1, col,
            )  # fmt: skip
            shown = True
    if not fig.data:
        raise ValueError(f"no log row holds 'step' with 'density' or {loss_key!r}: give LearnedCircuit.log rows")
    if target_density is not None:
        fig.add_hline(
            y=target_density, line={"color": BASELINE_COLOUR, "dash": "dash", "width": 1}, row=1, col=1,
            annotation_text=f"target {target_density:.2%}", annotation_position="bottom left",
        )  # fmt: skip
    log_y = bool(densities) and min(densities) > 0 and (target_density is None or target_density > 0)
    fig.update_yaxes(title_text="share of the block parameters", type="log" if log_y else "linear", row=1, col=1)
    fig.update_yaxes(title_text=loss_label, row=1, col=2)
    fig.update_xaxes(title_text="step")
    fig.update_layout(
        title=plot_title(title), height=height, legend={"title": {"text": "run"}},
        margin={"l": 60, "r": 20, "t": TOP_MARGIN if title else 50, "b": 50},
    )  # fmt: skip
    return fig
