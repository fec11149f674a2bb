"""What a circuit is made of, and how much two circuits overlap beyond chance (chapter 5, Ge et al. 2024).

A :class:`~locedit.circuits.units.Circuit` is a set of structured units; each kind belongs to one *module*
(:data:`MODULE_OF_KIND`): heads to ``"attention"`` (with the key/value rows of their KV groups), neurons to
``"mlp"``, norm gain elements to ``"norm"``.

- :func:`composition`: per layer and over the whole circuit, each module's units and parameters in the circuit,
  its *share* of the circuit (by units and by parameters) and its *density* (the fraction of the module kept). The
  paper says "up to 60% of the circuits consist of layer normalization modules"; its counting rule is not given
  (PAPERS.md §2), so both readings are here: the norm share of the circuit (by units, by parameters) and the
  density of the norm module. A norm element is one parameter (RMSNorm: a gain, no bias), a SmolLM2 neuron 1,728:
  the two shares differ by orders of magnitude.
- :func:`jaccard`: |A ∩ B| / |A ∪ B| over units or over parameters (a KV group's key/value rows are shared by two
  circuits when each holds a head of the group).
- :func:`random_jaccard` and :func:`overlap_matrix`: the Jaccard of two *random* circuits of the same sizes (the
  same number of units of each kind as each circuit, placed uniformly at random within the kind), its mean and a
  permutation p-value, for every pair of circuits. Keeping the per-kind counts means a shared bias of composition
  (two norm-heavy circuits) is not counted as overlap: the test asks whether the circuits pick the *same* units.

The intersection of two uniformly random sets of a and b units among N is hypergeometric, so neuron and norm
overlaps are drawn from that law directly (exact, no N-sized draw per sample); heads are drawn explicitly because
shared KV groups change the parameter count. :func:`locedit.circuits.heads.overlap_test` draws every set
explicitly, one n_total-sized row of random keys per permutation: for SmolLM2's 80,910 units and a thousand draws
that is 650 MB, so it is not reused here; its exact :func:`~locedit.circuits.heads.hypergeometric_tail` checks this
null in the tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from locedit._checks import integer
from locedit.circuits.units import UNIT_KINDS, Circuit, UnitLayout, check_kind

MODULE_OF_KIND = {"head": "attention", "neuron": "mlp", "norm": "norm"}
MODULES = ("attention", "mlp", "norm")
Over = Literal["units", "params"]


def _per_layer(circuit: Circuit) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """module → (units kept, units in all, parameters kept, parameters in all), each [n_layers] int64."""
    layout = circuit.layout
    n = layout.n_layers
    masks = {kind: circuit.masks[kind].reshape(n, -1) for kind in UNIT_KINDS}
    kept = {kind: masks[kind].sum(1).numpy().astype(np.int64) for kind in UNIT_KINDS}
    width = {kind: masks[kind].shape[1] for kind in UNIT_KINDS}
    kv_kept = circuit.kv_groups().sum(1).numpy().astype(np.int64)
    full = np.ones(n, dtype=np.int64)
    return {
        "attention": (
            kept["head"],
            full * layout.n_heads,
            kept["head"] * layout.head_params + kv_kept * layout.kv_group_params,
            full * (layout.n_heads * layout.head_params + layout.n_kv_heads * layout.kv_group_params),
        ),
        "mlp": (kept["neuron"], full * width["neuron"], kept["neuron"] * layout.neuron_params,
                full * width["neuron"] * layout.neuron_params),
        "norm": (kept["norm"], full * width["norm"], kept["norm"] * layout.norm_params,
                 full * width["norm"] * layout.norm_params),
    }  # fmt: skip


def _rows(layer: int | str, counts: dict[str, tuple[int, int, int, int]]) -> list[dict]:
    units_in = sum(c[0] for c in counts.values())
    params_in = sum(c[2] for c in counts.values())
    rows = []
    for module in (*MODULES, "all"):
        if module == "all":
            units, units_total = units_in, sum(c[1] for c in counts.values())
            params, params_total = params_in, sum(c[3] for c in counts.values())
        else:
            units, units_total, params, params_total = counts[module]
        rows.append(
            {
                "layer": layer,
                "module": module,
                "units": int(units),
                "units_total": int(units_total),
                "params": int(params),
                "params_total": int(params_total),
                "unit_share": units / units_in if units_in else 0.0,
                "param_share": params / params_in if params_in else 0.0,
                "unit_density": units / units_total,
                "param_density": params / params_total,
            }
        )
    return rows


def composition(circuit: Circuit, by_layer: bool = True) -> list[dict]:
    """The make-up of ``circuit``: one row per (layer, module), then the rows over all layers (``layer == "all"``).

    Each layer (and the whole) has a row per module of :data:`MODULES` and one for ``module == "all"``, with:

    - ``units`` / ``units_total``: units of the module in the circuit / in the model (heads, neurons, norm elements);
    - ``params`` / ``params_total``: the parameters they own (attention: query and output columns of the heads plus
      the key/value rows of each KV group holding one of them, counted once);
    - ``unit_share`` / ``param_share``: the module's part of the circuit in that scope (layer or whole), by units
      and by parameters; the modules' shares add up to 1 (0 where the circuit holds nothing in the scope);
    - ``unit_density`` / ``param_density``: the fraction of the module's units / parameters kept (per-module
      density; the ``"all"`` row's ``param_density`` is the circuit's density in that scope).

    ``by_layer=False`` gives only the four rows over all layers. Rows are plain dicts (``pandas.DataFrame(rows)``).
    """
    if not isinstance(circuit, Circuit):
        raise TypeError(f"composition takes a Circuit (locedit.circuits.units), not {type(circuit).__name__}")
    per_layer = _per_layer(circuit)
    rows: list[dict] = []
    if by_layer:
        for layer in range(circuit.layout.n_layers):
            rows += _rows(layer, {m: tuple(int(a[layer]) for a in per_layer[m]) for m in MODULES})
    rows += _rows("all", {m: tuple(int(a.sum()) for a in per_layer[m]) for m in MODULES})
    return rows


# --- overlap --------------------------------------------------------------------------------------------------------


def only(circuit: Circuit, kind: str | None) -> Circuit:
    """``circuit`` restricted to units of ``kind`` (the other kinds emptied); ``None``: the circuit itself."""
    if kind is None:
        return circuit
    check_kind(kind)
    return Circuit(circuit.layout, {k: m if k == kind else torch.zeros_like(m) for k, m in circuit.masks.items()})


def _same_layout(a: Circuit, b: Circuit) -> UnitLayout:
    if not isinstance(a, Circuit) or not isinstance(b, Circuit):
        raise TypeError(f"give two Circuits (locedit.circuits.units), not {type(a).__name__}, {type(b).__name__}")
    if a.layout != b.layout:
        raise ValueError(f"the circuits come from different models: layouts {a.layout} and {b.layout}")
    return a.layout


def _check_over(over: str) -> str:
    if over not in ("units", "params"):
        raise ValueError(f"over must be 'units' or 'params', not {over!r}")
    return over


def intersection_union(a: Circuit, b: Circuit, over: Over = "units", kind: str | None = None) -> tuple[int, int]:
    """(|A ∩ B|, |A ∪ B|) over units or over parameters, of all kinds or of one ``kind``.

    Parameters of the union are exactly those of the union circuit (a KV group is in it when either circuit holds a
    head of the group), so |P(A) ∩ P(B)| = |P(A)| + |P(B)| − |P(A ∪ B)|.
    """
    layout = _same_layout(a, b)
    a, b = only(a, kind), only(b, kind)
    union = Circuit(layout, {k: a.masks[k] | b.masks[k] for k in UNIT_KINDS})
    if _check_over(over) == "units":
        return sum(int((a.masks[k] & b.masks[k]).sum()) for k in UNIT_KINDS), union.n_units()
    return a.n_params + b.n_params - union.n_params, union.n_params


def jaccard(a: Circuit, b: Circuit, over: Over = "units", kind: str | None = None) -> float:
    """|A ∩ B| / |A ∪ B| of two circuits of one model, over units or parameters, of all kinds or one ``kind``.

    1 for identical circuits, 0 for disjoint ones; a ValueError when both are empty (the ratio is undefined).
    """
    inter, union = intersection_union(a, b, over, kind)
    if union == 0:
        what = f"{kind} units" if kind else "units"
        raise ValueError(f"both circuits hold no {what}: their Jaccard index is undefined")
    return inter / union


def _random_heads(
    rng: np.random.Generator, layout: UnitLayout, count: int, n_draws: int
) -> tuple[np.ndarray, np.ndarray]:
    """``n_draws`` uniform random sets of ``count`` heads: ([n_draws, n_layers·n_heads] bool masks, and
    [n_draws, n_layers·n_kv_heads] bool: KV groups holding one of them)."""
    n_total = layout.n_layers * layout.n_heads
    masks = np.zeros((n_draws, n_total), dtype=bool)
    if count:
        chosen = np.argpartition(rng.random((n_draws, n_total)), count - 1, axis=1)[:, :count]
        np.put_along_axis(masks, chosen, True, axis=1)
    groups = masks.reshape(n_draws, layout.n_layers * layout.n_kv_heads, layout.group_size).any(-1)
    return masks, groups


def random_jaccard(
    a: Circuit, b: Circuit, over: Over = "units", kind: str | None = None, n_draws: int = 1000, seed: int = 0
) -> np.ndarray:
    """Jaccard indices of ``n_draws`` pairs of random circuits of the same sizes as ``a`` and ``b``: [n_draws].

    Each random circuit has as many units of each kind as its model (``a`` or ``b``; of ``kind`` only if given),
    drawn uniformly at random within the kind, independently of the other. Neuron and norm intersections are drawn
    from their hypergeometric law; heads explicitly, so that shared KV groups count in the parameter Jaccard.
    """
    layout = _same_layout(a, b)
    a, b = only(a, kind), only(b, kind)
    over = _check_over(over)
    n_draws = integer(n_draws, "n_draws", 1, "the number of random pairs, e.g. 1000")
    rng = np.random.default_rng(integer(seed, "seed", 0, "e.g. seed=0"))
    size_a = {k: a.n_units(k) for k in UNIT_KINDS}
    size_b = {k: b.n_units(k) for k in UNIT_KINDS}
    weight = {"neuron": layout.neuron_params, "norm": layout.norm_params} if over == "params" else {}
    inter = np.zeros(n_draws, dtype=np.int64)
    union = np.zeros(n_draws, dtype=np.int64)
    for k in ("neuron", "norm"):
        n_total = a.masks[k].numel()
        both = rng.hypergeometric(size_a[k], n_total - size_a[k], size_b[k], n_draws) if size_b[k] else 0
        inter += both * weight.get(k, 1)
        union += (size_a[k] + size_b[k] - both) * weight.get(k, 1)
    heads_a, groups_a = _random_heads(rng, layout, size_a["head"], n_draws)
    heads_b, groups_b = _random_heads(rng, layout, size_b["head"], n_draws)
    both_heads = (heads_a & heads_b).sum(1)
    either_heads = (heads_a | heads_b).sum(1)
    if over == "params":
        inter += both_heads * layout.head_params + (groups_a & groups_b).sum(1) * layout.kv_group_params
        union += either_heads * layout.head_params + (groups_a | groups_b).sum(1) * layout.kv_group_params
    else:
        inter += both_heads
        union += either_heads
    if (union == 0).any():
        raise ValueError("both circuits are empty: their Jaccard index is undefined")
    return inter / union


@dataclass(frozen=True)
class OverlapMatrix:
    """Jaccard overlaps of named circuits against random circuits of the same sizes (:func:`overlap_matrix`).

    Attributes:
        names: the circuits' names, in order.
        over: ``"units"`` or ``"params"``; kind: the unit kind compared, or ``None`` for all.
        jaccard: [n, n] observed Jaccard indices (1 on the diagonal).
        random_mean / random_std: [n, n] mean and standard deviation of the random pairs' Jaccard indices.
        p_value: [n, n] permutation p-value (1 + #{random ≥ observed}) / (1 + n_draws).
        n_draws: random pairs per cell.
    """

    names: list[str]
    over: str
    kind: str | None
    jaccard: np.ndarray
    random_mean: np.ndarray
    random_std: np.ndarray
    p_value: np.ndarray
    n_draws: int

    def rows(self) -> list[dict]:
        """One row per pair of different circuits (each pair once): names, observed, random mean and std,
        ratio observed / random mean, p-value."""
        out = []
        for i, a in enumerate(self.names):
            for j in range(i + 1, len(self.names)):
                mean = float(self.random_mean[i, j])
                out.append(
                    {
                        "a": a,
                        "b": self.names[j],
                        "jaccard": float(self.jaccard[i, j]),
                        "random_mean": mean,
                        "random_std": float(self.random_std[i, j]),
                        "ratio": float(self.jaccard[i, j]) / mean if mean > 0 else None,
                        "p_value": float(self.p_value[i, j]),
                        "n_draws": self.n_draws,
                    }
                )
        return out


def overlap_matrix(
    circuits: Mapping[str, Circuit], over: Over = "units", kind: str | None = None, n_draws: int = 1000, seed: int = 0
) -> OverlapMatrix:
    """The Jaccard index of every pair of ``circuits`` (name → Circuit of one model), with the random baseline of
    :func:`random_jaccard` for each pair (``seed`` plus the cell's index: every cell has its own draws).

    The diagonal compares each circuit with itself (Jaccard 1) against two random circuits of its size. A circuit
    with no units (of ``kind``, if given) is refused: its Jaccard index with another empty set is undefined.
    """
    if not isinstance(circuits, Mapping) or len(circuits) < 2:
        raise ValueError("give at least two circuits as {name: Circuit}, e.g. {'hierarchy': c1, 'agreement': c2}")
    names = list(circuits)
    for name in names:
        if not isinstance(circuits[name], Circuit):
            raise TypeError(f"circuit {name!r} is a {type(circuits[name]).__name__}, not a Circuit")
        if only(circuits[name], kind).n_units() == 0:
            raise ValueError(f"circuit {name!r} holds no {kind + ' ' if kind else ''}units: nothing to compare")
    n = len(names)
    observed, mean, std, p = (np.zeros((n, n)) for _ in range(4))
    for i in range(n):
        for j in range(i, n):
            a, b = circuits[names[i]], circuits[names[j]]
            value = jaccard(a, b, over, kind)
            null = random_jaccard(a, b, over, kind, n_draws, seed + i * n + j)
            for matrix, x in ((observed, value), (mean, null.mean()), (std, null.std()),
                              (p, (1 + (null >= value - 1e-12).sum()) / (1 + n_draws))):  # fmt: skip
                matrix[i, j] = matrix[j, i] = x
    return OverlapMatrix(names, over, kind, observed, mean, std, p, n_draws)
