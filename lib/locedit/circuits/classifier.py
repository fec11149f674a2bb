"""How chapter 5 reads a two-way classification task from a frozen model: a trained score head, or the LM's own
answer tokens.

Both read the base model's ``last_hidden_state`` (after the final norm) at the last real token of each text (texts
are right-padded, so no position shifts).

- **Score head** (:func:`train_head`, the paper's): Ge et al. 2024 train only the score layer of
  ``GPT2ForSequenceClassification``, a bias-free Linear(d_model, 2), with the model frozen; the states are computed
  once and the head is trained on them.
- **Answer head** (:func:`answer_head`, ours): no training; each text is a prompt with two candidate next tokens
  (one per class, from the task's ``answers``), and the class logits are the language model's own logits of those
  two tokens: ``W_U[a_c] . h + b[a_c]`` (then the family's logit soft-capping, if any). This is what the model
  itself would say, so a circuit that keeps it keeps the model's behaviour, not a probe's.

Shapes: texts are a list of n strings; states are [n, d_model]; head logits [n, 2] (class 1 = true / grammatical /
agrees).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Protocol

import torch

from locedit._checks import prompt_list
from locedit.arch import logit_cap, soft_cap
from locedit.circuits.units import Circuit, unit_masks
from locedit.fingerprints import weights_digest
from locedit.models import Model
from locedit.tokens import first_target_id, pad_id, pad_rows


class LabeledTexts(Protocol):
    """What the classifier reads of a task (``locedit.data.classification.ClassificationTask`` is one)."""

    name: str
    texts: list[str]
    labels: list[int]


@dataclass
class ScoreHead:
    """The paper's reading of a task (module docstring): ``linear``, a bias-free Linear(d_model, 2)."""

    task: str
    linear: torch.nn.Linear
    kind = "score"

    def logits(self, states: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        """Class logits [n, 2] of final states [n, d_model] (``texts`` unused: the head reads the states alone)."""
        return self.linear(states)

    def to(self, device: torch.device | str, dtype: torch.dtype) -> ScoreHead:
        """A copy of the head on ``device`` in ``dtype``."""
        linear = torch.nn.Linear(self.linear.in_features, 2, bias=False).to(device, dtype)
        linear.weight.data.copy_(self.linear.weight)
        return ScoreHead(task=self.task, linear=linear.requires_grad_(False))

    def digest(self) -> str:
        """A content digest of what the head computes (for caches)."""
        return "score:" + weights_digest([self.linear.weight], sample=None)


@dataclass
class AnswerHead:
    """The LM's own reading of a task (module docstring): ``weight`` [k, d_model] and ``bias`` [k] are the
    unembedding rows of the task's k distinct answer tokens and their biases (zero if the unembedding has none),
    ``index`` maps each text to (row of its class-0 token, row of its class-1 token), ``softcap`` is the family's
    final-logit soft-cap (``None``: none)."""

    task: str
    weight: torch.Tensor
    bias: torch.Tensor
    index: dict[str, tuple[int, int]] = field(default_factory=dict)
    softcap: float | None = None
    kind = "answer"

    def logits(self, states: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        """Class logits [n, 2] of final states [n, d_model] of ``texts`` (n strings, each looked up in ``index``)."""
        missing = [t for t in texts if t not in self.index]
        if missing:
            raise ValueError(
                f"answer head of {self.task!r} has no answer tokens for {missing[:2]}: build it with "
                "answer_head(model, task) on a task that holds these texts"
            )
        rows = torch.tensor([self.index[t] for t in texts], device=states.device)  # [n, 2]
        return soft_cap(torch.einsum("nd,ncd->nc", states, self.weight[rows]) + self.bias[rows], self.softcap)

    def to(self, device: torch.device | str, dtype: torch.dtype) -> AnswerHead:
        """A copy of the head with its tensors on ``device`` in ``dtype``."""
        return AnswerHead(
            self.task, self.weight.to(device, dtype), self.bias.to(device, dtype), self.index, self.softcap
        )

    def digest(self) -> str:
        """A content digest of what the head computes (for caches)."""
        index = sorted(self.index.items())
        return f"answer:{self.softcap}:{index}:" + weights_digest([self.weight, self.bias], sample=None)


TaskHead = ScoreHead | AnswerHead
"""How one task's two classes are read from final states: ``.logits(states [n, d_model], texts) → [n, 2]``,
``.to(device, dtype)``, ``.digest()`` and ``.kind`` (``"score"`` or ``"answer"``)."""


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
) -> ScoreHead:
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
    return ScoreHead(task=task.name, linear=linear)


def answer_head(model: Model, task: LabeledTexts) -> AnswerHead:
    """The LM's own reading of ``task`` (module docstring): each text is a prompt, ``task.answers[i]`` its class-0
    and class-1 continuations (e.g. ``(" cat", " dog")`` after "A beagle is a kind of"; a leading space is added
    when missing, as for every target). Each answer is read by its first token; a ValueError when a task has no
    ``answers`` or a text's two answers begin with the same token."""
    check_task(task)
    answers = getattr(task, "answers", None)
    if not answers or len(answers) != len(task.texts):
        raise ValueError(
            f"task {task.name!r} has no answers (one pair of class-0 / class-1 continuations per text): an answer "
            "head reads the model's logits of those tokens; use train_head(model, task) for a statement task"
        )
    tokens: dict[int, int] = {}
    index: dict[str, tuple[int, int]] = {}
    for text, pair in zip(task.texts, answers, strict=True):
        ids = [first_target_id(model, answer) for answer in pair]
        if ids[0] == ids[1]:
            raise ValueError(
                f"task {task.name!r}: the answers {pair!r} of {text!r} begin with the same token, so the model's "
                "logits cannot tell them apart; choose answers whose first tokens differ"
            )
        index[text] = tuple(tokens.setdefault(i, len(tokens)) for i in ids)
    matrix = model.spec.unembedding(model.hf)  # [vocab, d_model]
    bias = getattr(model.spec.part(model.hf, "unembed"), "bias", None)
    ids = torch.tensor(list(tokens), device=matrix.device)
    with torch.no_grad():
        weight = matrix[ids].float().cpu()
        bias = bias[ids].float().cpu() if bias is not None else torch.zeros(len(tokens))
    return AnswerHead(task=task.name, weight=weight, bias=bias, index=index, softcap=logit_cap(model.hf))


def head_logits(
    model: Model, head: TaskHead, texts: Sequence[str], multipliers: dict[str, torch.Tensor] | None = None
) -> torch.Tensor:
    """The head's logits [n, 2] (float32, CPU, no gradient) on ``texts``, under ``unit_masks(multipliers)``."""
    texts = list(texts)
    return head.logits(last_token_states(model, texts, multipliers=multipliers), texts).detach()


def accuracy(model: Model, head: TaskHead, task: LabeledTexts, circuit: Circuit | None = None) -> float:
    """The fraction of ``task``'s texts the head labels right, on the full model or, given ``circuit``, on the
    network with every unit outside the circuit zeroed (bool unit masks: the same logits as
    :func:`~locedit.circuits.units.pruned`)."""
    check_task(task)
    multipliers = None if circuit is None else circuit.masks
    predicted = head_logits(model, head, task.texts, multipliers).argmax(1)
    return float((predicted == torch.tensor(list(task.labels))).float().mean())
