"""Steering heads by their attention (Merullo et al. 2024, §5): chosen heads made to attend, at the last position,
uniformly to chosen tokens (on Colored Objects: the colours that are *not* asked about), and the accuracy and
logit difference before and after.

- :func:`other_positions`: per prompt, the listed positions except one (the wrong colours: ``color_pos`` without
  the queried one).
- :func:`uniform_weights`: [batch, seq] distributions, uniform over given positions.
- :func:`steered_logits`: last-position logits of every prompt, with ``heads`` forced to those weights
  (:func:`locedit.circuits.attention.force_attention`); prompts of different lengths are run in length groups.
- :func:`steering_outcome`: accuracy before / after, items fixed and new mistakes.
- :func:`head_intervention_effects`: the logit-difference change of forcing each head alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from locedit._checks import integer
from locedit.circuits.attention import force_attention
from locedit.circuits.inputs import check_heads, token_lists
from locedit.circuits.metrics import logit_diff
from locedit.models import Model

Head = tuple[int, int]


def other_positions(positions: torch.Tensor, keep_out: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """``positions`` [batch, m] without column ``keep_out[b]`` in each row: [batch, m − 1] (e.g. the wrong colours'
    positions: ``other_positions(data.color_pos, data.query)``)."""
    pos = torch.as_tensor(positions).long()
    out = torch.as_tensor(keep_out).long().reshape(-1)
    if pos.dim() != 2 or pos.shape[1] < 2 or len(out) != pos.shape[0]:
        raise ValueError(f"positions must be [batch, m ≥ 2] and keep_out [batch], got {tuple(pos.shape)}, {len(out)}")
    if (out < 0).any() or (out >= pos.shape[1]).any():
        raise ValueError(f"keep_out must index the {pos.shape[1]} columns of positions")
    mask = torch.ones_like(pos, dtype=torch.bool)
    mask[torch.arange(len(out)), out] = False
    return pos[mask].reshape(pos.shape[0], pos.shape[1] - 1)


def uniform_weights(seq: int, positions: torch.Tensor) -> torch.Tensor:
    """[batch, seq] (float32): each row uniform over its ``positions`` [batch, m] (within 0..seq − 1)."""
    seq = integer(seq, "seq", minimum=1)
    pos = torch.as_tensor(positions).long()
    pos = pos[:, None] if pos.dim() == 1 else pos
    if (pos < 0).any() or (pos >= seq).any():
        raise ValueError(f"positions must lie in 0..{seq - 1}, got {pos.min().item()}..{pos.max().item()}")
    w = torch.zeros(pos.shape[0], seq)
    w.scatter_add_(1, pos, torch.ones(pos.shape, dtype=w.dtype))
    return w / w.sum(1, keepdim=True)


def steered_logits(
    model: Model,
    prompts: Any,
    heads: Sequence[Head] = (),
    targets: torch.Tensor | Sequence[Sequence[int]] | None = None,
    batch_size: int = 32,
) -> torch.Tensor:
    """The last position's logits of every prompt, [n_prompts, vocab] (float32, CPU), with ``heads`` attending at the
    last position uniformly to ``targets`` (none: the model as it is).

    Args:
        model: the model.
        prompts: a task (``colored_objects(...)``), strings, or token-id lists; lengths may differ (run in groups of
            one length, in the prompts' order on return).
        heads: (layer, head) pairs to force; empty: no intervention.
        targets: [n_prompts, m] key positions per prompt (e.g. ``other_positions(data.color_pos, data.query)``).
        batch_size: prompts per forward pass.
    """
    ids = token_lists(model, prompts, "prompts")
    batch_size = integer(batch_size, "batch_size", minimum=1)
    heads = check_heads(model, heads, "head") if len(heads) else []
    if heads:
        if targets is None:
            raise ValueError("give targets: the key positions (per prompt) the forced heads attend to")
        targets = torch.as_tensor(targets).long()
        targets = targets[:, None] if targets.dim() == 1 else targets
        if targets.shape[0] != len(ids):
            raise ValueError(f"targets has {targets.shape[0]} rows for {len(ids)} prompts: give one row per prompt")
    by_length: dict[int, list[int]] = {}
    for i, row in enumerate(ids):
        by_length.setdefault(len(row), []).append(i)
    out: list[torch.Tensor | None] = [None] * len(ids)
    for length, idx in by_length.items():
        for lo in range(0, len(idx), batch_size):
            rows = idx[lo : lo + batch_size]
            x = torch.tensor([ids[i] for i in rows], device=model.device)
            with torch.no_grad():
                if heads:
                    with force_attention(model, heads, uniform_weights(length, targets[rows])):
                        logits = model.hf(input_ids=x, logits_to_keep=1).logits[:, -1]
                else:
                    logits = model.hf(input_ids=x, logits_to_keep=1).logits[:, -1]
            for i, row in zip(rows, logits.float().cpu(), strict=True):
                out[i] = row
    return torch.stack(out)


@dataclass(frozen=True)
class SteeringOutcome:
    """Accuracy before and after an intervention on the same items.

    Attributes:
        before, after: [n] bool, each item answered correctly (among the candidates).
        ld_before, ld_after: [n] logit differences (correct − alternative).
    """

    before: torch.Tensor
    after: torch.Tensor
    ld_before: torch.Tensor
    ld_after: torch.Tensor

    @property
    def accuracy_before(self) -> float:
        return float(self.before.float().mean())

    @property
    def accuracy_after(self) -> float:
        return float(self.after.float().mean())

    @property
    def fixed(self) -> int:
        """Items wrong before and right after."""
        return int((~self.before & self.after).sum())

    @property
    def new_mistakes(self) -> int:
        """Items right before and wrong after (the paper: "introduces zero new mistakes")."""
        return int((self.before & ~self.after).sum())


def correct_among(logits: torch.Tensor, answers: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """[n] bool: the correct answer (``answers[:, 0]``) beats every other candidate id [n, k] (a tie is not a win)."""
    correct = torch.as_tensor(answers).long()[:, 0]
    cand = torch.as_tensor(candidates).long()
    others = logits.gather(1, cand).masked_fill(cand == correct[:, None], float("-inf"))
    return logits.gather(1, correct[:, None])[:, 0] > others.max(-1).values


def steering_outcome(
    before: torch.Tensor, after: torch.Tensor, answers: torch.Tensor, candidates: torch.Tensor
) -> SteeringOutcome:
    """Compare last-position logits [n, vocab] before and after an intervention: per item correct among
    ``candidates`` [n, k] and the logit difference on ``answers`` [n, 2]."""
    if before.shape != after.shape:
        raise ValueError(f"before {tuple(before.shape)} and after {tuple(after.shape)} differ: give the same items")
    return SteeringOutcome(
        before=correct_among(before, answers, candidates),
        after=correct_among(after, answers, candidates),
        ld_before=logit_diff(before, answers),
        ld_after=logit_diff(after, answers),
    )


def head_intervention_effects(
    model: Model,
    prompts: Any,
    heads: Sequence[Head],
    targets: torch.Tensor,
    answers: torch.Tensor,
    batch_size: int = 32,
) -> torch.Tensor:
    """Mean logit-difference change from forcing each head *alone* (attention at the last position uniform over
    ``targets``): [len(heads)], ``mean(LD_forced − LD_plain)`` over prompts."""
    heads = check_heads(model, heads, "head")
    plain = logit_diff(steered_logits(model, prompts, batch_size=batch_size), answers)
    return torch.stack(
        [(logit_diff(steered_logits(model, prompts, [h], targets, batch_size), answers) - plain).mean() for h in heads]
    )
