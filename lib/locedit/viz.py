"""The figures the chapters share.

Two kinds, as the design asks:

* **plotly** for large grids a reader wants to hover and zoom in the static book: :func:`layer_token_heatmap`
  (any [layers, positions] array: patching effects, probabilities, ranks), :func:`lens_heatmap` (the logit
  lens, top token written in each cell) and :func:`specialisation_figure` (decoded neurons, per layer).
* **matplotlib** for paper-style static curves: :func:`layer_curve` (one value per layer, several series).

One convention everywhere: **layers run up the y axis** (layer 0 at the bottom, as the residual stream flows up
through the blocks) and **positions run along the x axis** in reading order, labelled ``"<position> <token>"``
with a leading space shown as ``␣`` so ``" Paris"`` and ``"Paris"`` differ on screen. Pass ``layers_on="x"`` to
transpose (ROME's causal-tracing figures put tokens on the y axis); hover text is the same either way.

Views compute nothing: they draw the numbers a method module returns (the lens's log-probabilities, a neuron
decoding) and import no method module, only :mod:`locedit.models` for the ``Model`` type.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import torch

from locedit.models import Model

ArrayLike = torch.Tensor | np.ndarray | Sequence[Sequence[float]]

# The plotly toolbar (modebar) sits in the top-right corner of a figure, about 30 px high: titles go below it,
# just above the plot area, and figures take the width of the page column (autosize). Every plotly figure made
# after `import locedit.viz` uses these settings (template "plotly+locedit"), the chapters' own figures too.
MODEBAR_HEIGHT = 32
TOP_MARGIN = 80  # modebar, two title lines, a gap
TITLE_CHARS = 70  # a title line that fits a ~680 px column
_TITLE_PLACE = {
    "x": 0,
    "xref": "paper",
    "xanchor": "left",
    "y": 1,
    "yref": "paper",
    "yanchor": "bottom",
    "pad": {"b": 8},
}
pio.templates["locedit"] = go.layout.Template(
    layout={"title": _TITLE_PLACE, "margin": {"t": TOP_MARGIN}, "autosize": True}
)
if pio.templates.default in ("plotly", None):
    pio.templates.default = "plotly+locedit"


def show_token(token: str) -> str:
    """A token made visible: spaces as ``␣``, newlines and tabs escaped (``" Paris"`` → ``"␣Paris"``)."""
    return token.replace(" ", "␣").replace("\n", "\\n").replace("\t", "\\t") or "∅"


def position_labels(tokens: Sequence[str], positions: Sequence[int] | None = None) -> list[str]:
    """Axis labels ``"<position> <token>"`` for a prompt's tokens (unique even when a token repeats).

    ``positions`` gives each token's position in the prompt when ``tokens`` is a selection (default ``0, 1, …``).
    """
    positions = range(len(tokens)) if positions is None else positions
    return [f"{i} {show_token(t)}" for i, t in zip(positions, tokens, strict=True)]


def _to_numpy(values: ArrayLike) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().float().cpu().numpy()
    return np.asarray(values, dtype=float)


def layer_token_heatmap(
    values: ArrayLike,
    tokens: Sequence[str],
    title: str = "",
    colorbar: str = "",
    *,
    layers: Sequence[int] | None = None,
    positions: Sequence[int] | None = None,
    text: Sequence[Sequence[str]] | None = None,
    hover: Sequence[Sequence[str]] | None = None,
    layers_on: Literal["y", "x"] = "y",
    token_axis: str = "token",
    layer_axis: str = "layer",
    colorscale: str = "Blues",
    zmin: float | None = None,
    zmax: float | None = None,
    zmid: float | None = None,
    label_tokens: bool = True,
    value_format: str = ".3f",
    width: int | None = None,
    height: int | None = None,
) -> go.Figure:
    """An interactive heat map of one value per (layer, position).

    Args:
        values: [n_layers, seq] (a tensor, array or nested list); row ``i`` belongs to ``layers[i]``.
        tokens: the ``seq`` labels of the second axis: a prompt's token strings (shown as ``"<pos> <token>"``), or
            any labels (heads, neurons) with ``label_tokens=False`` (shown as given).
        title: figure title.
        colorbar: what the colour measures, e.g. ``"p(' Paris')"``.
        layers: the layer number of each row (default ``0..n_layers-1``), e.g. ``range(0, 30, 2)`` for a sweep
            over every other layer.
        positions: the prompt position of each column when ``tokens`` is a selection of the prompt's tokens
            (default ``0..seq-1``); only used in the labels.
        text: [n_layers, seq] strings written in the cells (e.g. the lens's top token); ``None`` writes nothing.
        hover: [n_layers, seq] extra hover lines per cell (HTML ``<br>`` allowed), shown under layer/token/value.
        layers_on: ``"y"`` (default: layers up the y axis, positions along x) or ``"x"`` (transposed).
        token_axis, layer_axis: axis titles.
        colorscale, zmin, zmax, zmid: plotly colour settings (``zmid=0`` with ``"RdBu"`` for signed effects).
        label_tokens: label the second axis ``"<pos> <token>"`` (``True``) or with ``tokens`` verbatim.
        value_format: d3 format of the value in the hover text.
        width, height: pixels; by default the width follows the page column (autosize) and the height the grid.

    Returns:
        A ``plotly.graph_objects.Figure`` with one ``Heatmap`` trace whose ``z`` has shape [n_layers, seq]
        (``layers_on="y"``) or [seq, n_layers] (``layers_on="x"``).
    """
    z = _to_numpy(values)
    if z.ndim != 2:
        raise ValueError(f"values must be 2-D [n_layers, seq], got shape {z.shape}")
    n_rows, n_cols = z.shape
    if len(tokens) != n_cols:
        raise ValueError(f"values has {n_cols} columns but {len(tokens)} tokens were given")
    layers = list(range(n_rows)) if layers is None else [int(layer) for layer in layers]
    if len(layers) != n_rows:
        raise ValueError(f"values has {n_rows} rows but {len(layers)} layer numbers were given")
    if positions is not None and len(positions) != n_cols:
        raise ValueError(f"values has {n_cols} columns but {len(positions)} positions were given")
    labels = position_labels(tokens, positions) if label_tokens else [str(t) for t in tokens]
    for name, grid in (("text", text), ("hover", hover)):
        if grid is not None and (len(grid) != n_rows or any(len(row) != n_cols for row in grid)):
            raise ValueError(f"{name} must have the shape of values, [{n_rows}, {n_cols}]")

    # customdata per cell: [layer, token label, extra hover]
    custom = np.empty((n_rows, n_cols, 3), dtype=object)
    for i, layer in enumerate(layers):
        for j, label in enumerate(labels):
            custom[i, j] = (layer, label, hover[i][j] if hover is not None else "")
    cells = np.array(text, dtype=object) if text is not None else None
    hovertemplate = (
        f"{layer_axis} %{{customdata[0]}}<br>{token_axis} %{{customdata[1]}}<br>"
        f"{colorbar or 'value'} = %{{z:{value_format}}}<br>%{{customdata[2]}}<extra></extra>"
    )
    layer_idx, col_idx = np.arange(n_rows), np.arange(n_cols)
    if layers_on == "y":
        x, y, zz, cd = col_idx, layer_idx, z, custom
        tt = cells
    elif layers_on == "x":
        x, y, zz, cd = layer_idx, col_idx, z.T, custom.transpose(1, 0, 2)
        tt = cells.T if cells is not None else None
    else:
        raise ValueError(f"layers_on must be 'y' or 'x', not {layers_on!r}")

    heatmap = go.Heatmap(
        z=zz,
        x=x,
        y=y,
        customdata=cd,
        hovertemplate=hovertemplate,
        colorscale=colorscale,
        zmin=zmin,
        zmax=zmax,
        zmid=zmid,
        colorbar={"title": {"text": colorbar}} if colorbar else None,
        xgap=1,
        ygap=1,
    )
    if tt is not None:
        heatmap.update(text=tt, texttemplate="%{text}", textfont={"size": 10})
    fig = go.Figure(heatmap)

    layer_ticks = {"tickmode": "array", "tickvals": list(layer_idx), "ticktext": [str(v) for v in layers]}
    token_ticks = {"tickmode": "array", "tickvals": list(col_idx), "ticktext": labels}
    if layers_on == "y":
        xaxis = {"title": {"text": token_axis}, "tickangle": -45, "side": "bottom", **token_ticks}
        yaxis = {"title": {"text": layer_axis}, **layer_ticks}
        # long layer stacks: show every other layer tick so labels do not overlap
        if n_rows > 16:
            yaxis["tickvals"], yaxis["ticktext"] = yaxis["tickvals"][::2], yaxis["ticktext"][::2]
        default_h = 140 + 22 * n_rows
    else:
        xaxis = {"title": {"text": layer_axis}, **layer_ticks}
        yaxis = {"title": {"text": token_axis}, "autorange": "reversed", **token_ticks}  # reading order downwards
        default_h = 140 + 26 * n_cols
    # the width follows the page column (autosize): a fixed width would overflow a narrow column
    fig.update_layout(
        title=_title(title),
        xaxis=xaxis,
        yaxis=yaxis,
        width=width,
        autosize=width is None,
        height=height or min(max(default_h, 320), 900),
        margin={"l": 60, "r": 20, "t": TOP_MARGIN if title else MODEBAR_HEIGHT, "b": 40},
        plot_bgcolor="white",
    )
    return fig


def _title(text: str, width: int = TITLE_CHARS) -> dict:
    """A title placed just above the plot area, under the modebar, so the toolbar never covers it; wrapped onto
    lines of at most ``width`` characters (plotly does not wrap titles, and a long one runs off the figure)."""
    if "<br>" not in text and len(text) > width:
        text = "<br>".join(textwrap.wrap(text, width, break_long_words=False))
    return {"text": text, **_TITLE_PLACE}


def lens_heatmap(
    model: Model,
    prompt: str,
    logprobs: torch.Tensor,
    *,
    target: str | None = None,
    k: int = 5,
    positions: Sequence[int] | slice | None = None,
    layers: Sequence[int] | None = None,
    max_chars: int = 8,
    layers_on: Literal["y", "x"] = "y",
    title: str | None = None,
    **kwargs,
) -> go.Figure:
    """The logit lens of ``prompt`` as a heat map: each cell writes the lens's top token after a block.

    The colour is the top token's probability, or, with ``target`` (e.g. ``" Paris"``, one token), that token's
    probability, so the reader sees where the answer appears. Hovering a cell lists the lens's ``k`` most likely
    tokens (and the target's rank).

    Args:
        model: the model (its tokenizer names the tokens; nothing is run).
        prompt: one prompt.
        logprobs: the prompt's lens log-probabilities, either at every position, [n_layers, seq, vocab] (from
            :func:`locedit.lens.logit_lens`), or at the shown ``positions`` only, in their order,
            [n_layers, len(positions), vocab] (from :func:`locedit.lens.lens_logprobs`, which unembeds nothing
            else). When ``len(positions) == seq`` the tensor is read as covering every position.
        target: a single-token string whose probability colours the cells; ``None`` colours by the top-1 probability.
        k: tokens listed in the hover text.
        positions: which positions to show (default all), e.g. ``slice(-6, None)`` for the last six.
        layers: which layers to show (default all).
        max_chars: cell text is cut to this many characters (hover shows the whole token).
        layers_on, title, **kwargs: passed to :func:`layer_token_heatmap`.

    Returns:
        A plotly figure of [len(layers), len(positions)] cells.
    """
    tokens = model.str_tokens(prompt)
    seq = len(tokens)
    pos = list(range(seq))[positions] if isinstance(positions, slice) else list(positions or range(seq))
    pos = [p % seq for p in pos]
    layer_list = list(range(model.spec.n_layers)) if layers is None else list(layers)
    n_layers = model.spec.n_layers
    if logprobs.ndim != 3 or logprobs.shape[0] != n_layers or logprobs.shape[1] not in (seq, len(pos)):
        raise ValueError(
            f"logprobs must be [n_layers, seq, vocab] = [{n_layers}, {seq}, vocab] or cover the shown positions, "
            f"[{n_layers}, {len(pos)}, vocab]; got {list(logprobs.shape)}"
        )
    lp = logprobs[layer_list]  # [L, seq or P, vocab]
    if logprobs.shape[1] == seq:
        lp = lp[:, pos]
    probs = lp.exp()
    top_p, top_i = probs.topk(k, dim=-1)  # [L, P, k]
    decode = model.tokenizer.decode
    words = [[[decode([int(i)]) for i in cell] for cell in row] for row in top_i]

    text = [[show_token(cell[0])[:max_chars] for cell in row] for row in words]
    hover_lines = [
        [
            "<br>".join(f"{show_token(w)}  {p:.3f}" for w, p in zip(cell_words, cell_p.tolist(), strict=True))
            for cell_words, cell_p in zip(row_words, row_p, strict=True)
        ]
        for row_words, row_p in zip(words, top_p, strict=True)
    ]
    if target is not None:
        tid = model.token_id(target)
        values = probs[..., tid]
        ranks = (lp > lp[..., tid : tid + 1]).sum(-1)  # [L, P]
        hover_lines = [
            [f"rank of {show_token(target)}: {int(r)}<br>top {k}:<br>{h}" for h, r in zip(hrow, rrow, strict=True)]
            for hrow, rrow in zip(hover_lines, ranks, strict=True)
        ]
        colorbar = f"p({show_token(target)})"
    else:
        values = top_p[..., 0]
        hover_lines = [[f"top {k}:<br>{h}" for h in hrow] for hrow in hover_lines]
        colorbar = "p(top token)"
    kwargs.setdefault("zmin", 0.0)
    kwargs.setdefault("zmax", 1.0)
    return layer_token_heatmap(
        values,
        [tokens[p] for p in pos],
        title if title is not None else f"Logit lens: {prompt!r}",
        colorbar,
        layers=layer_list,
        positions=pos,
        text=text,
        hover=hover_lines,
        layers_on=layers_on,
        layer_axis="after block",
        token_axis="position",
        **kwargs,
    )


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
        y = _to_numpy(values).reshape(-1)
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
    z = _to_numpy(rows)
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

    z = _to_numpy(patterns)
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
    fig.update_layout(title=_title(title), height=360, margin={"l": 50, "r": 20, "t": TOP_MARGIN, "b": 40})
    return fig


def overlap_figure(
    null: ArrayLike, observed: int, expected: float, title: str = "", observed_label: str = "observed"
) -> go.Figure:
    """Plotly: the distribution of the overlap of random head sets (a histogram of ``null``, [n_draws] integers) with
    the observed overlap and the expected one marked."""
    counts = _to_numpy(null).astype(int).reshape(-1)
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
    fig.add_vline(x=observed, line={"color": "#c0392b", "width": 3}, annotation_text=f"{observed_label} {observed}")
    fig.add_vline(x=expected, line={"color": "#555", "dash": "dash"}, annotation_text=f"expected {expected:.1f}",
                  annotation_position="bottom right")  # fmt: skip
    fig.update_layout(
        title=_title(title), xaxis_title="heads in both circuits", yaxis_title="share of random draws",
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
    arrays = [_to_numpy(a).reshape(-1) for a in (observed, expected, low, high)]
    if any(len(a) != len(x) for a in arrays):
        raise ValueError(f"observed, expected, low and high need one value per fraction ({len(x)})")
    obs, exp, lo, hi = arrays
    fig = go.Figure()
    band = go.Scatter(
        x=x + x[::-1], y=list(hi) + list(lo[::-1]), fill="toself", fillcolor="rgba(150,150,150,0.25)",
        line={"width": 0}, name="random (95%)", hoverinfo="skip",
    )  # fmt: skip
    fig.add_trace(band)
    fig.add_trace(go.Scatter(x=x, y=exp, mode="lines", line={"dash": "dash", "color": "#555"}, name="random (mean)"))
    fig.add_trace(go.Scatter(x=x, y=obs, mode="lines+markers", line={"color": "#c0392b"}, name="observed"))
    fig.update_layout(
        title=_title(title), xaxis_title="k: % of heads kept per stage", yaxis_title="heads in both circuits",
        height=360, legend={"orientation": "h", "y": -0.25}, margin={"l": 60, "r": 20, "t": TOP_MARGIN, "b": 60},
    )  # fmt: skip
    return fig
