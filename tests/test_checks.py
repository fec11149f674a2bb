"""locedit._checks: the argument checks shared by the entry points."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from locedit._checks import integer, string


def test_integer_accepts_numpy_and_torch_integers_and_refuses_the_rest():
    assert integer(np.int64(3), "n") == 3 and integer(torch.tensor(2), "n", minimum=0, maximum=5) == 2
    assert type(integer(np.int64(3), "n")) is int
    with pytest.raises(TypeError, match=r"n must be an integer, not a bool"):
        integer(True, "n")
    for bad in (1.0, np.float32(1), torch.tensor(1.0), "1"):
        with pytest.raises(TypeError, match=r"n must be an integer, got"):
            integer(bad, "n")
    with pytest.raises(ValueError, match=r"seed must be ≥ 0, got -1: pass a seed"):
        integer(-1, "seed", minimum=0, fix="pass a seed")
    with pytest.raises(ValueError, match=r"head = 4 is out of range 0\.\.3"):
        integer(4, "head", minimum=0, maximum=3)


def test_string_names_the_argument():
    assert string("Paris", "target") == "Paris"
    with pytest.raises(TypeError, match=r"target must be a string, e\.g\. 'Paris'; got int 3"):
        string(3, "target", example="Paris")
