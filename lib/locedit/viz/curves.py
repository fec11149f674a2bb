"""One value per layer: :func:`layer_curve` (matplotlib, paper-style curves) and :func:`specialisation_figure`
(plotly bars per layer of decoded neurons)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from locedit.viz.style import ArrayLike, to_numpy


def layer_curve(
    series: Mapping[str, ArrayLike] | ArrayLike,
    *,
    layers: Sequence[int] | None = None,
    ylabel: str = "",
    title: str = "",
    hlines: Mapping[str, float] | None = None,
    ax=None,
    figsize: tuple[float, float] = (6.4, 3.2),
    marker: str = "o",
):
    """A paper-style line plot of one value per layer (matplotlib + seaborn styling).

    Args:
        series: one curve ([n_layers] values) or several, as ``{label: [n_layers] values}``.
        layers: x positions (default ``0..n_layers-1``).
        ylabel, title: axis label and title.
        hlines: reference levels drawn dashed, e.g. ``{"clean": 0.70, "corrupted": 0.0}``.
        ax: draw into this matplotlib Axes instead of a new figure.
        figsize: size of a new figure, inches.
        marker: line marker.

    Returns:
        The matplotlib ``Axes`` (its figure is ``ax.figure``).
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    if not isinstance(series, Mapping):
        series = {"": series}
    if ax is None:
        with sns.axes_style("whitegrid"):
            _, ax = plt.subplots(figsize=figsize, layout="constrained")
    palette = sns.color_palette("deep")
    for i, (label, values) in enumerate(series.items()):
        y = to_numpy(values).reshape(-1)
        x = np.arange(len(y)) if layers is None else np.asarray(list(layers))
        ax.plot(x, y, marker=marker, markersize=3.5, lw=1.6, color=palette[i % len(palette)], label=label or None)
    for j, (label, level) in enumerate((hlines or {}).items()):
        ax.axhline(level, ls="--", lw=1, color=palette[(len(series) + j) % len(palette)], label=label)
    ax.set_xlabel("layer")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if any(series) or hlines:
        ax.legend(frameon=False, fontsize=9, loc="center left", bbox_to_anchor=(1.01, 0.5))  # outside: no overlap
    return ax


def specialisation_figure(decodings: Sequence, threshold: float = 0.5) -> go.Figure:
    """Plotly: per layer, the median ``z1`` and the share of neurons with top-1 p > ``threshold``, one trace pair per
    decoding, with a dropdown to switch decodings (the first is shown initially).

    ``decodings`` are :class:`locedit.neurons.NeuronDecoding` objects, or anything with their ``variant`` (a label)
    and ``by_layer(threshold)`` (a table with columns ``layer``, ``median_z1`` and ``share_p1>{threshold}``).
    """
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=1, cols=2, subplot_titles=("median z1 (top-1 logit z-score)", f"share with p1 > {threshold}")
    )
    for j, dec in enumerate(decodings):
        by = dec.by_layer(threshold)
        visible = j == 0
        fig.add_trace(go.Bar(x=by.layer, y=by.median_z1, name=dec.variant, visible=visible), 1, 1)
        fig.add_trace(go.Bar(x=by.layer, y=by[f"share_p1>{threshold}"], name=dec.variant, visible=visible), 1, 2)
    buttons = [
        dict(
            label=dec.variant,
            method="update",
            args=[{"visible": [i // 2 == j for i in range(2 * len(decodings))]}],
        )
        for j, dec in enumerate(decodings)
    ]
    fig.update_layout(
        updatemenus=[dict(buttons=buttons, x=0, y=1.25, xanchor="left", yanchor="bottom")],
        showlegend=False,
        autosize=True,
        height=380,
        margin=dict(t=110),
    )
    fig.update_xaxes(title_text="layer")
    return fig
