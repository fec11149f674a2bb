"""Clamp MLP neurons and read what the model does then: greedy replies and next-token group probabilities.

Davies (2025) tests a decoded neuron causally by clamping it: during the forward pass its **up-projection output**
is set to a constant at every position (:func:`clamp`, site ``mlp_up``, before the product with the gate), because
that is the activation the decoded row ``w_i`` computes: ``up_i(x) = w_i · x``. The interventions run under
:func:`locedit.hooks.patch`, which removes them on every exit path. Several settings (no clamp, clamps at several
values …) run as rows of one batch: :func:`generate_settings` (greedy replies through the chat template) and
:func:`group_prob_settings` (the next token's probability mass on a group of tokens, e.g.
:func:`locedit.neurons.token_group`). A neuron index outside its layer raises ``IndexError`` before any run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

import numpy as np
import torch

from locedit.hooks import Intervention, Site, patch
from locedit.models import Model
from locedit.neurons import Neuron, check_neuron


def clamp(neurons: Sequence[Neuron], values: float | Sequence[float], rows=None) -> list[Intervention]:
    """Interventions that set each neuron's up-projection output (site ``mlp_up``) to a constant at every position.

    This is Davies' clamp: ``up_proj(x)[..., i] = c``; the product with ``act(gate)`` then carries it into the
    down-projection. On an ungated family ``mlp_up`` is the pre-activation, so ``c`` passes through the
    activation function. Use inside :func:`locedit.hooks.patch`, which removes the hooks on exit.
    """
    if isinstance(values, (int, float)):
        values = [float(values)] * len(neurons)
    if len(values) != len(neurons):
        raise ValueError("one value per neuron")
    return [
        Intervention(Site("mlp_up", int(layer)), "replace", float(v), rows=rows, index=[int(neuron)])
        for (layer, neuron), v in zip(neurons, values, strict=True)
    ]


def chat_prompt(model: Model, message: str) -> str:
    """``message`` as a user turn in the model's chat template (if it has one), ready for the assistant's reply."""
    template = getattr(model.tokenizer, "chat_template", None)
    if not template:
        return message
    return model.tokenizer.apply_chat_template(
        [{"role": "user", "content": message}], tokenize=False, add_generation_prompt=True
    )


def _check_interventions(model: Model, interventions: Iterable[Intervention]) -> None:
    """Fail before a run, with a clear message, on a neuron index outside the layer."""
    for iv in interventions:
        if iv.site.kind.feature == "neurons" and iv.index is not None and not isinstance(iv.index, slice):
            for neuron in torch.as_tensor(iv.index).reshape(-1).tolist():
                check_neuron(model, iv.site.layer, neuron)


def generate(
    model: Model,
    prompt: str,
    interventions: Sequence[Intervention] = (),
    max_new_tokens: int = 30,
    chat: bool = True,
) -> str:
    """Greedy continuation of ``prompt`` (through the chat template when ``chat``) under ``interventions``."""
    return generate_settings(model, prompt, [list(interventions)], max_new_tokens, chat)[0]


def _per_row(settings: Sequence[Sequence[Intervention]]) -> list[Intervention]:
    """One batch row per setting: each setting's interventions restricted to its own row."""
    return [dataclasses.replace(iv, rows=[r]) for r, ivs in enumerate(settings) for iv in ivs]


@torch.no_grad()
def generate_settings(
    model: Model,
    prompt: str,
    settings: Sequence[Sequence[Intervention]],
    max_new_tokens: int = 30,
    chat: bool = True,
) -> list[str]:
    """Greedy continuations of one prompt, one per setting (a list of interventions, e.g. a clamp value), batched:
    setting ``r`` acts on batch row ``r`` only. ``[[]]`` is the unpatched model."""
    _check_interventions(model, [iv for ivs in settings for iv in ivs])
    text = chat_prompt(model, prompt) if chat else prompt
    ids = model.tokenizer(text, return_tensors="pt", add_special_tokens=not chat)["input_ids"].to(model.device)
    ids = ids.expand(len(settings), -1)
    with patch(model, _per_row(settings)):
        out = model.hf.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=model.tokenizer.pad_token_id,
        )
    return model.tokenizer.batch_decode(out[:, ids.shape[1] :], skip_special_tokens=True)


@torch.no_grad()
def group_prob_settings(
    model: Model, prompts: Sequence[str], ids: Sequence[int], settings: Sequence[Sequence[Intervention]]
) -> np.ndarray:
    """Probability mass of the next token in ``ids`` after each prompt under each setting: [settings, prompts]."""
    _check_interventions(model, [iv for ivs in settings for iv in ivs])
    rows = [p for _ in settings for p in prompts]
    n = len(prompts)
    ivs = [dataclasses.replace(iv, rows=list(range(r * n, (r + 1) * n))) for r, s in enumerate(settings) for iv in s]
    with patch(model, ivs):
        probs = model.next_token_probs(rows)
    return probs[:, list(ids)].sum(-1).reshape(len(settings), n).cpu().numpy()


@torch.no_grad()
def group_prob(
    model: Model, prompts: Sequence[str], ids: Sequence[int], interventions: Sequence[Intervention] = ()
) -> np.ndarray:
    """Next-token probability mass of the tokens ``ids`` after each prompt, under ``interventions``: [prompts]."""
    _check_interventions(model, interventions)
    with patch(model, interventions):
        probs = model.next_token_probs(list(prompts))
    return probs[:, list(ids)].sum(-1).cpu().numpy()
