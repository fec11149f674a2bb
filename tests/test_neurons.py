"""locedit.neurons: decoding every neuron and searching by token — checked against brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import TINY_FAMILIES, tiny_model
from locedit.lens import Bf16Readout
from locedit.neurons import (
    NoGateError,
    check_neuron,
    checked_neurons,
    compare_checkpoints,
    concept_scores,
    decode_neurons,
    decode_rows,
    neuron_weights,
    search_neurons,
    token_group,
    token_ids,
)

GATED = ("llama", "gemma3_text")


@pytest.fixture(scope="module", params=TINY_FAMILIES)
def tiny(request):
    return tiny_model(request.param)


def _brute(model, kind, norm):
    """All logits of every neuron of every layer: [L, d_mlp, V] (fine for tiny models only)."""
    spec, hf = model.spec, model.hf
    W = spec.unembedding(hf).detach()
    out = []
    with torch.no_grad():
        for layer in range(spec.n_layers):
            x = neuron_weights(model, kind, layer)
            if norm:
                x = x * math.sqrt(spec.d_model) / x.norm(dim=-1, keepdim=True)
                final = spec.part(hf, "final_norm")
                x = final(x) - (final.bias if getattr(final, "bias", None) is not None else 0)
            z = x @ W.T
            cap = getattr(hf.config, "final_logit_softcapping", None)
            if norm and cap:
                z = torch.tanh(z / cap) * cap
            out.append(z)
    return torch.stack(out)


# --- weights: the right orientation in every family ---------------------------------------------------------------


def test_neuron_weights_are_read_and_write_directions(tiny):
    """up row i · x (+ bias) is the up projection's output i; down column i is what neuron i writes."""
    spec, hf = tiny.spec, tiny.hf
    x = torch.randn(3, spec.d_model)
    kinds = ["up", "down"] + (["gate"] if spec.gated_mlp else [])
    with torch.no_grad():
        for kind in kinds:
            w = neuron_weights(tiny, kind, 1)
            assert w.shape == (spec.d_mlp, spec.d_model)
            module = spec.part(hf, {"up": "mlp_up", "gate": "mlp_gate", "down": "mlp_down"}[kind], 1)
            bias = getattr(module, "bias", None)
            bias = 0 if bias is None else bias
            if kind == "down":
                basis = torch.eye(spec.d_mlp)[:4]
                torch.testing.assert_close(module(basis) - bias, w[:4])
            else:
                torch.testing.assert_close(module(x) - bias, x @ w.T)


def test_gate_on_ungated_family_raises(tiny):
    if tiny.spec.gated_mlp:
        assert neuron_weights(tiny, "gate", 0).shape == (tiny.spec.d_mlp, tiny.spec.d_model)
        return
    with pytest.raises(NoGateError, match="ungated"):
        neuron_weights(tiny, "gate", 0)
    with pytest.raises(NoGateError):
        decode_neurons(tiny, kind="gate", cache=False)


def test_bad_kind_and_indices(tiny):
    with pytest.raises(ValueError, match="unknown neuron kind"):
        neuron_weights(tiny, "value", 0)
    with pytest.raises(IndexError, match="out of range"):
        check_neuron(tiny, 0, tiny.spec.d_mlp)
    with pytest.raises(IndexError, match="out of range"):
        check_neuron(tiny, tiny.spec.n_layers, 0)
    with pytest.raises(IndexError):
        decode_neurons(tiny, layers=[tiny.spec.n_layers], cache=False)
    with pytest.raises(IndexError):
        decode_rows(tiny, [(0, -1)])
    assert checked_neurons(tiny, [(np.int64(1), np.int64(2))]) == [(1, 2)]  # plain ints, checked
    assert type(checked_neurons(tiny, [(np.int64(1), np.int64(2))])[0][0]) is int
    with pytest.raises(IndexError):
        checked_neurons(tiny, [(0, tiny.spec.d_mlp)])


# --- decoding: chunked top-k equals brute force -------------------------------------------------------------------


@pytest.mark.parametrize("norm", [False, True])
def test_decode_matches_brute_force(tiny, norm):
    kind = "gate" if tiny.spec.gated_mlp else "up"
    dec = decode_neurons(tiny, kind=kind, norm=norm, k=5, chunk=7, cache=False, dtype=None)  # chunks cut layers
    z = _brute(tiny, kind, norm)
    vals, ids = z.topk(5, dim=-1)
    assert torch.equal(dec.top_ids.long(), ids)
    torch.testing.assert_close(dec.top_probs, z.softmax(-1).topk(5, dim=-1).values, rtol=1e-4, atol=1e-6)
    z_score = (vals[..., 0] - z.mean(-1)) / z.std(-1, correction=0)
    torch.testing.assert_close(dec.z1, z_score, rtol=1e-3, atol=1e-3)


def test_decode_float64_matches_brute_force():
    """Chunks smaller than a layer (the reused logits buffer, a short last chunk) and a float64 model."""
    model = tiny_model("llama")
    model.hf.double()
    dec = decode_neurons(model, k=5, chunk=7, cache=False, dtype=None)
    z = _brute(model, "up", True)
    assert torch.equal(dec.top_ids.long(), z.topk(5, dim=-1).indices)
    torch.testing.assert_close(dec.top_probs, z.softmax(-1).topk(5, dim=-1).values.float(), rtol=1e-5, atol=1e-7)


def test_sample_find_table_agreement():
    model = tiny_model("llama")
    full = decode_neurons(model, k=4, cache=False, dtype=None)
    part = decode_neurons(model, k=4, sample=10, seed=3, cache=False, dtype=None)
    ids = part.neuron_ids
    assert torch.equal(part.top_ids, full.top_ids[:, ids])
    table = full.table(k=3)
    assert len(table) == model.spec.n_layers * model.spec.d_mlp
    assert list(table.columns) == ["layer", "neuron", "top1", "p1", "z1", "top_tokens"]
    # find: a planted token is found at its rank, in the right neuron
    token = int(full.top_ids[1, 5, 2])
    hits = full.find([token])
    row = hits[(hits.layer == 1) & (hits.neuron == 5)].iloc[0]
    assert row.best_rank == 2
    assert (hits.best_rank < 4).all()
    sample_hits = part.find([token])
    assert set(sample_hits.neuron) <= set(ids.tolist())
    # agreement with itself is 1; across different samples or layers it refuses
    share, per_layer = full.agreement(full)
    assert share == 1.0 and (per_layer == 1.0).all()
    with pytest.raises(ValueError):
        full.agreement(part)
    with pytest.raises(ValueError, match="top-4"):
        full.find([token], max_rank=10)
    assert full.top(1, 5)[2][0] == str(token)
    sub = full.subset(ids)
    assert torch.equal(sub.top_ids, part.top_ids) and sub.agreement(part)[0] == 1.0
    # score: a neuron's z1, found by neuron id in a sampled decoding too
    assert full.score(1, 5) == float(full.z1[1, 5])
    last = int(ids[-1])
    assert part.score(1, last) == pytest.approx(full.score(1, last), rel=1e-6)
    with pytest.raises(IndexError):
        part.top(0, int(np.setdiff1d(np.arange(model.spec.d_mlp), ids.numpy())[0]))


def test_cache_roundtrip(monkeypatch, tmp_path):
    monkeypatch.setenv("LOCEDIT_CACHE", str(tmp_path))
    model = tiny_model("gpt2")
    first = decode_neurons(model, k=3)
    assert list((tmp_path / "neurons").glob("*.pt"))
    again = decode_neurons(model, k=3)
    assert torch.equal(first.top_ids, again.top_ids)
    with torch.no_grad():
        model.spec.part(model.hf, "mlp_up", 0).weight.mul_(-1)  # new weights: a new key, a new result
    changed = decode_neurons(model, k=3)
    assert not torch.equal(first.top_ids, changed.top_ids)
    assert len(list((tmp_path / "neurons").glob("*.pt"))) == 2


def _corrupt(path, how):
    data = path.read_bytes()
    if how == "truncated":  # a run killed mid-write by the old code, or a full disk
        path.write_bytes(data[: len(data) // 2])
    elif how == "garbled":  # bytes overwritten in the middle of the file
        middle = len(data) // 2
        path.write_bytes(data[:middle] + bytes(range(256)) * 8 + data[middle + 2048 :])
    elif how == "empty":
        path.write_bytes(b"")
    else:  # a readable file with the wrong contents
        fields = torch.load(path)
        if how == "wrong shapes":
            fields["top_ids"] = fields["top_ids"][:, :3]
        elif how == "ids outside the vocabulary":
            fields["top_ids"] = fields["top_ids"] + 10**6
        elif how == "missing field":
            del fields["z1"]
        elif how == "not a dict":
            fields = fields["top_ids"]
        elif how == "other arguments":
            fields["k"] = 7
        torch.save(fields, path)


@pytest.mark.parametrize(
    "how",
    ["truncated", "garbled", "empty", "wrong shapes", "ids outside the vocabulary", "missing field", "not a dict",
     "other arguments"],
)  # fmt: skip
def test_unusable_cache_file_is_decoded_again(monkeypatch, tmp_path, capsys, how):
    """A cache file that cannot be read, or holds the wrong decoding, is decoded again (with a one-line note) and
    rewritten; the result equals a fresh decode."""
    monkeypatch.setenv("LOCEDIT_CACHE", str(tmp_path))
    model = tiny_model("llama")
    fresh = decode_neurons(model, k=3, sample=20, cache=False)
    decode_neurons(model, k=3, sample=20)
    (path,) = (tmp_path / "neurons").glob("*.pt")
    _corrupt(path, how)
    capsys.readouterr()
    again = decode_neurons(model, k=3, sample=20)
    note = capsys.readouterr().err
    assert str(path) in note and len(note.strip().splitlines()) == 1
    for name in ("top_ids", "top_probs", "z1", "neuron_ids"):
        assert torch.equal(getattr(again, name), getattr(fresh, name)), name
    assert (again.layers, again.k, again.kind, again.norm) == (fresh.layers, 3, "up", True)
    # the file was rewritten whole: the next call reads it silently, and no temporary file is left
    third = decode_neurons(model, k=3, sample=20)
    assert capsys.readouterr().err == ""
    assert torch.equal(third.top_ids, fresh.top_ids)
    assert sorted(p.name for p in (tmp_path / "neurons").iterdir()) == [path.name]


def test_stale_temporary_files_are_removed(monkeypatch, tmp_path):
    """A decode sweeps its cache folder with :func:`locedit.files.remove_stale_temps` (tested in test_files.py)."""
    import os
    import time

    from locedit.files import STALE_TEMP_SECONDS

    monkeypatch.setenv("LOCEDIT_CACHE", str(tmp_path))
    folder = tmp_path / "neurons"
    folder.mkdir()
    old, recent = folder / ".llama-up-0123.pt.a1b2c3d4.tmp", folder / ".llama-up-4567.pt.d4e5f6g7.tmp"
    for p in (old, recent):
        p.write_bytes(b"half a file")
    hours_ago = time.time() - STALE_TEMP_SECONDS - 60
    os.utime(old, (hours_ago, hours_ago))
    decode_neurons(tiny_model("llama"), k=3, sample=8)
    assert not old.exists() and recent.exists()
    assert len(list(folder.glob("*.pt"))) == 1


def test_progress_bar_shows_during_a_decode(monkeypatch, capsys):
    """With bars on and no delay a decode draws its bar on stderr; with LOCEDIT_PROGRESS=0 it draws nothing."""
    from locedit import progress

    model = tiny_model("llama")
    monkeypatch.setattr(progress, "DELAY", 0.0)
    monkeypatch.setenv("LOCEDIT_PROGRESS", "0")
    decode_neurons(model, k=3, chunk=16, cache=False)
    concept_scores(model, [5, 6])
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("LOCEDIT_PROGRESS", "1")
    dec = decode_neurons(model, k=3, chunk=16, cache=False)
    err = capsys.readouterr().err
    assert "decoding up neurons" in err and f"/{dec.top_ids.shape[0] * dec.top_ids.shape[1]} " in err
    concept_scores(model, [5, 6])
    assert "scoring up neurons" in capsys.readouterr().err


def test_concept_scores_and_search_match_brute_force(tiny):
    z = _brute(tiny, "up", True)  # [L, N, V]
    ids = [5, 17, 42]
    scores = concept_scores(tiny, ids)
    zs = (z[..., ids] - z.mean(-1, keepdim=True)) / z.std(-1, correction=0, keepdim=True)
    top = scores.iloc[0]
    assert top.best_z == pytest.approx(float(zs.max()), rel=1e-3)
    found = search_neurons(tiny, ids, candidates=tiny.spec.n_layers * tiny.spec.d_mlp, k=3)
    ranks = (z[..., None, :] > z[..., ids][..., None]).sum(-1).min(-1).values  # [L, N]
    assert found.best_rank.iloc[0] == int(ranks.min())
    row = found.iloc[0]
    assert int(ranks[row.layer, row.neuron]) == row.best_rank
    both = search_neurons(tiny, {"a": ids, "b": [7]}, candidates=20, k=3)  # several groups in one pass
    assert set(both) == {"a", "b"} and both["a"].best_rank.iloc[0] == int(ranks.min())


# --- on SmolLM2 ---------------------------------------------------------------------------------------------------


def test_tokens_multi_token_words_warn(smollm2):
    with pytest.warns(UserWarning, match="using the first"):
        ids = token_ids(smollm2, [" dog", " Chihuahua"])
    assert ids[0] == smollm2.token_id(" dog") and len(ids) == 2
    with pytest.raises(ValueError, match="tokens"):
        token_ids(smollm2, [" Chihuahua"], multi="error")
    assert token_ids(smollm2, [" Chihuahua"], multi="drop") == []
    group = token_group(smollm2, ["dog", "dogs"])
    words = [smollm2.tokenizer.decode([i]) for i in group]
    assert " dog" in words and " Dog" in words and " dogs" in words


def test_smollm2_fast_decode_matches_plain_reference(smollm2):
    """The fast decode (reused logits buffer, block top-k, in-place log-softmax, moments from W_U) against full
    logits.

    768 real rows (256 per layer, 3 layers): a 512-row chunk (z1 from W_U's moments) and a 256-row tail (z1 from
    the logits). The reference is ``@`` + ``torch.topk`` + ``log_softmax``; a matmul may sum in another order for
    another shape, so a near-tie may swap ids, logits agree to float32 rounding (≤ 1e-4 here) and probabilities to
    rtol 1e-4.
    """
    layers = [0, 14, 29]
    dec = decode_neurons(smollm2, "up", norm=True, k=10, layers=layers, sample=256, seed=1, cache=False, dtype=None)
    x = torch.cat([neuron_weights(smollm2, "up", layer)[dec.neuron_ids] for layer in layers])
    final = smollm2.spec.part(smollm2.hf, "final_norm")
    with torch.no_grad():
        z = (
            final(x * math.sqrt(smollm2.spec.d_model) / x.norm(dim=-1, keepdim=True))
            @ smollm2.spec.unembedding(smollm2.hf).T
        )
    ref_vals, ref_ids = z.topk(10, dim=-1)
    ids = dec.top_ids.reshape(-1, 10).long()
    same = ids == ref_ids
    assert same.float().mean() > 0.999  # any difference is a near-tie the two matmuls may order either way:
    torch.testing.assert_close(z.gather(1, ids)[~same], ref_vals[~same], rtol=0, atol=1e-4)
    ref_probs = z.log_softmax(-1).gather(1, ids).exp()
    torch.testing.assert_close(dec.top_probs.reshape(-1, 10), ref_probs, rtol=1e-4, atol=1e-7)
    z_score = (ref_vals[:, 0] - z.mean(-1)) / z.std(-1, correction=0)
    torch.testing.assert_close(dec.z1.reshape(-1), z_score, rtol=1e-4, atol=1e-4)


def test_smollm2_bf16_decode_matches_exact(smollm2):
    """bfloat16 candidates re-scored in float32 against the exact decode, on 1,536 real rows (512 per layer).

    Stated tolerance (docstring of ``decode_neurons``): the same top-k tokens (an order may differ only between
    tokens whose exact probabilities tie to 1e-4), probabilities within 1 % relative, z1 within 1e-3.
    """
    args = dict(kind="up", norm=True, k=10, layers=[0, 14, 29], sample=512, seed=2, cache=False)
    exact = decode_neurons(smollm2, **args, dtype=None)
    fast = decode_neurons(smollm2, **args, dtype=torch.bfloat16)
    assert fast.dtype == "bfloat16" and exact.dtype == "exact"
    assert torch.equal(fast.top_ids.sort(-1).values, exact.top_ids.sort(-1).values)
    assert (fast.top_ids != exact.top_ids).float().mean() < 1e-3
    # the exact probability of the token fast ranks at each place: equal to the exact one there, up to a tie
    same_token = fast.top_ids[..., :, None] == exact.top_ids[..., None, :]  # [L, n, k, k]
    exact_of_fast = (same_token * exact.top_probs[..., None, :]).sum(-1)
    torch.testing.assert_close(exact_of_fast, exact.top_probs, rtol=0, atol=1e-4)
    torch.testing.assert_close(fast.top_probs, exact.top_probs, rtol=1e-2, atol=1e-6)
    torch.testing.assert_close(fast.z1, exact.z1, rtol=0, atol=1e-3)
    assert 0 <= fast.redone < 0.1 * fast.top_ids[..., 0].numel()


def test_bf16_rows_redone_in_float32_equal_the_exact_decode(smollm2, monkeypatch):
    """With an infinite safety margin every row is redone in float32: the result is the exact decode's."""
    monkeypatch.setattr(Bf16Readout, "SAFETY", math.inf)
    args = dict(k=5, layers=[3], sample=40, cache=False)
    fast = decode_neurons(smollm2, **args, dtype=torch.bfloat16)
    exact = decode_neurons(smollm2, **args, dtype=None)
    assert fast.redone == 40
    assert torch.equal(fast.top_ids, exact.top_ids)
    torch.testing.assert_close(fast.top_probs, exact.top_probs, rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(fast.z1, exact.z1, rtol=1e-5, atol=1e-5)


def test_bf16_decode_tiny_vocab_and_dtype_choices(monkeypatch):
    """Candidates covering the whole vocabulary (no row can need redoing); soft-capped logits take the exact
    path; an unsupported dtype is refused; ``"auto"`` follows :func:`native_bf16`."""
    from locedit import neurons

    model = tiny_model("llama")
    monkeypatch.setattr(Bf16Readout, "EXTRA", 10**6)
    fast = decode_neurons(model, k=5, cache=False, dtype=torch.bfloat16)
    exact = decode_neurons(model, k=5, cache=False, dtype=None)
    assert fast.redone == 0 and torch.equal(fast.top_ids, exact.top_ids)
    torch.testing.assert_close(fast.top_probs, exact.top_probs, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="bfloat16"):
        decode_neurons(model, k=5, cache=False, dtype=torch.float16)
    for native, expected in [(True, "bfloat16"), (False, "exact")]:
        monkeypatch.setattr(neurons, "native_bf16", lambda device, native=native: native)
        assert decode_neurons(model, k=5, cache=False).dtype == expected
    capped = tiny_model("gemma3_text")
    capped.hf.config.final_logit_softcapping = 5.0
    assert decode_neurons(capped, k=5, cache=False, dtype=torch.bfloat16).dtype == "exact"


def test_compare_checkpoints(monkeypatch, tmp_path):
    """Base vs instruct: 1.0 against itself, below 1 after a perturbation, refused across architectures."""
    monkeypatch.setenv("LOCEDIT_CACHE", str(tmp_path))
    a = tiny_model("llama")
    b = tiny_model("llama")
    assert compare_checkpoints(a, b)[0] == 1.0
    with torch.no_grad():
        for layer in range(b.spec.n_layers):
            up = b.spec.part(b.hf, "mlp_up", layer).weight
            up.add_(torch.randn_like(up) * up.std())
    share, per_layer = compare_checkpoints(a, b, sample=16)
    assert 0.0 <= share < 1.0 and list(per_layer.index) == list(range(a.spec.n_layers))
    with pytest.raises(ValueError, match="differ in"):
        compare_checkpoints(a, tiny_model("gpt2"))
