"""locedit.activations: neuron activations on text, per text and per token, agree with each other."""

from __future__ import annotations

import numpy as np
import pytest

from locedit.activations import cohens_d, neuron_activations, record_sample
from locedit.neurons import decode_rows


def test_cohens_d():
    assert cohens_d([1, 2, 3], [1, 2, 3]) == 0
    assert cohens_d([2, 3, 4], [0, 1, 2]) == pytest.approx(2.0)


def test_smollm2_animal_neuron_and_activations(smollm2):
    row = decode_rows(smollm2, [(0, 350)], k=5).iloc[0]
    assert "cat" in [t.strip().lower() for t in row.top_tokens.split(" | ")]  # the measured layer-0 animal neuron
    texts = ["My cat sleeps on the sofa.", "The stock market fell today."]
    acts = neuron_activations(smollm2, texts, [(0, 350)])
    assert acts.shape == (2, 1) and acts[0, 0] > acts[1, 0]
    sample = record_sample(smollm2, texts)
    assert sample.max_activation(0, 350) == pytest.approx(float(acts.max()), rel=1e-2)
    per_text = sample.per_text()
    assert per_text.shape == (2, smollm2.spec.n_layers, smollm2.spec.d_mlp)
    np.testing.assert_allclose(per_text[:, 0, 350].numpy(), acts[:, 0], rtol=1e-2)
    assert sample.top_examples(0, 350, n=1).token.iloc[0].strip() == "cat"
