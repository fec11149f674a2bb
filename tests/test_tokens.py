"""Token-id helpers (:mod:`locedit.tokens`)."""

from __future__ import annotations

import pytest
import torch

from locedit.tokens import first_target_id, pad_id, pad_rows, target_ids


def test_pad_rows_left_and_right():
    rows = [[5, 6, 7], [8], []]
    right = pad_rows(rows, 0, "right")
    assert right["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0], [0, 0, 0]]
    assert right["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0], [0, 0, 0]]
    left = pad_rows(rows, 9, "left", width=4)
    assert left["input_ids"].tolist() == [[9, 5, 6, 7], [9, 9, 9, 8], [9, 9, 9, 9]]
    assert left["attention_mask"].tolist() == [[0, 1, 1, 1], [0, 0, 0, 1], [0, 0, 0, 0]]
    assert left["input_ids"].dtype == torch.long
    with pytest.raises(ValueError, match="side"):
        pad_rows(rows, 0, "middle")


def test_target_ids_have_the_leading_space_and_pad_id_keeps_zero(smollm2):
    tok = smollm2.tokenizer
    assert target_ids(smollm2, " Paris ") == tok(" Paris", add_special_tokens=False)["input_ids"]
    assert first_target_id(smollm2, "Paris") == target_ids(smollm2, "Paris")[0] == smollm2.token_id(" Paris")
    was = tok.pad_token_id
    try:
        tok.pad_token_id = 0
        assert pad_id(smollm2) == 0
    finally:
        tok.pad_token_id = was
    assert pad_id(smollm2) == (was if was is not None else 0)
