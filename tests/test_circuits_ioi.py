"""locedit.circuits.ioi: IOI prompts, their corruptions, positions and answers."""

from __future__ import annotations

import pytest
import torch

from locedit.circuits.ioi import IOI_TEMPLATES, ioi
from locedit.circuits.metrics import accuracy, logit_diff


@pytest.fixture(scope="module")
def tok(smollm2):
    return smollm2.tokenizer


def _decode(tok, ids, pos) -> str:
    return tok.decode([ids[int(pos)]])


def test_ioi_every_template_both_orders(tok):
    for t in range(len(IOI_TEMPLATES)):
        for order in ("ABBA", "BABA"):
            d = ioi(tok, n=2, seed=t, order=order, templates=[IOI_TEMPLATES[t]])
            for i in range(len(d)):
                ids = d.tokens[i]
                assert _decode(tok, ids, d.io_pos[i]) == " " + d.io[i]
                assert _decode(tok, ids, d.s1_pos[i]) == " " + d.s[i]
                assert _decode(tok, ids, d.s2_pos[i]) == " " + d.s[i]
                assert int(d.end_pos[i]) == len(ids) - 1
                assert (d.io_pos[i] < d.s1_pos[i]) == (order == "ABBA")
                assert d.s2_pos[i] > max(d.io_pos[i], d.s1_pos[i])
                assert d.answers[i].tolist() == [tok(" " + d.io[i])["input_ids"][0], tok(" " + d.s[i])["input_ids"][0]]
                assert not d.prompts[i].endswith(" ") and d.io[i] != d.s[i]


def test_ioi_mixed_order_seeded(tok):
    d = ioi(tok, n=10, seed=3)
    assert d.orders == ("ABBA", "BABA") * 5
    assert ioi(tok, n=10, seed=3).prompts == d.prompts
    assert ioi(tok, n=10, seed=4).prompts != d.prompts
    assert torch.equal(d.candidates, d.answers)


def test_ioi_corruptions(tok):
    d = ioi(tok, n=20, seed=1)
    flipped = d.corrupted("flipped")
    assert flipped.corruption == "flipped" and flipped.s2 == d.io
    assert torch.equal(flipped.answers, d.answers)
    for i in range(len(d)):
        a, b = d.tokens[i], flipped.tokens[i]
        assert len(a) == len(b)
        changed = [p for p in range(len(a)) if a[p] != b[p]]
        assert changed == [int(d.s2_pos[i])] and b[changed[0]] == a[int(d.io_pos[i])]
    abc = d.corrupted("abc", seed=2)
    for i in range(len(d)):
        names = {abc.io[i], abc.s[i]}
        new = [_decode(tok, abc.tokens[i], abc.io_pos[i]), _decode(tok, abc.tokens[i], abc.s1_pos[i]),
               _decode(tok, abc.tokens[i], abc.s2_pos[i])]  # fmt: skip
        assert len(set(new)) == 3 and not {n.strip() for n in new} & names
        assert len(abc.tokens[i]) == len(d.tokens[i])
    assert torch.equal(abc.answers, d.answers)
    with pytest.raises(ValueError, match="already corrupted"):
        flipped.corrupted()
    with pytest.raises(ValueError, match="unknown corruption 'swap'"):
        d.corrupted("swap")


def test_bad_input_names_the_offender(tok):
    with pytest.raises(ValueError, match=r"names: ' Dylan' is 2 tokens.*single token"):
        ioi(tok, n=2, names=["Mary", "Dylan", "John", "Tom", "Anna", "Kate"])
    with pytest.raises(ValueError, match=r"template 0 .* both name slots"):
        ioi(tok, n=2, templates=["Then, {B} went to the {PLACE}. {B} gave a {OBJECT} to"])
    with pytest.raises(ValueError, match=r"unknown slot"):
        ioi(tok, n=2, templates=["Then, {B} and {C} went home. {B} gave it to"])
    with pytest.raises(ValueError, match=r"trailing space"):
        ioi(tok, n=2, templates=["Then, {B} and {A} went home. {B} gave it to "])
    with pytest.raises(TypeError, match=r"seed must be an integer, got float"):
        ioi(tok, n=2, seed=1.5)
    with pytest.raises(ValueError, match=r"names: 2 single-token words left"):
        ioi(tok, n=2, names=["Mary", "John"])


def test_custom_template_in_abba_order_is_mirrored(tok):
    d = ioi(tok, n=4, templates=["Later {A} and {B} met at the {PLACE}; {B} handed a {OBJECT} to"])
    assert d.prompts[1].startswith(f"Later {d.s[1]} and {d.io[1]}")  # BABA row
    assert d.prompts[0].startswith(f"Later {d.io[0]} and {d.s[0]}")  # ABBA row


def test_smollm2_does_ioi(smollm2):
    d = ioi(smollm2, n=8, seed=0)
    with torch.no_grad():
        clean = smollm2.hf(**smollm2.encode(list(d.prompts)), logits_to_keep=1).logits
        flipped = smollm2.hf(**smollm2.encode(list(d.corrupted().prompts)), logits_to_keep=1).logits
    assert logit_diff(clean, d.answers).mean() > 2 and accuracy(clean, d.answers, d.candidates) >= 0.8
    assert logit_diff(flipped, d.answers).mean() < 0
