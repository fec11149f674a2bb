"""locedit.circuits.classifier: last-token states, the trained score head, its logits and accuracy under circuits."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from locedit.circuits.classifier import (
    AnswerHead,
    TaskHead,
    accuracy,
    answer_head,
    check_task,
    head_logits,
    last_token_states,
    train_head,
)
from locedit.circuits.units import empty_circuit, full_circuit, pruned, random_circuit, unit_layout
from word_model import tiny_word_llama


@dataclass(frozen=True)
class ToyTask:
    """A ClassificationTask-like task: name, texts, labels."""

    name: str
    texts: list[str]
    labels: list[int]


def toy_task() -> ToyTask:
    """Texts of different lengths; label 1 when the text ends in "Paris" or "city", 0 for "Rome" or "to"."""
    starts = ["The Eiffel Tower is in", "The", "a city of the", "Tower is", "is in the", "The Eiffel", "of the city of"]
    texts, labels = [], []
    for start in starts:
        for word, label in (("Paris", 1), ("Rome", 0), ("city", 1), ("to", 0)):
            texts.append(f"{start} {word}")
            labels.append(label)
    return ToyTask("toy", texts, labels)


@pytest.fixture(scope="module")
def model():
    return tiny_word_llama()


@pytest.fixture(scope="module")
def head(model) -> TaskHead:
    return train_head(model, toy_task(), epochs=200, lr=0.05)


def test_last_token_states_read_each_texts_last_real_token(model):
    texts = ["The Eiffel Tower is in Paris", "Rome", "of the city"]
    states = last_token_states(model, texts, batch_size=2)
    assert states.shape == (3, model.spec.d_model) and states.dtype == torch.float32
    for i, text in enumerate(texts):
        ids = model.tokenizer(text, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            alone = model.hf.base_model(input_ids=ids).last_hidden_state[0, -1]
        assert torch.allclose(states[i], alone, atol=1e-5)


def test_train_head_learns_a_separable_task_with_the_model_frozen(model, head):
    before = [p.detach().clone() for p in model.hf.parameters()]
    task = toy_task()
    assert head.task == "toy" and head.linear.bias is None
    assert head.linear.weight.shape == (2, model.spec.d_model) and not head.linear.weight.requires_grad
    assert accuracy(model, head, task) == 1.0
    assert all(torch.equal(a, b) for a, b in zip(before, model.hf.parameters(), strict=True))
    # a head trained on shuffled labels cannot be right on every text of the real labels
    shuffled = ToyTask("toy", task.texts, task.labels[1:] + task.labels[:1])
    assert accuracy(model, train_head(model, shuffled, epochs=50), task) < 1.0


def test_head_logits_under_circuits(model, head):
    task = toy_task()
    layout = unit_layout(model)
    plain = head_logits(model, head, task.texts)
    assert plain.shape == (len(task.texts), 2)
    assert torch.allclose(head_logits(model, head, task.texts, full_circuit(layout).masks), plain, atol=1e-6)
    assert accuracy(model, head, task, full_circuit(layout)) == accuracy(model, head, task)
    circuit = random_circuit(layout, 0.3, seed=2)
    with pruned(model, circuit):
        pruned_logits = head_logits(model, head, task.texts)
    assert torch.allclose(head_logits(model, head, task.texts, circuit.masks), pruned_logits, atol=1e-5)
    # no unit at all: the blocks add nothing, so the state is the final norm of the last token's embedding
    empty = last_token_states(model, task.texts, multipliers=empty_circuit(layout).masks)
    last_ids = torch.tensor([model.tokenizer(text)["input_ids"][-1] for text in task.texts])
    spec = model.spec
    with torch.no_grad():
        expected = spec.part(model.hf, "final_norm")(spec.part(model.hf, "embed")(last_ids))
    assert torch.allclose(empty, expected, atol=1e-5)


@pytest.mark.parametrize(
    ("texts", "labels", "message"),
    [
        ([], [], "no texts"),
        (["The city"], [1, 0], "one per text"),
        (["The city", "Rome"], [1, 2], "labels are 0 or 1"),
        (["The city", "Rome"], [1, 1], "both classes"),
    ],
)
def test_bad_tasks_are_refused(model, texts, labels, message):
    task = ToyTask("bad", texts, labels)
    with pytest.raises(ValueError, match=message):
        check_task(task)
    with pytest.raises(ValueError, match=message):
        train_head(model, task)


@dataclass(frozen=True)
class ToyChoiceTask:
    """Prompts with two candidate next words each: class c is the word answers[i][c]."""

    name: str
    texts: list[str]
    labels: list[int]
    answers: list[tuple[str, str]]


def toy_choice_task() -> ToyChoiceTask:
    prompts = ["The Eiffel Tower is in", "Tower is in the city of", "The city of", "a city is in", "The Tower of"]
    pairs = [("Paris", "Rome"), ("Rome", "Paris"), ("city", "Paris"), ("to", "the"), ("Rome", "city")]
    return ToyChoiceTask("choice", prompts, [0, 1, 0, 1, 1], pairs)


def test_answer_head_reads_the_models_own_logits_of_the_two_answers(model):
    task = toy_choice_task()
    head = answer_head(model, task)
    assert head.kind == "answer" and isinstance(head, AnswerHead)
    assert head.weight.shape == (len({w for pair in task.answers for w in pair}), model.spec.d_model)
    logits = head_logits(model, head, task.texts)
    for i, (text, pair) in enumerate(zip(task.texts, task.answers, strict=True)):
        ids = model.tokenizer(text, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            full = model.hf(input_ids=ids).logits[0, -1]
        expected = full[[model.tokenizer(" " + w, add_special_tokens=False)["input_ids"][0] for w in pair]]
        assert torch.allclose(logits[i], expected, atol=1e-4)
    predicted = logits.argmax(1)
    assert accuracy(model, head, task) == float((predicted == torch.tensor(task.labels)).float().mean())
    # under a circuit the head reads the pruned network, as a score head does
    circuit = random_circuit(unit_layout(model), 0.3, seed=2)
    with pruned(model, circuit):
        pruned_logits = head_logits(model, head, task.texts)
    assert torch.allclose(head_logits(model, head, task.texts, circuit.masks), pruned_logits, atol=1e-4)
    assert head.digest() != answer_head(model, ToyChoiceTask("choice", task.texts, task.labels, [
        (b, a) for a, b in task.answers])).digest()  # fmt: skip


def test_answer_head_refuses_tasks_it_cannot_read(model):
    with pytest.raises(ValueError, match="no answers"):
        answer_head(model, toy_task())
    same = ToyChoiceTask("same", ["The city of", "The Tower of"], [0, 1], [("Paris", "Paris"), ("Rome", "city")])
    with pytest.raises(ValueError, match="same token"):
        answer_head(model, same)
    head = answer_head(model, toy_choice_task())
    with pytest.raises(ValueError, match="no answer tokens"):
        head_logits(model, head, ["The Eiffel"])
