"""Attention heads and head circuits (chapter 4): attention rows and patterns of chosen heads, and the overlap of
two head circuits against random sets of the same sizes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from locedit.viz.heatmaps import layer_token_heatmap
from locedit.viz.style import (
    BASELINE_COLOUR,
    OBSERVED_COLOUR,
    TOP_MARGIN,
    ArrayLike,
    plot_title,
    position_labels,
    to_numpy,
)


def _head_label(head: Sequence[int]) -> str:
    return f"{int(head[0])}.{int(head[1])}"


def attention_rows_figure(
    rows: ArrayLike,
    tokens: Sequence[str],
    heads: Sequence[Sequence[int]],
    title: str = "",
    query: str = "END",
    marks: Mapping[int, str] | None = None,
) -> go.Figure:
    """Plotly: the attention of several heads from one query position over the prompt's tokens, one row per head.

    Args:
        rows: [n_heads_shown, seq] attention probabilities (each row from the query position of ``heads[i]``).
        tokens: the prompt's ``seq`` token strings (labelled ``"<pos> <token>"``).
        heads: the (layer, head) of each row, labelled ``"L.H"``.
        title: figure title.
        query: what the query position is, for the hover text (``"END"``, ``"S2"``).
        marks: {position: role} written above the columns (``{3: "IO", 5: "S1"}``), to read the pattern by role.
    """
    z = to_numpy(rows)
    if z.ndim != 2 or z.shape[0] != len(heads) or z.shape[1] != len(tokens):
        raise ValueError(f"rows must be [len(heads)={len(heads)}, len(tokens)={len(tokens)}], got shape {z.shape}")
    labels = position_labels(tokens)
    if marks:
        labels = [f"{lab} ({marks[i]})" if i in marks else lab for i, lab in enumerate(labels)]
    fig = layer_token_heatmap(
        z, labels, title=title, colorbar="attention", layers=range(len(heads)), label_tokens=False,
        layer_axis="head", token_axis="key", colorscale="Blues", zmin=0, zmax=1, value_format=".2f",
        hover=[[f"query: {query}"] * z.shape[1]] * z.shape[0], height=170 + 26 * len(heads),
    )  # fmt: skip
    fig.update_yaxes(ticktext=[_head_label(h) for h in heads], tickvals=list(range(len(heads))), autorange="reversed")
    return fig


def attention_matrices_figure(
    patterns: ArrayLike, tokens: Sequence[str], heads: Sequence[Sequence[int]], title: str = ""
) -> go.Figure:
    """Plotly: whole attention patterns (query × key) of up to 3 heads side by side, with a shared colour scale.

    ``patterns`` [n_heads_shown, seq, seq] (rows: queries, columns: keys); ``tokens`` the ``seq`` token strings;
    ``heads`` the (layer, head) of each panel.
    """
    from plotly.subplots import make_subplots

    z = to_numpy(patterns)
    if z.ndim != 3 or z.shape[0] != len(heads) or z.shape[1:] != (len(tokens), len(tokens)):
        raise ValueError(f"patterns must be [len(heads), seq, seq] with seq = {len(tokens)}, got shape {z.shape}")
    if not 1 <= len(heads) <= 3:
        raise ValueError(f"show 1 to 3 heads (a narrow column fits no more), got {len(heads)}")
    labels = position_labels(tokens)
    fig = make_subplots(rows=1, cols=len(heads), subplot_titles=[f"head {_head_label(h)}" for h in heads])
    for j in range(len(heads)):
        fig.add_trace(
            go.Heatmap(
                z=z[j], x=labels, y=labels, colorscale="Blues", zmin=0, zmax=1, showscale=j == 0,
                colorbar={"title": {"text": "attention"}, "len": 0.8},
                hovertemplate="query %{y}<br>key %{x}<br>attention %{z:.2f}<extra></extra>",
            ),
            1, j + 1,
        )  # fmt: skip
    fig.update_xaxes(showticklabels=len(tokens) <= 12, tickangle=-60, title_text="key")
    fig.update_yaxes(autorange="reversed", showticklabels=False)
    fig.update_yaxes(title_text="query", row=1, col=1)
    fig.update_layout(title=plot_title(title), height=360, margin={"l": 50, "r": 20, "t": TOP_MARGIN, "b": 40})
    return fig


def overlap_figure(
    null: ArrayLike, observed: int, expected: float, title: str = "", observed_label: str = "observed"
) -> go.Figure:
    """Plotly: the distribution of the overlap of random head sets (a histogram of ``null``, [n_draws] integers) with
    the observed overlap and the expected one marked."""
    counts = to_numpy(null).astype(int).reshape(-1)
    if counts.size == 0:
        raise ValueError("null is empty: give the overlaps of the random draws")
    top = max(int(counts.max()), int(observed))
    share = np.bincount(counts, minlength=top + 1) / counts.size
    fig = go.Figure(
        go.Bar(
            x=list(range(top + 1)), y=share, name="random sets", marker_color="#9ecae1",
            hovertemplate="overlap %{x}: %{y:.3f} of random draws<extra></extra>",
        )
    )  # fmt: skip
    fig.add_vline(
        x=observed, line={"color": OBSERVED_COLOUR, "width": 3}, annotation_text=f"{observed_label} {observed}"
    )
    fig.add_vline(
        x=expected, line={"color": BASELINE_COLOUR, "dash": "dash"}, annotation_text=f"expected {expected:.1f}",
        annotation_position="bottom right",
    )  # fmt: skip
    fig.update_layout(
        title=plot_title(title), xaxis_title="heads in both circuits", yaxis_title="share of random draws",
        height=340, showlegend=False, margin={"l": 60, "r": 20, "t": TOP_MARGIN, "b": 50},
    )  # fmt: skip
    return fig


def overlap_sweep_figure(
    fractions: Sequence[float],
    observed: ArrayLike,
    expected: ArrayLike,
    low: ArrayLike,
    high: ArrayLike,
    title: str = "",
) -> go.Figure:
    """Plotly: the observed overlap of two circuits against the fraction k of heads kept per stage, beside the
    overlap of random sets of the same sizes (its mean ``expected`` and a band ``low``..``high``, e.g. the 2.5 and
    97.5 percentiles); all [len(fractions)]."""
    x = [100 * f for f in fractions]
    arrays = [to_numpy(a).reshape(-1) for a in (observed, expected, low, high)]
    if any(len(a) != len(x) for a in arrays):
        raise ValueError(f"observed, expected, low and high need one value per fraction ({len(x)})")
    obs, exp, lo, hi = arrays
    fig = go.Figure()
    band = go.Scatter(
        x=x + x[::-1], y=list(hi) + list(lo[::-1]), fill="toself", fillcolor="rgba(150,150,150,0.25)",
        line={"width": 0}, name="random (95%)", hoverinfo="skip",
    )  # fmt: skip
    fig.add_trace(band)
    fig.add_trace(
        go.Scatter(x=x, y=exp, mode="lines", line={"dash": "dash", "color": BASELINE_COLOUR}, name="random (mean)")
    )
    fig.add_trace(go.Scatter(x=x, y=obs, mode="lines+markers", line={"color": OBSERVED_COLOUR}, name="observed"))
    fig.update_layout(
        title=plot_title(title), xaxis_title="k: % of heads kept per stage", yaxis_title="heads in both circuits",
        height=360, legend={"orientation": "h", "y": -0.25}, margin={"l": 60, "r": 20, "t": TOP_MARGIN, "b": 60},
    )  # fmt: skip
    return fig
