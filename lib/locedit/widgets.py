"""ipywidgets explorers for live Jupyter.

Each explorer renders its first result when it is built, straight into its ``Output`` widget's ``outputs``, so a
notebook executed without a browser (papermill, nbclient) stores that content in the widget state and the
static book shows it; typing a new prompt needs a live kernel.
"""

from __future__ import annotations

import html

import ipywidgets as widgets
import torch
from IPython.display import HTML

from locedit.models import Model
from locedit.viz import lens_logprobs, show_token


def lens_table_html(model: Model, prompt: str, k: int = 5, target: str | None = None) -> str:
    """An HTML table of the logit lens at the prompt's last position: one row per layer, its ``k`` top tokens.

    Cells are shaded by probability. With ``target`` (one token, e.g. ``" Paris"``) two more columns give its
    probability and rank after each layer.
    """
    logprobs = lens_logprobs(model, prompt, positions=[-1])[:, 0]  # [n_layers, vocab]
    probs = logprobs.exp()
    top_p, top_i = probs.topk(k, dim=-1)
    tid = model.token_id(target) if target else None
    decode = model.tokenizer.decode

    def cell(word: str, p: float) -> str:
        shade = f"rgba(33, 113, 181, {0.08 + 0.8 * p:.2f})"
        color = "white" if p > 0.5 else "black"
        return (
            f'<td style="background:{shade};color:{color};padding:1px 6px;font-family:monospace">'
            f"{html.escape(show_token(word))} <small>{p:.2f}</small></td>"
        )

    head = "".join(f"<th>top {j + 1}</th>" for j in range(k))
    if tid is not None:
        head += f"<th>p({html.escape(show_token(target))})</th><th>rank</th>"
    rows = []
    for layer in range(probs.shape[0] - 1, -1, -1):  # top layer first, as the residual stream flows upward
        cells = "".join(cell(decode([int(i)]), float(p)) for p, i in zip(top_p[layer], top_i[layer], strict=True))
        if tid is not None:
            rank = int((logprobs[layer] > logprobs[layer, tid]).sum())
            cells += f"<td>{float(probs[layer, tid]):.3f}</td><td>{rank}</td>"
        rows.append(f'<tr><th style="text-align:right">{layer}</th>{cells}</tr>')
    tokens = " ".join(html.escape(show_token(t)) for t in model.str_tokens(prompt))
    return (
        f'<div style="font-size:12px"><p style="margin:2px 0">Logit lens at the last position of: '
        f"<code>{tokens}</code> (layer 0 at the bottom)</p>"
        f'<table style="border-collapse:collapse"><tr><th>layer</th>{head}</tr>{"".join(rows)}</table></div>'
    )


def lens_explorer(
    model: Model,
    prompt: str = "The Eiffel Tower is located in the city of",
    target: str = " Paris",
    k: int = 5,
) -> widgets.VBox:
    """A logit-lens explorer: type a prompt (and optionally a target token), press Enter or *Run lens*.

    Shows, for the prompt's last position, the ``k`` top tokens the lens reads after each layer, and the target's
    probability and rank. The initial ``prompt`` is rendered at build time, so the widget shows content even in a
    static page.

    Returns:
        ``VBox([HBox([prompt Text, target Text, Button]), Output])``; the Output's ``outputs`` hold the table.
    """
    prompt_box = widgets.Text(
        value=prompt, description="prompt", layout=widgets.Layout(width="60%"), continuous_update=False
    )
    target_box = widgets.Text(
        value=target, description="target", placeholder="e.g. ' Paris' (optional)", layout=widgets.Layout(width="25%")
    )
    button = widgets.Button(description="Run lens", button_style="primary")
    out = widgets.Output(layout=widgets.Layout(border="1px solid #ddd", padding="4px"))

    def render(*_args) -> None:
        text, tgt = prompt_box.value, target_box.value or None
        try:
            with torch.no_grad():
                body = lens_table_html(model, text, k=k, target=tgt)
        except ValueError as err:  # e.g. a multi-token target: say so instead of failing silently
            body = f'<p style="color:#b00">{html.escape(str(err))}</p>'
        out.outputs = ()
        out.append_display_data(HTML(body))

    button.on_click(render)
    prompt_box.observe(render, names="value")  # Enter / focus loss (continuous_update=False)
    render()
    return widgets.VBox([widgets.HBox([prompt_box, target_box, button]), out])
