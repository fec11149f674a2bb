"""The logit lens: read any residual-stream vector as a next-token distribution.

``decode`` maps vectors through the final norm (optional) and the unembedding W_U: for the last layer this is
exactly the model's own output head, so the lens at the top layer reproduces the model's logits.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from locedit.arch import output_head
from locedit.hooks import all_sites, run_with
from locedit.models import Model


def decode(model: Model, vectors: torch.Tensor, norm: bool = True) -> torch.Tensor:
    """Logits of residual-stream vectors: [..., d_model] → [..., vocab].

    ``norm=True`` runs the model's own output head: final norm, unembedding (with its bias, if any) and logit
    soft-capping, if any. ``norm=False`` reads the raw direction through W_U alone, ``W_U @ v`` (a neuron's weight
    row, say): no norm, no output bias (GPT-J has one), no soft-capping.
    """
    spec, hf = model.spec, model.hf
    with torch.no_grad():
        x = vectors.to(model.device, model.dtype)
        if not norm:
            return (x @ spec.unembedding(hf).T).float()
        logits = output_head(hf, spec, spec.part(hf, "final_norm")(x))
    return logits.float()


def logit_lens(model: Model, prompt: str) -> torch.Tensor:
    """Log-probabilities the lens reads after every block: [n_layers, seq, vocab] for one prompt."""
    sites = all_sites(model.spec, "resid_post")
    _, cache = run_with(model, model.encode(prompt), record=sites)
    stacked = torch.stack([cache[str(site)][0] for site in sites])  # [n_layers, seq, d_model]
    return decode(model, stacked).log_softmax(-1)


def top_tokens(model: Model, logits: torch.Tensor, k: int = 5) -> list[list[tuple[str, float]]]:
    """The ``k`` most likely tokens and their probabilities for each row of ``logits`` [n, vocab]."""
    probs, ids = logits.float().softmax(-1).topk(k, dim=-1)
    return [
        [(model.tokenizer.decode([int(i)]), float(p)) for p, i in zip(row_p, row_i, strict=True)]
        for row_p, row_i in zip(probs, ids, strict=True)
    ]


def token_ranks(logits: torch.Tensor, token_ids: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """Rank (0 = top) of each token in each row: logits [..., vocab], ids [k] → ranks [..., k]."""
    ids = torch.as_tensor(token_ids, device=logits.device)
    chosen = logits[..., ids]
    return (logits[..., None, :] > chosen[..., :, None]).sum(-1)
