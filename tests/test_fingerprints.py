"""locedit.fingerprints: content digests of weights (for disk caches) and the in-process staleness key."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import torch

from conftest import tiny_model
from locedit.editing.stats import model_fingerprint
from locedit.fingerprints import model_digest, weights_digest, weights_version


def test_same_weights_same_digest_in_another_model_and_process():
    a, b = tiny_model("llama"), tiny_model("llama")
    assert model_digest(a) == model_digest(b) and len(model_digest(a)) == 16
    assert model_digest(a) != model_digest(tiny_model("llama", seed=1))
    assert weights_digest([torch.ones(3)], salt="x") != weights_digest([torch.ones(3)], salt="y")
    assert weights_digest([torch.ones(6)]) != weights_digest([torch.ones(2, 3)])  # shapes count
    code = "import torch; from locedit.fingerprints import weights_digest as d; print(d([torch.arange(9.).view(3, 3)]))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert other == weights_digest([torch.arange(9.0).view(3, 3)])


def test_different_layer_sets_differ():
    model = tiny_model("llama")
    assert model_digest(model, [0]) != model_digest(model, [0, 1]) != model_digest(model, [1])
    assert model_digest(model, [0, 1]) == model_digest(model)
    assert model_digest(model, [0], embed=False) != model_digest(model, [0])


def test_an_edit_of_one_value_changes_the_digest():
    """Every value counts with ``sample=None`` and in a tensor of at most ``sample`` values; beyond that, a value
    counts if the stride samples it. Edits through the parameter and through ``.data`` alike."""
    model = tiny_model("llama")
    weight = model.spec.part(model.hf, "mlp_down", 1).weight  # 6,144 values < SAMPLE: all read by default
    before, full, value = model_digest(model), model_digest(model, sample=None), weight[3, 5].item()
    with torch.no_grad():
        weight[3, 5] += 1.0
    assert model_digest(model) != before and model_digest(model, sample=None) != full
    assert model_digest(model, [0]) == model_digest(tiny_model("llama"), [0])  # block 1 is not in the set [0]
    with torch.no_grad():
        weight[3, 5] = value
    assert model_digest(model) == before and model_digest(model, sample=None) == full
    weight.data[3, 5] += 1.0
    assert model_digest(model) != before and model_digest(model, sample=None) != full
    t = torch.arange(10.0)
    sampled = weights_digest([t], sample=2)  # reads t[0], t[5]
    t[3] += 1.0
    assert weights_digest([t], sample=2) == sampled  # the cost of sampling: an unsampled value is not seen
    t[5] += 1.0
    assert weights_digest([t], sample=2) != sampled


def test_stats_fingerprint_keeps_its_keys():
    """``model_fingerprint`` moved onto :func:`model_digest` without changing a byte (existing caches stay valid)."""
    model = tiny_model("gpt2")
    spec, hf = model.spec, model.hf
    for layer in (0, None):
        last = spec.n_layers - 1 if layer is None else layer
        digest = hashlib.blake2b(digest_size=8)
        params = list(spec.part(hf, "embed").parameters())
        for i in range(last + 1):
            params += list(spec.block(hf, i).parameters())
        for p in params:
            flat = p.detach().reshape(-1)
            digest.update(str(tuple(p.shape)).encode())
            digest.update(flat[:: max(1, flat.numel() // 65536)].float().cpu().numpy().tobytes())
        assert model_fingerprint(model, layer) == digest.hexdigest()


def test_weights_version_sees_in_place_edits_data_edits_and_replacements():
    model = tiny_model("llama")
    weight = model.spec.part(model.hf, "mlp_down", 0).weight
    key = weights_version(model.hf)
    assert weights_version(model.hf) == key
    with torch.no_grad():
        weight[3, 5] += 1.0  # any value: the version counter moves
    assert weights_version(model.hf) != key
    key = weights_version(model.hf)
    weight.data[0, 0] += 1.0  # .data bypasses the counter; the strided checksum sees a sampled value
    assert weights_version(model.hf) != key
    key = weights_version(model.hf)
    weight.data = weight.data.clone()  # same values, new storage
    assert weights_version(model.hf) != key
