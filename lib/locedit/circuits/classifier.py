"""A two-way score head on a frozen model: how chapter 5 reads a classification task from the network.

The paper (Ge et al. 2024) trains only the score layer of ``GPT2ForSequenceClassification``: a bias-free
Linear(d_model, 2) on the final-norm output at each text's last token. We do the same on the base model's
``last_hidden_state`` (after the final norm), at the last real token of each text (texts are right-padded, so no
position shifts), with the model frozen: the states are computed once and the head is trained on them.

Shapes: texts are a list of n strings; states are [n, d_model]; head logits [n, 2] (class 1 = true / grammatical /
agrees).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Protocol

import torch

from locedit._checks import prompt_list
from locedit.circuits.units import Circuit, unit_masks
from locedit.models import Model
from locedit.tokens import pad_id, pad_rows


class LabeledTexts(Protocol):
    """What the classifier reads of a task (``locedit.data.classification.ClassificationTask`` is one)."""

    name: str
    texts: list[str]
    labels: list[int]


@dataclass
class TaskHead:
    """The trained score head of one task: ``linear`` maps [.., d_model] final states to [.., 2] logits."""

    linear: torch.nn.Linear
    task: str


def check_task(task: LabeledTexts) -> None:
    """A ValueError naming the problem unless ``task`` has texts, one 0/1 label per text, and both labels."""
    texts, labels = list(task.texts), list(task.labels)
    if not texts:
        raise ValueError(f"task {task.name!r} has no texts: give it labelled texts (e.g. hierarchy_task())")
    if len(texts) != len(labels):
        raise ValueError(f"task {task.name!r} has {len(texts)} texts but {len(labels)} labels: give one per text")
    if not set(labels) <= {0, 1}:
        raise ValueError(f"task {task.name!r} has labels {sorted(set(labels))}; labels are 0 or 1")
    if len(set(labels)) < 2:
        raise ValueError(f"task {task.name!r} has only label {labels[0]}: a two-way head needs both classes")


def encode_texts(model: Model, texts: Sequence[str]) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids`` and ``attention_mask`` [n, seq] (with the tokenizer's special tokens) and
    ``last`` [n], each text's last real position; on the model's device."""
    texts = prompt_list(list(texts))
    rows = [model.tokenizer(text)["input_ids"] for text in texts]
    batch = pad_rows(rows, pad_id(model), side="right", device=model.device)
    batch["last"] = batch["attention_mask"].sum(1) - 1
    return batch


def final_states(
    model: Model, batch: dict[str, torch.Tensor], multipliers: dict[str, torch.Tensor] | None = None
) -> torch.Tensor:
    """The final-norm output at each row's last real token, [n, d_model], in the model's dtype, under
    :func:`~locedit.circuits.units.unit_masks` when ``multipliers`` are given (differentiable in them). One pass
    over the batch ``batch`` (from :func:`encode_texts`, rows selected as needed)."""
    width = int(batch["last"].max()) + 1
    context = unit_masks(model, multipliers) if multipliers else nullcontext()
    with context:
        hidden = model.hf.base_model(
            input_ids=batch["input_ids"][:, :width], attention_mask=batch["attention_mask"][:, :width], use_cache=False
        ).last_hidden_state
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), batch["last"]]


def select(batch: dict[str, torch.Tensor], rows: torch.Tensor) -> dict[str, torch.Tensor]:
    """The rows ``rows`` of an :func:`encode_texts` batch."""
    rows = rows.to(batch["input_ids"].device)
    return {key: value[rows] for key, value in batch.items()}


def last_token_states(
    model: Model,
    texts: Sequence[str],
    batch_size: int = 64,
    multipliers: dict[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Final-norm states at each text's last token, [n, d_model], float32 on the CPU, no gradient; in batches of
    ``batch_size`` texts, under ``multipliers`` (see :func:`final_states`) if given."""
    batch = encode_texts(model, texts)
    n = batch["input_ids"].shape[0]
    out = []
    with torch.no_grad():
        for start in range(0, n, batch_size):
            rows = torch.arange(start, min(n, start + batch_size))
            out.append(final_states(model, select(batch, rows), multipliers).float().cpu())
    return torch.cat(out)


def train_head(
    model: Model, task: LabeledTexts, epochs: int = 400, lr: float = 0.01, seed: int = 0, batch_size: int = 128
) -> TaskHead:
    """Train a bias-free Linear(d_model, 2) on the frozen model's last-token states of ``task`` (the paper's
    ``score.weight``, AdamW, 400 epochs, lr 0.01, batches of 128), cross-entropy against the labels."""
    check_task(task)
    states = last_token_states(model, task.texts)
    labels = torch.tensor(list(task.labels))
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    linear = torch.nn.Linear(states.shape[1], 2, bias=False)
    optimizer = torch.optim.AdamW(linear.parameters(), lr=lr)
    for _ in range(epochs):
        for rows in torch.randperm(len(labels), generator=generator).split(batch_size):
            loss = torch.nn.functional.cross_entropy(linear(states[rows]), labels[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    linear.requires_grad_(False)
    return TaskHead(linear=linear, task=task.name)


def head_logits(
    model: Model, head: TaskHead, texts: Sequence[str], multipliers: dict[str, torch.Tensor] | None = None
) -> torch.Tensor:
    """The head's logits [n, 2] (float32, CPU, no gradient) on ``texts``, under ``unit_masks(multipliers)``."""
    return head.linear(last_token_states(model, texts, multipliers=multipliers)).detach()


def accuracy(model: Model, head: TaskHead, task: LabeledTexts, circuit: Circuit | None = None) -> float:
    """The fraction of ``task``'s texts the head labels right, on the full model or, given ``circuit``, on the
    network with every unit outside the circuit zeroed (bool unit masks: the same logits as
    :func:`~locedit.circuits.units.pruned`)."""
    check_task(task)
    multipliers = None if circuit is None else circuit.masks
    predicted = head_logits(model, head, task.texts, multipliers).argmax(1)
    return float((predicted == torch.tensor(list(task.labels))).float().mean())
