"""locedit.circuits.checks: argument checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from locedit.circuits.checks import whole_number


def test_whole_number():
    assert whole_number(np.int64(3), "n") == 3 and whole_number(torch.tensor(2), "n", 0, 5) == 2
    for bad in (True, 1.0, np.float32(1), torch.tensor(1.0), "1"):
        with pytest.raises(TypeError, match=r"n must be an int, not"):
            whole_number(bad, "n")
    with pytest.raises(ValueError, match=r"seed = -1: give an int >= 0"):
        whole_number(-1, "seed")
    with pytest.raises(ValueError, match=r"head = 4 is out of range: give 0\.\.3"):
        whole_number(4, "head", 0, 3)
