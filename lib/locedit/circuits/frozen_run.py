"""The fast engine behind path patching: run 2 (the sender patched, every other head frozen) at the last position,
as MLP-only layers over all prompts × senders at once.

In run 2 of path patching (:mod:`locedit.circuits.path_patching`) every head but the sender has its z at the last
position frozen to the clean run's. A patch at the last position changes no earlier position, so above the
sender's layer every attention layer's output at the last position is a **constant**: the clean run's,
``o_proj(z_clean)``. At the sender's own layer it is ``o_proj(z)`` with the sender's head set to its corrupted
value. What is left to compute for each prompt × sender row is the residual stream at the last position, one
vector [d_model], through the MLPs (with their norms) of the layers from the sender's up:

    x ← resid_pre_l (clean);   per layer j ≥ l:  block_j(x) with its attention replaced by the constant
    (the sender's layer: o_proj of the patched z)

then, for receivers at the logits, the final norm and only the two answer rows of the unembedding (logit(IO) −
logit(S)), not the whole vocabulary. The decoder blocks run through their own ``forward`` with the attention module
swapped for the constant (:func:`attention_replaced`), so every family's norms and residual wiring are the model's
own: pre and post norms (Gemma 3's four per block), GPT-2's biases, and parallel attention and MLP (GPT-J, GPT-NeoX:
the MLP reads the block's input, as the model does). Rows of all prompts are batched together layer by layer, the
prompts along the sequence axis (nothing in a block but attention mixes positions), the senders along the batch
axis; a sender's rows join at its layer.

For receivers inside the model (q, k, v or z of a later head) the same pass stops at the receiver's layer
(:func:`frozen_residuals`), and :func:`projections` gives the receiver layer's q, k or v of those residuals (its
input norm, through the block's own forward, then the projection, read at the hooks' site: before any query / key
norm and rotary embedding).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from locedit._checks import integer
from locedit.arch import SITES, logit_cap, soft_cap
from locedit.circuits.inputs import PromptGroup
from locedit.hooks import Site, attach, run_with
from locedit.models import Model

Head = tuple[int, int]


@dataclass(frozen=True)
class LastPosition:
    """What the clean and corrupted runs leave at the last position, per prompt (all length groups together).

    Attributes:
        resid: per layer, the clean residual stream entering it [n_prompts, d_model].
        attn: per layer, the clean attention output (``o_proj(z)``, before any post-norm) [n_prompts, d_model].
        z: per layer, the clean z [n_prompts, n_heads, head_dim].
        z_corrupt: per sender layer, the corrupted run's z [n_prompts, n_heads, head_dim].
        ld_clean, ld_corrupt: the clean and corrupted prompts' logit differences [n_prompts] (float32, CPU).
        answers: [n_prompts, 2] ids (correct, alternative), CPU.
    """

    resid: list[torch.Tensor]
    attn: list[torch.Tensor]
    z: list[torch.Tensor]
    z_corrupt: dict[int, torch.Tensor]
    ld_clean: torch.Tensor
    ld_corrupt: torch.Tensor
    answers: torch.Tensor


def answer_diff(logits: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
    """logit(correct) − logit(alternative) at the last position: logits [rows, positions, vocab], answers [rows, 2]
    → [rows] float32."""
    picked = logits[:, -1].float().gather(-1, answers.to(logits.device))
    return picked[:, 0] - picked[:, 1]


def plain_run(run: Model, ids: torch.Tensor, answers: torch.Tensor, sites: Sequence[Site]):
    """One ordinary forward pass: the logit difference of each row [rows] (CPU) and the recorded ``sites``
    ({"z.3": [rows, seq, ...]})."""
    logits, cache = run_with(run, {"input_ids": ids}, record=list(sites), logits_to_keep=1)
    return answer_diff(logits, answers).cpu(), cache


def record_last_position(run: Model, n: int, groups: Sequence[PromptGroup], sender_layers: Sequence[int]):
    """The clean runs' residual stream, z and attention output at the last position, and the corrupted runs' z
    at ``sender_layers`` (one plain forward pass per length group and prompt kind)."""
    spec, hf = run.spec, run.hf
    layers = range(spec.n_layers)
    d, heads = spec.d_model, (spec.n_heads, spec.head_dim)
    kw = {"dtype": run.dtype, "device": run.device}
    resid = [torch.empty(n, d, **kw) for _ in layers]
    z = [torch.empty(n, *heads, **kw) for _ in layers]
    z_corrupt = {layer: torch.empty(n, *heads, **kw) for layer in sender_layers}
    ld_clean, ld_corrupt, answers = torch.empty(n), torch.empty(n), torch.empty(n, 2, dtype=torch.long)
    for g in groups:
        sites = [Site("resid_pre", layer) for layer in layers] + [Site("z", layer) for layer in layers]
        ld_clean[g.index], cache = plain_run(run, g.clean, g.answers, sites)
        for layer in layers:
            resid[layer][g.index] = cache[f"resid_pre.{layer}"][:, -1]
            z[layer][g.index] = cache[f"z.{layer}"][:, -1]
        ld_corrupt[g.index], cache = plain_run(run, g.corrupt, g.answers, [Site("z", layer) for layer in z_corrupt])
        for layer, value in z_corrupt.items():
            value[g.index] = cache[f"z.{layer}"][:, -1]
        answers[g.index] = g.answers
    with torch.no_grad():
        attn = [spec.part(hf, "attn_o_proj", layer)(z[layer].flatten(-2)) for layer in layers]
    return LastPosition(resid, attn, z, z_corrupt, ld_clean, ld_corrupt, answers)


class _Stop(Exception):
    """Raised by a replaced attention module once it has captured its input (the rest of the block is not needed)."""


@contextmanager
def attention_replaced(run: Model, layer: int, forward: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """Block ``layer``'s attention module computes ``forward(its normed input)`` instead of attending, for the
    duration of the block (the module's own ``forward`` is restored on exit, exceptions included). ``forward``
    returns what the attention module would: its output [batch, seq, d_model], or anything that broadcasts to it."""
    module = run.spec.part(run.hf, "attn", layer)
    own = module.__dict__.get("forward")

    def replaced(*args, **kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        return forward(hidden), None

    module.forward = replaced
    try:
        yield
    finally:
        if own is None:
            del module.forward
        else:
            module.forward = own


def _block(run: Model, layer: int, x: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
    """Decoder block ``layer`` on x [senders, prompts, d_model] with its attention output set to ``attn``
    (broadcast to x)."""
    with attention_replaced(run, layer, lambda _normed: attn):
        out = run.spec.block(run.hf, layer)(x)
    return out[0] if isinstance(out, tuple) else out


def frozen_residuals(
    run: Model, rec: LastPosition, senders: Sequence[Head], layers: Sequence[int], rows_per_call: int = 4096
) -> dict[int, torch.Tensor]:
    """Run 2 of path patching at the last position: the residual stream entering each of ``layers`` (``n_layers``:
    the last block's output), for each sender and prompt, [n_senders, n_prompts, d_model] (senders in the order
    given). Every sender must lie below the lowest of ``layers``.

    Each sender's rows start at its layer from the clean residual stream; there its attention output is
    ``o_proj`` of the clean z with the sender's head set to the corrupted z, above it the clean attention output
    (every other head frozen); the blocks' MLPs and norms are the model's own. ``rows_per_call`` bounds the
    prompts × senders rows of one block call."""
    spec = run.spec
    if not senders or not layers or max(layer for layer, _ in senders) >= min(layers):
        raise ValueError(
            f"frozen_residuals: every sender must lie below the lowest layer read ({min(layers, default=None)}); "
            f"got senders {list(senders)}"
        )
    order = sorted(range(len(senders)), key=lambda i: senders[i][0])
    n_prompts = rec.resid[0].shape[0]
    chunk = max(1, integer(rows_per_call, "rows_per_call", minimum=1) // max(1, n_prompts))
    out: dict[int, torch.Tensor] = {}
    x: torch.Tensor | None = None  # [senders joined so far (in `order`), prompts, d_model]
    joined = 0
    with torch.no_grad():
        for j in range(min(senders[i][0] for i in order), max(layers) + 1):
            if j in layers:
                out[j] = torch.empty_like(x).index_copy_(0, torch.tensor(order, device=x.device), x)
            if j == spec.n_layers:
                break
            parts = []
            if x is not None:
                parts += [_block(run, j, x[lo : lo + chunk], rec.attn[j][None]) for lo in range(0, len(x), chunk)]
            new = [i for i in order[joined:] if senders[i][0] == j]
            if new:
                heads = torch.tensor([senders[i][1] for i in new], device=run.device)
                z = rec.z[j][None].repeat(len(new), 1, 1, 1)  # [new, prompts, heads, head_dim]
                z[torch.arange(len(new)), :, heads] = rec.z_corrupt[j][:, heads].transpose(0, 1)
                attn = spec.part(run.hf, "attn_o_proj", j)(z.flatten(-2))
                resid = rec.resid[j][None].expand(len(new), -1, -1)
                parts += [
                    _block(run, j, resid[lo : lo + chunk], attn[lo : lo + chunk]) for lo in range(0, len(new), chunk)
                ]
                joined += len(new)
            x = torch.cat(parts) if len(parts) > 1 else parts[0] if parts else x
    return out


def answer_logit_diffs(run: Model, final: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
    """logit(correct) − logit(alternative) from the last block's output ``final`` [senders, prompts, d_model], with
    the final norm and only the two answer rows of the unembedding (its bias, and the logit soft-capping where the
    family has it, as :func:`locedit.arch.output_head`); [prompts, senders] float32 on the CPU."""
    spec, hf = run.spec, run.hf
    with torch.no_grad():
        normed = spec.part(hf, "final_norm")(final)
        rows = answers.to(run.device)
        w = spec.unembedding(hf)[rows]  # [prompts, 2, d_model]
        logits = torch.einsum("spd,pad->spa", normed, w)
        bias = getattr(spec.part(hf, "unembed"), "bias", None)
        if bias is not None:
            logits = logits + bias[rows]
        logits = soft_cap(logits, logit_cap(hf)).float()
    return (logits[..., 0] - logits[..., 1]).T.cpu()


def projections(run: Model, component: str, layer: int, resid: torch.Tensor) -> torch.Tensor:
    """Block ``layer``'s ``component`` (``"q"``, ``"k"`` or ``"v"``) at the hooks' site of that name (the
    projection's output, before any query / key norm and rotary embedding) for residual streams ``resid`` [...,
    d_model] entering the block: [..., n_heads (q) or n_kv_heads (k, v), head_dim]. The block's own input norm
    (through its forward) then the projection module; nothing else of the block runs."""
    if component not in ("q", "k", "v"):
        raise ValueError(f"component {component!r}: projections are 'q', 'k' or 'v'")
    spec = run.spec
    captured: dict[str, torch.Tensor] = {}

    def stop(normed: torch.Tensor) -> torch.Tensor:
        captured["normed"] = normed
        raise _Stop

    def keep(value: torch.Tensor) -> torch.Tensor:
        captured["site"] = value
        return value

    flat = resid.reshape(1, -1, resid.shape[-1])
    with torch.no_grad():
        try:
            with attention_replaced(run, layer, stop):
                spec.block(run.hf, layer)(flat)
        except _Stop:
            pass
        with attach(run, {Site(component, layer): keep}):
            spec.part(run.hf, SITES[component].part, layer)(captured["normed"])
    return captured["site"].reshape(*resid.shape[:-1], *captured["site"].shape[-2:])
