"""locedit.editing.stats: the key-statistics cache survives broken files (the statistics themselves are tested in
test_editing.py)."""

from __future__ import annotations

import pytest
import torch

from locedit.editing import key_second_moment
from test_editing import _tiny_with_tokenizer


@pytest.mark.parametrize("damage", ["truncate", "empty", "garbage"])
def test_unreadable_statistics_and_corpus_are_recomputed(smollm2, tmp_path, monkeypatch, capsys, damage):
    monkeypatch.setenv("LOCEDIT_CACHE", str(tmp_path))
    model = _tiny_with_tokenizer("llama", smollm2.tokenizer)
    first = key_second_moment(model, [0, 1], n_tokens=64, seq_len=16)
    files = sorted((tmp_path / "stats").glob("*.pt"))
    assert len(files) == 3  # the corpus and two layers
    for path in files:
        data = path.read_bytes()
        path.write_bytes({"truncate": data[: len(data) // 2], "empty": b"", "garbage": b"not a torch file"}[damage])
    again = key_second_moment(model, [0, 1], n_tokens=64, seq_len=16)
    assert torch.equal(again[0], first[0]) and torch.equal(again[1], first[1])
    assert "unreadable cache file" in capsys.readouterr().err
    assert torch.equal(key_second_moment(model, 1, n_tokens=64, seq_len=16), first[1])  # rewritten, readable
    assert not list((tmp_path / "stats").glob(".*"))  # no temporary files left


def test_layers_may_be_numpy_or_torch_integers(smollm2, tmp_path, monkeypatch):
    import numpy as np

    monkeypatch.setenv("LOCEDIT_CACHE", str(tmp_path))
    model = _tiny_with_tokenizer("llama", smollm2.tokenizer)
    first = key_second_moment(model, 1, n_tokens=32, seq_len=16)
    assert torch.equal(key_second_moment(model, np.int64(1), n_tokens=32, seq_len=16), first)
    assert torch.equal(key_second_moment(model, torch.tensor(1), n_tokens=32, seq_len=16), first)
    both = key_second_moment(model, [np.int64(0), torch.tensor(1)], n_tokens=32, seq_len=16)
    assert sorted(both) == [0, 1] and torch.equal(both[1], first)
    with pytest.raises(TypeError, match="layer"):
        key_second_moment(model, 1.0, n_tokens=32, seq_len=16)
