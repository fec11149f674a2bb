"""Path patching (Wang et al. 2022), as Merullo et al.'s code defines it (``patching_utils.path_patching``).

For each **sender** head (l, h) and each prompt:

1. clean prompt x, corrupted prompt x' (same length; e.g. IOI with S2 → IO);
2. run x with the sender's z at the **last position** set to its value on x', and every other head's z at that
   position (at every layer) **frozen** to its value on x; MLPs are recomputed. Only the sender's direct paths and
   the paths through MLPs carry its change;
3. the receiver reads that change:

   - ``receivers="logits"``: the residual stream at the end, i.e. the logits of run 2 (patching the final residual
     of run 2 into a clean run gives run 2's logits);
   - ``receivers=[(layer, head), ...]`` with ``component="z"``, ``"q"``, ``"k"`` or ``"v"``: that component of
     those heads at the last position, recorded in run 2 (z before the head's own freeze, as the paper's hooks
     do), then patched, all receivers together, into a fresh clean run of x (run 3), whose logits give the score.
     q, k and v are the hooks' sites of those names (:data:`locedit.arch.SITES`): the projections' outputs, before
     any query / key norm and rotary embedding, in run 2 and run 3 alike (the model applies those after the patch).

**Grouped-query attention.** Keys and values belong to KV groups, not to query heads (SmolLM2: 9 query heads over 3
KV heads, so heads 0-2 share one k and one v). A ``k`` or ``v`` receiver given as (layer, head) means the KV group
of that query head, ``head // (n_heads // n_kv_heads)``; receivers that name the same group are patched once. (A
``q`` or ``z`` receiver is the query head itself.)

The score of a sender is the paper's normalised logit difference

    effect = (LD_patched − LD_clean) / (LD_corrupt − LD_clean),

each LD the mean over prompts of logit(correct) − logit(alternative) at the last position (IO − S for IOI). 0: the
sender's path carries nothing; 1: it carries the whole clean → corrupt change; negative: corrupting it moves the LD
the other way (its clean path works against the answer, as a negative name mover's does). (The paper averages this
ratio over batches of 25 prompts, ``norm_batches=25``, and plots −100 × effect.) Heads that are not senders are NaN
(the paper's code leaves them at 0: heads at or above a receiver's layer cannot reach it).

Speed. A patch at the last position cannot change any earlier position, nor anything below the sender's layer, and
with every other head frozen the attention output above the sender's layer is the clean run's: run 2 is an MLP-only
pass over the last position of every prompt × sender row at once (:mod:`locedit.circuits.frozen_run`), read out at
the logits through the two answer rows of the unembedding. Run 2 of ``z`` receivers (which need the receiver's
attention over the earlier positions) and run 3 run on the patching engine (:func:`locedit.patching.sweep`), from
the receiver's layer up at the last position only, with the clean run's keys and values of the earlier positions.
``method="reference"`` runs the plain version instead (ordinary full forward passes under
:func:`locedit.hooks.patch`, every head frozen at every layer, one sender at a time, all prompts as batch rows) that
the tests compare it with.

Prompts of different token lengths need no padding: the fast pass reads the last position of each, and the plain
runs and the engine's sweeps take one length at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from locedit._checks import integer
from locedit.circuits.frozen_run import (
    answer_diff,
    answer_logit_diffs,
    frozen_residuals,
    plain_run,
    projections,
    record_last_position,
)
from locedit.circuits.inputs import PromptGroup, check_head, prompt_pairs
from locedit.hooks import Intervention, Site, patch
from locedit.models import Model
from locedit.patching import Patch, as_dtype, sweep

Head = tuple[int, int]
#: Patched rows (prompts × senders) per engine sweep at most: the engine holds every patch's compiled values at once.
ROWS_PER_SWEEP = 4096
#: Prompts per plain recording run (the fast pass records the residual stream and z of every layer).
PROMPTS_PER_RUN = 64
Receivers = Literal["logits"] | Sequence[Head]
COMPONENTS = ("z", "q", "k", "v")


@dataclass(frozen=True)
class PathLogitDiffs:
    """Raw logit differences behind a path-patching score.

    Attributes:
        patched: [n_prompts, n_senders]: LD of each prompt with each sender's path patched.
        clean, corrupt: [n_prompts]: LD of the clean and the corrupted prompt (both on the clean answers).
        senders: the (layer, head) of each column of ``patched``.
        shape: (n_layers, n_heads) of the model.
    """

    patched: torch.Tensor
    clean: torch.Tensor
    corrupt: torch.Tensor
    senders: tuple[Head, ...]
    shape: tuple[int, int]

    def effects(self, norm_batches: int | None = None) -> torch.Tensor:
        """[n_layers, n_heads]: (LD_patched − LD_clean) / (LD_corrupt − LD_clean) per sender, LDs averaged over the
        prompts (``norm_batches=k``: the ratio per consecutive batch of k prompts, then averaged, as the paper);
        NaN for heads that were not senders."""
        n = self.patched.shape[0]
        k = n if norm_batches is None else integer(norm_batches, "norm_batches", minimum=1)
        ratios = []
        for lo in range(0, n, k):
            sl = slice(lo, min(lo + k, n))
            clean, corrupt = self.clean[sl].mean(), self.corrupt[sl].mean()
            ratios.append((self.patched[sl].mean(0) - clean) / (corrupt - clean))
        out = torch.full(self.shape, float("nan"))
        if self.senders:
            layers, heads = zip(*self.senders, strict=True)
            out[list(layers), list(heads)] = torch.stack(ratios).mean(0)
        return out


# --- input checks ------------------------------------------------------------------------------------------------


def _plan(model: Model, receivers: Receivers, component: str, senders: Sequence[Head] | None):
    """Checked receivers as sites of ``component``: (layer, head) for q and z, (layer, KV group) for k and v,
    deduplicated (``None`` for the logits); and checked senders."""
    spec = model.spec
    if component not in COMPONENTS:
        raise ValueError(f"unknown component {component!r}: use 'z', 'q', 'k' or 'v'")
    if isinstance(receivers, str):
        if receivers != "logits":
            raise ValueError(f"receivers must be 'logits' or a list of (layer, head) pairs, not {receivers!r}")
        recv, heads, top = None, [], spec.n_layers
    else:
        heads = [check_head(model, r, "receiver") for r in receivers]
        if not heads:
            raise ValueError("no receivers given: pass 'logits' or a non-empty list of (layer, head) pairs")
        if len(set(heads)) != len(heads):
            raise ValueError(f"receivers repeat a head: {heads}")
        group = spec.n_heads // spec.n_kv_heads if component in ("k", "v") else 1
        recv = list(dict.fromkeys((layer, h // group) for layer, h in heads))
        top = min(layer for layer, _ in heads)
    if senders is None:
        send = [(layer, h) for layer in range(top) for h in range(spec.n_heads)]
    else:
        send = [check_head(model, s, "sender") for s in senders]
        if len(set(send)) != len(send):
            raise ValueError(f"senders repeat a head: {send}")
        for s in send:
            for r in heads:
                if r[0] <= s[0]:
                    raise ValueError(
                        f"receiver {r} is at layer {r[0]}, not above sender {s} (layer {s[0]}): a sender reaches "
                        f"only heads of later layers; give senders below layer {top}, or leave senders=None "
                        "(every head below the lowest receiver)"
                    )
    if not send:
        raise ValueError(f"no senders: the lowest receiver is at layer {top}, so no head lies below it")
    return recv, send


def _recorder(store: dict, key) -> Callable[[torch.Tensor], torch.Tensor]:
    """A callable intervention value that keeps a copy of what it sees in ``store[key]`` and changes nothing."""

    def fn(current: torch.Tensor) -> torch.Tensor:
        store[key] = current.detach().clone()
        return current

    return fn


def _at_receivers(component: str, recv: Sequence[Head], values: Sequence[Any], last: list[int]) -> list[Intervention]:
    """Replace ``component`` of each receiver site (layer, head or KV group) at the last position by
    ``values[r]`` (a tensor [head_dim], or a :func:`_recorder` that only reads it)."""
    return [
        Intervention(f"{component}.{layer}", "replace", value, positions=last, index=[i])
        for (layer, i), value in zip(recv, values, strict=True)
    ]


# --- the fast path -----------------------------------------------------------------------------------------------


def _engine_prompts(groups: list[PromptGroup], n_senders: int) -> list[PromptGroup]:
    """The groups cut so that one engine sweep holds at most :data:`ROWS_PER_SWEEP` prompts × senders rows."""
    chunk = max(1, ROWS_PER_SWEEP // n_senders)
    return [
        PromptGroup(
            g.index[lo : lo + chunk], g.clean[lo : lo + chunk], g.corrupt[lo : lo + chunk], g.answers[lo : lo + chunk]
        )
        for g in groups
        for lo in range(0, len(g.index), chunk)
    ]


def _z_values(run, groups, recv, resid, n_send, method, batch_size) -> list[torch.Tensor]:
    """Run 2 of ``z`` receivers on the engine: each receiver's z at the last position when its layer's input there
    is the frozen run's residual stream ``resid[layer]`` [senders, prompts, d_model]; [senders, prompts, head_dim]
    per receiver."""
    n_prompts = next(iter(resid.values())).shape[1]
    values = [torch.empty(n_send, n_prompts, run.spec.head_dim, dtype=run.dtype) for _ in recv]
    for layer in sorted({layer for layer, _ in recv}):
        at = [r for r, (rl, _) in enumerate(recv) if rl == layer]
        for g in groups:
            last = [g.clean.shape[1] - 1]
            store: dict = {}
            patches = [
                Patch(
                    [
                        Intervention(f"resid_pre.{layer}", "replace", resid[layer][s, p], positions=last),
                        *_at_receivers("z", [recv[r] for r in at], [_recorder(store, (s, p, r)) for r in at], last),
                    ],
                    row=b,
                )
                for b, p in enumerate(g.index)
                for s in range(n_send)
            ]
            sweep(run, {"input_ids": g.clean}, patches, lambda logits: logits[:, 0, :1], method=method,
                  batch_size=batch_size, skip_noops=False)  # fmt: skip
            for r in at:
                for p in g.index:
                    for s in range(n_send):
                        values[r][s, p] = store[(s, p, r)].reshape(-1).cpu()
    return values


def path_patching_logit_diffs(
    model: Model,
    clean: Any,
    corrupt: Any,
    answers: Any = None,
    *,
    receivers: Receivers = "logits",
    component: str = "z",
    senders: Sequence[Head] | None = None,
    dtype: torch.dtype | None = None,
    method: Literal["incremental", "cached", "full", "reference"] = "incremental",
    batch_size: int | None = None,
    rows_per_call: int = 4096,
) -> PathLogitDiffs:
    """The logit differences behind :func:`path_patching`: per prompt and sender, plus the clean and corrupted
    runs'.

    Args:
        model: the model.
        clean, corrupt: the prompts, pairwise token-aligned: tasks (``d = ioi(model)``, ``d.corrupted()``;
            ``c = colored_objects(model)``, ``c.corrupted()`` — its ``corrupt_prompts``), lists of prompts, lists
            of token-id lists or [prompts, tokens] tensors.
        answers: [prompts, 2] ids (correct, alternative); default ``clean.answers``.
        receivers: ``"logits"`` (the sender's effect through the residual stream to the end) or a list of
            (layer, head) whose ``component`` reads the sender's change (all patched together in run 3).
        component: ``"z"``, ``"q"``, ``"k"`` or ``"v"`` of the receivers (``k``, ``v``: per KV group, see the module
            docstring).
        senders: (layer, head) pairs (default: every head below the lowest receiver; all heads for the logits).
        dtype: run in this dtype (``torch.bfloat16``: a cached copy of the model).
        method, batch_size: the engine's, for the runs on it (:func:`locedit.patching.sweep`; receivers other than
            the logits); ``method="reference"``: the plain version instead (see :func:`_reference`; slow, for tests
            and benchmarks; ``batch_size`` and ``rows_per_call`` do not apply).
        rows_per_call: prompts × senders rows per decoder-block call of the fast pass (bounds its memory).
    """
    run = as_dtype(model, dtype)
    recv, send = _plan(run, receivers, component, senders)
    if method == "reference":
        return _reference(run, recv, send, component, clean, corrupt, answers)
    n, groups = prompt_pairs(run, clean, corrupt, answers, PROMPTS_PER_RUN)
    rec = record_last_position(run, n, groups, sorted({layer for layer, _ in send}))
    n_layers = run.spec.n_layers
    if recv is None:
        final = frozen_residuals(run, rec, send, [n_layers], rows_per_call)[n_layers]
        patched = answer_logit_diffs(run, final, rec.answers)
    else:
        resid = frozen_residuals(run, rec, send, sorted({layer for layer, _ in recv}), rows_per_call)
        engine_groups = _engine_prompts(groups, len(send))
        if component == "z":
            values = _z_values(run, engine_groups, recv, resid, len(send), method, batch_size)
        else:
            values = [projections(run, component, layer, resid[layer])[..., i, :].cpu() for layer, i in recv]
        patched = torch.empty(n, len(send))
        for g in engine_groups:
            last = [g.clean.shape[1] - 1]
            patches = [
                Patch(_at_receivers(component, recv, [v[s, p] for v in values], last), row=b)
                for b, p in enumerate(g.index)
                for s in range(len(send))
            ]
            metric = lambda logits, rows, a=g.answers: answer_diff(logits, a[rows])  # noqa: E731
            out = sweep(run, {"input_ids": g.clean}, patches, metric, method=method, batch_size=batch_size)
            patched[g.index] = out.reshape(len(g.index), len(send))
    return PathLogitDiffs(patched, rec.ld_clean, rec.ld_corrupt, tuple(send), (n_layers, run.spec.n_heads))


def path_patching(
    model: Model, clean: Any, corrupt: Any, answers: Any = None, *, norm_batches: int | None = None, **options: Any
) -> torch.Tensor:
    """Path patching of every sender head to the receivers: the effect of each, [n_layers, n_heads] (float32).

    ``options`` are those of :func:`path_patching_logit_diffs` (``receivers="logits"``, ``component="z"``,
    ``senders=None``, ``dtype=None``, ``method``, ``batch_size``, ``rows_per_call``); ``norm_batches``: ``None``
    for one ratio over all prompts, ``25`` for the paper's per-batch ratios, averaged.

    Returns: ``(LD_patched − LD_clean) / (LD_corrupt − LD_clean)`` per sender (see the module docstring); NaN for
    heads that are not senders.
    """
    return path_patching_logit_diffs(model, clean, corrupt, answers, **options).effects(norm_batches)


# --- the reference -----------------------------------------------------------------------------------------------


def _reference(
    run: Model, recv: list[Head] | None, send: list[Head], component: str, clean: Any, corrupt: Any, answers: Any
) -> PathLogitDiffs:
    """The plain version of :func:`path_patching_logit_diffs` (its ``method="reference"``): for one sender at a
    time, all prompts of a length as batch rows, ordinary full forward passes under :func:`locedit.hooks.patch`,
    with every other head frozen at every layer (below the sender too) and nothing skipped."""
    n, groups = prompt_pairs(run, clean, corrupt, answers, 256)
    n_layers, n_heads = run.spec.n_layers, run.spec.n_heads
    z_sites = [Site("z", layer) for layer in range(n_layers)]
    patched = torch.empty(n, len(send))
    ld_clean, ld_corrupt = torch.empty(n), torch.empty(n)
    for g in groups:
        ld_clean[g.index], clean_z = plain_run(run, g.clean, g.answers, z_sites)
        ld_corrupt[g.index], corrupt_z = plain_run(run, g.corrupt, g.answers, z_sites)
        last = [g.clean.shape[1] - 1]
        for j, (sl, sh) in enumerate(send):
            store: dict[int, torch.Tensor] = {}
            ivs = (
                []
                if recv is None
                else _at_receivers(component, recv, [_recorder(store, r) for r in range(len(recv))], last)
            )
            for layer in range(n_layers):
                others = [h for h in range(n_heads) if (layer, h) != (sl, sh)]
                ivs.append(Intervention(f"z.{layer}", "replace", clean_z[f"z.{layer}"], positions=last, index=others))
            ivs.append(Intervention(f"z.{sl}", "replace", corrupt_z[f"z.{sl}"], positions=last, index=[sh]))
            with torch.no_grad(), patch(run, ivs):
                logits = run.hf(input_ids=g.clean, logits_to_keep=1).logits
            if recv is not None:
                back = _at_receivers(component, recv, [store[r] for r in range(len(recv))], last)
                with torch.no_grad(), patch(run, back):
                    logits = run.hf(input_ids=g.clean, logits_to_keep=1).logits
            patched[g.index, j] = answer_diff(logits, g.answers).cpu()
    return PathLogitDiffs(patched, ld_clean, ld_corrupt, tuple(send), (n_layers, n_heads))
