"""The conventions every figure follows: the plotly template (titles under the modebar, the page column's width),
token labels, array conversion and wrapped titles."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import torch

ArrayLike = torch.Tensor | np.ndarray | Sequence[Sequence[float]]

# Colours shared by the figures: a method's observed value in red, a random / expected baseline in grey (dashed).
OBSERVED_COLOUR = "#c0392b"
BASELINE_COLOUR = "#555"

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


def to_numpy(values: ArrayLike) -> np.ndarray:
    """``values`` (a tensor, array or nested list) as a float numpy array of the same shape (tensors detached)."""
    if isinstance(values, torch.Tensor):
        return values.detach().float().cpu().numpy()
    return np.asarray(values, dtype=float)


def plot_title(text: str, width: int = TITLE_CHARS) -> dict:
    """A title placed just above the plot area, under the modebar, so the toolbar never covers it; wrapped onto
    lines of at most ``width`` characters (plotly does not wrap titles, and a long one runs off the figure)."""
    if "<br>" not in text and len(text) > width:
        text = "<br>".join(textwrap.wrap(text, width, break_long_words=False))
    return {"text": text, **_TITLE_PLACE}
