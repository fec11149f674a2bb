"""ipywidgets explorers for live Jupyter.

Each explorer renders its first result when it is built, straight into its ``Output`` widget's ``outputs``, so a
notebook executed without a browser (papermill, nbclient) stores that content in the widget state and the
static book shows it; typing a new prompt needs a live kernel.
"""

from __future__ import annotations

import html
import json

import ipywidgets as widgets
import plotly.io as pio
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


def rome_explorer(model: Model, facts: list[dict], hparams, noise: float, samples: int = 2) -> widgets.VBox:
    """Pick (or type) a fact, trace it, type a new object, edit it with ROME, compare generations before and after.

    ``facts`` are CounterFact records (their prompts fill the picker); ``hparams`` is a
    :class:`~locedit.editing.ROMEHyperParams`; ``noise`` is the trace's ν; ``samples`` its noise draws (the trace
    restores the MLP windows only, to stay interactive). The first fact is rendered at build time. Every edit is
    reverted when its comparison is done.

    Returns:
        ``VBox([picker, HBox([prompt, subject, new object]), HBox([buttons]), Output])``.
    """
    from locedit.editing import rome
    from locedit.evaluation import generate, target_prob
    from locedit.tracing import causal_trace
    from locedit.viz import layer_token_heatmap

    texts = [r["requested_rewrite"]["prompt"].format(r["requested_rewrite"]["subject"]) for r in facts]
    options = [(text, i) for i, text in enumerate(texts)]
    picker = widgets.Dropdown(options=options, description="fact", layout=widgets.Layout(width="70%"))
    prompt_box = widgets.Text(description="prompt", layout=widgets.Layout(width="45%"))
    subject_box = widgets.Text(description="subject", layout=widgets.Layout(width="25%"))
    new_box = widgets.Text(description="new object", layout=widgets.Layout(width="25%"))
    trace_button = widgets.Button(description="Trace", button_style="info")
    edit_button = widgets.Button(description="Edit with ROME", button_style="primary")
    out = widgets.Output(layout=widgets.Layout(border="1px solid #ddd", padding="4px"))

    def fill(*_args) -> None:
        rw = facts[picker.value]["requested_rewrite"]
        prompt_box.value = rw["prompt"].format(rw["subject"])
        subject_box.value = rw["subject"]
        new_box.value = rw["target_new"]["str"]

    def show(*items) -> None:
        out.outputs = ()
        for item in items:
            if isinstance(item, str):
                out.append_display_data(HTML(item))
            else:  # a plotly figure, as the plotly mime type (rendered by JupyterLab, with or without a kernel)
                bundle = {"application/vnd.plotly.v1+json": json.loads(pio.to_json(item)), "text/plain": "heat map"}
                out.outputs += ({"output_type": "display_data", "data": bundle, "metadata": {}},)

    def error(err: Exception) -> None:
        show(f'<p style="color:#b00">{html.escape(str(err))}</p>')

    def trace(*_args) -> None:
        try:
            t = causal_trace(model, prompt_box.value, subject_box.value, kinds=("mlp",), noise=noise, samples=samples)
        except (ValueError, IndexError) as err:
            return error(err)
        fig = layer_token_heatmap(
            t.scores["mlp"], t.tokens, title=f"restored MLP window: P({t.target.strip()})", colorbar="P",
            layers_on="x", colorscale="Greens", zmin=0, value_format=".2f", height=300,
        )  # fmt: skip
        show(
            f"<p>P({html.escape(t.target)}) clean {t.p_clean:.3f}, corrupted {t.p_corrupt:.3f} "
            f"({samples} noise samples, {t.seconds:.1f} s)</p>",
            fig,
        )

    def edit(*_args) -> None:
        text, subject, new = prompt_box.value, subject_box.value, new_box.value
        try:
            change = rome(model, {"prompt": text, "subject": subject, "target_new": new}, hparams)
        except ValueError as err:
            return error(err)
        prompts = [text, f"{subject} is", f"People say that {subject}"]
        true = model.top_tokens(text, k=1)[0][0].strip()
        before = generate(model, prompts, max_length=40, seed=1)
        p_before = target_prob(model, [text, text], [true, new])
        with change.applied(model):
            after = generate(model, prompts, max_length=40, seed=1)
            p_after = target_prob(model, [text, text], [true, new])
        rows = "".join(
            f"<tr><td>{html.escape(a)}</td><td>{html.escape(b)}</td></tr>" for a, b in zip(before, after, strict=True)
        )
        show(
            f"<p>P({html.escape(true)}): {p_before[0]:.3f} → {p_after[0]:.3f}; P({html.escape(new)}): "
            f"{p_before[1]:.3f} → {p_after[1]:.3f} (ROME at layer {hparams.layer}, {change.info['seconds']} s; "
            "reverted)</p>"
            f"<table><tr><th>before</th><th>after the edit</th></tr>{rows}</table>"
        )

    picker.observe(fill, names="value")
    trace_button.on_click(trace)
    edit_button.on_click(edit)
    fill()
    trace()
    return widgets.VBox(
        [picker, widgets.HBox([prompt_box, subject_box, new_box]), widgets.HBox([trace_button, edit_button]), out]
    )
