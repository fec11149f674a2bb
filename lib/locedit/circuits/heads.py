"""Attention heads sorted into circuits, and the statistics chapter 4 (Merullo et al. 2024) compares circuits with.

- Circuits: :func:`top_heads` (the top ``fraction`` of all heads by a stage's path-patching effect: the paper's
  2%), :func:`heads_per_stage` (how many that is), :func:`circuit` (the union over stages).
- Overlap of two circuits against random head sets of the same sizes: :func:`overlap_test` (a seeded permutation
  p-value and the exact hypergeometric tail, :func:`hypergeometric_tail`), and :func:`stagewise_overlap_test`
  (random circuits drawn stage by stage from the heads each stage could choose).
- Rank statistics: :func:`average_ranks` (ties share their mean rank) and :func:`spearman` (Spearman's rho with ties:
  Pearson's correlation of the average ranks); :func:`binomial_tail` for accuracies against chance.
- Attention signatures of head classes, from :func:`locedit.circuits.attention.attention_patterns`:
  :func:`attention_to` (attention from one position to others, e.g. END → IO for name movers, S2 → S1 for
  duplicate-token heads) and :func:`previous_token_score` (attention from each position to the one before it).

Heads are ``(layer, head)`` pairs; effects are ``[n_layers, n_heads]`` tensors with NaN for heads not measured (as
:func:`locedit.circuits.path_patching.path_patching` returns them).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from locedit._checks import integer

Head = tuple[int, int]
Sign = Literal["abs", "positive", "negative"]


def _effects(effects: torch.Tensor | np.ndarray) -> torch.Tensor:
    t = torch.as_tensor(effects, dtype=torch.float32)
    if t.dim() != 2:
        raise ValueError(f"effects must be [n_layers, n_heads], got shape {tuple(t.shape)}")
    return t


def heads_per_stage(fraction: float, n_total: int) -> int:
    """``ceil(fraction × n_total)``, at least 1: the number of heads a stage keeps (GPT-2 Medium, 384 heads, 2%: 8 per
    stage, 32 over the paper's 4 stages; SmolLM2, 270 heads: 6)."""
    n_total = integer(n_total, "n_total", minimum=1)
    if not (isinstance(fraction, (int, float)) and 0 < fraction <= 1):
        raise ValueError(f"fraction must be in (0, 1] (0.02 for the paper's top 2%), got {fraction!r}")
    return max(1, math.ceil(fraction * n_total - 1e-9))


def top_heads(
    effects: torch.Tensor | np.ndarray, fraction: float = 0.02, sign: Sign = "abs", k: int | None = None
) -> list[Head]:
    """The most important heads of one path-patching stage, most important first.

    Args:
        effects: [n_layers, n_heads] effects (NaN: not measured, never chosen).
        fraction: the share of *all* heads of the model to keep (``heads_per_stage(fraction, n_layers × n_heads)``).
        sign: rank by ``"abs"`` (the paper's "most important"), ``"positive"`` (heads that carry the answer, e.g.
            name movers) or ``"negative"`` (heads that work against it, e.g. negative name movers) effect; with
            ``"positive"`` / ``"negative"`` only heads of that sign are kept, so fewer may be returned.
        k: the number of heads instead of ``fraction``.

    Returns: up to k (layer, head) pairs; ties broken by position (lower layer, then lower head, first).
    """
    e = _effects(effects)
    if sign not in ("abs", "positive", "negative"):
        raise ValueError(f"sign must be 'abs', 'positive' or 'negative', not {sign!r}")
    k = heads_per_stage(fraction, e.numel()) if k is None else integer(k, "k", minimum=1)
    score = {"abs": e.abs(), "positive": e, "negative": -e}[sign].flatten()
    ok = torch.isfinite(score) & (score > 0 if sign != "abs" else torch.ones_like(score, dtype=torch.bool))
    idx = [i for i in torch.argsort(-torch.where(ok, score, -torch.inf), stable=True).tolist() if ok[i]][:k]
    n_heads = e.shape[1]
    return [(i // n_heads, i % n_heads) for i in idx]


def circuit(
    stages: Mapping[str, torch.Tensor | np.ndarray], fraction: float = 0.02, k: int | None = None
) -> dict[str, list[Head]]:
    """The top heads of every stage by absolute effect (:func:`top_heads`): stage → heads. The circuit is their union
    (:func:`circuit_heads`)."""
    if not stages:
        raise ValueError("no stages given: pass {stage name: [n_layers, n_heads] effects}")
    return {name: top_heads(e, fraction, "abs", k) for name, e in stages.items()}


def circuit_heads(stages: Mapping[str, Iterable[Head]]) -> set[Head]:
    """The union of the heads of every stage."""
    return {tuple(h) for heads in stages.values() for h in heads}


# --- overlap against chance -----------------------------------------------------------------------------------------


def hypergeometric_tail(k: int, n_total: int, size_a: int, size_b: int) -> float:
    """P(|A ∩ B| ≥ k) for a fixed set A of ``size_a`` heads and a uniformly random set B of ``size_b`` among
    ``n_total``: ``Σ_{j ≥ k} C(a, j) C(N − a, b − j) / C(N, b)`` (exact, in integers)."""
    n_total = integer(n_total, "n_total", minimum=1)
    size_a = integer(size_a, "size_a", minimum=0, maximum=n_total)
    size_b = integer(size_b, "size_b", minimum=0, maximum=n_total)
    k = integer(k, "k", minimum=0)
    top = min(size_a, size_b)
    hits = sum(math.comb(size_a, j) * math.comb(n_total - size_a, size_b - j) for j in range(k, top + 1))
    return hits / math.comb(n_total, size_b)


@dataclass(frozen=True)
class OverlapTest:
    """The overlap of two head sets against random sets of the same sizes.

    Attributes:
        observed: |A ∩ B|; size_a, size_b: |A|, |B|; n_total: the number of heads drawn from.
        expected: |A| |B| / N, the mean overlap of random sets.
        null: [n_permutations] overlaps of A with random sets of |B| heads (seeded).
        p_permutation: (1 + #{null ≥ observed}) / (1 + n_permutations).
        p_hypergeometric: the exact P(overlap ≥ observed) (:func:`hypergeometric_tail`).
    """

    observed: int
    size_a: int
    size_b: int
    n_total: int
    expected: float
    null: np.ndarray
    p_permutation: float
    p_hypergeometric: float

    @property
    def share(self) -> float:
        """|A ∩ B| / |A| (the paper's "25/32 = 78%" reads the overlap over the IOI circuit's size)."""
        return self.observed / self.size_a if self.size_a else float("nan")


def overlap_test(
    a: Iterable[Head], b: Iterable[Head], n_total: int, n_permutations: int = 10_000, seed: int = 0
) -> OverlapTest:
    """How far the overlap of head sets ``a`` and ``b`` exceeds that of random sets of the same sizes among
    ``n_total`` heads (all the model's heads): a seeded permutation p-value and the exact hypergeometric tail."""
    a, b = {tuple(h) for h in a}, {tuple(h) for h in b}
    n_total = integer(n_total, "n_total", minimum=1)
    n_permutations = integer(n_permutations, "n_permutations", minimum=1)
    if max(len(a), len(b)) > n_total:
        raise ValueError(f"the sets have {len(a)} and {len(b)} heads, more than n_total = {n_total}")
    observed = len(a & b)
    rng = np.random.default_rng(integer(seed, "seed", minimum=0))
    # A as the first |A| of N items; B as |B| items drawn without replacement (the argsort of uniform keys)
    keys = rng.random((n_permutations, n_total))
    drawn = np.argpartition(keys, len(b) - 1, axis=1)[:, : len(b)] if b else np.zeros((n_permutations, 0), int)
    null = (drawn < len(a)).sum(1)
    return OverlapTest(
        observed=observed,
        size_a=len(a),
        size_b=len(b),
        n_total=n_total,
        expected=len(a) * len(b) / n_total,
        null=null,
        p_permutation=float((1 + (null >= observed).sum()) / (1 + n_permutations)),
        p_hypergeometric=hypergeometric_tail(observed, n_total, len(a), len(b)),
    )


def stagewise_overlap_test(
    a: Iterable[Head],
    eligible: Sequence[Sequence[Head]],
    sizes: Sequence[int],
    observed_b: Iterable[Head],
    n_permutations: int = 10_000,
    seed: int = 0,
) -> OverlapTest:
    """A stricter null for the overlap of circuit ``a`` with a circuit B built stage by stage: each random B takes,
    for every stage s, ``sizes[s]`` heads drawn uniformly from ``eligible[s]`` (the heads that stage could choose,
    e.g. the senders below its receivers: those with a finite effect), and is the union over stages.

    Path patching to a receiver only measures heads below it, so later stages pick from low layers; a uniform draw
    over all heads ignores that and can overstate the significance of an overlap. ``expected`` is the null's mean and
    ``p_hypergeometric`` is NaN (no closed form); ``size_b`` is ``|observed_b|``.
    """
    a = {tuple(h) for h in a}
    b = {tuple(h) for h in observed_b}
    pools = [sorted({tuple(h) for h in pool}) for pool in eligible]
    if len(pools) != len(sizes) or not pools:
        raise ValueError(f"give one size per stage: {len(pools)} eligible sets but {len(sizes)} sizes")
    for s, (pool, size) in enumerate(zip(pools, sizes, strict=True)):
        if integer(size, f"sizes[{s}]", minimum=0) > len(pool):
            raise ValueError(f"stage {s}: {size} heads asked for but only {len(pool)} are eligible")
    n_permutations = integer(n_permutations, "n_permutations", minimum=1)
    rng = np.random.default_rng(integer(seed, "seed", minimum=0))
    index = {h: i for i, h in enumerate(sorted(set().union(*map(set, pools))))}
    in_a = [np.array([h in a for h in pool], dtype=bool) for pool in pools]
    ids = [np.array([index[h] for h in pool], dtype=int) for pool in pools]
    null = np.empty(n_permutations, dtype=int)
    for i in range(n_permutations):
        chosen = set()
        for pool_a, pool_ids, size in zip(in_a, ids, sizes, strict=True):
            pick = rng.choice(len(pool_ids), size, replace=False)
            chosen.update(pool_ids[pick][pool_a[pick]].tolist())
        null[i] = len(chosen)
    observed = len(a & b)
    n_total = len(set(index) | a)
    return OverlapTest(
        observed=observed,
        size_a=len(a),
        size_b=len(b),
        n_total=n_total,
        expected=float(null.mean()),
        null=null,
        p_permutation=float((1 + (null >= observed).sum()) / (1 + n_permutations)),
        p_hypergeometric=float("nan"),
    )


# --- rank statistics ------------------------------------------------------------------------------------------------


def _vector(x, what: str) -> np.ndarray:
    v = np.asarray(torch.as_tensor(x).detach().cpu().double() if isinstance(x, torch.Tensor) else x, dtype=float)
    if v.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional, got shape {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError(f"{what} has NaN or infinite values at {np.flatnonzero(~np.isfinite(v)).tolist()[:5]}")
    return v


def average_ranks(x: Sequence[float] | np.ndarray | torch.Tensor) -> np.ndarray:
    """Ranks 1..n of ``x``; tied values share the mean of the ranks they span ([1, 2, 2, 3] → [1, 2.5, 2.5, 4])."""
    v = _vector(x, "x")
    order = np.argsort(v, kind="stable")
    ranks = np.empty(len(v))
    sorted_v = v[order]
    start = 0
    for end in range(1, len(v) + 1):
        if end == len(v) or sorted_v[end] != sorted_v[start]:
            ranks[order[start:end]] = (start + end + 1) / 2  # mean of ranks start+1 .. end
            start = end
    return ranks


def spearman(x: Sequence[float] | np.ndarray | torch.Tensor, y: Sequence[float] | np.ndarray | torch.Tensor) -> float:
    """Spearman's rank correlation with ties (Pearson's correlation of :func:`average_ranks`); NaN when either
    side is constant. ``x`` and ``y`` are [n] with n ≥ 2 and no NaN."""
    xv, yv = _vector(x, "x"), _vector(y, "y")
    if len(xv) != len(yv) or len(xv) < 2:
        raise ValueError(f"x and y need the same length, at least 2; got {len(xv)} and {len(yv)}")
    rx, ry = average_ranks(xv), average_ranks(yv)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = math.sqrt(float((rx**2).sum() * (ry**2).sum()))
    return float((rx * ry).sum() / denom) if denom > 0 else float("nan")


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X ≥ k) for X ~ Binomial(n, p) (exact): the chance of ``k`` or more correct answers by guessing at ``p``."""
    n, k = integer(n, "n", minimum=0), integer(k, "k", minimum=0)
    if not 0 <= p <= 1:
        raise ValueError(f"p must be a probability, got {p!r}")
    return float(min(1.0, sum(math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(k, n + 1))))


# --- attention signatures -------------------------------------------------------------------------------------------


def _patterns(patterns: torch.Tensor) -> torch.Tensor:
    if patterns.dim() != 5 or patterns.shape[-1] != patterns.shape[-2]:
        raise ValueError(
            f"patterns must be [batch, layers, heads, seq, seq] (as attention_patterns returns), got "
            f"{tuple(patterns.shape)}"
        )
    return patterns


def attention_to(patterns: torch.Tensor, query_pos: torch.Tensor, key_pos: torch.Tensor) -> torch.Tensor:
    """Mean attention (over prompts) from ``query_pos`` to ``key_pos``: [layers, heads].

    ``patterns`` [batch, layers, heads, seq, seq]; ``query_pos`` [batch] positions; ``key_pos`` [batch] or
    [batch, m] positions (the attention to the m keys is summed, e.g. over the wrong colours).
    """
    p = _patterns(patterns)
    batch, _, _, seq, _ = p.shape
    q = torch.as_tensor(query_pos).long().reshape(-1)
    keys = torch.as_tensor(key_pos).long()
    keys = keys[:, None] if keys.dim() == 1 else keys
    if len(q) != batch or keys.shape[0] != batch:
        raise ValueError(f"query_pos and key_pos need one row per prompt ({batch}), got {len(q)} and {keys.shape[0]}")
    if (q < 0).any() or (q >= seq).any() or (keys < 0).any() or (keys >= seq).any():
        raise ValueError(f"positions must lie in 0..{seq - 1}")
    rows = p[torch.arange(batch), :, :, q]  # [batch, layers, heads, seq]
    picked = rows.gather(-1, keys[:, None, None, :].expand(-1, p.shape[1], p.shape[2], -1))
    return picked.sum(-1).mean(0)


def previous_token_score(patterns: torch.Tensor) -> torch.Tensor:
    """Mean attention from each position p ≥ 1 to p − 1, over positions and prompts: [layers, heads]."""
    p = _patterns(patterns)
    if p.shape[-1] < 2:
        raise ValueError("a previous-token score needs prompts of at least 2 tokens")
    return p.diagonal(offset=-1, dim1=-2, dim2=-1).mean((0, -1))
