"""locedit.circuits.metrics: the logit difference and accuracy."""

from __future__ import annotations

import pytest
import torch

from locedit.circuits.metrics import accuracy, logit_diff


def test_metrics():
    logits = torch.zeros(3, 2, 5)
    logits[:, -1] = torch.tensor([[0.0, 3, 1, 0, 0], [0, 1, 2, 0, 0], [5, 0, 0, 0, 0]])
    answers = torch.tensor([[1, 2], [1, 2], [1, 2]])
    assert logit_diff(logits, answers).tolist() == [2.0, -1.0, 0.0]
    assert accuracy(logits, answers) == pytest.approx(1 / 3)  # top-1 over the vocabulary
    assert accuracy(logits, answers, answers) == pytest.approx(1 / 3)  # among the pair (a tie is not a win)
    assert accuracy(logits[:, -1], answers, torch.tensor([[1, 2, 3]] * 3)) == pytest.approx(1 / 3)
