"""Checks of the circuit functions' inputs, in one place: attention heads as (layer, head) pairs, prompts as
token-id lists (from a task, strings, id lists or a [prompts, tokens] tensor), and clean / corrupted prompt pairs
with their answers, grouped by token length."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from locedit._checks import integer
from locedit.models import Model

Head = tuple[int, int]


def check_head(model: Model, head: Any, what: str) -> Head:
    """``head`` as a (layer, head) pair of plain ints within the model; ``what`` ("sender", "receiver", …) names it
    in errors (a TypeError for anything but a pair of integers, a ValueError out of range)."""
    spec = model.spec
    if not (isinstance(head, Sequence) and len(head) == 2) or isinstance(head, str):
        raise TypeError(f"{what} {head!r}: give a head as a (layer, head) pair, e.g. (9, 3)")
    layer, h = head
    try:
        layer = integer(layer, f"{what} {tuple(head)}: layer", minimum=0, maximum=spec.n_layers - 1)
        h = integer(h, f"{what} {tuple(head)}: head", minimum=0, maximum=spec.n_heads - 1)
    except ValueError as err:
        raise ValueError(
            f"{err} (this model has layers 0..{spec.n_layers - 1} and heads 0..{spec.n_heads - 1})"
        ) from None
    return layer, h


def check_heads(model: Model, heads: Any, what: str) -> list[Head]:
    """A non-empty list of distinct heads, each checked by :func:`check_head`."""
    if isinstance(heads, (str, torch.Tensor)) or not isinstance(heads, Sequence):
        raise TypeError(f"{what}s: give a list of (layer, head) pairs, e.g. [(9, 3), (10, 0)]")
    out = [check_head(model, h, what) for h in heads]
    if not out:
        raise ValueError(f"no {what}s given: pass a non-empty list of (layer, head) pairs")
    if len(set(out)) != len(out):
        raise ValueError(f"{what}s repeat a head: {out}")
    return out


def token_lists(model: Model, prompts: Any, what: str) -> list[list[int]]:
    """Token ids of each prompt: from a task (its ``tokens``), strings, id lists or a 2-D tensor."""
    if hasattr(prompts, "tokens") and not isinstance(prompts, torch.Tensor):
        return [list(t) for t in prompts.tokens]
    if isinstance(prompts, torch.Tensor):
        if prompts.dim() != 2:
            raise ValueError(f"{what}: a tensor of token ids must be [prompts, tokens], got {tuple(prompts.shape)}")
        return prompts.tolist()
    if isinstance(prompts, str) or not isinstance(prompts, Sequence) or not len(prompts):
        raise TypeError(f"{what}: give a task (ioi(...), colored_objects(...)), a list of prompts or of token-id lists")
    out = []
    for i, p in enumerate(prompts):
        if isinstance(p, str):
            if model.tokenizer is None:
                raise ValueError(f"{what}: model {model.name!r} has no tokenizer: give token ids")
            out.append(list(model.tokenizer(p)["input_ids"]))
        else:
            out.append([int(t) for t in p])
        if not out[-1]:
            raise ValueError(f"{what} {i} is empty")
    return out


def token_batch(model: Model, prompts: Any, what: str) -> torch.Tensor:
    """The prompts (as :func:`token_lists` takes them) as one [prompts, tokens] tensor on the model's device; a
    ValueError naming the first prompt whose length differs (no padding: positions must line up)."""
    ids = token_lists(model, prompts, what)
    for i, row in enumerate(ids):
        if len(row) != len(ids[0]):
            raise ValueError(
                f"{what}: prompt {i} is {len(row)} tokens and prompt 0 {len(ids[0])}; give prompts of one length "
                "(group them by length, as the tasks' prompts of one template are)"
            )
    return torch.tensor(ids, device=model.device)


@dataclass(frozen=True)
class PromptGroup:
    """Prompts of one token length, as batch rows.

    Attributes:
        index: which of the caller's prompts they are [rows] (positions in the full list).
        clean, corrupt: token ids [rows, length] on the model's device.
        answers: [rows, 2] ids (correct, alternative), on the CPU.
    """

    index: list[int]
    clean: torch.Tensor
    corrupt: torch.Tensor
    answers: torch.Tensor


def prompt_pairs(model: Model, clean: Any, corrupt: Any, answers: Any, chunk: int) -> tuple[int, list[PromptGroup]]:
    """The number of prompt pairs N and the pairs grouped by token length, at most ``chunk`` a group (no padding).

    ``clean`` and ``corrupt`` as :func:`token_lists` takes them, pairwise of the same length; ``answers`` [N, 2]
    (correct, alternative ids), default ``clean.answers``."""
    clean_ids, corrupt_ids = token_lists(model, clean, "clean"), token_lists(model, corrupt, "corrupt")
    if len(clean_ids) != len(corrupt_ids):
        raise ValueError(f"{len(clean_ids)} clean prompts but {len(corrupt_ids)} corrupted ones: give one of each")
    for i, (a, b) in enumerate(zip(clean_ids, corrupt_ids, strict=True)):
        if len(a) != len(b):
            raise ValueError(
                f"prompt {i}: the clean prompt is {len(a)} tokens and the corrupted one {len(b)}; path patching "
                "needs them token-aligned (single-token names, objects and colours keep them so)"
            )
    if answers is None:
        answers = getattr(clean, "answers", None)
        if answers is None:
            raise ValueError("give answers: [prompts, 2] token ids (correct, alternative)")
    answers = torch.as_tensor(answers).long().cpu()
    if answers.shape != (len(clean_ids), 2):
        raise ValueError(
            f"answers must be [{len(clean_ids)}, 2] (correct, alternative ids), got {tuple(answers.shape)}"
        )
    by_length: dict[int, list[int]] = {}
    for i, ids in enumerate(clean_ids):
        by_length.setdefault(len(ids), []).append(i)
    device = model.device
    groups = []
    for idx in by_length.values():
        for lo in range(0, len(idx), chunk):
            part = idx[lo : lo + chunk]
            groups.append(
                PromptGroup(
                    part,
                    torch.tensor([clean_ids[i] for i in part], device=device),
                    torch.tensor([corrupt_ids[i] for i in part], device=device),
                    answers[part],
                )
            )
    return len(clean_ids), groups
