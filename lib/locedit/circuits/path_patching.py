"""Path patching (Wang et al. 2022), as Merullo et al.'s code defines it (``patching_utils.path_patching``).

For each **sender** head (l, h) and each prompt:

1. clean prompt x, corrupted prompt x' (same length; e.g. IOI with S2 → IO);
2. run x with the sender's z at the **last position** set to its value on x', and every other head's z at that
   position (at every layer) **frozen** to its value on x; MLPs are recomputed. Only the sender's direct paths and
   the paths through MLPs carry its change;
3. the receiver reads that change:

   - ``receivers="logits"``: the residual stream at the end, i.e. the logits of run 2 (patching the final residual
     of run 2 into a clean run gives run 2's logits);
   - ``receivers=[(layer, head), ...]`` with ``component="z"``: those heads' z at the last position, recorded in
     run 2 *before* their own freeze (as the paper's hooks do), then patched into a fresh clean run of x.

The score of a sender is the paper's normalised logit difference

    effect = (LD_patched − LD_clean) / (LD_corrupt − LD_clean),

each LD the mean over prompts of logit(correct) − logit(alternative) at the last position (IO − S for IOI). 0: the
sender's path carries nothing; 1: it carries the whole clean → corrupt change; negative: corrupting it moves the LD
the other way (its clean path works against the answer, as a negative name mover's does). (The paper averages this
ratio over batches of 25 prompts, ``norm_batches=25``, and plots −100 × effect.) Heads that are not senders are NaN
(the paper's code leaves them at 0: heads at or above a receiver's layer cannot reach it).

Speed. A patch at the last position cannot change any earlier position, nor anything below the sender's layer, so
:func:`path_patching` runs on the patching engine (:func:`locedit.patching.sweep`): one row per prompt × sender, each
starting at its sender's layer from the clean run's stored residual stream, computing the last position only with
the clean run's keys and values of the earlier positions. :func:`path_patching_reference` is the plain version
(ordinary full forward passes under :func:`locedit.hooks.patch`, every head frozen at every layer, one sender at a
time, all prompts as batch rows) that the tests compare it with.

Receivers ``q``, ``k`` and ``v`` (the paper's other components) need sites for the attention projections' outputs,
which :data:`locedit.arch.SITES` does not have yet; with grouped-query attention (SmolLM2: 9 query heads over 3 KV
heads) ``k`` and ``v`` receivers would be per KV group, shared by 3 query heads, not per head.

Prompts of different token lengths are grouped by length, and each group is one sweep (or several, of at most
~4096 patched rows each); no padding anywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from locedit._checks import integer
from locedit.hooks import Intervention, Site, patch, run_with
from locedit.models import Model
from locedit.patching import Patch, as_dtype, sweep

Head = tuple[int, int]
#: Patched rows (prompts × senders) per sweep at most: the engine holds every patch's compiled values at once.
ROWS_PER_SWEEP = 4096
Receivers = Literal["logits"] | Sequence[Head]


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


def _head(model: Model, head: Any, what: str) -> Head:
    spec = model.spec
    if not (isinstance(head, Sequence) and len(head) == 2) or isinstance(head, str):
        raise TypeError(f"{what} {head!r}: give a head as a (layer, head) pair, e.g. (9, 3)")
    layer, h = head
    try:
        layer = integer(layer, f"{what} {tuple(head)}: layer", minimum=0, maximum=spec.n_layers - 1)
        h = integer(h, f"{what} {tuple(head)}: head", minimum=0, maximum=spec.n_heads - 1)
    except ValueError as err:
        raise ValueError(
            f"{err} (this model has layers 0..{spec.n_layers - 1} and heads 0..{spec.n_heads - 1})"
        ) from None
    return layer, h


def _plan(model: Model, receivers: Receivers, component: str, senders: Sequence[Head] | None):
    """Checked receivers (``None`` for the logits) and senders."""
    spec = model.spec
    if component in ("q", "k", "v"):
        raise NotImplementedError(
            f"component {component!r}: q / k / v receivers need sites for the attention projections' outputs, which "
            "locedit.arch.SITES does not have yet; use component='z' (or receivers='logits')"
        )
    if component != "z":
        raise ValueError(f"unknown component {component!r}: use 'z' ('q', 'k' and 'v' are not supported yet)")
    if isinstance(receivers, str):
        if receivers != "logits":
            raise ValueError(f"receivers must be 'logits' or a list of (layer, head) pairs, not {receivers!r}")
        recv = None
        top = spec.n_layers
    else:
        recv = [_head(model, r, "receiver") for r in receivers]
        if not recv:
            raise ValueError("no receivers given: pass 'logits' or a non-empty list of (layer, head) pairs")
        if len(set(recv)) != len(recv):
            raise ValueError(f"receivers repeat a head: {recv}")
        top = min(layer for layer, _ in recv)
    if senders is None:
        send = [(layer, h) for layer in range(top) for h in range(spec.n_heads)]
    else:
        send = [_head(model, s, "sender") for s in senders]
        if len(set(send)) != len(send):
            raise ValueError(f"senders repeat a head: {send}")
        for s in send:
            if recv is not None:
                for r in recv:
                    if r[0] <= s[0]:
                        raise ValueError(
                            f"receiver {r} is at layer {r[0]}, not above sender {s} (layer {s[0]}): a sender reaches "
                            f"only heads of later layers; give senders below layer {top}, or leave senders=None "
                            "(every head below the lowest receiver)"
                        )
    if not send:
        raise ValueError(f"no senders: the lowest receiver is at layer {top}, so no head lies below it")
    return recv, send


def _token_lists(model: Model, prompts: Any, what: str) -> list[list[int]]:
    """Token ids of each prompt: from a task (its ``tokens``), strings, id lists or a 2-D tensor."""
    if hasattr(prompts, "tokens") and not isinstance(prompts, torch.Tensor):
        return [list(t) for t in prompts.tokens]
    if isinstance(prompts, torch.Tensor):
        if prompts.dim() != 2:
            raise ValueError(f"{what}: a tensor of token ids must be [prompts, tokens], got {tuple(prompts.shape)}")
        return prompts.tolist()
    if isinstance(prompts, str) or not isinstance(prompts, Sequence) or not len(prompts):
        raise TypeError(f"{what}: give a task (ioi(...), colored_objects(...)), a list of prompts or of token-id lists")
    out = []
    for i, p in enumerate(prompts):
        if isinstance(p, str):
            if model.tokenizer is None:
                raise ValueError(f"{what}: model {model.name!r} has no tokenizer: give token ids")
            out.append(list(model.tokenizer(p)["input_ids"]))
        else:
            out.append([int(t) for t in p])
        if not out[-1]:
            raise ValueError(f"{what} {i} is empty")
    return out


def _inputs(model: Model, clean: Any, corrupt: Any, answers: Any, chunk: int):
    """The number of prompts N, and the prompts grouped by token length, at most ``chunk`` a group: [(length,
    indices, clean ids [rows, length], corrupted ids [rows, length] (on the model's device), answers [rows, 2])]."""
    clean_ids, corrupt_ids = _token_lists(model, clean, "clean"), _token_lists(model, corrupt, "corrupt")
    if len(clean_ids) != len(corrupt_ids):
        raise ValueError(f"{len(clean_ids)} clean prompts but {len(corrupt_ids)} corrupted ones: give one of each")
    for i, (a, b) in enumerate(zip(clean_ids, corrupt_ids, strict=True)):
        if len(a) != len(b):
            raise ValueError(
                f"prompt {i}: the clean prompt is {len(a)} tokens and the corrupted one {len(b)}; path patching "
                "needs them token-aligned (single-token names, objects and colours keep them so)"
            )
    if answers is None:
        answers = getattr(clean, "answers", None)
        if answers is None:
            raise ValueError("give answers: [prompts, 2] token ids (correct, alternative)")
    answers = torch.as_tensor(answers).long().cpu()
    if answers.shape != (len(clean_ids), 2):
        raise ValueError(
            f"answers must be [{len(clean_ids)}, 2] (correct, alternative ids), got {tuple(answers.shape)}"
        )
    by_length: dict[int, list[int]] = {}
    for i, ids in enumerate(clean_ids):
        by_length.setdefault(len(ids), []).append(i)
    groups = [(length, idx[lo : lo + chunk]) for length, idx in by_length.items() for lo in range(0, len(idx), chunk)]
    device = model.device
    return len(clean_ids), [
        (
            length,
            idx,
            torch.tensor([clean_ids[i] for i in idx], device=device),
            torch.tensor([corrupt_ids[i] for i in idx], device=device),
            answers[idx],
        )
        for length, idx in groups
    ]


def _ld_metric(answers: torch.Tensor):
    def metric(logits: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        a = answers[rows].to(logits.device)
        picked = logits[:, -1].gather(-1, a)
        return picked[:, 0] - picked[:, 1]

    return metric


def _recorder(store: dict, key):
    """A callable intervention value that keeps a copy of what it sees in ``store[key]`` and changes nothing."""

    def fn(current: torch.Tensor) -> torch.Tensor:
        store[key] = current.detach().clone()
        return current

    return fn


def _run(run: Model, ids: torch.Tensor, answers: torch.Tensor, layers) -> tuple[torch.Tensor, dict]:
    """One plain forward pass: the LD of each row [rows] and z at ``layers`` ({"z.l": [rows, seq, heads, d_head]})."""
    logits, z = run_with(run, {"input_ids": ids}, record=[Site("z", layer) for layer in layers], logits_to_keep=1)
    return _ld_metric(answers)(logits.float(), torch.arange(len(ids))).cpu(), z


# --- the fast path -----------------------------------------------------------------------------------------------


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
    method: Literal["incremental", "cached", "full"] = "incremental",
    batch_size: int | None = None,
) -> PathLogitDiffs:
    """The logit differences behind :func:`path_patching` (same arguments): per prompt and sender, plus the clean
    and corrupted runs'."""
    run = as_dtype(model, dtype)
    recv, send = _plan(run, receivers, component, senders)
    chunk = max(1, ROWS_PER_SWEEP // len(send))
    n, groups = _inputs(run, clean, corrupt, answers, chunk)
    n_layers = run.spec.n_layers
    patched = torch.empty(n, len(send))
    ld_clean, ld_corrupt = torch.empty(n), torch.empty(n)
    for length, idx, x, x_bar, ans in groups:
        metric = _ld_metric(ans)
        last = [length - 1]
        top = n_layers if recv is None else max(layer for layer, _ in recv) + 1  # layers that matter for the receivers
        sender_layers = sorted({layer for layer, _ in send})
        ld_clean[idx], clean_z = _run(run, x, ans, range(top))
        ld_corrupt[idx], corrupt_z = _run(run, x_bar, ans, sender_layers)
        freeze = {
            layer: Intervention(f"z.{layer}", "replace", clean_z[f"z.{layer}"], positions=last) for layer in range(top)
        }
        sender_iv = {
            (layer, h): Intervention(f"z.{layer}", "replace", corrupt_z[f"z.{layer}"], positions=last, index=[h])
            for layer, h in send
        }
        rows = range(len(idx))
        if recv is None:
            patches = [
                Patch([sender_iv[s], *(freeze[layer] for layer in range(s[0] + 1, top))], row=b)
                for b in rows
                for s in send
            ]
            out = sweep(run, {"input_ids": x}, patches, metric, method=method, batch_size=batch_size)
        else:
            # run 2: record each receiver's z (before its own freeze) in the sender-patched run
            store: dict[tuple[int, int], torch.Tensor] = {}
            patches, k = [], 0
            for b in rows:
                for s in send:
                    ivs = [sender_iv[s]]
                    for layer in range(s[0] + 1, top):
                        for r, (rl, rh) in enumerate(recv):
                            if rl == layer:
                                ivs.append(
                                    Intervention(
                                        f"z.{rl}", "replace", _recorder(store, (k, r)), positions=last, index=[rh]
                                    )
                                )
                        ivs.append(freeze[layer])
                    patches.append(Patch(ivs, row=b))
                    k += 1
            sweep(run, {"input_ids": x}, patches, lambda logits: logits[:, 0, :1], method=method, batch_size=batch_size)
            # run 3: those receiver values patched into a clean run
            patches = [
                Patch(
                    [
                        Intervention(
                            f"z.{rl}", "replace", store[(k, r)].reshape(1, 1, 1, -1), positions=last, index=[rh]
                        )
                        for r, (rl, rh) in enumerate(recv)
                    ],
                    row=k // len(send),
                )
                for k in range(len(idx) * len(send))
            ]
            out = sweep(run, {"input_ids": x}, patches, metric, method=method, batch_size=batch_size)
        patched[idx] = out.reshape(len(idx), len(send))
    return PathLogitDiffs(patched, ld_clean, ld_corrupt, tuple(send), (n_layers, run.spec.n_heads))


def path_patching(
    model: Model,
    clean: Any,
    corrupt: Any,
    answers: Any = None,
    *,
    receivers: Receivers = "logits",
    component: str = "z",
    senders: Sequence[Head] | None = None,
    dtype: torch.dtype | None = None,
    method: Literal["incremental", "cached", "full"] = "incremental",
    batch_size: int | None = None,
    norm_batches: int | None = None,
) -> torch.Tensor:
    """Path patching of every sender head to ``receivers``: the effect of each, [n_layers, n_heads] (float32).

    Args:
        model: the model.
        clean, corrupt: the prompts, pairwise token-aligned: tasks (``d = ioi(model)``, ``d.corrupted()``;
            ``c = colored_objects(model)``, ``c.corrupted()`` — its ``corrupt_prompts``), lists of prompts, lists
            of token-id lists or [prompts, tokens] tensors.
        answers: [prompts, 2] ids (correct, alternative); default ``clean.answers``.
        receivers: ``"logits"`` (the sender's effect through the residual stream to the end) or a list of
            (layer, head) whose ``component`` reads the sender's change.
        component: ``"z"`` (``"q"``, ``"k"``, ``"v"``: not supported yet).
        senders: (layer, head) pairs (default: every head below the lowest receiver; all heads for the logits).
        dtype, method, batch_size: as :func:`locedit.patching.sweep` (``method="full"``: the engine's own plain rows).
        norm_batches: ``None``: one ratio over all prompts; ``25``: the paper's per-batch ratios, averaged.

    Returns: ``(LD_patched − LD_clean) / (LD_corrupt − LD_clean)`` per sender (see the module docstring); NaN for
    heads that are not senders.
    """
    lds = path_patching_logit_diffs(
        model, clean, corrupt, answers, receivers=receivers, component=component, senders=senders, dtype=dtype,
        method=method, batch_size=batch_size,
    )  # fmt: skip
    return lds.effects(norm_batches)


# --- the reference -----------------------------------------------------------------------------------------------


def path_patching_reference(
    model: Model,
    clean: Any,
    corrupt: Any,
    answers: Any = None,
    *,
    receivers: Receivers = "logits",
    component: str = "z",
    senders: Sequence[Head] | None = None,
    dtype: torch.dtype | None = None,
) -> PathLogitDiffs:
    """The plain reference of :func:`path_patching_logit_diffs`: for one sender at a time, all prompts of a length
    as batch rows, ordinary full forward passes under :func:`locedit.hooks.patch`, with every other head frozen at
    every layer (below the sender too) and nothing skipped. Slow; for tests and benchmarks."""
    run = as_dtype(model, dtype)
    recv, send = _plan(run, receivers, component, senders)
    n, groups = _inputs(run, clean, corrupt, answers, 256)
    n_layers, n_heads = run.spec.n_layers, run.spec.n_heads
    patched = torch.empty(n, len(send))
    ld_clean, ld_corrupt = torch.empty(n), torch.empty(n)
    for length, idx, x, x_bar, ans in groups:
        ld_clean[idx], clean_z = _run(run, x, ans, range(n_layers))
        ld_corrupt[idx], corrupt_z = _run(run, x_bar, ans, range(n_layers))
        last = [length - 1]
        for j, (sl, sh) in enumerate(send):
            store: dict[int, torch.Tensor] = {}
            ivs = []
            for layer in range(n_layers):
                if recv is not None:
                    for r, (rl, rh) in enumerate(recv):
                        if rl == layer:
                            ivs.append(
                                Intervention(f"z.{rl}", "replace", _recorder(store, r), positions=last, index=[rh])
                            )
                others = [h for h in range(n_heads) if (layer, h) != (sl, sh)]
                ivs.append(Intervention(f"z.{layer}", "replace", clean_z[f"z.{layer}"], positions=last, index=others))
            ivs.append(Intervention(f"z.{sl}", "replace", corrupt_z[f"z.{sl}"], positions=last, index=[sh]))
            with torch.no_grad(), patch(run, ivs):
                logits = run.hf(input_ids=x, logits_to_keep=1).logits.float()
            if recv is not None:
                back = [
                    Intervention(f"z.{rl}", "replace", store[r], positions=last, index=[rh])
                    for r, (rl, rh) in enumerate(recv)
                ]
                with torch.no_grad(), patch(run, back):
                    logits = run.hf(input_ids=x, logits_to_keep=1).logits.float()
            patched[idx, j] = _ld_metric(ans)(logits, torch.arange(len(idx))).cpu()
    return PathLogitDiffs(patched, ld_clean, ld_corrupt, tuple(send), (n_layers, n_heads))
