"""The metrics of the circuit tasks: :func:`logit_diff` (correct − alternative at the last position: IO − S for IOI,
the answer − the corrupted prompt's answer for Colored Objects) and :func:`accuracy` (the correct token is the top
choice over the whole vocabulary, or among ``candidates``: (IO, S) for IOI, the listed colours for Colored Objects).
"""

from __future__ import annotations

import torch


def _last(logits: torch.Tensor) -> torch.Tensor:
    if logits.dim() == 3:
        return logits[:, -1]
    if logits.dim() != 2:
        raise ValueError(f"logits must be [batch, seq, vocab] or [batch, vocab], got {tuple(logits.shape)}")
    return logits


def logit_diff(logits: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
    """Logit of the correct answer minus that of the alternative, at the last position: [batch] (float).

    ``logits`` [batch, seq, vocab] (its last position is read) or [batch, vocab]; ``answers`` [batch, 2] ids
    (correct, alternative): :attr:`IOIPrompts.answers` (IO − S) or :attr:`ColoredObjects.answers`.
    """
    last = _last(logits)
    answers = torch.as_tensor(answers, device=last.device).long()
    picked = last.gather(-1, answers[:, :2])
    return (picked[:, 0] - picked[:, 1]).float()


def accuracy(logits: torch.Tensor, answers: torch.Tensor, candidates: torch.Tensor | None = None) -> float:
    """Share of prompts whose correct answer (``answers[:, 0]``) is the top choice at the last position: over the
    whole vocabulary (``candidates=None``), or among the ids ``candidates`` [batch, k] (IOI: the answers, i.e.
    IO > S; Colored Objects: :attr:`ColoredObjects.candidates`, the listed colours), where a tie is not a win."""
    last = _last(logits)
    answers = torch.as_tensor(answers, device=last.device).long()
    correct = answers[:, 0] if answers.dim() == 2 else answers
    if candidates is None:
        return float((last.argmax(-1) == correct).float().mean())
    candidates = torch.as_tensor(candidates, device=last.device).long()
    others = last.gather(1, candidates).masked_fill(candidates == correct[:, None], float("-inf"))
    return float((last.gather(1, correct[:, None])[:, 0] > others.max(-1).values).float().mean())
