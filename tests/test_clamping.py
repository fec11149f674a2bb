"""locedit.clamping: clamps set the value and are removed; batched settings equal one run per setting."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import TINY_FAMILIES, tiny_inputs, tiny_model
from locedit.clamping import clamp, generate, generate_settings, group_prob, group_prob_settings
from locedit.hooks import Intervention, patch
from locedit.neurons import token_group


@pytest.fixture(scope="module", params=TINY_FAMILIES)
def tiny(request):
    return tiny_model(request.param)


def test_clamp_sets_value_and_is_removed(tiny):
    inputs = tiny_inputs()
    with torch.no_grad():
        before = tiny.hf(**inputs).logits
    with torch.no_grad(), patch(tiny, clamp([(1, 3)], 7.5), record=["mlp_up.1"]) as rec:
        clamped = tiny.hf(**inputs).logits
    assert torch.all(rec["mlp_up.1"][..., 3] == 7.5)
    assert not torch.allclose(clamped, before)
    with torch.no_grad():
        torch.testing.assert_close(tiny.hf(**inputs).logits, before, rtol=0, atol=0)
    with pytest.raises(RuntimeError), torch.no_grad(), patch(tiny, clamp([(0, 1)], 100.0)):
        raise RuntimeError("boom")
    with torch.no_grad():
        torch.testing.assert_close(tiny.hf(**inputs).logits, before, rtol=0, atol=0)
    with pytest.raises(ValueError, match="one value per neuron"):
        clamp([(0, 1), (0, 2)], [1.0])


@pytest.fixture
def one_thread():
    """Short generations are overhead-bound: one thread is as fast, and much faster on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_smollm2_clamp_generation_and_group_prob(smollm2, one_thread):
    question = "What is your favourite animal?"
    settings = [[], clamp([(0, 350)], 60.0)]
    base, clamped = generate_settings(smollm2, question, settings, max_new_tokens=3)  # row r under setting r only
    assert base != clamped
    assert generate(smollm2, question, settings[1], max_new_tokens=3) == clamped  # batched = one at a time
    ids = token_group(smollm2, ["cat", "cats"])
    p0 = group_prob(smollm2, ["I have a pet"], ids)
    p1 = group_prob(smollm2, ["I have a pet"], ids, clamp([(0, 350)], 20.0))
    assert p0.shape == (1,) and p1[0] != p0[0]
    probs = group_prob_settings(smollm2, ["I have a pet", "Look at that"], ids, [[], clamp([(0, 350)], 20.0)])
    assert probs.shape == (2, 2)
    np.testing.assert_allclose(probs[:, 0], [p0[0], p1[0]], rtol=1e-3)
    with pytest.raises(IndexError):
        generate(smollm2, "hi", [Intervention("mlp_up.0", "replace", 1.0, index=[smollm2.spec.d_mlp])])
