"""The figures the chapters share.

Two kinds, as the design asks:

* **plotly** for large grids a reader wants to hover and zoom in the static book: :func:`layer_token_heatmap`
  (any [layers, positions] array: patching effects, probabilities, ranks), :func:`lens_heatmap` (the logit
  lens, top token written in each cell), :func:`specialisation_figure` (decoded neurons, per layer), the head
  figures of chapter 4 and the unit-circuit figures of chapter 5.
* **matplotlib** for paper-style static curves: :func:`layer_curve` (one value per layer, several series).

One convention everywhere: **layers run up the y axis** (layer 0 at the bottom, as the residual stream flows up
through the blocks) and **positions run along the x axis** in reading order, labelled ``"<position> <token>"``
with a leading space shown as ``␣`` so ``" Paris"`` and ``"Paris"`` differ on screen. Pass ``layers_on="x"`` to
transpose (ROME's causal-tracing figures put tokens on the y axis); hover text is the same either way.

Views compute nothing: they draw the numbers a method module returns (the lens's log-probabilities, a neuron
decoding, the rows of a circuit's composition) and import no method module, only :mod:`locedit.models` for the
``Model`` type.

Modules: :mod:`~locedit.viz.style` (the plotly template, token labels, titles, colours), :mod:`~locedit.viz.heatmaps`
(layer × position grids), :mod:`~locedit.viz.curves` (one value per layer), :mod:`~locedit.viz.heads` (attention
heads and head circuits, chapter 4), :mod:`~locedit.viz.unit_circuits` (circuits of neurons, heads and norm
elements, chapter 5). Every figure is importable from ``locedit.viz``.
"""

from locedit.viz.curves import layer_curve, specialisation_figure
from locedit.viz.heads import attention_matrices_figure, attention_rows_figure, overlap_figure, overlap_sweep_figure
from locedit.viz.heatmaps import layer_token_heatmap, lens_heatmap
from locedit.viz.style import (
    MODEBAR_HEIGHT,
    TITLE_CHARS,
    TOP_MARGIN,
    plot_title,
    position_labels,
    show_token,
    to_numpy,
)
from locedit.viz.unit_circuits import composition_figure, density_sweep_figure, jaccard_heatmap, mask_training_figure

__all__ = [
    "MODEBAR_HEIGHT",
    "TITLE_CHARS",
    "TOP_MARGIN",
    "attention_matrices_figure",
    "attention_rows_figure",
    "composition_figure",
    "density_sweep_figure",
    "jaccard_heatmap",
    "layer_curve",
    "layer_token_heatmap",
    "lens_heatmap",
    "mask_training_figure",
    "overlap_figure",
    "overlap_sweep_figure",
    "plot_title",
    "position_labels",
    "show_token",
    "specialisation_figure",
    "to_numpy",
]
