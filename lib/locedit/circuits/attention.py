"""Attention patterns of every head, and attention forced onto chosen positions (chapter 4's intervention).

:func:`attention_patterns` gives the post-softmax attention probabilities that the model's SDPA kernel computes but
does not return. They are rebuilt from what the hooks record: the queries and keys (sites ``q`` and ``k``, the
projections' outputs), then what the family's attention does to them before the dot product, as
:class:`locedit.arch.FamilyTable` describes it: the per-head query / key norms (Gemma 3), the rotary embedding
(RoPE on whole heads, rotating halves: Llama, Mistral, Qwen2, Gemma 3; none for GPT-2) with the cosines and sines
the model itself passes to its attention modules, the scale each attention module holds, grouped-query attention
(query head h reads KV head h // (n_heads / n_kv_heads)), and the mask the model builds (causal, and Gemma 3's
sliding window). Families whose rotary embedding is interleaved or partial (GPT-J, GPT-NeoX), and attention logit
soft-capping, raise ``NotImplementedError``.

:func:`force_attention` replaces chosen heads' attention at the last position by a given distribution over key
positions: the head's output there (``z``) becomes ``weights @ V`` of its KV head, with the values (site ``v``)
recorded in the same forward pass. Merullo et al. (§5) force the inhibition heads and the negative mover to attend
to the wrong colours on Colored Objects this way.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch

from locedit.circuits.inputs import check_heads, token_batch
from locedit.hooks import Site, attach, patch
from locedit.models import Model


def _supported(model: Model, what: str) -> None:
    spec = model.spec
    if spec.table.rotary not in ("none", "half"):
        raise NotImplementedError(
            f"{what}: family {spec.family!r} applies a {spec.table.rotary!r} rotary embedding (on part of each "
            "head), which is not supported; use a model with whole-head RoPE (Llama, Mistral, Qwen2, Gemma 3) or "
            "none (GPT-2)"
        )
    if getattr(model.hf.config, "attn_logit_softcapping", None) is not None:
        raise NotImplementedError(
            f"{what}: attention logit soft-capping (config.attn_logit_softcapping) is not supported; set it to None"
        )


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def attention_patterns(model: Model, tokens: Any, layers: Sequence[int] | None = None) -> torch.Tensor:
    """Post-softmax attention probabilities of every head at ``layers`` (default: all), float32 on the CPU.

    Args:
        model: the model (a family with whole-head RoPE or none; see the module docstring).
        tokens: token ids [batch, seq] (a tensor, a list of equal-length id lists, or a task such as ``ioi(...)``
            whose prompts have one length); no padding.
        layers: the layers to read.

    Returns: [batch, len(layers), n_heads, seq (query), seq (key)]; each query row sums to 1 over the keys it
    may see (causal, within Gemma 3's sliding window), 0 elsewhere.
    """
    _supported(model, "attention_patterns")
    spec, hf, table = model.spec, model.hf, model.spec.table
    ids = token_batch(model, tokens, "tokens")
    layers = list(range(spec.n_layers)) if layers is None else [spec.check_layer(layer) for layer in layers]
    if not layers:
        raise ValueError("layers is empty: give at least one layer (or None for all)")
    seen: dict[int, dict[str, Any]] = {}

    def keep(layer: int):
        def hook(_module, _args, kwargs):
            seen[layer] = {"mask": kwargs.get("attention_mask"), "rotary": kwargs.get("position_embeddings")}

        return hook

    record = [Site(name, layer) for layer in layers for name in ("q", "k")]
    handles = []
    try:
        for layer in layers:
            attn = spec.part(hf, "attn", layer)
            handles.append(attn.register_forward_pre_hook(keep(layer), with_kwargs=True))
        with torch.no_grad(), patch(model, record=record, stop=True) as cache:
            hf(input_ids=ids)
    finally:
        for handle in handles:
            handle.remove()
    batch, seq = ids.shape
    group = spec.n_heads // spec.n_kv_heads
    causal = torch.ones(seq, seq, dtype=torch.bool, device=ids.device).tril()
    out = []
    with torch.no_grad():
        for layer in layers:
            q, k = cache[f"q.{layer}"], cache[f"k.{layer}"]  # [batch, seq, heads or kv heads, head_dim]
            if table.attn_q_norm is not None:
                q = spec.part(hf, "attn_q_norm", layer)(q)
                k = spec.part(hf, "attn_k_norm", layer)(k)
            q, k = q.transpose(1, 2), k.transpose(1, 2)  # [batch, heads, seq, head_dim]
            if table.rotary == "half":
                cos, sin = (t.unsqueeze(1) for t in seen[layer]["rotary"])
                if cos.shape[-1] != spec.head_dim:
                    raise NotImplementedError(
                        f"attention_patterns: a rotary embedding over {cos.shape[-1]} of the {spec.head_dim} "
                        "dimensions of a head (partial RoPE) is not supported"
                    )
                q, k = q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin
            k = k.repeat_interleave(group, dim=1)
            scale = spec.part(hf, "attn", layer).scaling
            scores = (q.float() @ k.float().transpose(-1, -2)) * scale  # [batch, heads, seq, seq]
            mask = seen[layer]["mask"]
            if mask is None:
                scores = scores.masked_fill(~causal, float("-inf"))
            elif mask.dtype == torch.bool:
                scores = scores.masked_fill(~mask[..., -seq:], float("-inf"))
            else:
                scores = scores + mask[..., -seq:].float()
            out.append(scores.softmax(-1))
    return torch.stack(out, 1).cpu()


@contextmanager
def force_attention(model: Model, heads: Sequence[tuple[int, int]], weights: torch.Tensor) -> Iterator[None]:
    """Within the block, the attention of ``heads`` at the last position is ``weights`` instead of their own.

    Each head's output there (its ``z`` at position −1) becomes ``weights @ V`` of the head's KV head (the values of
    the same forward pass); every other head, and every other position, is computed as usual (downstream layers
    see the change). Every hook is removed on exit, exceptions included.

    Args:
        model: the model.
        heads: (layer, head) pairs.
        weights: [batch, seq], one distribution over the key positions per prompt (non-negative, each row summing
            to 1), e.g. uniform over the wrong colours' positions; forward passes inside the block must be over
            [batch, seq] tokens (whole prompts, not the patching engine's one-position runs).

    Example::

        with force_attention(model, [(12, 3), (13, 4)], weights):
            logits = model.hf(input_ids=ids).logits
    """
    spec = model.spec
    heads = check_heads(model, heads, "head")
    weights = torch.as_tensor(weights)
    if weights.dim() != 2 or not weights.is_floating_point():
        raise ValueError(f"weights must be a float tensor [batch, seq], got {weights.dtype} {tuple(weights.shape)}")
    if (weights < 0).any() or not torch.allclose(
        weights.sum(-1).double(), torch.ones(len(weights)).double(), atol=1e-4
    ):
        raise ValueError("weights must be distributions over key positions: non-negative, each row summing to 1")
    group = spec.n_heads // spec.n_kv_heads
    by_layer: dict[int, list[int]] = {}
    for layer, h in heads:
        by_layer.setdefault(layer, []).append(h)
    values: dict[int, torch.Tensor] = {}

    def keep_v(layer: int):
        def fn(v: torch.Tensor) -> torch.Tensor:  # [batch, seq, n_kv_heads, head_dim]
            if tuple(v.shape[:2]) != tuple(weights.shape):
                raise ValueError(
                    f"force_attention: weights are {list(weights.shape)} [batch, seq] but the forward pass runs "
                    f"{list(v.shape[:2])}; run whole prompts of that batch and length inside the block"
                )
            values[layer] = v
            return v

        return fn

    def force(layer: int, hs: list[int]):
        def fn(z: torch.Tensor) -> torch.Tensor:  # [batch, seq, n_heads, head_dim]
            v = values.pop(layer)
            w = weights.to(device=v.device, dtype=v.dtype)
            z = z.clone()
            for h in hs:
                z[:, -1, h] = torch.einsum("bs,bsd->bd", w, v[:, :, h // group])
            return z

        return fn

    fns = {}
    for layer, hs in by_layer.items():
        fns[Site("v", layer)] = keep_v(layer)
        fns[Site("z", layer)] = force(layer, hs)
    with attach(model, fns):
        yield
