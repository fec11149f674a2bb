"""Layer × position heat maps: :func:`layer_token_heatmap` (any [layers, positions] array: patching effects,
probabilities, ranks) and :func:`lens_heatmap` (the logit lens, the top token written in each cell)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import plotly.graph_objects as go
import torch

from locedit.models import Model
from locedit.viz.style import MODEBAR_HEIGHT, TOP_MARGIN, ArrayLike, plot_title, position_labels, show_token, to_numpy


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
    z = to_numpy(values)
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
        title=plot_title(title),
        xaxis=xaxis,
        yaxis=yaxis,
        width=width,
        autosize=width is None,
        height=height or min(max(default_h, 320), 900),
        margin={"l": 60, "r": 20, "t": TOP_MARGIN if title else MODEBAR_HEIGHT, "b": 40},
        plot_bgcolor="white",
    )
    return fig


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
