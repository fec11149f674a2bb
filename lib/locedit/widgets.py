"""ipywidgets explorers for live Jupyter.

Each explorer renders its first result when it is built, straight into its ``Output`` widget's ``outputs``, so a
notebook executed without a browser (papermill, nbclient) stores that content in the widget state and the
static book shows it; typing a new prompt needs a live kernel.

Views compute nothing themselves and import no method module (only :mod:`locedit.models` for the ``Model`` type
and :mod:`locedit.viz`): an explorer takes the data to show, or the functions that compute it, and the chapter
composes them from the method modules, e.g. ``lens_explorer(model, lens_logprobs)`` or
``rome_explorer(model, facts, trace=partial(causal_trace, …), edit=partial(rome, hparams=hp), …)``.
"""

from __future__ import annotations

import html
import json
import warnings
from collections.abc import Callable, Mapping, Sequence

import ipywidgets as widgets
import numpy as np
import plotly.io as pio
import torch
from IPython.display import HTML

from locedit.models import Model
from locedit.viz import attention_matrices_figure, attention_rows_figure, layer_token_heatmap, show_token


def figure_output(fig) -> dict:
    """A plotly figure as a notebook ``display_data`` output (the plotly mime type, which JupyterLab and the static
    book render with or without a kernel), to put into an ``Output`` widget's ``outputs``."""
    bundle = {"application/vnd.plotly.v1+json": json.loads(pio.to_json(fig)), "text/plain": "plotly figure"}
    return {"output_type": "display_data", "data": bundle, "metadata": {}}


def lens_table_html(model: Model, prompt: str, logprobs: torch.Tensor, k: int = 5, target: str | None = None) -> str:
    """An HTML table of the logit lens at the prompt's last position: one row per layer, its ``k`` top tokens.

    ``logprobs`` are the lens's log-probabilities at that position, [n_layers, vocab] (e.g.
    ``locedit.lens.lens_logprobs(model, prompt, positions=[-1])[:, 0]``). Cells are shaded by probability. With
    ``target`` (one token, e.g. ``" Paris"``) two more columns give its probability and rank after each layer.
    """
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
    lens: Callable[..., torch.Tensor],
    prompt: str = "The Eiffel Tower is located in the city of",
    target: str = " Paris",
    k: int = 5,
) -> widgets.VBox:
    """A logit-lens explorer: type a prompt (and optionally a target token), press Enter or *Run lens*.

    Shows, for the prompt's last position, the ``k`` top tokens the lens reads after each layer, and the target's
    probability and rank. ``lens(model, prompt, positions=[-1])`` computes the lens's log-probabilities,
    [n_layers, 1, vocab]: pass :func:`locedit.lens.lens_logprobs`. The initial ``prompt`` is rendered at build time,
    so the widget shows content even in a static page.

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
                logprobs = lens(model, text, positions=[-1])[:, 0]  # [n_layers, vocab]
                body = lens_table_html(model, text, logprobs, k=k, target=tgt)
        except ValueError as err:  # e.g. a multi-token target: say so instead of failing silently
            body = f'<p style="color:#b00">{html.escape(str(err))}</p>'
        out.outputs = ()
        out.append_display_data(HTML(body))

    button.on_click(render)
    prompt_box.observe(render, names="value")  # Enter / focus loss (continuous_update=False)
    render()
    return widgets.VBox([widgets.HBox([prompt_box, target_box, button]), out])


def rome_explorer(
    model: Model,
    facts: list[dict],
    trace: Callable,
    edit: Callable,
    generate: Callable[[Model, list[str]], list[str]],
    prob: Callable[[Model, list[str], list[str]], Sequence[float]],
) -> widgets.VBox:
    """Pick (or type) a fact, trace it, type a new object, edit it, compare generations before and after.

    ``facts`` are CounterFact records (their prompts fill the picker). The chapter passes the methods:

    * ``trace(model, prompt, subject)`` → a :class:`locedit.tracing.Trace` (or anything with its ``scores["mlp"]``,
      ``tokens``, ``target``, ``p_clean``, ``p_corrupt``, ``samples`` and ``seconds``), e.g.
      ``partial(causal_trace, kinds=("mlp",), noise=noise, samples=2)`` (the MLP windows only, to stay interactive);
    * ``edit(model, {"prompt", "subject", "target_new"})`` → an :class:`locedit.editing.Edit` (``applied(model)``,
      ``method``, ``info["layer"]`` and ``info["seconds"]``), e.g. ``partial(rome, hparams=hp)``;
    * ``generate(model, prompts)`` → one text per prompt, e.g. ``partial(locedit.evaluation.generate, max_length=40,
      seed=1)``;
    * ``prob(model, prompts, targets)`` → each target's probability after its prompt, e.g.
      :func:`locedit.evaluation.target_prob`.

    A ``ValueError`` or ``IndexError`` from ``trace`` or ``edit`` (a subject not in the prompt, say) is shown in the
    output instead of raised. The first fact is traced at build time. Every edit is reverted when its comparison is
    done.

    Returns:
        ``VBox([picker, HBox([prompt, subject, new object]), HBox([buttons]), Output])``.
    """
    texts = [r["requested_rewrite"]["prompt"].format(r["requested_rewrite"]["subject"]) for r in facts]
    options = [(text, i) for i, text in enumerate(texts)]
    picker = widgets.Dropdown(options=options, description="fact", layout=widgets.Layout(width="70%"))
    prompt_box = widgets.Text(description="prompt", layout=widgets.Layout(width="45%"))
    subject_box = widgets.Text(description="subject", layout=widgets.Layout(width="25%"))
    new_box = widgets.Text(description="new object", layout=widgets.Layout(width="25%"))
    trace_button = widgets.Button(description="Trace", button_style="info")
    edit_button = widgets.Button(description="Edit", button_style="primary")
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
            else:
                out.outputs += (figure_output(item),)

    def error(err: Exception) -> None:
        show(f'<p style="color:#b00">{html.escape(str(err))}</p>')

    def run_trace(*_args) -> None:
        try:
            t = trace(model, prompt_box.value, subject_box.value)
        except (ValueError, IndexError) as err:
            return error(err)
        fig = layer_token_heatmap(
            t.scores["mlp"], t.tokens, title=f"restored MLP window: P({t.target.strip()})", colorbar="P",
            layers_on="x", colorscale="Greens", zmin=0, value_format=".2f", height=300,
        )  # fmt: skip
        show(
            f"<p>P({html.escape(t.target)}) clean {t.p_clean:.3f}, corrupted {t.p_corrupt:.3f} "
            f"({t.samples} noise samples, {t.seconds:.1f} s)</p>",
            fig,
        )

    def run_edit(*_args) -> None:
        text, subject, new = prompt_box.value, subject_box.value, new_box.value
        try:
            change = edit(model, {"prompt": text, "subject": subject, "target_new": new})
        except (ValueError, IndexError) as err:
            return error(err)
        prompts = [text, f"{subject} is", f"People say that {subject}"]
        true = model.top_tokens(text, k=1)[0][0].strip()
        before = generate(model, prompts)
        p_before = prob(model, [text, text], [true, new])
        with change.applied(model):
            after = generate(model, prompts)
            p_after = prob(model, [text, text], [true, new])
        rows = "".join(
            f"<tr><td>{html.escape(a)}</td><td>{html.escape(b)}</td></tr>" for a, b in zip(before, after, strict=True)
        )
        show(
            f"<p>P({html.escape(true)}): {p_before[0]:.3f} → {p_after[0]:.3f}; P({html.escape(new)}): "
            f"{p_before[1]:.3f} → {p_after[1]:.3f} ({change.method} at layer {change.info['layer']}, "
            f"{change.info['seconds']} s; "
            "reverted)</p>"
            f"<table><tr><th>before</th><th>after the edit</th></tr>{rows}</table>"
        )

    picker.observe(fill, names="value")
    trace_button.on_click(run_trace)
    edit_button.on_click(run_edit)
    fill()
    run_trace()
    return widgets.VBox(
        [picker, widgets.HBox([prompt_box, subject_box, new_box]), widgets.HBox([trace_button, edit_button]), out]
    )


def neuron_card_html(dec, layer: int, neuron: int, sample=None) -> str:
    """HTML: a neuron's top tokens (with probabilities) and its strongest activating tokens in ``sample``.

    ``dec`` is a :class:`locedit.neurons.NeuronDecoding` (used: ``top``, ``score``, ``variant``); ``sample`` an
    optional :class:`locedit.activations.ActivationSample` (used: ``top_examples``, ``site``).
    """
    tops = " ".join(
        f"<code>{html.escape(show_token(t))}</code><small> {p:.2f}</small>" for t, p in dec.top(layer, neuron)
    )
    body = f"<p><b>L{layer}.N{neuron}</b> ({dec.variant}; z1 = {dec.score(layer, neuron):.1f}): {tops}</p>"
    if sample is not None:
        ex = sample.top_examples(layer, neuron, n=5)
        rows = "".join(
            f"<tr><td>{r.activation:.2f}</td><td><code>{html.escape(r.context)}</code></td></tr>"
            for r in ex.itertuples()
        )
        body += f'<table style="font-size:12px"><tr><th>{sample.site}</th><th>context [[token]]</th></tr>{rows}</table>'
    return body


def neuron_browser(dec, sample=None, query: str = " dog", max_rows: int = 8) -> widgets.VBox:
    """A Jupyter neuron browser: type token(s) (comma-separated, leading spaces kept) and pick a layer ("all" or
    one); it lists the neurons whose top-``k`` holds a token, with their top tokens and strongest activating
    examples in ``sample``. The initial query is rendered at build time so a static page shows it.

    ``dec`` is a :class:`locedit.neurons.NeuronDecoding` (used: ``tokenizer``, ``find``, ``layers``, ``k``,
    ``variant`` and what :func:`neuron_card_html` uses); ``sample`` an optional
    :class:`locedit.activations.ActivationSample`.
    """
    box = widgets.Text(value=query, description="token(s)", continuous_update=False)
    layer = widgets.Dropdown(options=["all", *dec.layers], value="all", description="layer")
    out = widgets.Output(layout=widgets.Layout(border="1px solid #ddd", padding="4px"))
    tok = dec.tokenizer

    def render(*_args) -> None:
        words = [w for w in box.value.split(",") if w]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ids = [tok(w, add_special_tokens=False)["input_ids"][0] for w in words]
            hits = dec.find(ids)
            if layer.value != "all":
                hits = hits[hits.layer == layer.value]
            if hits.empty:
                body = f"<p>No neuron has {html.escape(box.value)!s} in its top-{dec.k} ({dec.variant}).</p>"
            else:
                body = f"<p>{len(hits)} neuron(s); showing {min(len(hits), max_rows)}.</p>" + "".join(
                    neuron_card_html(dec, int(r.layer), int(r.neuron), sample) for r in hits.head(max_rows).itertuples()
                )
        except (IndexError, ValueError) as err:
            body = f'<p style="color:#b00">{html.escape(str(err))}</p>'
        out.outputs = ()
        out.append_display_data(HTML(body))

    box.observe(render, names="value")
    layer.observe(render, names="value")
    render()
    return widgets.VBox([widgets.HBox([box, layer]), out])


def head_card_html(layer: int, head: int, effects: Mapping[str, np.ndarray], roles: Mapping[str, Sequence]) -> str:
    """HTML: a head's path-patching effect in each stage (with its rank by |effect| among the heads measured there)
    and the roles (circuit stages, head classes) it was given."""
    rows = []
    for stage, grid in effects.items():
        e = np.asarray(grid, dtype=float)
        value = e[layer, head]
        if np.isfinite(value):
            rank = int((np.abs(e[np.isfinite(e)]) > abs(value)).sum()) + 1
            cell = f"{value:+.3f} (rank {rank} of {int(np.isfinite(e).sum())})"
        else:
            cell = "not a sender in this stage"
        rows.append(f"<tr><td>{html.escape(stage)}</td><td>{cell}</td></tr>")
    tags = [name for name, heads in roles.items() if (layer, head) in {tuple(h) for h in heads}]
    tag_text = ", ".join(html.escape(t) for t in tags) or "none"
    return (
        f'<div style="font-size:12px"><p style="margin:2px 0"><b>head {layer}.{head}</b>, roles: {tag_text}</p>'
        f"<table><tr><th>path patching to</th><th>effect</th></tr>{''.join(rows)}</table></div>"
    )


def head_browser(
    patterns: torch.Tensor | np.ndarray,
    tokens: Sequence[str],
    effects: Mapping[str, torch.Tensor | np.ndarray],
    roles: Mapping[str, Sequence] | None = None,
    layer: int = 0,
    head: int = 0,
    query: int = -1,
    marks: Mapping[int, str] | None = None,
) -> widgets.VBox:
    """Pick a layer and a head: see its attention on one prompt (the whole query × key pattern, or the row of one
    query position as a bar of colours) and its path-patching effect in each stage.

    Everything is precomputed and passed in (no model needed):

    Args:
        patterns: [n_layers, n_heads, seq, seq] attention probabilities of one prompt (e.g.
            ``attention_patterns(model, [ids])[0]``).
        tokens: the prompt's ``seq`` token strings.
        effects: {stage: [n_layers, n_heads] path-patching effects (NaN where not measured)}.
        roles: {role name: [(layer, head), ...]} (circuit stages, head classes), listed for the chosen head.
        layer, head: the head shown first (rendered at build time, so a static page shows it).
        query: the query position of the one-row view (default the last).
        marks: {position: role} written beside the key labels (``{3: "IO"}``).

    Returns:
        ``VBox([HBox([layer, head, view]), Output])``; the Output's ``outputs`` hold the card and the figure.
    """
    p = torch.as_tensor(patterns).float()
    if p.dim() != 4 or p.shape[-1] != p.shape[-2] or p.shape[-1] != len(tokens):
        raise ValueError(
            f"patterns must be [n_layers, n_heads, seq, seq] with seq = len(tokens) = {len(tokens)}, got "
            f"{tuple(p.shape)}"
        )
    n_layers, n_heads, seq = p.shape[0], p.shape[1], p.shape[-1]
    grids = {k: np.asarray(torch.as_tensor(v).float()) for k, v in effects.items()}
    for stage, grid in grids.items():
        if grid.shape != (n_layers, n_heads):
            raise ValueError(f"effects[{stage!r}] is {grid.shape}, not [n_layers, n_heads] = {(n_layers, n_heads)}")
    if not (0 <= layer < n_layers and 0 <= head < n_heads):
        raise ValueError(f"head ({layer}, {head}) is out of range: layers 0..{n_layers - 1}, heads 0..{n_heads - 1}")
    if not -seq <= query < seq:
        raise ValueError(f"query {query} is not a position of the {seq}-token prompt")
    query = query % seq
    layer_box = widgets.Dropdown(options=list(range(n_layers)), value=layer, description="layer")
    head_box = widgets.Dropdown(options=list(range(n_heads)), value=head, description="head")
    view = widgets.ToggleButtons(options=["query row", "whole pattern"], value="query row")
    out = widgets.Output(layout=widgets.Layout(border="1px solid #ddd", padding="4px"))

    def render(*_args) -> None:
        lh = (layer_box.value, head_box.value)
        if view.value == "query row":
            fig = attention_rows_figure(
                p[lh[0], lh[1], query][None], tokens, [lh], query=f"{query} {show_token(tokens[query])}", marks=marks
            )
        else:
            fig = attention_matrices_figure(p[lh[0], lh[1]][None], tokens, [lh])
        out.outputs = ()
        out.append_display_data(HTML(head_card_html(*lh, grids, roles or {})))
        out.outputs += (figure_output(fig),)

    for box in (layer_box, head_box, view):
        box.observe(render, names="value")
    render()
    return widgets.VBox([widgets.HBox([layer_box, head_box, view]), out])
