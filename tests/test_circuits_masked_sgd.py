"""locedit.circuits.masked_sgd: the feature-sliced gradient equals the full one on its rows / columns, and the
masked edit through it equals the plain masked edit."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from locedit.circuits import circuit_editing
from locedit.circuits.masked_sgd import DenseEntries, FeatureGrad, entries_for
from locedit.circuits.units import parameter_masks, random_circuit, unit_layout
from test_circuits_circuit_editing import REQUESTS, STRONG, model  # noqa: F401 (the fixture)


@pytest.mark.parametrize("out_side", [True, False])
@pytest.mark.parametrize("conv1d", [False, True])
def test_feature_grad_is_the_weight_gradient_on_the_chosen_features(out_side, conv1d):
    from transformers.pytorch_utils import Conv1D

    torch.manual_seed(0)
    layer = Conv1D(5, 4) if conv1d else nn.Linear(4, 5)  # 4 inputs, 5 outputs either way
    x = torch.randn(2, 3, 4)
    index = torch.tensor([0, 2, 3])
    dim = (0 if out_side else 1) if not conv1d else (1 if out_side else 0)
    (layer(x) ** 2).sum().backward()
    full = layer.weight.grad.index_select(dim, index)
    shape = (3, 4) if out_side else (5, 3)
    delta = torch.zeros(shape, requires_grad=True)
    with torch.no_grad():
        y = layer(x)
    out = FeatureGrad.apply(y.requires_grad_(True), x, delta, index, out_side)
    assert torch.equal(out, y)  # the identity forward
    (out**2).sum().backward()
    assert torch.allclose(delta.grad.T if conv1d else delta.grad, full, atol=1e-6)


def test_masks_choose_the_path(model):  # noqa: F811
    params = dict(model.hf.named_parameters())
    name = next(n for n in params if ".mlp." in n and n.endswith("weight") and params[n].dim() == 2)
    p = params[name]
    rows = torch.zeros_like(p, dtype=torch.bool)
    rows[:1] = True
    cols = torch.zeros_like(p, dtype=torch.bool)
    cols[:, :1] = True
    scattered = rows.clone()
    scattered[1, 0] = True
    most = torch.ones_like(p, dtype=torch.bool)
    most[:1] = False
    assert type(entries_for(model, name, p, rows)).__name__ == "FeatureEntries"
    assert type(entries_for(model, name, p, cols)).__name__ == "FeatureEntries"
    assert type(entries_for(model, name, p, scattered)).__name__ == "DenseEntries"
    assert type(entries_for(model, name, p, most)).__name__ == "DenseEntries"  # more than half: the full gradient


def test_circuit_masks_take_the_feature_gradient_path_and_match_the_dense_one(model, monkeypatch):  # noqa: F811
    """Masks of whole rows / columns (a circuit's units) train through :class:`FeatureEntries` (the gradient of the
    chosen features only); forcing the plain path (full gradient times the mask) gives the same edit."""
    masks = parameter_masks(model, random_circuit(unit_layout(model), 0.3, seed=2))
    kinds = {type(part).__name__ for part in circuit_editing._trainable(model, masks).parts}
    assert kinds == {"FeatureEntries", "DenseEntries"}  # linear weights by features, norm gains and biases dense
    with circuit_editing.masked_finetuned(model, REQUESTS[0], masks, STRONG) as losses:
        fast = {n: p.detach().clone() for n, p in model.hf.named_parameters()}
    assert losses[-1] < losses[0]  # it did move

    def dense(_model, _name, param, mask):
        return DenseEntries(param, None if mask is None else mask.to(param.device))

    monkeypatch.setattr(circuit_editing, "entries_for", dense)
    with circuit_editing.masked_finetuned(model, REQUESTS[0], masks, STRONG) as plain_losses:
        for name, p in model.hf.named_parameters():
            assert torch.allclose(p, fast[name], atol=1e-6, rtol=0), name
    assert plain_losses == pytest.approx(losses, rel=1e-5)
