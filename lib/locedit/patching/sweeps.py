"""The public sweeps: :func:`sweep` (any patches against a base run), :func:`record` (the values patches restore)
and :func:`activation_patching_grid` (a clean site patched into a corrupted run at every layer × position)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import TypedDict, Unpack

import torch

from locedit.arch import SITES
from locedit.hooks import Intervention, Site, run_with
from locedit.models import Model
from locedit.patching.dtype import as_dtype
from locedit.patching.engine import Method, Score, run_sweep
from locedit.patching.plan import Patch, PatchLike, RowView, as_patch, row_view

Metric = Callable[..., torch.Tensor]


class SweepOptions(TypedDict, total=False):
    """How a sweep runs, for the functions built on :func:`sweep` that pass these on (see :func:`sweep` for each
    option and its default)."""

    read_positions: int | Sequence[int]
    dtype: torch.dtype | None
    method: Method
    batch_size: int | None
    skip_noops: bool


def sweep(
    model: Model,
    base: str | Sequence[str] | dict,
    patches: Sequence[PatchLike],
    metric: Metric | None = None,
    *,
    base_interventions: Sequence[Intervention] = (),
    read_positions: int | Sequence[int] = (-1,),
    dtype: torch.dtype | None = None,
    method: Method = "incremental",
    batch_size: int | None = None,
    skip_noops: bool = True,
) -> torch.Tensor:
    """Run every patch against the base run and return ``metric`` of each: a tensor [n_patches, ...] (float32).

    Args:
        model: the model (its weights' dtype is the default run dtype).
        base: the base run's prompt(s) or encoded inputs (``input_ids`` [B, T], optional ``attention_mask``).
        patches: one :class:`Patch` per result row (a bare list of interventions or a single intervention is a
            patch on base row 0).
        metric: ``metric(logits)`` or ``metric(logits, base_rows)`` → one value per row [rows] (or one tensor of a
            fixed shape per row, [rows, ...]), where ``logits`` is [rows, len(read_positions), vocab] float32 and
            ``base_rows`` [rows] says which base row each row started from. The base rows go to a second
            positional parameter only when it has no default: in ``lambda logits, t=tid: ...`` (the loop idiom)
            ``t`` keeps its default. The metric is called on batches of rows and must treat rows independently.
            ``None`` returns the logits themselves.
        base_interventions: applied to the base run and, with it, to every patched row (``rows`` index base rows):
            e.g. noise on the subject's embeddings for causal tracing. Callable values must act row- and
            position-wise (the engine may call them on a subset of positions).
        read_positions: the positions whose logits the metric sees (default: the last).
        dtype: run in this dtype (``torch.bfloat16``: ~4× faster on CPUs with AMX and on GPUs, slower on CPUs
            without bf16 units; see the module docstring for when it is precise enough). ``None``: the model's
            dtype.
        method: ``"incremental"`` (default: layer by layer from each patch's first layer, positions from its first
            position), ``"cached"`` (positions only; what families without a layer adapter get) or ``"full"``
            (the plain reference: one full forward row per patch).
        batch_size: rows per forward call (default 256 incremental, 64 full).
        skip_noops: return the base run's result, without computing, for patches that provably change nothing
            (every intervention replaces values by exactly those the base run has there).
    """
    if method not in ("incremental", "cached", "full"):
        raise ValueError(f"unknown method {method!r}: use 'incremental', 'cached' or 'full'")
    run = as_dtype(model, dtype)
    inputs = _encode(run, base)
    ids = inputs["input_ids"]
    n_base, seq = ids.shape
    mask2d = inputs.get("attention_mask")
    if mask2d is not None and bool(mask2d.all()):
        mask2d = None
    read = _read_positions(read_positions, seq)
    patches = [as_patch(p) for p in patches]
    score = _scorer(metric)

    base_views: list[list[RowView]] = [[] for _ in range(n_base)]
    for k, iv in enumerate(base_interventions):
        for b in range(n_base):
            view = row_view(iv, b, n_base, seq, run, f"base intervention {k}", patch=False)
            if view is not None:
                base_views[b].append(view)
    patch_views: list[list[RowView]] = []
    for i, p in enumerate(patches):
        if not 0 <= p.row < n_base:
            raise IndexError(f"patch {i}: base row {p.row} out of range: the base run has {n_base} row(s)")
        patch_views.append([row_view(iv, p.row, n_base, seq, run, f"patch {i}", patch=True) for iv in p.interventions])
    return run_sweep(run, ids, mask2d, read, patches, base_views, patch_views, score, method, batch_size, skip_noops)


def _encode(model: Model, inputs: str | Sequence[str] | dict) -> dict[str, torch.Tensor]:
    if isinstance(inputs, (str, list, tuple)):
        return model.encode(inputs)
    out = {"input_ids": inputs["input_ids"].to(model.device)}
    if inputs.get("attention_mask") is not None:
        out["attention_mask"] = inputs["attention_mask"].to(model.device)
    return out


def _read_positions(read_positions: int | Sequence[int], seq: int) -> list[int]:
    read = [read_positions] if isinstance(read_positions, int) else list(read_positions)
    if not read:
        raise ValueError("read_positions is empty")
    out = []
    for r in read:
        if not -seq <= int(r) < seq:
            raise IndexError(f"read position {r} out of range for a {seq}-token prompt")
        out.append(int(r) % seq)
    return out


# --- the metric ----------------------------------------------------------------------------------------------------


def _scorer(metric: Metric | None) -> Score:
    """``metric`` as the engine calls it, ``score(logits, base_rows)``: float32 logits in, the base rows passed only
    to a metric that takes them (:func:`_takes_rows`), its output checked to be one value (or one tensor of the same
    shape in every batch) per row, and returned as float32 on the CPU."""
    takes_rows = _takes_rows(metric)
    per_row: list[tuple[int, ...]] = []  # the shape of one row's value, from the first batch

    def score(logits: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if metric is None:
            return logits
        out = torch.as_tensor(metric(logits, rows) if takes_rows else metric(logits))
        n = logits.shape[0]
        if out.dim() == 0 or out.shape[0] != n:
            raise ValueError(
                f"the metric must return one value (or one tensor) per row: it returned shape {tuple(out.shape)} "
                f"for a batch of {n} rows; return [rows] (or [rows, ...]), e.g. logits[:, -1, token] rather than "
                "a mean over the batch"
            )
        if not per_row:
            per_row.append(tuple(out.shape[1:]))
        elif tuple(out.shape[1:]) != per_row[0]:
            raise ValueError(
                f"the metric's value per row depends on the batch: shape {list(per_row[0])} in one batch of rows, "
                f"{list(out.shape[1:])} in another of {n} rows; return one value (or one tensor of a fixed shape) "
                "per row, computed from that row alone"
            )
        return out.detach().float().cpu()

    return score


def _takes_rows(metric: Metric | None) -> bool:
    """Whether ``metric`` is called as ``metric(logits, base_rows)``: it has a second positional parameter without
    a default (or ``*args``). A defaulted one (``lambda logits, t=tid: ...``) keeps its default."""
    if metric is None:
        return False
    try:
        params = inspect.signature(metric).parameters.values()
    except (TypeError, ValueError):
        return False
    required = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty]
    return len(required) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)


# --- conveniences ------------------------------------------------------------------------------------------------


def record(
    model: Model,
    inputs: str | Sequence[str] | dict,
    sites: Sequence[Site | str],
    *,
    interventions: Sequence[Intervention] = (),
    dtype: torch.dtype | None = None,
) -> dict[str, torch.Tensor]:
    """Activations at ``sites`` ([batch, seq, ...], keyed by site string; ``z`` per head) of one forward pass
    (under ``interventions``), in ``dtype``: the values patches restore (clean run) or freeze (corrupted run)."""
    run = as_dtype(model, dtype)
    return run_with(run, _encode(run, inputs), interventions, record=sites)[1]


def activation_patching_grid(
    model: Model,
    clean: str | dict,
    corrupt: str | dict,
    metric: Metric | None = None,
    *,
    site: str = "resid_post",
    layers: Sequence[int] | None = None,
    positions: Sequence[int] | None = None,
    **options: Unpack[SweepOptions],
) -> torch.Tensor:
    """Patch the clean run's ``site`` into the corrupted run at every (layer, position): ``metric`` of each, as a
    grid [layers, positions] ([layers, positions, heads] for ``site="q"`` or ``"z"``, [layers, positions, kv_heads]
    for ``"k"`` or ``"v"``: one head at a time). ``options`` are :func:`sweep`'s (``read_positions``, ``dtype``,
    ``method``, ``batch_size``, ``skip_noops``), with its defaults.

    ``clean`` and ``corrupt`` must have the same number of tokens. In bfloat16 the grid's probabilities move by a
    few hundredths against float32: fine to see where the effect is, not to compare effects that differ by less.
    """
    unknown = sorted(set(options) - set(SweepOptions.__annotations__))
    if unknown:
        raise TypeError(
            f"activation_patching_grid got unknown options {unknown}: it takes site, layers, positions and "
            f"sweep's {', '.join(SweepOptions.__annotations__)}"
        )
    run = as_dtype(model, options.pop("dtype", None))
    clean_in, corrupt_in = _encode(run, clean), _encode(run, corrupt)
    if clean_in["input_ids"].shape != corrupt_in["input_ids"].shape or clean_in["input_ids"].shape[0] != 1:
        raise ValueError(
            "clean and corrupt must be one prompt each with the same number of tokens: got "
            f"{tuple(clean_in['input_ids'].shape)} and {tuple(corrupt_in['input_ids'].shape)} [batch, tokens]"
        )
    seq = clean_in["input_ids"].shape[1]
    layers = list(range(run.spec.n_layers)) if layers is None else list(layers)
    positions = list(range(seq)) if positions is None else list(positions)
    sites = [Site(site, layer) for layer in layers]
    values = record(run, clean_in, sites)
    kind = SITES.get(site)
    per_head = kind is not None and kind.feature in ("heads", "kv_heads")  # q, k, v, z: one (KV) head at a time
    heads = list(range(kind.feature_shape(run.spec)[0])) if per_head else [None]
    patches = [
        Patch([Intervention(s, "replace", values[str(s)], positions=[p], index=None if h is None else [h])])
        for s in sites
        for p in positions
        for h in heads
    ]
    out = sweep(run, corrupt_in, patches, metric, **options)
    shape = (len(layers), len(positions)) + ((len(heads),) if per_head else ())
    return out.reshape(*shape, *out.shape[1:])
