"""Shared fixtures: the two real offline models (loaded once per test session) and tiny random-weight models."""

from __future__ import annotations

import pytest
import torch

from locedit.models import Model, load_model


@pytest.fixture(scope="session")
def smollm2() -> Model:
    """SmolLM2-135M-Instruct, float32, CPU (built from its GGUF on first use, then from the cache)."""
    torch.manual_seed(0)
    return load_model("smollm2-135m", device="cpu")


@pytest.fixture(scope="session")
def gemma3() -> Model:
    """Gemma 3 270M base, float32, CPU."""
    return load_model("gemma3-270m", device="cpu")


@pytest.fixture(params=["smollm2", "gemma3"], scope="session")
def real_model(request) -> Model:
    """Each real model in turn."""
    return request.getfixturevalue(request.param)
