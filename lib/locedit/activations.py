"""What MLP neurons do on text: their activations per text, per token, and how two sets of texts differ.

A decoded neuron (:mod:`locedit.neurons`) says which tokens its weight row reads; these routines check it on
text. :func:`neuron_activations` gives a few neurons' activation per text (max or mean over its tokens);
:func:`record_sample` keeps every neuron of every layer at every token of a small sample
(:class:`ActivationSample`: per-text maxima, a neuron's strongest examples in context); :func:`cohens_d` measures
how far one sample's activations stand above another's.

Sites: ``"mlp_up"`` (the up-projection's output, before the product with the gate: ``up_i(x) = w_i · x``, the
quantity a decoded up row computes) or ``"mlp_act"`` (the neuron's value after the gate, the down-projection's
input).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from locedit.hooks import Site, patch
from locedit.models import Model
from locedit.neurons import Neuron, checked_neurons
from locedit.progress import progress


@torch.no_grad()
def neuron_activations(
    model: Model,
    texts: Sequence[str],
    neurons: Sequence[Neuron],
    site: str = "mlp_up",
    reduce: str = "max",
    batch_size: int = 16,
) -> np.ndarray:
    """Each neuron's activation per text, reduced over the text's tokens (``"max"`` or ``"mean"``): [texts, neurons].

    ``site`` is ``"mlp_up"`` (the up-projection output, what a decoded up row computes) or ``"mlp_act"`` (the
    neuron's value after the gate, the input of the down-projection). Padding positions are ignored.
    """
    neurons = checked_neurons(model, neurons)
    if reduce not in ("max", "mean"):
        raise ValueError("reduce must be 'max' or 'mean'")
    layers = sorted({layer for layer, _ in neurons})
    sites = [Site(site, layer) for layer in layers]
    out = []
    starts = range(0, len(texts), batch_size)
    for s in progress(starts, "neuron activations", total=len(starts), unit="batch"):
        inputs = model.encode(texts[s : s + batch_size])
        mask = inputs["attention_mask"].bool()[..., None]
        with patch(model, record=sites) as rec:
            model.hf(**inputs, logits_to_keep=1)  # the activations are all we read
        cols = []
        for layer, neuron in neurons:
            a = rec[f"{site}.{layer}"][..., [neuron]].float()  # [b, seq, 1]
            if reduce == "max":
                cols.append(a.masked_fill(~mask, float("-inf")).amax(1))
            else:
                cols.append((a * mask).sum(1) / mask.sum(1))
        out.append(torch.cat(cols, -1).cpu())
    return torch.cat(out).numpy()


def cohens_d(a: Sequence[float], b: Sequence[float]) -> float:
    """Cohen's d of two samples: (mean a − mean b) / pooled standard deviation."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    pooled = math.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(a) + len(b) - 2))
    return float((a.mean() - b.mean()) / pooled) if pooled > 0 else float("inf") * np.sign(a.mean() - b.mean())


@dataclass
class ActivationSample:
    """Per-token activations of every neuron at one site over a small text sample (for maxima and examples)."""

    site: str
    texts: list[str]
    tokens: list[list[str]]  # per text
    acts: torch.Tensor  # [n_tokens, n_layers, d_mlp] float16
    where: list[tuple[int, int]]  # per token row: (text index, position)

    def per_text(self) -> torch.Tensor:
        """Each neuron's largest activation in each text: [texts, n_layers, d_mlp] float32."""
        text_of = torch.tensor([t for t, _ in self.where])
        out = torch.full((len(self.texts), *self.acts.shape[1:]), float("-inf"))
        for t in range(len(self.texts)):
            out[t] = self.acts[text_of == t].float().amax(0)
        return out

    def max_activation(self, layer: int, neuron: int) -> float:
        return float(self.acts[:, layer, neuron].float().max())

    def top_examples(self, layer: int, neuron: int, n: int = 5, window: int = 6) -> pd.DataFrame:
        """The ``n`` tokens where the neuron fires most, with ``window`` tokens of context before them."""
        a = self.acts[:, layer, neuron].float()
        vals, rows = a.topk(min(n, a.numel()))
        records = []
        for v, r in zip(vals.tolist(), rows.tolist(), strict=True):
            t, p = self.where[r]
            toks = self.tokens[t]
            records.append(
                {
                    "activation": v,
                    "token": toks[p],
                    "context": "".join(toks[max(0, p - window) : p]) + "[[" + toks[p] + "]]",
                    "text": t,
                }
            )
        return pd.DataFrame(records)


@torch.no_grad()
def record_sample(model: Model, texts: Sequence[str], site: str = "mlp_up", batch_size: int = 16) -> ActivationSample:
    """Run ``texts`` once and keep ``site`` (``"mlp_up"`` or ``"mlp_act"``) at every layer for every real token."""
    sites = [Site(site, layer) for layer in range(model.spec.n_layers)]
    acts, where, tokens = [], [], []
    starts = range(0, len(texts), batch_size)
    for s in progress(starts, "recording activations", total=len(starts), unit="batch"):
        batch = list(texts[s : s + batch_size])
        inputs = model.encode(batch, padding_side="right")
        with patch(model, record=sites) as rec:
            model.hf(**inputs, logits_to_keep=1)  # the activations are all we read
        stacked = torch.stack([rec[str(site_)] for site_ in sites], 2)  # [b, seq, L, d_mlp]
        for b in range(len(batch)):
            n = int(inputs["attention_mask"][b].sum())
            acts.append(stacked[b, :n].half().cpu())
            tokens.append([model.tokenizer.decode([int(i)]) for i in inputs["input_ids"][b, :n]])
            where += [(s + b, p) for p in range(n)]
    return ActivationSample(site, list(texts), tokens, torch.cat(acts), where)
