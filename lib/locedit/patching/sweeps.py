"""The patching engine: run many interventions against one base run, computing only what each one changes.

A *sweep* starts from a **base run** (a prompt, or a batch of prompts, optionally with ``base_interventions`` such
as noise on the subject's embeddings) and a list of **patches**. A :class:`Patch` is one batch row: a list of
:class:`~locedit.hooks.Intervention` objects applied together (at one site, or at several layers and sites at
once), starting from one row of the base run. For every patch the sweep returns ``metric(logits)`` at the positions
it reads.

Causal attention makes most of that work redundant. A patch whose earliest intervention sits at layer ``l`` and
position ``p`` leaves every layer below ``l`` and every position before ``p`` exactly as in the base run. So the
engine (``method="incremental"``, the default)

- groups patches by their first position ``p`` and feeds only positions ``>= p``, with the base run's keys and
  values of the earlier positions in a Hugging Face cache, expanded over the batch (the *position half*; it only
  needs the public cache API, so it works for every model that supports a cache);
- calls the decoder layers one at a time, each patch joining the batch at its own first layer from the base run's
  stored residual stream (the *layer half*, through the family's :class:`~locedit.arch.LayerAdapter`; a family
  without one gets the position half only, ``method="cached"``);
- computes logits only at the positions read;
- skips patches that change nothing at all (every intervention replaces a value by the one the base run already
  has there, e.g. restoring a clean state at a position before the first token where clean and corrupted prompts
  differ): their result is the base run's.

``method="full"`` is the plain reference: every patch is one row of an ordinary forward pass under
:func:`locedit.hooks.patch`. Both agree to ~1e-6 in float32 (tested on the real models for every kind of site).

Precision: every sweep takes ``dtype``. ``dtype=torch.bfloat16`` runs on a bf16 copy of the model (made once and
kept while the weights are unchanged). Whether that is faster depends on the processor: on CPUs with bf16
instructions (AVX-512 BF16 on recent AMD EPYC, AMX on recent Xeons) and on GPUs it is 2–4× faster (measured on a
2-core AVX-512 BF16 EPYC: a 300-patch grid in 1.3 s against 2.5 s in float32), but AVX2-only CPUs emulate bf16 and
run it several times *slower* (measured 5× slower on an AVX2 EPYC); ``benchmarks/results.json`` names the machine
it was measured on. bf16 is good enough to *locate* (which layer and position carry an effect, and its rough
size): probabilities move by a few hundredths (``tests/test_patching.py`` states the tolerance per sweep). It is
not good enough to compare small effects (below ~0.05 in probability), to compute differences of nearly equal
quantities, or to check that two methods agree: use float32 for those.

A causal trace (ROME) with this engine::

    clean = record(model, clean_inputs, [f"resid_post.{l}" for l in range(n)])
    noise = Intervention("embed", "add", noise_samples, positions=subject)  # noise_samples: [S, len(subject), d]
    corrupted = {k: v.expand(S, -1) for k, v in clean_inputs.items()}  # one base row per noise sample
    patches = [Patch([Intervention(f"resid_post.{l}", "replace", clean[f"resid_post.{l}"], positions=[t])], row=s)
               for s in range(S) for l in range(n) for t in range(T)]
    scores = sweep(model, corrupted, patches, metric, base_interventions=[noise]).view(S, n, T).mean(0)

A window restores several layers in one patch (several interventions); a "severed" variant adds interventions that
freeze ``mlp_out`` at the corrupted run's values (:func:`record` with the noise as ``interventions``) at the layers
above. Path patching freezes heads the same way, per row and at several layers.
"""

from __future__ import annotations

import copy
import inspect
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, Union

import torch
from torch import nn

from locedit.arch import ArchSpec, LayerAdapter, layer_adapter
from locedit.hooks import (
    Intervention,
    Site,
    _as_index,
    _combine,
    _input_hook,
    _locate,
    _output_hook,
    patch,
    run_with,
)
from locedit.models import Model

Method = Literal["incremental", "cached", "full"]
PatchLike = Union["Patch", Intervention, Sequence[Intervention]]
Metric = Callable[..., torch.Tensor]

__all__ = ["Patch", "activation_patching_grid", "as_dtype", "record", "sweep"]


# --- patches -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Patch:
    """One row of a sweep: ``interventions`` applied together, starting from base row ``row``.

    The interventions' ``rows`` must be left at ``None`` (a patch *is* one row). A tensor value with the site's full
    shape ([1 or base batch, seq, ...], e.g. from :func:`record`) is indexed at the patch's positions (and at row
    ``row`` when it has one row per base row); any other tensor is broadcast to the selection [1, positions, ...].
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


def _as_patch(p: PatchLike) -> Patch:
    return p if isinstance(p, Patch) else Patch(p)


# --- dtype copies ------------------------------------------------------------------------------------------------

_COPIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _fingerprint(hf: nn.Module) -> tuple:
    """Changes whenever a weight is replaced or edited in place (version counter, plus a strided checksum that also
    catches edits through ``.data``, which do not bump the version)."""
    parts = []
    with torch.no_grad():
        for p in hf.parameters():
            flat = p.detach().reshape(-1)
            parts.append((p.data_ptr(), p._version, float(flat[:: max(1, flat.numel() // 257)].double().sum())))
    return tuple(parts)


def as_dtype(model: Model, dtype: torch.dtype | None) -> Model:
    """``model`` itself if ``dtype`` is ``None`` or its own dtype, else a copy in ``dtype`` (kept for later calls
    until the weights change)."""
    if dtype is None or dtype == model.dtype:
        return model
    key = _fingerprint(model.hf)
    copies = _COPIES.setdefault(model.hf, {})
    cached = copies.get(dtype)
    if cached is None or cached[0] != key:
        copies.pop(dtype, None)
        hf = copy.deepcopy(model.hf).to(dtype)
        hf.eval()
        cached = copies[dtype] = (key, hf)
    return Model(hf=cached[1], tokenizer=model.tokenizer, spec=model.spec, name=model.name)


# --- inputs and the interventions of one row ---------------------------------------------------------------------


def _encode(model: Model, inputs: str | Sequence[str] | dict) -> dict[str, torch.Tensor]:
    if isinstance(inputs, (str, list, tuple)):
        return model.encode(inputs)
    out = {"input_ids": inputs["input_ids"].to(model.device)}
    if inputs.get("attention_mask") is not None:
        out["attention_mask"] = inputs["attention_mask"].to(model.device)
    return out


def _feature_shape(spec: ArchSpec, name: str) -> tuple[int, ...]:
    if name == "z":
        return (spec.n_heads, spec.head_dim)
    if name in ("mlp_act", "mlp_up"):
        return (spec.d_mlp,)
    return (spec.d_model,)


@dataclass(frozen=True)
class _View:
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


def _row_view(iv: Intervention, row: int, n_rows: int, seq: int, model: Model, who: str, patch: bool) -> _View | None:
    """The part of ``iv`` that acts on base row ``row`` (``None`` if it does not touch it), checked."""
    site, spec = iv.site, model.spec
    try:
        _locate(spec, model.hf, site)
    except (IndexError, ValueError) as err:
        raise type(err)(f"{who}: site {site}: {err}") from None
    feat = _feature_shape(spec, site.name)
    if patch:
        if iv.rows is not None:
            raise ValueError(
                f"{who}: leave `rows` unset in a patch's interventions (a patch is one batch row; "
                "Patch(..., row=b) picks the base row it starts from)"
            )
        sel, j = torch.tensor([row]), 0
    else:
        sel = _as_index(iv.rows, n_rows, f"rows of {who}")
        if sel.dim() != 1:
            raise ValueError(f"{who}: rows must be a 1-D list")
        hits = (sel == row).nonzero()
        if not len(hits):
            return None
        j = int(hits[0])
    pos = _as_index(iv.positions, seq, f"{who}: positions of {site}")
    if pos.dim() == 2:
        if pos.shape[0] != len(sel):
            raise ValueError(f"{who}: per-row positions of {site} have {pos.shape[0]} rows for {len(sel)} rows")
        pos = pos[j]
    index = None if iv.index is None else _as_index(iv.index, feat[0], f"{who}: index (heads/neurons) of {site}")
    if index is not None and index.dim() != 1:
        raise ValueError(f"{who}: index must be a 1-D list")
    value = iv.value
    if iv.op == "clamp" and not callable(value) and not (isinstance(value, tuple) and len(value) == 2):
        raise ValueError(f"{who}: clamp takes value=(low, high)")
    full = False
    if isinstance(value, torch.Tensor):
        if value.dim() == 2 + len(feat) and tuple(value.shape[1:]) == (seq, *feat):
            full = True
            if value.shape[0] == 1:
                pass
            elif value.shape[0] == n_rows:
                value = value[row : row + 1]
            else:
                raise ValueError(
                    f"{who}: value for {site} has the site's full shape but {value.shape[0]} rows; "
                    f"give 1 or one per base row ({n_rows})"
                )
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
    return _View(site, iv.op, pos, index, value, full)


# --- compiled interventions, applied to many rows at once --------------------------------------------------------


@dataclass
class _Op:
    """A view resolved for the engine: ``value`` is a tensor of the row's selection shape [k, (k_index), ...] in the
    run's dtype (``fused``), or the view's callable / clamp pair."""

    site: Site
    op: str
    pos: torch.Tensor
    index: torch.Tensor | None
    value: Any
    fused: bool

    @property
    def stage(self) -> int:
        """Order along the forward pass: stream point j (input of layer j) is 2j, the inside of layer l is 2l+1."""
        name, layer = self.site.name, self.site.layer
        if name == "embed":
            return 0
        if name == "resid_pre":
            return 2 * layer
        if name == "resid_post":
            return 2 * layer + 2
        return 2 * layer + 1


def _compile(view: _View, spec: ArchSpec, dtype: torch.dtype, device: torch.device) -> _Op:
    value = view.value
    fused = view.op in ("replace", "add", "scale") and not callable(value)
    if fused:
        feat = _feature_shape(spec, view.site.name)
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
    return _Op(
        view.site, view.op, view.pos.to(device), None if view.index is None else view.index.to(device), value, fused
    )


@dataclass
class _Fused:
    op: str
    idx: tuple[torch.Tensor, ...]
    values: torch.Tensor


@dataclass
class _Single:
    row: int
    op: _Op
    rel: torch.Tensor


_Round = list  # of _Fused | _Single


def _build_plans(rows_ops: Sequence[Sequence[_Op]], start: int) -> dict[Site, list[_Round]]:
    """Compile each site's interventions for the rows of one batch (row r = rows_ops[r]) into rounds of batched
    index operations. Positions are made relative to ``start``; those before it are dropped (the prefix is the base
    run's). Round t holds each row's t-th intervention at the site, so a row's interventions keep their order."""
    per_site: dict[Site, list[list[tuple[int, _Op, torch.Tensor]]]] = {}
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
    plans: dict[Site, list[_Round]] = {}
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


def _apply_plan(x: torch.Tensor, rounds: list[_Round] | None) -> torch.Tensor:
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
    new = _combine(op.op, current, value)
    x[sel] = new[0]


@contextmanager
def _site_hooks(
    model: Model,
    plans: dict[Site, list[_Round]],
    sites: Sequence[Site],
    recorded: dict[Site, torch.Tensor] | None = None,
    record: frozenset[Site] = frozenset(),
) -> Iterator[None]:
    """Hooks applying ``plans`` (and recording ``record``) at ``sites``; always removed on exit."""
    spec, handles = model.spec, []
    try:
        for site in sites:
            module, side = _locate(spec, model.hf, site)
            fn = _site_fn(spec, site, plans.get(site), recorded if site in record else None)
            if side == "output":
                handles.append(module.register_forward_hook(_output_hook(fn)))
            else:
                handles.append(module.register_forward_pre_hook(_input_hook(fn), with_kwargs=True))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _site_fn(spec: ArchSpec, site: Site, rounds, recorded):
    heads = site.name == "z"

    def fn(x: torch.Tensor) -> torch.Tensor:
        shaped = x.reshape(*x.shape[:-1], spec.n_heads, spec.head_dim) if heads else x
        shaped = _apply_plan(shaped, rounds)
        if recorded is not None:
            recorded[site] = shaped
        return shaped.reshape(x.shape) if heads else shaped

    return fn


# --- the base run and the incremental runs -----------------------------------------------------------------------


@dataclass
class _Context:
    model: Model
    adapter: LayerAdapter | None
    ids: torch.Tensor  # [B, T]
    mask2d: torch.Tensor | None  # [B, T], None if no padding
    read: list[int]  # absolute read positions
    dtype: torch.dtype
    base_ops: list[list[_Op]]  # per base row
    # filled by the base run
    streams: list[torch.Tensor] = field(default_factory=list)  # raw stream value entering point j, [B, T, d]
    keys: list[torch.Tensor] = field(default_factory=list)  # per layer [B, kv_heads, T, head_dim]
    values: list[torch.Tensor] = field(default_factory=list)
    final: torch.Tensor | None = None  # last layer's output after interventions, [B, T, d] (layered runs)
    base_logits: torch.Tensor | None = None  # [B, len(read), vocab]
    post: dict[Site, torch.Tensor] = field(default_factory=dict)  # site values after base interventions

    @property
    def seq(self) -> int:
        return self.ids.shape[1]

    @property
    def n_base(self) -> int:
        return self.ids.shape[0]


def _take(t: torch.Tensor, rows: torch.Tensor, n_base: int) -> torch.Tensor:
    """Rows ``rows`` of a per-base-row tensor (an expanded view when there is one base row)."""
    if n_base == 1:
        return t.expand(len(rows), *t.shape[1:])
    return t.index_select(0, rows)


def _prefix_cache(ctx: _Context, start: int, rows_per_layer: Sequence[torch.Tensor]):
    """A Hugging Face cache holding the base run's keys/values of positions < start, layer l expanded over the
    rows ``rows_per_layer[l]`` (a layer's batch is the rows that have joined by then)."""
    from transformers import DynamicCache

    data = []
    for layer, rows in enumerate(rows_per_layer):
        rows = rows if len(rows) else rows.new_zeros(1)
        k = _take(ctx.keys[layer][:, :, :start], rows, ctx.n_base)
        v = _take(ctx.values[layer][:, :, :start], rows, ctx.n_base)
        data.append((k, v))
    return DynamicCache(ddp_cache_data=data)


def _run_layered(
    ctx: _Context,
    joins: Sequence[int],
    base_rows: torch.Tensor,
    rows_ops: Sequence[Sequence[_Op]],
    start: int,
    record_sites: frozenset[Site] = frozenset(),
    base_run: bool = False,
) -> torch.Tensor:
    """Run rows (sorted by the stream point ``joins[r]`` they join at) through the decoder layer by layer, over
    positions >= ``start``; returns logits [rows, len(read), vocab] at the read positions.

    With ``base_run`` it instead records the raw stream values, keys/values and final states into ``ctx``."""
    model, adapter, spec = ctx.model, ctx.adapter, ctx.model.spec
    hf, n_layers, seq = model.hf, spec.n_layers, ctx.seq
    device = ctx.ids.device
    blocks = spec.blocks(hf)
    query = seq - start
    positions = torch.arange(start, seq, device=device)[None]
    plans = _build_plans(rows_ops, start)
    joins_t = torch.tensor(list(joins))
    active = [int((joins_t <= j).sum()) for j in range(n_layers + 1)]  # rows joined by stream point j
    if base_run:
        from transformers import DynamicCache

        cache = DynamicCache()
    elif start > 0:
        cache = _prefix_cache(ctx, start, [base_rows[: active[j]] for j in range(n_layers)])
    else:
        cache = None
    like = torch.empty(ctx.n_base, query, spec.d_model, dtype=ctx.dtype, device=device)
    mask2d = ctx.mask2d
    kwargs = adapter.layer_kwargs(hf, like, mask2d, cache, positions)
    masks: dict[tuple[int, int], torch.Tensor] = {}
    inner = {s: None for s in plans if s.name not in ("embed", "resid_pre", "resid_post")}
    for s in record_sites:
        if s.name not in ("embed", "resid_pre", "resid_post"):
            inner[s] = None
    inner_by_layer: dict[int, list[Site]] = {}
    for s in inner:
        inner_by_layer.setdefault(s.layer, []).append(s)
    recorded: dict[Site, torch.Tensor] = {}

    def stream_site(site: Site, x: torch.Tensor) -> torch.Tensor:
        x = _apply_plan(x, plans.get(site))
        if site in record_sites:
            recorded[site] = x
        return x

    x: torch.Tensor | None = None
    for j in range(n_layers + 1):
        lo, hi = (active[j - 1] if j else 0), active[j]
        if hi > lo:
            new = _take(ctx.streams[j], base_rows[lo:hi], ctx.n_base)[:, start:] if not base_run else ctx.streams[0]
            x = new.contiguous() if x is None else torch.cat([x, new], 0)
        if x is None:
            continue
        if base_run and j:
            ctx.streams.append(x)
        if j == 0:
            x = stream_site(Site("embed"), x)
            x = adapter.embed_to_resid(hf, x, positions)
        else:
            x = stream_site(Site("resid_post", j - 1), x)
        if j == n_layers:
            break
        x = stream_site(Site("resid_pre", j), x)
        kw = kwargs[j]
        mask = kw.get("attention_mask")
        if isinstance(mask, torch.Tensor) and mask.shape[0] > 1 and not base_run:
            key = (id(mask), active[j])
            if key not in masks:
                masks[key] = mask.index_select(0, base_rows[: active[j]])
            kw = {**kw, "attention_mask": masks[key]}
        sites = inner_by_layer.get(j, ())
        if sites:
            with _site_hooks(model, plans, sites, recorded, record_sites):
                x = blocks[j](x, cache=cache, **kw)
        else:
            x = blocks[j](x, cache=cache, **kw)
    if base_run:
        ctx.keys = [layer.keys for layer in cache.layers]
        ctx.values = [layer.values for layer in cache.layers]
        ctx.final = x
        ctx.post.update(recorded)
    read = []
    for r in ctx.read:
        if r >= start:
            read.append(x[:, r - start])
        else:
            read.append(_take(ctx.final[:, r], base_rows, ctx.n_base))
    return adapter.logits(hf, spec, torch.stack(read, 1))


def _run_cached(
    ctx: _Context,
    base_rows: torch.Tensor,
    rows_ops: Sequence[Sequence[_Op]],
    start: int,
    record_sites: frozenset[Site] = frozenset(),
    base_run: bool = False,
) -> torch.Tensor:
    """The position half alone (any model with a cache): a forward pass over positions >= ``start`` with the base
    run's keys/values of the earlier positions; logits [rows, len(read), vocab]."""
    from transformers import DynamicCache

    model, n_layers, seq = ctx.model, ctx.model.spec.n_layers, ctx.seq
    device = ctx.ids.device
    plans = _build_plans(rows_ops, start)
    if base_run:
        cache = DynamicCache()
    elif start > 0:
        cache = _prefix_cache(ctx, start, [base_rows] * n_layers)
    else:
        cache = None
    read_here = [r - start for r in ctx.read if r >= start]
    inputs = {
        "input_ids": _take(ctx.ids, base_rows, ctx.n_base)[:, start:],
        "position_ids": torch.arange(start, seq, device=device)[None],
        "cache": cache,
        "use_cache": cache is not None,
        "logits_to_keep": torch.tensor(read_here or [0], device=device),
    }
    if ctx.mask2d is not None:
        inputs["attention_mask"] = _take(ctx.mask2d, base_rows, ctx.n_base)
    recorded: dict[Site, torch.Tensor] = {}
    with _site_hooks(model, plans, list(set(plans) | set(record_sites)), recorded, record_sites):
        logits = model.hf(**inputs).logits
    if base_run:
        ctx.keys = [layer.keys for layer in cache.layers]
        ctx.values = [layer.values for layer in cache.layers]
        ctx.post.update(recorded)
        return logits
    out, i = [], 0
    for r in ctx.read:
        if r >= start:
            out.append(logits[:, i])
            i += 1
        else:
            out.append(_take(ctx.base_logits[:, len(out)], base_rows, ctx.n_base))
    return torch.stack(out, 1)


# --- sweeps ------------------------------------------------------------------------------------------------------


def _call_metric(metric: Metric | None, logits: torch.Tensor, rows: torch.Tensor, two_args: bool) -> torch.Tensor:
    logits = logits.float()
    if metric is None:
        return logits
    out = metric(logits, rows) if two_args else metric(logits)
    out = torch.as_tensor(out)
    if out.dim() == 0 or out.shape[0] != logits.shape[0]:
        raise ValueError(
            f"the metric must return one value (or one tensor) per row: got shape {tuple(out.shape)} "
            f"for {logits.shape[0]} rows"
        )
    return out.detach().float().cpu()


def _takes_two(metric: Metric | None) -> bool:
    if metric is None:
        return False
    try:
        params = inspect.signature(metric).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)


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
        metric: ``metric(logits)`` or ``metric(logits, base_rows)`` → one value (or tensor) per row, where
            ``logits`` is [rows, len(read_positions), vocab] float32 and ``base_rows`` [rows] says which base row
            each row started from. It is called on batches of rows and must treat rows independently. ``None``
            returns the logits themselves.
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
    patches = [_as_patch(p) for p in patches]
    two_args = _takes_two(metric)

    base_views: list[list[_View]] = [[] for _ in range(n_base)]
    for k, iv in enumerate(base_interventions):
        for b in range(n_base):
            view = _row_view(iv, b, n_base, seq, run, f"base intervention {k}", patch=False)
            if view is not None:
                base_views[b].append(view)
    patch_views: list[list[_View]] = []
    for i, p in enumerate(patches):
        if not 0 <= p.row < n_base:
            raise IndexError(f"patch {i}: base row {p.row} out of range: the base run has {n_base} row(s)")
        patch_views.append([_row_view(iv, p.row, n_base, seq, run, f"patch {i}", patch=True) for iv in p.interventions])

    if method == "full":
        return _sweep_full(run, ids, mask2d, read, patches, base_views, patch_views, metric, two_args, batch_size or 64)

    adapter = layer_adapter(run.spec) if method == "incremental" else None
    if adapter is None:
        method = "cached"
    device, rdtype = ids.device, run.dtype
    base_ops = [[_compile(v, run.spec, rdtype, device) for v in views] for b, views in enumerate(base_views)]
    patch_ops = [[_compile(v, run.spec, rdtype, device) for v in views] for views in patch_views]
    ctx = _Context(run, adapter, ids, mask2d, read, rdtype, base_ops)
    check = (
        frozenset(op.site for ops in patch_ops for op in ops if op.fused and op.op == "replace")
        if skip_noops
        else frozenset()
    )
    results: list[tuple[torch.Tensor, torch.Tensor]] = []  # (patch indices, metric values)
    all_base = torch.arange(n_base, device=device)
    with torch.no_grad():
        if method == "incremental":
            ctx.streams = [_take(run.spec.part(run.hf, "embed")(ids), all_base, n_base)]
            ctx.base_logits = _run_layered(ctx, [0] * n_base, all_base, base_ops, 0, check, base_run=True)
        else:
            ctx.base_logits = _run_cached(ctx, all_base, base_ops, 0, check, base_run=True)
        # Each patch: a no-op, or the (position, stream point) where it first changes anything.
        noop, work = [], []
        for i, ops in enumerate(patch_ops):
            b = patches[i].row
            ops = [op for op in ops if len(op.pos)]
            if not ops or (skip_noops and all(_is_noop(ctx, op, b) for op in ops)):
                noop.append(i)
                continue
            start = min(int(op.pos.min()) for op in ops)
            join = min(op.stage for op in ops) // 2 if method == "incremental" else 0
            work.append((start, join, i))
        if noop:
            idx = torch.tensor(noop)
            rows = torch.tensor([patches[i].row for i in noop], device=device)
            results.append((idx, _call_metric(metric, ctx.base_logits[rows], rows.cpu(), two_args)))
        work.sort()
        size = batch_size or 256
        chunks: list[list[tuple[int, int, int]]] = []
        for item in work:
            if chunks and chunks[-1][0][0] == item[0] and len(chunks[-1]) < size:
                chunks[-1].append(item)
            else:
                chunks.append([item])
        for chunk in chunks:
            start = chunk[0][0]
            idx = [i for _, _, i in chunk]
            rows = torch.tensor([patches[i].row for i in idx], device=device)
            if method == "incremental":
                joins = [j for _, j, _ in chunk]
                rows_ops = [
                    [op for op in base_ops[patches[i].row] + patch_ops[i] if op.stage >= 2 * j] for _, j, i in chunk
                ]
                logits = _run_layered(ctx, joins, rows, rows_ops, start)
            else:
                rows_ops = [base_ops[patches[i].row] + patch_ops[i] for i in idx]
                logits = _run_cached(ctx, rows, rows_ops, start)
            results.append((torch.tensor(idx), _call_metric(metric, logits, rows.cpu(), two_args)))
    return _assemble(results, len(patches))


def _is_noop(ctx: _Context, op: _Op, row: int) -> bool:
    """Whether ``op`` (on base row ``row``) replaces values by exactly those the base run has there."""
    if not (op.fused and op.op == "replace"):
        return False
    base = _post_value(ctx, op.site)
    if base is None:
        return False
    current = base[row, op.pos]
    if op.index is not None:
        current = current[:, op.index]
    return torch.equal(current, op.value)


def _post_value(ctx: _Context, site: Site) -> torch.Tensor | None:
    value = ctx.post.get(site)
    if value is not None and site.name == "z":
        value = value.reshape(*value.shape[:2], ctx.model.spec.n_heads, ctx.model.spec.head_dim)
    return value


def _assemble(results: list[tuple[torch.Tensor, torch.Tensor]], n: int) -> torch.Tensor:
    if not results:
        return torch.empty(0)
    shape = results[0][1].shape[1:]
    out = torch.empty(n, *shape)
    for idx, values in results:
        out[idx] = values
    return out


def _sweep_full(run, ids, mask2d, read, patches, base_views, patch_views, metric, two_args, batch_size):
    """The reference: each patch is one row of an ordinary full forward pass under :func:`locedit.hooks.patch`."""
    results = []
    keep = torch.tensor(read, device=ids.device)
    with torch.no_grad():
        for lo in range(0, len(patches), batch_size):
            idx = list(range(lo, min(lo + batch_size, len(patches))))
            rows = torch.tensor([patches[i].row for i in idx], device=ids.device)
            interventions = [
                view.intervention(r) for r, i in enumerate(idx) for view in base_views[patches[i].row] + patch_views[i]
            ]
            inputs = {"input_ids": ids[rows]}
            if mask2d is not None:
                inputs["attention_mask"] = mask2d[rows]
            with patch(run, interventions):
                logits = run.hf(**inputs, logits_to_keep=keep).logits
            results.append((torch.tensor(idx), _call_metric(metric, logits, rows.cpu(), two_args)))
    return _assemble(results, len(patches))


# --- conveniences ------------------------------------------------------------------------------------------------


def record(
    model: Model,
    inputs: str | Sequence[str] | dict,
    sites: Sequence[Site | str],
    *,
    interventions: Sequence[Intervention] = (),
    dtype: torch.dtype | None = None,
) -> dict[str, torch.Tensor]:
    """Activations at ``sites`` ([batch, seq, ...], keyed by site string) of one forward pass (under
    ``interventions``), in ``dtype``: the values patches restore (clean run) or freeze (corrupted run)."""
    run = as_dtype(model, dtype)
    _, cache = run_with(run, _encode(run, inputs), interventions, record=sites)
    return {
        k: (v.reshape(*v.shape[:2], run.spec.n_heads, run.spec.head_dim) if Site.parse(k).name == "z" else v)
        for k, v in cache.items()
    }


def activation_patching_grid(
    model: Model,
    clean: str | dict,
    corrupt: str | dict,
    metric: Metric | None = None,
    *,
    site: str = "resid_post",
    layers: Sequence[int] | None = None,
    positions: Sequence[int] | None = None,
    read_positions: int | Sequence[int] = (-1,),
    dtype: torch.dtype | None = None,
    method: Method = "incremental",
    batch_size: int | None = None,
    skip_noops: bool = True,
) -> torch.Tensor:
    """Patch the clean run's ``site`` into the corrupted run at every (layer, position): ``metric`` of each, as a
    grid [layers, positions] ([layers, positions, heads] for ``site="z"``, one head at a time).

    ``clean`` and ``corrupt`` must have the same number of tokens. In bfloat16 the grid's probabilities move by a
    few hundredths against float32: fine to see where the effect is, not to compare effects that differ by less.
    """
    run = as_dtype(model, dtype)
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
    heads = list(range(run.spec.n_heads)) if site == "z" else [None]
    patches = [
        Patch([Intervention(s, "replace", values[str(s)], positions=[p], index=None if h is None else [h])])
        for s in sites
        for p in positions
        for h in heads
    ]
    out = sweep(
        run,
        corrupt_in,
        patches,
        metric,
        read_positions=read_positions,
        method=method,
        batch_size=batch_size,
        skip_noops=skip_noops,
    )
    shape = (len(layers), len(positions)) + ((len(heads),) if site == "z" else ())
    return out.reshape(*shape, *out.shape[1:])
