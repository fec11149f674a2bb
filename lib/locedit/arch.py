"""Where each model family keeps its parts.

This is the only module in ``locedit`` that knows Hugging Face module names. Every other module asks an
:class:`ArchSpec` for a part ("the MLP output projection of layer 7") and gets the ``nn.Module`` back.

To support a new family, add one entry to :data:`FAMILIES` below (keyed by ``config.model_type``). For the
patching engine's layer-by-layer runs (:mod:`locedit.patching`), add a small :class:`LayerAdapter` to
:data:`LAYER_ADAPTERS` too: how to build a layer call's position embeddings and attention mask. The decoder layers
themselves run through their own ``forward``; a family without an adapter still gets the position half of the
engine (Hugging Face's cache API).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal

import torch
from torch import nn

if TYPE_CHECKING:
    from transformers import Cache, PreTrainedConfig


@dataclass(frozen=True)
class SiteKind:
    """What one kind of site is, for every family (the single table the hooks and the patching engine read).

    Attributes:
        part: the module the site lives on: ``"block"`` (decoder block ``l``) or a :class:`FamilyTable` field.
        side: whether the site is that module's ``"input"`` (first positional argument or ``hidden_states``) or its
            ``"output"`` (first element when it returns a tuple).
        feature: the per-token shape: ``"d_model"`` ([d_model]), ``"heads"`` ([n_heads, head_dim]; the module
            sees them flattened), ``"kv_heads"`` ([n_kv_heads, head_dim]: keys and values, one per KV group under
            grouped-query attention) or ``"neurons"`` ([d_mlp]).
        place: where along the forward pass, relative to decoder block ``l``: ``"before"`` (the residual stream
            entering it; ``embed`` is before block 0), ``"inside"`` (computed by it) or ``"after"`` (leaving it).
    """

    part: str
    side: Literal["input", "output"]
    feature: Literal["d_model", "heads", "kv_heads", "neurons"]
    place: Literal["before", "inside", "after"]

    @property
    def layered(self) -> bool:
        """Whether a site of this kind needs a layer (all but ``embed``)."""
        return self.part != "embed"

    @property
    def indexable(self) -> bool:
        """Whether an intervention's ``index`` applies: heads for ``q``, ``z``, KV heads for ``k``, ``v``, neurons
        for ``mlp_act`` and ``mlp_up``."""
        return self.feature != "d_model"

    @property
    def in_block(self) -> bool:
        """Whether the site is computed inside a decoder block (not a point of the stream between blocks)."""
        return self.place == "inside"

    def feature_shape(self, spec: ArchSpec) -> tuple[int, ...]:
        """The site's shape per token: [d_model], [n_heads, head_dim], [n_kv_heads, head_dim] or [d_mlp]."""
        if self.feature == "heads":
            return (spec.n_heads, spec.head_dim)
        if self.feature == "kv_heads":
            return (spec.n_kv_heads, spec.head_dim)
        return (spec.d_mlp,) if self.feature == "neurons" else (spec.d_model,)

    def stage(self, layer: int | None) -> int:
        """Order along the forward pass: stream point j (the input of block j) is 2j, the inside of block l is
        2l + 1; ``embed`` is 0, with ``resid_pre.0``."""
        if layer is None:
            return 0
        return 2 * layer + _PLACE_STAGE[self.place]


_PLACE_STAGE = {"before": 0, "inside": 1, "after": 2}


#: The sites a hook can address, by name: ``SITES["z"].feature == "heads"``. Iterating gives the names.
SITES: Mapping[str, SiteKind] = MappingProxyType(
    {
        # output of the token embedding, [batch, seq, d_model]
        "embed": SiteKind("embed", "output", "d_model", "before"),
        # input of block l, [batch, seq, d_model]
        "resid_pre": SiteKind("block", "input", "d_model", "before"),
        # output of block l, [batch, seq, d_model]
        "resid_post": SiteKind("block", "output", "d_model", "after"),
        # what attention adds to the residual stream at block l, [batch, seq, d_model]
        "attn_out": SiteKind("attn_out", "output", "d_model", "inside"),
        # per-head queries, the query projection's output (before any query norm and rotary embedding),
        # [batch, seq, n_heads, head_dim]
        "q": SiteKind("attn_q", "output", "heads", "inside"),
        # per-KV-head keys and values, the projections' outputs (keys before any norm and rotary embedding),
        # [batch, seq, n_kv_heads, head_dim]; query head h reads KV head h // (n_heads // n_kv_heads)
        "k": SiteKind("attn_k", "output", "kv_heads", "inside"),
        "v": SiteKind("attn_v", "output", "kv_heads", "inside"),
        # per-head attention output before the output projection, [batch, seq, n_heads, head_dim]
        "z": SiteKind("attn_o_proj", "input", "heads", "inside"),
        # what the MLP adds to the residual stream at block l, [batch, seq, d_model]
        "mlp_out": SiteKind("mlp_out", "output", "d_model", "inside"),
        # MLP neuron activations = input of the MLP output projection, [batch, seq, d_mlp]
        "mlp_act": SiteKind("mlp_down", "input", "neurons", "inside"),
        # output of the MLP up (input) projection, before the product with the gate, [batch, seq, d_mlp]
        "mlp_up": SiteKind("mlp_up", "output", "neurons", "inside"),
    }
)


@dataclass(frozen=True)
class FamilyTable:
    """Dotted module paths for one model family.

    Paths marked "block-relative" are looked up inside ``blocks[l]``; the others from the ``*ForCausalLM`` root.
    ``attn_out`` and ``mlp_out`` name the module whose output is exactly what is added to the residual stream
    (for Gemma 3 that is the post-norm, not the attention module itself).
    """

    blocks: str
    embed: str
    final_norm: str
    unembed: str
    attn: str  # block-relative
    attn_out: str  # block-relative
    attn_o_proj: str  # block-relative; its input is the per-head z
    mlp: str  # block-relative
    mlp_out: str  # block-relative
    mlp_up: str  # block-relative; output = up projection
    mlp_gate: str | None  # block-relative; None for ungated MLPs
    mlp_down: str  # block-relative; input = neuron activations (ROME's key), output = value
    mlp_act_fn: str  # block-relative
    # block-relative; the norms whose outputs enter attention and the MLP (the "norm" units of
    # locedit.circuits.units). A parallel block with one norm for both (GPT-J) names it twice.
    attn_norm: str
    mlp_norm: str
    # block-relative; outputs = queries, keys, values [.., heads * head_dim] (one module for all three if fused)
    attn_q: str | None = None
    attn_k: str | None = None
    attn_v: str | None = None
    # one projection computes q, k and v: "parts" = [q | k | v] (GPT-2's c_attn), "heads" = [q_h | k_h | v_h] per
    # head (GPT-NeoX's query_key_value)
    qkv_fused: Literal["parts", "heads"] | None = None
    attn_q_norm: str | None = None  # block-relative; per-head norms of queries and keys (Gemma 3), before rotary
    attn_k_norm: str | None = None
    # how positions enter queries and keys: "none" (GPT-2: learned absolute embeddings), "half" (RoPE on the
    # whole head, rotating halves: Llama, Mistral, Qwen2, Gemma 3), "interleaved" (GPT-J, on the first rotary_dim
    # dimensions), "partial_half" (GPT-NeoX, halves of the first rotary_pct of each head)
    rotary: Literal["none", "half", "interleaved", "partial_half"] = "half"
    weights_transposed: bool = False  # GPT-2's Conv1D stores weights as [in, out]
    parallel_attn_mlp: bool = False  # attention and MLP read the same residual (GPT-J, GPT-NeoX)
    # the norms multiply by (offset + weight): 1 for Gemma's RMSNorm (a zero weight is a gain of 1), 0 elsewhere
    norm_gain_offset: float = 0.0


_LLAMA_LIKE = FamilyTable(
    blocks="model.layers",
    embed="model.embed_tokens",
    final_norm="model.norm",
    unembed="lm_head",
    attn="self_attn",
    attn_out="self_attn",
    attn_o_proj="self_attn.o_proj",
    mlp="mlp",
    mlp_out="mlp",
    mlp_up="mlp.up_proj",
    mlp_gate="mlp.gate_proj",
    mlp_down="mlp.down_proj",
    mlp_act_fn="mlp.act_fn",
    attn_norm="input_layernorm",
    mlp_norm="post_attention_layernorm",
    attn_q="self_attn.q_proj",
    attn_k="self_attn.k_proj",
    attn_v="self_attn.v_proj",
)


def _gpt_like(
    root: str,
    names: tuple[str, str, str],
    attn: str,
    projections: tuple[str, str, str, str],
    norms: tuple[str, str],
    **rest,
) -> FamilyTable:
    """The table of a GPT-style family (GPT-2, GPT-J, GPT-NeoX): an ungated MLP at ``mlp`` with activation
    ``mlp.act``, attention and MLP modules whose outputs are what they add to the stream, and ``lm_head``.

    ``names`` are the blocks, the token embedding and the final norm under ``root``; ``projections`` the attention
    output, MLP up and MLP down projections and the q/k/v projection(s): one name for a fused projection, else its
    ``{}`` is filled with ``q``, ``k`` and ``v``; ``norms`` the block-relative pre-attention and pre-MLP norms.
    ``rest`` sets the other :class:`FamilyTable` fields.
    """
    o_proj, up, down, qkv = projections
    attn_norm, mlp_norm = norms
    blocks, embed, final_norm = (f"{root}.{name}" for name in names)
    return FamilyTable(
        blocks=blocks,
        embed=embed,
        final_norm=final_norm,
        unembed="lm_head",
        attn=attn,
        attn_out=attn,
        attn_o_proj=f"{attn}.{o_proj}",
        mlp="mlp",
        mlp_out="mlp",
        mlp_up=f"mlp.{up}",
        mlp_gate=None,
        mlp_down=f"mlp.{down}",
        mlp_act_fn="mlp.act",
        attn_norm=attn_norm,
        mlp_norm=mlp_norm,
        attn_q=f"{attn}.{qkv.format('q')}",
        attn_k=f"{attn}.{qkv.format('k')}",
        attn_v=f"{attn}.{qkv.format('v')}",
        **rest,
    )


_GPT2 = _gpt_like(
    "transformer", ("h", "wte", "ln_f"), "attn", ("c_proj", "c_fc", "c_proj", "c_attn"), ("ln_1", "ln_2"),
    qkv_fused="parts", rotary="none", weights_transposed=True,
)  # fmt: skip
_GPTJ = _gpt_like(
    "transformer", ("h", "wte", "ln_f"), "attn", ("out_proj", "fc_in", "fc_out", "{}_proj"), ("ln_1", "ln_1"),
    rotary="interleaved", parallel_attn_mlp=True,
)  # fmt: skip
# GPT-NeoX's unembedding was "embed_out" before transformers 5; checkpoints are renamed on load
_GPT_NEOX = _gpt_like(
    "gpt_neox", ("layers", "embed_in", "final_layer_norm"), "attention",
    ("dense", "dense_h_to_4h", "dense_4h_to_h", "query_key_value"), ("input_layernorm", "post_attention_layernorm"),
    qkv_fused="heads", rotary="partial_half", parallel_attn_mlp=True,
)  # fmt: skip

FAMILIES: dict[str, FamilyTable] = {
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    # Gemma 3 adds a norm after attention and after the MLP (their outputs are what enters the stream) and per-head
    # norms of queries and keys; its pre-MLP norm is pre_feedforward_layernorm, and its norms' gains are 1 + weight
    "gemma3_text": replace(
        _LLAMA_LIKE,
        attn_out="post_attention_layernorm",
        mlp_out="post_feedforward_layernorm",
        mlp_norm="pre_feedforward_layernorm",
        norm_gain_offset=1.0,
        attn_q_norm="self_attn.q_norm",
        attn_k_norm="self_attn.k_norm",
    ),
    "gpt2": _GPT2,
    "gptj": _GPTJ,
    "gpt_neox": _GPT_NEOX,
}
# gemma3 multimodal checkpoints report "gemma3"; their text model has the same layout under model.language_model,
# which we do not address yet. Text-only Gemma 3 (270M, 1B) reports "gemma3_text".


_QKV_PARTS = ("attn_q", "attn_k", "attn_v")


class UnsupportedArchitectureError(ValueError):
    """The model's family has no entry in :data:`FAMILIES`."""


def _first(config, *names: str, default=None):
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return value
    return default


@dataclass(frozen=True)
class BlockSizes:
    """The sizes of a decoder's blocks: how many, the residual width, the MLP width, query and key/value heads, and
    the width of one head. Declared here once; :class:`ArchSpec` and :class:`locedit.circuits.units.UnitLayout`
    extend it."""

    n_layers: int
    d_model: int
    d_mlp: int
    n_heads: int
    n_kv_heads: int
    head_dim: int

    def block_sizes(self) -> dict[str, int]:
        """The :class:`BlockSizes` fields alone, by name (to build another kind of :class:`BlockSizes` from them)."""
        return {f.name: getattr(self, f.name) for f in fields(BlockSizes)}


@dataclass(frozen=True)
class ArchSpec(BlockSizes):
    """A model family's table plus the sizes read from its config (:class:`BlockSizes` and the vocabulary's)."""

    family: str
    table: FamilyTable
    vocab_size: int

    @property
    def gated_mlp(self) -> bool:
        return self.table.mlp_gate is not None

    # --- module lookup -------------------------------------------------------------------------------------------
    def blocks(self, model: nn.Module) -> nn.ModuleList:
        return model.get_submodule(self.table.blocks)

    def block(self, model: nn.Module, layer: int) -> nn.Module:
        self.check_layer(layer)
        return self.blocks(model)[layer]

    def part(self, model: nn.Module, name: str, layer: int | None = None) -> nn.Module:
        """The module called ``name`` (a :class:`FamilyTable` field) at ``layer`` (block-relative fields only)."""
        path = getattr(self.table, name, None)
        if not isinstance(path, str):
            raise ValueError(f"family {self.family!r} has no part {name!r}")
        if name in ("blocks", "embed", "final_norm", "unembed"):
            return model.get_submodule(path)
        if layer is None:
            raise ValueError(f"part {name!r} needs a layer")
        return self.block(model, layer).get_submodule(path)

    def weight(self, model: nn.Module, name: str, layer: int) -> torch.Tensor:
        """The weight of a projection (``"mlp_up"``, ``"mlp_gate"``, ``"mlp_down"``, ``"attn_o_proj"``) as
        [out_features, in_features], whatever the family stores (GPT-2's Conv1D keeps [in, out]); a view."""
        weight = self.part(model, name, layer).weight
        return weight.T if self.table.weights_transposed else weight

    def unembedding(self, model: nn.Module) -> torch.Tensor:
        """The unembedding matrix W_U as [vocab, d_model] (tied to the embeddings for SmolLM2)."""
        return self.part(model, "unembed").weight

    def qkv_part(self, name: str) -> int | None:
        """Which third of the fused q/k/v projection's output the part ``name`` is (0 for ``"attn_q"``, 1 for
        ``"attn_k"``, 2 for ``"attn_v"``), or ``None`` when the family projects them separately (or ``name`` is no
        projection)."""
        if self.table.qkv_fused is None or name not in _QKV_PARTS:
            return None
        return _QKV_PARTS.index(name)

    def check_layer(self, layer: int) -> int:
        """``layer`` as a plain int if it names a block: any whole number (a Python or NumPy integer, or a
        one-element integer tensor); a TypeError for bools, floats and anything else, an IndexError out of range."""
        dtype = str(getattr(layer, "dtype", ""))
        whole = not (
            isinstance(layer, bool) or dtype in ("bool", "torch.bool") or "float" in dtype or "complex" in dtype
        )
        try:
            index = layer.__index__() if whole else None
        except (AttributeError, TypeError, RuntimeError, ValueError):
            index = None
        if index is None:
            raise TypeError(
                f"layer {layer!r} is a {type(layer).__name__}, not a whole number: "
                f"give an int in 0..{self.n_layers - 1}"
            )
        if not 0 <= index < self.n_layers:
            raise IndexError(f"layer {layer!r} out of range: this model has layers 0..{self.n_layers - 1}")
        return index


def spec_for(model: nn.Module) -> ArchSpec:
    """Build the :class:`ArchSpec` of a Hugging Face causal LM from its config."""
    config = model.config
    family = getattr(config, "model_type", None)
    if family not in FAMILIES:
        raise UnsupportedArchitectureError(
            f"model family {family!r} is not supported; supported families: {', '.join(sorted(FAMILIES))}. "
            "To add one, put a FamilyTable for it in FAMILIES in lib/locedit/arch.py (the only place that names "
            "modules)."
        )
    d_model = _first(config, "hidden_size", "n_embd", "d_model")
    n_heads = _first(config, "num_attention_heads", "n_head")
    return ArchSpec(
        family=family,
        table=FAMILIES[family],
        n_layers=_first(config, "num_hidden_layers", "n_layer"),
        d_model=d_model,
        d_mlp=_first(config, "intermediate_size", "n_inner", default=None) or 4 * d_model,
        n_heads=n_heads,
        n_kv_heads=_first(config, "num_key_value_heads", default=n_heads),
        head_dim=_first(config, "head_dim", default=None) or d_model // n_heads,
        vocab_size=config.vocab_size,
    )


# --- calling decoder layers one at a time (used by locedit.patching) -------------------------------------------------


@dataclass(frozen=True)
class LayerAdapter:
    """How to run one family's decoder a layer at a time, exactly as its own ``forward`` does.

    The patching engine (:mod:`locedit.patching`) calls ``blocks[l](hidden, cache=cache, **kwargs[l])`` itself so
    that a batch row can join at the layer it is patched at, and a run can start at a position ``p > 0`` with the
    keys/values of positions ``< p`` in ``cache`` (a Hugging Face ``Cache``). Each field is a function of the
    ``*ForCausalLM`` module ``hf``:

    - ``layer_kwargs(hf, like, attention_mask, cache, position_ids)`` → one dict per decoder layer: every keyword
      argument but ``hidden_states`` and ``cache`` (the attention mask under ``"attention_mask"``; a layer that
      takes the cache under another name, GPT-NeoX's ``layer_past``, gets it here too). ``like`` is a
      tensor [batch, query_length, d_model] of the run's dtype and device, ``attention_mask`` the 2-D padding mask
      [batch, past + query_length] or ``None``, ``position_ids`` [1, query_length].
    - ``embed_to_resid(hf, embedded, position_ids)`` → the residual stream entering layer 0 from the output of the
      token embedding (the ``embed`` site): the identity for Llama, Mistral, Qwen2 and Gemma 3, ``+ wpe(position)``
      then dropout for GPT-2, dropout alone for GPT-J and GPT-NeoX.
    - ``logits(hf, spec, hidden)`` → final norm, unembedding (and Gemma's soft-capping) of the last layer's output.
    """

    layer_kwargs: Callable[..., list[dict]]
    embed_to_resid: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
    logits: Callable[[nn.Module, ArchSpec, torch.Tensor], torch.Tensor]


def _identity_embed(_hf: nn.Module, embedded: torch.Tensor, _position_ids: torch.Tensor) -> torch.Tensor:
    return embedded


def logit_cap(hf: nn.Module) -> float | None:
    """The family's final-logit soft-cap (``config.final_logit_softcapping``: Gemma 2 and 3), ``None`` where the
    family has none."""
    return getattr(hf.config, "final_logit_softcapping", None)


def soft_cap(logits: torch.Tensor, cap: float | None) -> torch.Tensor:
    """``cap · tanh(logits / cap)`` (any shape), or ``logits`` itself when ``cap`` is ``None``: the last step of
    every read-out of logits (:func:`output_head` and the answer-token read-outs of the circuit chapters)."""
    return logits if cap is None else torch.tanh(logits / cap) * cap


def output_head(hf: nn.Module, spec: ArchSpec, normed: torch.Tensor) -> torch.Tensor:
    """Logits of final-norm outputs (the base model's ``last_hidden_state``): [..., d_model] → [..., vocab]. The
    unembedding (with its bias, if any), then logit soft-capping where the family has it (:func:`soft_cap`)."""
    return soft_cap(spec.part(hf, "unembed")(normed), logit_cap(hf))


def _plain_logits(hf: nn.Module, spec: ArchSpec, hidden: torch.Tensor) -> torch.Tensor:
    return output_head(hf, spec, spec.part(hf, "final_norm")(hidden))


def _full_attention(config: PreTrainedConfig) -> list[str]:
    """Every layer attends causally to all earlier positions (Llama, GPT-2, GPT-J, GPT-NeoX)."""
    return ["full_attention"] * config.num_hidden_layers


def _mistral_attention(config: PreTrainedConfig) -> list[str]:
    """Mistral: every layer uses the sliding window when ``config.sliding_window`` is set, none otherwise."""
    kind = "full_attention" if config.sliding_window is None else "sliding_attention"
    return [kind] * config.num_hidden_layers


def _listed_attention(config: PreTrainedConfig) -> list[str]:
    """Qwen2: the kind of each layer is listed in ``config.layer_types``."""
    return list(config.layer_types[: config.num_hidden_layers])


def _gemma3_attention(config: PreTrainedConfig) -> list[str]:
    """Gemma 3: as listed in ``config.layer_types``; the bidirectional (embedding-model) variant is refused."""
    if getattr(config, "use_bidirectional_attention", False):
        raise NotImplementedError("layer-by-layer runs of Gemma 3 with bidirectional attention are not supported")
    return _listed_attention(config)


def _decoder_layer_kwargs(
    attention: Callable[[PreTrainedConfig], list[str]] = _full_attention,
    rotary: str | None = None,
    rotary_per_kind: bool = False,
    cache_keyword: str | None = None,
) -> Callable[..., list[dict]]:
    """A ``layer_kwargs`` function (see :class:`LayerAdapter`) built from what differs between families.

    ``attention(config)`` names each layer's mask kind, ``"full_attention"`` (``create_causal_mask``) or
    ``"sliding_attention"`` (``create_sliding_window_causal_mask``); ``rotary`` is the root-relative path of the
    rotary embedding module (``None``: no rotary, as in GPT-2), called once per mask kind when ``rotary_per_kind``
    (Gemma 3 has a local and a global RoPE base); ``cache_keyword`` is an extra keyword under which the layer takes
    the cache (GPT-NeoX's layers take ``layer_past``, not ``cache``).
    """

    def layer_kwargs(
        hf: nn.Module,
        like: torch.Tensor,
        attention_mask: torch.Tensor | None,
        cache: Cache | None,
        position_ids: torch.Tensor,
    ) -> list[dict]:
        from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask

        makers = {"full_attention": create_causal_mask, "sliding_attention": create_sliding_window_causal_mask}
        kinds = attention(hf.config)
        args = {
            "config": hf.config,
            "inputs_embeds": like,
            "attention_mask": attention_mask,
            "cache": cache,
            "position_ids": position_ids,
        }
        shared = {kind: {"attention_mask": makers[kind](**args), "position_ids": position_ids} for kind in set(kinds)}
        if rotary is not None:
            module = hf.get_submodule(rotary)
            same = None if rotary_per_kind else module(like, position_ids)
            for kind, kwargs in shared.items():
                kwargs["position_embeddings"] = same if same is not None else module(like, position_ids, kind)
        if cache_keyword is not None:
            for kwargs in shared.values():
                kwargs[cache_keyword] = cache
        return [shared[kind] for kind in kinds]

    return layer_kwargs


def _dropout_embed(dropout: str, positions: str | None = None) -> Callable[..., torch.Tensor]:
    """An ``embed_to_resid`` function: add the learned position embeddings at ``positions`` (GPT-2's ``wpe``) if
    given, then apply the embedding dropout module at ``dropout`` (the identity in eval mode, kept for exactness)."""

    def embed_to_resid(hf: nn.Module, embedded: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        hidden = embedded
        if positions is not None:
            hidden = hidden + hf.get_submodule(positions)(position_ids).to(embedded.device)
        return hf.get_submodule(dropout)(hidden)

    return embed_to_resid


#: Families whose decoder layers the patching engine can call one at a time (others get the position half only).
LAYER_ADAPTERS: dict[str, LayerAdapter] = {
    "llama": LayerAdapter(_decoder_layer_kwargs(rotary="model.rotary_emb"), _identity_embed, _plain_logits),
    "mistral": LayerAdapter(
        _decoder_layer_kwargs(_mistral_attention, rotary="model.rotary_emb"), _identity_embed, _plain_logits
    ),
    "qwen2": LayerAdapter(
        _decoder_layer_kwargs(_listed_attention, rotary="model.rotary_emb"), _identity_embed, _plain_logits
    ),
    "gemma3_text": LayerAdapter(
        _decoder_layer_kwargs(_gemma3_attention, rotary="model.rotary_emb", rotary_per_kind=True),
        _identity_embed,
        _plain_logits,
    ),
    "gpt2": LayerAdapter(
        _decoder_layer_kwargs(), _dropout_embed("transformer.drop", positions="transformer.wpe"), _plain_logits
    ),
    "gptj": LayerAdapter(
        _decoder_layer_kwargs(rotary="transformer.rotary_emb"), _dropout_embed("transformer.drop"), _plain_logits
    ),
    "gpt_neox": LayerAdapter(
        _decoder_layer_kwargs(rotary="gpt_neox.rotary_emb", cache_keyword="layer_past"),
        _dropout_embed("gpt_neox.emb_dropout"),
        _plain_logits,
    ),
}


def layer_adapter(spec: ArchSpec) -> LayerAdapter | None:
    """The :class:`LayerAdapter` of a model's family, or ``None`` if the family has none yet."""
    return LAYER_ADAPTERS.get(spec.family)
