"""locedit.circuits.masks: learned unit masks reach their density, report failures, cache by content, score."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from locedit.circuits.classifier import answer_head, train_head
from locedit.circuits.masks import MaskSettings, circuit_scores, learn_circuit
from locedit.circuits.units import UNIT_KINDS, full_circuit, unit_layout
from test_circuits_classifier import ToyTask, toy_choice_task, toy_task
from word_model import tiny_word_llama

# every unit kind, small logits, the whole toy task in each step (the defaults are tuned for SmolLM2)
FAST = MaskSettings(
    lr=0.2, init_mean=2.7, lambda_start=1.0, lambda_step=2.0, max_steps=150, batch_size=128, kinds=UNIT_KINDS
)


@pytest.fixture(scope="module")
def model():
    return tiny_word_llama()


@pytest.fixture(scope="module")
def head(model):
    return train_head(model, toy_task(), epochs=200, lr=0.05)


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCEDIT_CACHE", str(tmp_path))


def _finite(learned) -> bool:
    numbers = [learned.circuit.density, learned.seconds, *vars(learned.scores).values()]
    numbers += [value for entry in learned.log for value in entry.values()]
    return all(math.isfinite(float(x)) for x in numbers)


def test_learn_circuit_reaches_its_density_with_the_weights_frozen(model, head):
    before = [(p.detach().clone(), p.requires_grad) for p in model.hf.parameters()]
    learned = learn_circuit(model, toy_task(), head, 0.4, FAST, cache=False)
    assert learned.reached and learned.circuit.density <= 0.4 and learned.circuit.n_params > 0
    assert "reached" in learned.stop and learned.steps == len(learned.log) <= FAST.max_steps
    assert learned.log[0]["density"] > 0.4 >= learned.log[-1]["density"]
    assert all(e["density"] > 0.4 for e in learned.log[:-1])  # stops at the first step at the target
    assert [e["lambda"] for e in learned.log[:3]] == [1.0, 3.0, 5.0]
    assert _finite(learned) and learned.task == "toy"
    # the learned circuit keeps the task better than chance, and its scores are the paper's four numbers
    assert learned.scores.full_accuracy == 1.0
    assert learned.scores == circuit_scores(model, toy_task(), head, learned.circuit)
    for param, (value, flag) in zip(model.hf.parameters(), before, strict=True):
        assert torch.equal(param, value) and param.requires_grad == flag


def test_full_circuit_scores(model, head):
    scores = circuit_scores(model, toy_task(), head, full_circuit(unit_layout(model)))
    assert scores.faithfulness == 1.0 and scores.circuit_accuracy == scores.full_accuracy == 1.0


def test_never_reaching_the_density_is_reported(model, head):
    learned = learn_circuit(model, toy_task(), head, 0.05, MaskSettings(max_steps=3), cache=False)
    assert not learned.reached and learned.steps == 3 and "still above" in learned.stop
    assert learned.circuit.density > 0.05 and _finite(learned)


def test_a_collapse_to_nothing_is_reported(model, head):
    # a huge learning rate and sparsity weight drive every logit below zero in one step
    settings = MaskSettings(lr=100.0, lambda_start=1e6, max_steps=5, kinds=UNIT_KINDS)
    learned = learn_circuit(model, toy_task(), head, 0.3, settings, cache=False)
    assert not learned.reached and "collapsed" in learned.stop
    assert learned.circuit.n_units() == 0 and _finite(learned)


@pytest.mark.parametrize("density", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_density_outside_the_open_interval_is_refused(model, head, density):
    with pytest.raises(ValueError, match=r"outside \(0, 1\)"):
        learn_circuit(model, toy_task(), head, density)


def test_empty_task_is_refused(model, head):
    with pytest.raises(ValueError, match="no texts"):
        learn_circuit(model, ToyTask("empty", [], []), head, 0.1)


def test_nan_loss_raises_a_clear_error(model, head):
    broken = train_head(model, toy_task(), epochs=1)
    with torch.no_grad():
        broken.linear.weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="mask loss became nan"):
        learn_circuit(model, toy_task(), broken, 0.3, FAST, cache=False)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="unknown unit kind"):
        MaskSettings(kinds=("neuron", "layer"))
    with pytest.raises(ValueError, match="empty"):
        MaskSettings(kinds=())
    with pytest.raises(ValueError, match="positive"):
        MaskSettings(temperature=0.0)


def test_only_the_chosen_kinds_are_masked(model, head):
    learned = learn_circuit(model, toy_task(), head, 0.6, MaskSettings(**{**vars(FAST), "kinds": ("neuron",)}))
    assert learned.circuit.masks["head"].all() and learned.circuit.masks["norm"].all()
    assert not learned.circuit.masks["neuron"].all()


def test_learned_circuits_are_cached_by_content(model, head, tmp_path):
    task = toy_task()
    first = learn_circuit(model, task, head, 0.5, FAST)
    files = list((tmp_path / "circuit_masks").iterdir())
    assert files
    again = learn_circuit(model, task, head, 0.5, FAST)
    assert again.circuit == first.circuit and again.log == first.log and again.seconds == first.seconds
    # the run to 0.5 passed 0.7 on its way: answered from the file, the same as a fresh run to 0.7
    higher = learn_circuit(model, task, head, 0.7, FAST)
    fresh = learn_circuit(model, task, head, 0.7, FAST, cache=False)
    assert higher.circuit == fresh.circuit and higher.steps == fresh.steps <= first.steps
    assert higher.log == first.log[: higher.steps] and higher.scores == fresh.scores
    # other labels are another task: trained afresh (its own file)
    other = ToyTask("toy", task.texts, [1 - label for label in task.labels])
    learn_circuit(model, other, head, 0.5, FAST)
    assert len(list((tmp_path / "circuit_masks").iterdir())) > len(files)


def test_learn_circuit_with_an_answer_head_keeps_the_models_own_choices(model):
    task = toy_choice_task()
    head = answer_head(model, task)
    learned = learn_circuit(model, task, head, 0.5, replace(FAST, kinds=("neuron", "head")), cache=False)
    assert learned.reached and _finite(learned) and learned.circuit.density <= 0.5
    # norms were not masked: whole in the circuit and in its complement
    assert learned.circuit.kinds == ("neuron", "head") and learned.circuit.complement().unit_density("norm") == 1.0
    assert learned.scores == circuit_scores(model, task, head, learned.circuit)
    # a score head and an answer head are different cache keys even on the same texts
    assert head.digest().startswith("answer:") and train_head(model, toy_task(), epochs=1).digest().startswith("score:")
