"""Token-id helpers every method shares: a target's ids, and padding rows of ids into one batch.

**A target's ids** (:func:`target_ids`): the tokens of ``" " + target.strip()``, without special tokens, so that
the ids follow a prompt as the target's words would in running text (``"Paris"`` → the ids of ``" Paris"``). The
editors use every token, the filters and causal tracing the first (:func:`first_target_id`).

**Padding** (:func:`pad_rows`): the pad id is the tokenizer's ``pad_token_id``, or 0 when it has none
(:func:`pad_id`; 0 is a valid pad id, kept as it is). Padded positions are masked out (``attention_mask`` 0), so
the pad id never changes a result.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch

if TYPE_CHECKING:
    from locedit.models import Model


def target_ids(model: Model, target: str) -> list[int]:
    """The token ids of ``" " + target.strip()`` (no special tokens): what the model should say after a prompt."""
    return model.tokenizer(" " + target.strip(), add_special_tokens=False)["input_ids"]


def first_target_id(model: Model, target: str) -> int:
    """The first of :func:`target_ids`: the token the model's next-token prediction is compared with."""
    return target_ids(model, target)[0]


def pad_id(model: Model) -> int:
    """The id padded positions hold: the tokenizer's ``pad_token_id``, or 0 when it has none."""
    pad = model.tokenizer.pad_token_id
    return pad if pad is not None else 0


def pad_rows(
    rows: list[list[int]],
    pad: int,
    side: Literal["left", "right"] = "right",
    device: torch.device | str | None = None,
    width: int | None = None,
) -> dict[str, torch.Tensor]:
    """Token-id rows as one batch: ``input_ids`` and ``attention_mask`` [len(rows), width] (long), on ``device``.

    ``side="right"`` puts each row at the start (its padding after it), ``"left"`` at the end (so every row's last
    token is at position -1). ``width`` defaults to the longest row; ``pad`` is the id padded positions hold
    (:func:`pad_id`), masked out by ``attention_mask``.
    """
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', not {side!r}")
    width = max(map(len, rows), default=0) if width is None else width
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        if not row:
            continue
        span = slice(0, len(row)) if side == "right" else slice(width - len(row), width)
        ids[i, span] = torch.tensor(row)
        mask[i, span] = 1
    if device is not None:
        ids, mask = ids.to(device), mask.to(device)
    return {"input_ids": ids, "attention_mask": mask}
