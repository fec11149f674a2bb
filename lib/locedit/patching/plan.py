"""Patches and how they become batched tensor operations.

A :class:`Patch` (one result row) is checked and cut, per base row, into :class:`RowView` objects (absolute
positions, an index, a value for one row); :func:`compile_view` resolves a view for the engine (a
:class:`CompiledOp`, its value a tensor of the selection's shape in the run's dtype where possible); and
:func:`build_plans` groups the compiled operations of a whole batch, per site, into a few index operations that
:func:`apply_plan` runs on an activation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Union

import torch

from locedit.arch import ArchSpec
from locedit.hooks import Intervention, Site, as_index, combine, locate
from locedit.models import Model

PatchLike = Union["Patch", Intervention, Sequence[Intervention]]


# --- patches -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Patch:
    """One row of a sweep: ``interventions`` applied together, starting from base row ``row``.

    The interventions' ``rows`` must be left at ``None`` (a patch *is* one row). A tensor value with the site's full
    shape ([1 or base batch, seq, ...], e.g. from :func:`~locedit.patching.record`) is indexed at the patch's
    positions (and at row ``row`` when it has one row per base row); any other tensor is broadcast to the selection
    [1, positions, ...].
    """

    interventions: tuple[Intervention, ...]
    row: int = 0

    def __post_init__(self) -> None:
        ivs = self.interventions
        ivs = (ivs,) if isinstance(ivs, Intervention) else tuple(ivs)
        for iv in ivs:
            if not isinstance(iv, Intervention):
                raise TypeError(f"a patch holds Intervention objects, got {type(iv).__name__}")
        object.__setattr__(self, "interventions", ivs)


def as_patch(p: PatchLike) -> Patch:
    return p if isinstance(p, Patch) else Patch(p)


# --- the interventions of one row --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RowView:
    """One intervention as it acts on one batch row: absolute positions, index, and a value for a single row
    (a number, a callable, a clamp pair, a full-shape tensor [1, seq, ...] or a tensor broadcastable to the row's
    selection [1, positions, ...])."""

    site: Site
    op: str
    pos: torch.Tensor
    index: torch.Tensor | None
    value: Any
    full: bool = False  # value is a full-shape tensor [1, seq, ...], indexed at pos (and index)

    def intervention(self, row: int) -> Intervention:
        return Intervention(self.site, self.op, self.value, rows=[row], positions=self.pos, index=self.index)


def row_view(iv: Intervention, row: int, n_rows: int, seq: int, model: Model, who: str, patch: bool) -> RowView | None:
    """The part of ``iv`` that acts on base row ``row`` (``None`` if it does not touch it), checked."""
    site, spec = iv.site, model.spec
    try:
        locate(spec, model.hf, site)
    except (IndexError, ValueError) as err:
        raise type(err)(f"{who}: site {site}: {err}") from None
    feat = site.kind.feature_shape(spec)
    if patch:
        if iv.rows is not None:
            raise ValueError(
                f"{who}: leave `rows` unset in a patch's interventions (a patch is one batch row; "
                "Patch(..., row=b) picks the base row it starts from)"
            )
        sel, j = torch.tensor([row]), 0
    else:
        sel = as_index(iv.rows, n_rows, f"rows of {who}")
        if sel.dim() != 1:
            raise ValueError(f"{who}: rows must be a 1-D list")
        hits = (sel == row).nonzero()
        if not len(hits):
            return None
        j = int(hits[0])
    pos = as_index(iv.positions, seq, f"{who}: positions of {site}")
    if pos.dim() == 2:
        if pos.shape[0] != len(sel):
            raise ValueError(f"{who}: per-row positions of {site} have {pos.shape[0]} rows for {len(sel)} rows")
        pos = pos[j]
    index = None if iv.index is None else as_index(iv.index, feat[0], f"{who}: index (heads/neurons) of {site}")
    if index is not None and index.dim() != 1:
        raise ValueError(f"{who}: index must be a 1-D list")
    value = iv.value
    if iv.op == "clamp" and not callable(value) and not (isinstance(value, tuple) and len(value) == 2):
        raise ValueError(f"{who}: clamp takes value=(low, high)")
    full = False
    if isinstance(value, torch.Tensor):
        if value.dim() == 2 + len(feat) and tuple(value.shape[1:]) == (seq, *feat):
            full = True
            if value.shape[0] not in (1, n_rows):
                raise ValueError(
                    f"{who}: value for {site} has the site's full shape but {value.shape[0]} rows; "
                    f"give 1 or one per base row ({n_rows})"
                )
            value = value[row : row + 1] if value.shape[0] > 1 else value
        else:
            rest = [len(index), *feat[1:]] if index is not None else list(feat)
            selection = (len(sel), len(pos), *rest)
            try:
                ok = torch.broadcast_shapes(tuple(value.shape), selection) == selection
            except RuntimeError:
                ok = False
            if not ok:
                raise ValueError(
                    f"{who}: value of shape {tuple(value.shape)} for {site} fits neither the selection "
                    f"{list(selection)} [rows, positions, ...] nor the site's full shape [1 or "
                    f"{n_rows}, {seq}, {', '.join(map(str, feat))}]"
                )
            value = torch.broadcast_to(value, selection)[j : j + 1]
    return RowView(site, iv.op, pos, index, value, full)


# --- compiled interventions, applied to many rows at once --------------------------------------------------------


@dataclass
class CompiledOp:
    """A view resolved for the engine: ``value`` is a tensor of the row's selection shape [k, (k_index), ...] in the
    run's dtype (``fused``), or the view's callable / clamp pair. ``stage`` is the site's order along the forward
    pass (:meth:`locedit.arch.SiteKind.stage`: stream point j, the input of layer j, is 2j; the inside of layer l
    is 2l+1)."""

    site: Site
    op: str
    pos: torch.Tensor
    index: torch.Tensor | None
    value: Any
    fused: bool
    stage: int


def compile_view(view: RowView, spec: ArchSpec, dtype: torch.dtype, device: torch.device) -> CompiledOp:
    value = view.value
    fused = view.op in ("replace", "add", "scale") and not callable(value)
    if fused:
        feat = view.site.kind.feature_shape(spec)
        rest = [len(view.index), *feat[1:]] if view.index is not None else list(feat)
        shape = (len(view.pos), *rest)
        if view.full:
            value = value[0, view.pos]
            if view.index is not None:
                value = value[:, view.index]
        elif isinstance(value, torch.Tensor):
            value = torch.broadcast_to(value, (1, *shape))[0]
        else:
            value = torch.full(shape, float(value))
        value = value.to(device=device, dtype=dtype).contiguous()
    index = None if view.index is None else view.index.to(device)
    stage = view.site.kind.stage(view.site.layer)
    return CompiledOp(view.site, view.op, view.pos.to(device), index, value, fused, stage)


@dataclass
class _Fused:
    op: str
    idx: tuple[torch.Tensor, ...]
    values: torch.Tensor


@dataclass
class _Single:
    row: int
    op: CompiledOp
    rel: torch.Tensor


Round = list  # of _Fused | _Single


def build_plans(rows_ops: Sequence[Sequence[CompiledOp]], start: int) -> dict[Site, list[Round]]:
    """Compile each site's interventions for the rows of one batch (row r = rows_ops[r]) into rounds of batched
    index operations. Positions are made relative to ``start``; those before it are dropped (the prefix is the base
    run's). Round t holds each row's t-th intervention at the site, so a row's interventions keep their order."""
    per_site: dict[Site, list[list[tuple[int, CompiledOp, torch.Tensor]]]] = {}
    for r, ops in enumerate(rows_ops):
        seen: dict[Site, int] = {}
        for op in ops:
            keep = op.pos >= start
            if not bool(keep.any()):
                continue
            t = seen.get(op.site, 0)
            seen[op.site] = t + 1
            rounds = per_site.setdefault(op.site, [])
            while len(rounds) <= t:
                rounds.append([])
            rounds[t].append((r, op, keep))
    plans: dict[Site, list[Round]] = {}
    for site, rounds in per_site.items():
        compiled = []
        for entries in rounds:
            items: list = []
            groups: dict[tuple[str, bool], list] = {}
            for r, op, keep in entries:
                rel = op.pos[keep] - start
                if not op.fused:
                    items.append(_Single(r, op, rel))
                    continue
                groups.setdefault((op.op, op.index is not None), []).append((r, op, keep, rel))
            for (kind, indexed), members in groups.items():
                rows, poss, idxs, vals = [], [], [], []
                for r, op, keep, rel in members:
                    v = op.value[keep]
                    if indexed:
                        ki = len(op.index)
                        rows.append(torch.full((len(rel) * ki,), r, dtype=torch.long, device=rel.device))
                        poss.append(rel.repeat_interleave(ki))
                        idxs.append(op.index.repeat(len(rel)))
                        vals.append(v.reshape(len(rel) * ki, *v.shape[2:]))
                    else:
                        rows.append(torch.full((len(rel),), r, dtype=torch.long, device=rel.device))
                        poss.append(rel)
                        vals.append(v)
                idx = (torch.cat(rows), torch.cat(poss)) + ((torch.cat(idxs),) if indexed else ())
                items.append(_Fused(kind, idx, torch.cat(vals)))
            compiled.append(items)
        plans[site] = compiled
    return plans


def apply_plan(x: torch.Tensor, rounds: list[Round] | None) -> torch.Tensor:
    """Apply compiled rounds to an activation [rows, positions, ...]; returns a new tensor (``x`` is untouched)."""
    if not rounds:
        return x
    x = x.clone()
    for items in rounds:
        for item in items:
            if isinstance(item, _Fused):
                if item.op == "replace":
                    x.index_put_(item.idx, item.values)
                elif item.op == "add":
                    x.index_put_(item.idx, x[item.idx] + item.values)
                else:
                    x.index_put_(item.idx, x[item.idx] * item.values)
            else:
                _apply_single(x, item)
    return x


def _apply_single(x: torch.Tensor, item: _Single) -> None:
    """A callable or clamp intervention on one row, as :meth:`Intervention.apply` does it."""
    op = item.op
    sel = (item.row, item.rel) if op.index is None else (item.row, item.rel[:, None], op.index[None, :])
    current = x[sel][None]
    value = op.value(current) if callable(op.value) else op.value
    new = combine(op.op, current, value)
    x[sel] = new[0]
