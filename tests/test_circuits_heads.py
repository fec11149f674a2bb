"""locedit.circuits.heads: the top-k%-per-stage rule, the overlap null (permutation and exact hypergeometric),
Spearman's rho with ties, the binomial tail, and the attention signatures, on synthetic numbers with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from locedit.circuits.heads import (
    attention_to,
    average_ranks,
    binomial_tail,
    circuit,
    circuit_heads,
    heads_per_stage,
    hypergeometric_tail,
    overlap_test,
    previous_token_score,
    spearman,
    top_heads,
)


def test_heads_per_stage_is_the_papers_count():
    assert heads_per_stage(0.02, 384) == 8  # GPT-2 Medium: 8 per stage, 32 over 4 stages (the paper's 25/32)
    assert heads_per_stage(0.02, 270) == 6  # SmolLM2: 5.4 -> 6
    assert heads_per_stage(0.02, 10) == 1 and heads_per_stage(0.5, 10) == 5 and heads_per_stage(1.0, 7) == 7
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]"):
        heads_per_stage(0, 10)
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]"):
        heads_per_stage(2, 10)


def test_top_heads_ranks_by_sign_and_skips_nan():
    e = torch.full((4, 5), float("nan"))
    e[0] = torch.tensor([0.1, -0.9, 0.3, 0.0, 0.05])
    e[1] = torch.tensor([0.5, -0.2, 0.3, 0.01, 0.02])
    assert top_heads(e, k=3) == [(0, 1), (1, 0), (0, 2)]  # |-0.9|, 0.5, then 0.3 tie: lower layer first
    assert top_heads(e, k=3, sign="positive") == [(1, 0), (0, 2), (1, 2)]
    assert top_heads(e, k=3, sign="negative") == [(0, 1), (1, 1)]  # only two negative heads
    assert top_heads(e, fraction=0.1) == [(0, 1), (1, 0)]  # 10% of 20 heads (NaN ones count in the model's total)
    assert top_heads(torch.full((2, 2), float("nan")), k=2) == []
    with pytest.raises(ValueError, match=r"\[n_layers, n_heads\]"):
        top_heads(torch.zeros(5))
    with pytest.raises(ValueError, match="sign must be"):
        top_heads(e, sign="big")


def test_circuit_is_the_union_of_the_stages_tops():
    a = torch.zeros(3, 4)
    a[2, 1], a[2, 3] = 1.0, -2.0
    b = torch.zeros(3, 4)
    b[1, 0], b[2, 3] = 0.4, 0.1
    stages = circuit({"movers": a, "inhibition": b}, k=2)
    assert stages == {"movers": [(2, 3), (2, 1)], "inhibition": [(1, 0), (2, 3)]}
    assert circuit_heads(stages) == {(2, 3), (2, 1), (1, 0)}
    with pytest.raises(ValueError, match="no stages"):
        circuit({})


def test_hypergeometric_tail_exact():
    # N=10, A=3, B=4: P(X>=0)=1; P(X>=3) = C(3,3) C(7,1) / C(10,4) = 7/210
    assert hypergeometric_tail(0, 10, 3, 4) == pytest.approx(1.0)
    assert hypergeometric_tail(3, 10, 3, 4) == pytest.approx(7 / 210)
    assert hypergeometric_tail(4, 10, 3, 4) == 0.0
    pmf = [hypergeometric_tail(k, 10, 3, 4) - hypergeometric_tail(k + 1, 10, 3, 4) for k in range(4)]
    assert sum(k * p for k, p in enumerate(pmf)) == pytest.approx(3 * 4 / 10)  # the mean is |A||B|/N
    with pytest.raises(ValueError, match="size_a"):
        hypergeometric_tail(1, 10, 11, 2)


def test_overlap_test_null_matches_the_hypergeometric_law():
    a = [(0, h) for h in range(6)]
    b = [(0, h) for h in range(3, 9)]  # overlap 3 of 6, among 30 heads
    t = overlap_test(a, b, n_total=30, n_permutations=20_000, seed=1)
    assert (t.observed, t.size_a, t.size_b, t.expected) == (3, 6, 6, pytest.approx(1.2))
    assert t.share == 0.5
    assert t.null.shape == (20_000,) and t.null.mean() == pytest.approx(1.2, abs=0.03)
    assert t.p_permutation == pytest.approx(t.p_hypergeometric, abs=0.01)
    assert 0.05 < t.p_hypergeometric < 0.2  # 3 of 6 is unusual but not rare among 30
    same = overlap_test(a, a, n_total=30, n_permutations=2000, seed=1)
    assert same.p_hypergeometric == pytest.approx(1 / math.comb(30, 6))
    assert same.p_permutation == pytest.approx(1 / 2001)  # never reached by chance: the floor 1/(1+n)
    assert np.array_equal(overlap_test(a, b, 30, 500, seed=3).null, overlap_test(a, b, 30, 500, seed=3).null)
    with pytest.raises(ValueError, match="more than n_total"):
        overlap_test(a, b, n_total=5)


def test_average_ranks_and_spearman_with_ties():
    assert average_ranks([1, 2, 2, 3]).tolist() == [1, 2.5, 2.5, 4]
    assert average_ranks([5, 5, 5]).tolist() == [2, 2, 2]
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # with ties: the Pearson correlation of the average ranks, worked by hand
    x, y = [1, 2, 2, 3], [1, 3, 2, 4]
    rx, ry = np.array([1, 2.5, 2.5, 4]), np.array([1, 3, 2, 4])
    rx, ry = rx - rx.mean(), ry - ry.mean()
    assert spearman(x, y) == pytest.approx((rx * ry).sum() / np.sqrt((rx**2).sum() * (ry**2).sum()))
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError, match="NaN"):
        spearman([1, float("nan")], [1, 2])
    with pytest.raises(ValueError, match="same length"):
        spearman([1, 2], [1, 2, 3])


def test_binomial_tail():
    assert binomial_tail(0, 5, 0.3) == pytest.approx(1.0)
    assert binomial_tail(5, 5, 0.5) == pytest.approx(1 / 32)
    assert binomial_tail(2, 3, 1 / 3) == pytest.approx(3 * (1 / 9) * (2 / 3) + 1 / 27)
    with pytest.raises(ValueError, match="probability"):
        binomial_tail(1, 2, 1.5)


def test_attention_signatures():
    p = torch.zeros(2, 1, 2, 4, 4)
    p[:, 0, 0] = torch.eye(4)  # head 0 attends to itself
    for q in range(4):  # head 1 attends to the previous token (position 0 to itself)
        p[:, 0, 1, q, max(q - 1, 0)] = 1
    prev = previous_token_score(p)
    assert prev.shape == (1, 2) and prev[0, 1] == 1 and prev[0, 0] == 0
    to = attention_to(p, torch.tensor([3, 2]), torch.tensor([2, 1]))
    assert to.tolist() == [[0.0, 1.0]]
    both = attention_to(p, torch.tensor([3, 3]), torch.tensor([[2, 3], [2, 3]]))
    assert both.tolist() == [[1.0, 1.0]]  # summed over the two keys
    with pytest.raises(ValueError, match="positions must lie"):
        attention_to(p, torch.tensor([4, 0]), torch.tensor([0, 0]))
    with pytest.raises(ValueError, match=r"\[batch, layers, heads, seq, seq\]"):
        previous_token_score(torch.zeros(3, 3))


def test_stagewise_null_respects_what_each_stage_could_choose():
    from locedit.circuits.heads import stagewise_overlap_test

    low = [(layer, h) for layer in range(2) for h in range(4)]  # 8 heads a late stage could choose
    every = [(layer, h) for layer in range(10) for h in range(4)]  # 40 heads
    a = [(0, 0), (0, 1), (1, 0)]
    b = [(0, 0), (0, 1), (1, 0), (9, 3)]
    strict = stagewise_overlap_test(a, [every, low], [1, 3], b, n_permutations=4000, seed=0)
    loose = overlap_test(a, b, n_total=40, n_permutations=4000, seed=0)
    assert strict.observed == loose.observed == 3
    # 3 heads from 8, 3 of which are in A: the mean overlap is 3 * 3 / 8 (+ a little from the first stage)
    assert strict.expected == pytest.approx(9 / 8 + 3 / 40, abs=0.06)
    assert strict.expected > loose.expected and strict.p_permutation > 10 * loose.p_hypergeometric
    assert math.isnan(strict.p_hypergeometric)
    with pytest.raises(ValueError, match="only 8 are eligible"):
        stagewise_overlap_test(a, [low], [9], b)
    with pytest.raises(ValueError, match="one size per stage"):
        stagewise_overlap_test(a, [low], [1, 2], b)


def test_stagewise_null_with_an_empty_stage():
    from locedit.circuits.heads import stagewise_overlap_test

    t = stagewise_overlap_test([(0, 0)], [[(0, 0), (0, 1)], []], [1, 0], [(0, 0)], n_permutations=1000, seed=0)
    assert t.expected == pytest.approx(0.5, abs=0.05) and t.observed == 1
