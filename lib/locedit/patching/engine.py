"""The runs behind a sweep: one base run, then each batch of patches from where it first changes anything.

:func:`run_sweep` is what :func:`locedit.patching.sweep` calls once the patches are checked and cut into per-row
views (:mod:`locedit.patching.plan`). ``"incremental"`` runs the decoder layers one at a time (:func:`_run_layered`,
through the family's :class:`~locedit.arch.LayerAdapter`), ``"cached"`` runs the Hugging Face forward over the
positions from the patch on, with the base run's keys and values before it (:func:`_run_cached`), and ``"full"`` is
the reference: one ordinary forward row per patch under :func:`locedit.hooks.patch`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

import torch

from locedit.arch import LayerAdapter, layer_adapter
from locedit.hooks import Site, SiteFn, attach, patch
from locedit.models import Model
from locedit.patching.plan import CompiledOp, Patch, Round, RowView, apply_plan, build_plans, compile_view
from locedit.threads import loop_threads

Method = Literal["incremental", "cached", "full"]
#: ``score(logits, base_rows)``: logits [rows, len(read), vocab] and the base row of each row [rows] (CPU) → the
#: sweep's values for those rows [rows, ...] (float32, CPU).
Score = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@loop_threads()
def run_sweep(
    run: Model,
    ids: torch.Tensor,
    mask2d: torch.Tensor | None,
    read: list[int],
    patches: Sequence[Patch],
    base_views: list[list[RowView]],
    patch_views: list[list[RowView]],
    score: Score,
    method: Method,
    batch_size: int | None,
    skip_noops: bool,
) -> torch.Tensor:
    """The values of every patch, [n_patches, ...]: ``score`` of its logits at the ``read`` positions.

    ``ids`` [B, T] and ``mask2d`` (``None`` without padding) are the base run's inputs, ``base_views[b]`` the base
    interventions on base row b, ``patch_views[i]`` those of patch i (on base row ``patches[i].row``).

    Runs with the threads the machine can give it now (:func:`locedit.threads.loop_threads`)."""
    if method == "full":
        return _run_full(run, ids, mask2d, read, patches, base_views, patch_views, score, batch_size or 64)
    adapter = layer_adapter(run.spec) if method == "incremental" else None
    if adapter is None:
        method = "cached"
    n_base = ids.shape[0]
    device, rdtype = ids.device, run.dtype
    base_ops = [[compile_view(v, run.spec, rdtype, device) for v in views] for views in base_views]
    patch_ops = [[compile_view(v, run.spec, rdtype, device) for v in views] for views in patch_views]
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
            ctx.base_logits = _run_layered(ctx, _Batch(all_base, base_ops, 0, [0] * n_base, check, base_run=True))
        else:
            ctx.base_logits = _run_cached(ctx, _Batch(all_base, base_ops, 0, record=check, base_run=True))
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
            results.append((idx, score(ctx.base_logits[rows], rows.cpu())))
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
                logits = _run_layered(ctx, _Batch(rows, rows_ops, start, joins))
            else:
                rows_ops = [base_ops[patches[i].row] + patch_ops[i] for i in idx]
                logits = _run_cached(ctx, _Batch(rows, rows_ops, start))
            results.append((torch.tensor(idx), score(logits, rows.cpu())))
    return _assemble(results, len(patches))


def _run_full(run, ids, mask2d, read, patches, base_views, patch_views, score, batch_size) -> torch.Tensor:
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
            results.append((torch.tensor(idx), score(logits, rows.cpu())))
    return _assemble(results, len(patches))


def _assemble(results: list[tuple[torch.Tensor, torch.Tensor]], n: int) -> torch.Tensor:
    if not results:
        return torch.empty(0)
    shape = results[0][1].shape[1:]
    out = torch.empty(n, *shape)
    for idx, values in results:
        out[idx] = values
    return out


def _is_noop(ctx: _Context, op: CompiledOp, row: int) -> bool:
    """Whether ``op`` (on base row ``row``) replaces values by exactly those the base run has there."""
    if not (op.fused and op.op == "replace"):
        return False
    base = ctx.post.get(op.site)  # as the site's kind shapes it: per head for z
    if base is None:
        return False
    current = base[row, op.pos]
    if op.index is not None:
        current = current[:, op.index]
    return torch.equal(current, op.value)


# --- the site hooks of a batch ------------------------------------------------------------------------------------


@contextmanager
def _plan_hooks(
    model: Model,
    plans: dict[Site, list[Round]],
    sites: Sequence[Site],
    recorded: dict[Site, torch.Tensor] | None = None,
    record: frozenset[Site] = frozenset(),
) -> Iterator[None]:
    """Hooks applying ``plans`` (and recording ``record`` into ``recorded``) at ``sites``; removed on exit."""
    fns = {site: _site_fn(site, plans.get(site), recorded if site in record else None) for site in sites}
    with attach(model, fns):
        yield


def _site_fn(site: Site, rounds: list[Round] | None, recorded: dict[Site, torch.Tensor] | None) -> SiteFn:
    def fn(x: torch.Tensor) -> torch.Tensor:
        x = apply_plan(x, rounds)
        if recorded is not None:
            recorded[site] = x
        return x

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
    base_ops: list[list[CompiledOp]]  # per base row
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


@dataclass(frozen=True)
class _Batch:
    """One forward run of rows, as both runners take it."""

    base_rows: torch.Tensor  # the base row each row starts from [rows]
    rows_ops: Sequence[Sequence[CompiledOp]]  # each row's compiled interventions
    start: int  # the first position run (earlier ones come from the base run's keys/values)
    joins: Sequence[int] = ()  # layered runs: the stream point each row joins at (rows sorted by it)
    record: frozenset[Site] = frozenset()  # sites whose values the base run keeps (``ctx.post``)
    base_run: bool = False  # the base run itself: record the streams, keys/values and final states into ``ctx``


def _batch_cache(ctx: _Context, batch: _Batch, rows_per_layer: Sequence[torch.Tensor]):
    """The cache a run starts from: an empty one to fill (the base run), the base run's keys/values of positions
    < start (layer l's over the rows ``rows_per_layer[l]``), or ``None`` when the run starts at position 0."""
    from transformers import DynamicCache

    if batch.base_run:
        return DynamicCache()
    if batch.start == 0:
        return None
    data = []
    for layer, rows in enumerate(rows_per_layer):
        rows = rows if len(rows) else rows.new_zeros(1)
        k = _take(ctx.keys[layer][:, :, : batch.start], rows, ctx.n_base)
        v = _take(ctx.values[layer][:, :, : batch.start], rows, ctx.n_base)
        data.append((k, v))
    return DynamicCache(ddp_cache_data=data)


def _keep_base(ctx: _Context, cache, recorded: dict[Site, torch.Tensor]) -> None:
    """Keep the base run's keys/values (from its ``cache``) and its recorded site values in ``ctx``."""
    ctx.keys = [layer.keys for layer in cache.layers]
    ctx.values = [layer.values for layer in cache.layers]
    ctx.post.update(recorded)


def _run_layered(ctx: _Context, batch: _Batch) -> torch.Tensor:
    """Run rows (sorted by the stream point ``batch.joins[r]`` they join at) through the decoder layer by layer,
    over positions >= ``batch.start``; returns logits [rows, len(read), vocab] at the read positions.

    With ``batch.base_run`` it instead records the raw stream values, keys/values and final states into ``ctx``."""
    base_rows, start, record_sites, base_run = batch.base_rows, batch.start, batch.record, batch.base_run
    model, adapter, spec = ctx.model, ctx.adapter, ctx.model.spec
    hf, n_layers, seq = model.hf, spec.n_layers, ctx.seq
    device = ctx.ids.device
    blocks = spec.blocks(hf)
    query = seq - start
    positions = torch.arange(start, seq, device=device)[None]
    plans = build_plans(batch.rows_ops, start)
    joins_t = torch.tensor(list(batch.joins))
    active = [int((joins_t <= j).sum()) for j in range(n_layers + 1)]  # rows joined by stream point j
    cache = _batch_cache(ctx, batch, [base_rows[: active[j]] for j in range(n_layers)])
    like = torch.empty(ctx.n_base, query, spec.d_model, dtype=ctx.dtype, device=device)
    mask2d = ctx.mask2d
    kwargs = adapter.layer_kwargs(hf, like, mask2d, cache, positions)
    masks: dict[tuple[int, int], torch.Tensor] = {}
    inner_by_layer: dict[int, list[Site]] = {}  # sites inside the blocks, hooked (stream sites are applied here)
    for s in dict.fromkeys((*plans, *record_sites)):
        if s.kind.in_block:
            inner_by_layer.setdefault(s.layer, []).append(s)
    recorded: dict[Site, torch.Tensor] = {}

    def stream_site(site: Site, x: torch.Tensor) -> torch.Tensor:
        x = apply_plan(x, plans.get(site))
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
            with _plan_hooks(model, plans, sites, recorded, record_sites):
                x = blocks[j](x, cache=cache, **kw)
        else:
            x = blocks[j](x, cache=cache, **kw)
    if base_run:
        _keep_base(ctx, cache, recorded)
        ctx.final = x
    read = []
    for r in ctx.read:
        if r >= start:
            read.append(x[:, r - start])
        else:
            read.append(_take(ctx.final[:, r], base_rows, ctx.n_base))
    return adapter.logits(hf, spec, torch.stack(read, 1))


def _run_cached(ctx: _Context, batch: _Batch) -> torch.Tensor:
    """The position half alone (any model with a cache): a forward pass over positions >= ``batch.start`` with the
    base run's keys/values of the earlier positions; logits [rows, len(read), vocab]."""
    base_rows, start, record_sites = batch.base_rows, batch.start, batch.record
    model, n_layers, seq = ctx.model, ctx.model.spec.n_layers, ctx.seq
    device = ctx.ids.device
    plans = build_plans(batch.rows_ops, start)
    cache = _batch_cache(ctx, batch, [base_rows] * n_layers)
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
    with _plan_hooks(model, plans, list(set(plans) | set(record_sites)), recorded, record_sites):
        logits = model.hf(**inputs).logits
    if batch.base_run:
        _keep_base(ctx, cache, recorded)
        return logits
    out, i = [], 0
    for r in ctx.read:
        if r >= start:
            out.append(logits[:, i])
            i += 1
        else:
            out.append(_take(ctx.base_logits[:, len(out)], base_rows, ctx.n_base))
    return torch.stack(out, 1)
