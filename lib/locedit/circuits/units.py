"""Circuits as sets of structured units of the decoder blocks: MLP neurons, attention heads, norm gain elements.

Chapter 5 (Ge, Rudzicz, Zhu 2024) learns a mask per *parameter* of GPT-2. On two CPU cores we mask structured
units instead (``UNIT_KINDS``), each owning a fixed set of parameters:

- ``"neuron"`` (l, i), shape [n_layers, d_mlp]: row i of the gate and up projections (with their bias entries, if
  any) and column i of the down projection. Masked at the input of the down projection (site ``mlp_act``).
- ``"head"`` (l, h), shape [n_layers, n_heads]: the head's query rows (and bias) and its output-projection input
  columns; the key/value rows (and biases) of its KV group belong to a circuit when *any* head of the group does
  (counted once). Masked at the per-head input of the output projection (site ``z``).
- ``"norm"`` (l, j, e), shape [n_layers, n_norms, d_model]: gain element e (and bias, for LayerNorm) of the
  pre-attention norm (j = 0) or the pre-MLP norm (j = 1). Masked at that norm's output. A parallel block with one
  norm for both (GPT-J) has ``n_norms == 1``.

Parameters no unit owns stay whole in every circuit: embeddings, the final norm, the output-projection biases of
attention and MLP, and Gemma 3's post-norms and query/key norms.

A :class:`Circuit` holds one bool mask per kind. :func:`unit_masks` multiplies the three sites by (float or
bool) multipliers, differentiably (mask learning, :mod:`locedit.circuits.masks`); :func:`pruned` is the paper's
"circuit model": every parameter outside the circuit set to zero in place, restored bit-exactly on exit. For a
bool circuit the two give the same logits (up to float rounding).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass

import numpy as np
import torch

from locedit.arch import BlockSizes
from locedit.hooks import Site, attach
from locedit.models import Model

UNIT_KINDS = ("neuron", "head", "norm")


@dataclass(frozen=True)
class UnitLayout(BlockSizes):
    """The sizes that fix every unit and the parameters it owns: the model's :class:`~locedit.arch.BlockSizes`
    (``n_layers``, ``d_model``, ``d_mlp``, ``n_heads``, ``n_kv_heads``, ``head_dim``) and the unit's own.

    ``n_norms``: norms per block whose elements are units (2, or 1 for one norm shared by attention and MLP);
    ``gated``: the MLP has a gate projection; ``mlp_bias``: its up (and gate) projections have biases; ``qkv_bias``:
    the query/key/value projections have biases; ``norm_bias``: the norms have biases (LayerNorm).
    """

    n_norms: int
    gated: bool = True
    mlp_bias: bool = False
    qkv_bias: bool = False
    norm_bias: bool = False

    def shape(self, kind: str) -> tuple[int, ...]:
        """The mask shape of ``kind``: [n_layers, d_mlp], [n_layers, n_heads] or [n_layers, n_norms, d_model]."""
        check_kind(kind)
        if kind == "neuron":
            return (self.n_layers, self.d_mlp)
        if kind == "head":
            return (self.n_layers, self.n_heads)
        return (self.n_layers, self.n_norms, self.d_model)

    @property
    def group_size(self) -> int:
        """Query heads per KV head."""
        return self.n_heads // self.n_kv_heads

    @property
    def neuron_params(self) -> int:
        """Parameters of one neuron: gate and up rows, down column, up (and gate) bias entries."""
        projections = 2 if self.gated else 1
        return (projections + 1) * self.d_model + (projections if self.mlp_bias else 0)

    @property
    def head_params(self) -> int:
        """Parameters of one head without its KV group: query rows (and bias), output-projection columns."""
        return 2 * self.head_dim * self.d_model + (self.head_dim if self.qkv_bias else 0)

    @property
    def kv_group_params(self) -> int:
        """Parameters of one KV group: key and value rows (and biases)."""
        return 2 * (self.head_dim * self.d_model + (self.head_dim if self.qkv_bias else 0))

    @property
    def norm_params(self) -> int:
        """Parameters of one norm element: its gain (and bias)."""
        return 2 if self.norm_bias else 1

    def params_per_unit(self, kind: str) -> float:
        """Parameters per unit of ``kind``; a head counts its query and output parameters plus its share of the KV
        group's (the differentiable density; exact counts come from :attr:`Circuit.n_params`)."""
        check_kind(kind)
        if kind == "neuron":
            return float(self.neuron_params)
        if kind == "head":
            return self.head_params + self.kv_group_params / self.group_size
        return float(self.norm_params)

    def kind_params(self, kind: str) -> int:
        """All parameters the units of ``kind`` own over every layer (the heads with their KV groups)."""
        check_kind(kind)
        if kind == "neuron":
            per_layer = self.d_mlp * self.neuron_params
        elif kind == "head":
            per_layer = self.n_heads * self.head_params + self.n_kv_heads * self.kv_group_params
        else:
            per_layer = self.n_norms * self.d_model * self.norm_params
        return self.n_layers * per_layer

    @property
    def total_params(self) -> int:
        """All block parameters the units cover."""
        return sum(self.kind_params(kind) for kind in UNIT_KINDS)


def check_kind(kind: str) -> str:
    """``kind`` if it is one of :data:`UNIT_KINDS`, else a ValueError naming them."""
    if kind not in UNIT_KINDS:
        raise ValueError(f"unknown unit kind {kind!r}; kinds are {', '.join(UNIT_KINDS)}")
    return kind


def unit_layout(model: Model) -> UnitLayout:
    """The :class:`UnitLayout` of ``model`` (sizes from its spec, biases read from its layer-0 modules)."""
    spec, hf, table = model.spec, model.hf, model.spec.table
    if spec.n_heads % spec.n_kv_heads:
        raise ValueError(f"{spec.n_heads} query heads do not split into {spec.n_kv_heads} KV groups")
    up = spec.part(hf, "mlp_up", 0)
    q = spec.part(hf, "attn_q", 0)
    norm = spec.part(hf, "attn_norm", 0)
    return UnitLayout(
        **spec.block_sizes(),
        n_norms=1 if table.attn_norm == table.mlp_norm else 2,
        gated=spec.gated_mlp,
        mlp_bias=getattr(up, "bias", None) is not None,
        qkv_bias=getattr(q, "bias", None) is not None,
        norm_bias=getattr(norm, "bias", None) is not None,
    )


def _pack(mask: torch.Tensor) -> str:
    return base64.b64encode(np.packbits(mask.reshape(-1).numpy()).tobytes()).decode()


def _unpack(text: str, shape: tuple[int, ...]) -> torch.Tensor:
    bits = np.unpackbits(np.frombuffer(base64.b64decode(text), dtype=np.uint8))[: int(np.prod(shape))]
    return torch.from_numpy(bits.astype(bool)).reshape(shape)


@dataclass(frozen=True, eq=False)
class Circuit:
    """A set of units: ``masks[kind]`` is a bool tensor of ``layout.shape(kind)`` on the CPU, True = in the circuit.

    Every kind of :data:`UNIT_KINDS` is present. ``kinds``: the kinds the circuit was chosen among (a mask learned
    over neurons and heads only has ``("neuron", "head")``); the other kinds are kept whole, all True, in the circuit
    and in its complement. Equality compares the layout, the kinds and every mask.
    """

    layout: UnitLayout
    masks: dict[str, torch.Tensor]
    kinds: tuple[str, ...] = UNIT_KINDS

    def __post_init__(self) -> None:
        if set(self.masks) != set(UNIT_KINDS):
            raise ValueError(f"a circuit needs one mask per unit kind {UNIT_KINDS}, got {sorted(self.masks)}")
        for kind in self.kinds:
            check_kind(kind)
        object.__setattr__(self, "kinds", tuple(k for k in UNIT_KINDS if k in self.kinds))
        masks = {}
        for kind in UNIT_KINDS:
            mask = torch.as_tensor(self.masks[kind])
            if mask.dtype != torch.bool:
                raise TypeError(f"the {kind!r} mask must be bool, got {mask.dtype} (threshold it first)")
            if tuple(mask.shape) != self.layout.shape(kind):
                raise ValueError(f"the {kind!r} mask has shape {tuple(mask.shape)}, expected {self.layout.shape(kind)}")
            if kind not in self.kinds and not bool(mask.all()):
                raise ValueError(
                    f"the {kind!r} units are kept whole in a circuit chosen among {self.kinds}, but its mask drops "
                    f"some: add {kind!r} to kinds"
                )
            masks[kind] = mask.detach().cpu()
        object.__setattr__(self, "masks", masks)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Circuit):
            return NotImplemented
        return (
            self.layout == other.layout
            and self.kinds == other.kinds
            and all(torch.equal(self.masks[k], other.masks[k]) for k in UNIT_KINDS)
        )

    __hash__ = None

    def complement(self) -> Circuit:
        """Every unit of ``kinds`` not in this circuit, with the kinds kept whole still whole (the paper's
        complementary model). KV rows shared by heads inside and outside belong to both."""
        masks = {kind: ~mask if kind in self.kinds else mask for kind, mask in self.masks.items()}
        return Circuit(self.layout, masks, self.kinds)

    def kv_groups(self) -> torch.Tensor:
        """[n_layers, n_kv_heads] bool: whether any head of each KV group is in the circuit."""
        heads = self.masks["head"].view(self.layout.n_layers, self.layout.n_kv_heads, self.layout.group_size)
        return heads.any(-1)

    @property
    def n_params(self) -> int:
        """The exact number of parameters the circuit's units own (a KV group counted once)."""
        layout = self.layout
        return (
            int(self.masks["neuron"].sum()) * layout.neuron_params
            + int(self.masks["head"].sum()) * layout.head_params
            + int(self.kv_groups().sum()) * layout.kv_group_params
            + int(self.masks["norm"].sum()) * layout.norm_params
        )

    @property
    def density(self) -> float:
        """The paper's density: ``n_params / layout.total_params``."""
        return self.n_params / self.layout.total_params

    def n_units(self, kind: str | None = None) -> int:
        """Units kept, of one kind or of all."""
        kinds = UNIT_KINDS if kind is None else (check_kind(kind),)
        return sum(int(self.masks[k].sum()) for k in kinds)

    def unit_density(self, kind: str | None = None) -> float:
        """The fraction of units kept, of one kind or of all."""
        kinds = UNIT_KINDS if kind is None else (check_kind(kind),)
        return self.n_units(kind) / sum(self.masks[k].numel() for k in kinds)

    def to_dict(self) -> dict:
        """A JSON-ready dict: the layout's fields, the kinds and each mask as base64 of its packed bits."""
        masks = {kind: _pack(mask) for kind, mask in self.masks.items()}
        return {"layout": asdict(self.layout), "kinds": list(self.kinds), "masks": masks}

    @classmethod
    def from_dict(cls, data: dict) -> Circuit:
        """The circuit :meth:`to_dict` wrote."""
        layout = UnitLayout(**data["layout"])
        masks = {kind: _unpack(data["masks"][kind], layout.shape(kind)) for kind in UNIT_KINDS}
        return cls(layout, masks, tuple(data.get("kinds", UNIT_KINDS)))


def full_circuit(layout: UnitLayout) -> Circuit:
    """Every unit."""
    return Circuit(layout, {kind: torch.ones(layout.shape(kind), dtype=torch.bool) for kind in UNIT_KINDS})


def empty_circuit(layout: UnitLayout) -> Circuit:
    """No unit."""
    return Circuit(layout, {kind: torch.zeros(layout.shape(kind), dtype=torch.bool) for kind in UNIT_KINDS})


def random_circuit(layout: UnitLayout, density: float, seed: int = 0, kinds: tuple[str, ...] = UNIT_KINDS) -> Circuit:
    """Units drawn uniformly at random (every unit of ``kinds`` equally likely, without replacement) until the
    circuit holds the parameter ``density`` of ``layout.total_params``: the prefix of a random order whose exact
    parameter count is closest to the target (so the density is within one unit's share of it). Units of the other
    kinds are all kept and count towards the density, as in a circuit learned with ``MaskSettings(kinds=...)``."""
    density = float(density)
    if not 0.0 <= density <= 1.0:
        raise ValueError(f"density {density} is outside [0, 1]: give the fraction of parameters to keep")
    for kind in kinds:
        check_kind(kind)
    drawn = torch.tensor([UNIT_KINDS.index(kind) for kind in kinds])
    sizes = [int(np.prod(layout.shape(kind))) for kind in UNIT_KINDS]
    order = torch.randperm(sum(sizes), generator=torch.Generator().manual_seed(seed))
    kind_of = torch.repeat_interleave(torch.arange(3), torch.tensor(sizes))[order]
    order, kind_of = order[torch.isin(kind_of, drawn)], kind_of[torch.isin(kind_of, drawn)]
    offsets = torch.tensor([0, sizes[0], sizes[0] + sizes[1]])
    local = order - offsets[kind_of]
    cost = torch.tensor([layout.neuron_params, layout.head_params, layout.norm_params], dtype=torch.long)[kind_of]
    # a head also pays for its KV group the first time a head of that group is drawn
    is_head = kind_of == 1
    group = torch.where(is_head, local // layout.group_size, -1)
    first = torch.zeros_like(is_head)
    head_positions = is_head.nonzero().squeeze(1)
    _, first_of_group = np.unique(group[head_positions].numpy(), return_index=True)
    first[head_positions[torch.from_numpy(first_of_group)]] = True
    cost = cost + first.long() * layout.kv_group_params
    whole = sum(layout.kind_params(kind) for kind in UNIT_KINDS if kind not in kinds)  # the kinds kept whole
    cumulative = whole + torch.cat([torch.zeros(1, dtype=torch.long), cost.cumsum(0)])
    keep = int((cumulative.double() - density * layout.total_params).abs().argmin())
    masks = {}
    for index, kind in enumerate(UNIT_KINDS):
        if kind not in kinds:
            masks[kind] = torch.ones(layout.shape(kind), dtype=torch.bool)
            continue
        flat = torch.zeros(sizes[index], dtype=torch.bool)
        chosen = local[:keep][kind_of[:keep] == index]
        flat[chosen] = True
        masks[kind] = flat.reshape(layout.shape(kind))
    return Circuit(layout, masks, tuple(kinds))


def _check_multipliers(layout: UnitLayout, multipliers: dict[str, torch.Tensor]) -> None:
    for kind, value in multipliers.items():
        check_kind(kind)
        if tuple(value.shape) != layout.shape(kind):
            raise ValueError(f"the {kind!r} multipliers have shape {tuple(value.shape)}, expected {layout.shape(kind)}")


def _scaled(multiplier: torch.Tensor, per_head: bool = False):
    """A site function multiplying its activation by ``multiplier`` ([features]; per head: [n_heads])."""

    def fn(x: torch.Tensor) -> torch.Tensor:
        m = multiplier.to(x.device, x.dtype)
        return x * (m[:, None] if per_head else m)

    return fn


def _norm_hook(multiplier: torch.Tensor):
    def hook(_module, _args, output):
        return output * multiplier.to(output.device, output.dtype)

    return hook


@contextmanager
def unit_masks(model: Model, multipliers: dict[str, torch.Tensor]) -> Iterator[None]:
    """Multiply each unit's site by its multiplier during every forward pass inside the block.

    ``multipliers[kind]`` has ``layout.shape(kind)`` (a kind left out is not touched): float (differentiable: the
    gradient reaches it) or bool. Neurons scale the input of the down projection, heads the per-head input of the
    output projection, norm elements the norm's output. Hooks are removed on every exit path.
    """
    layout = unit_layout(model)
    _check_multipliers(layout, multipliers)
    spec, hf = model.spec, model.hf
    fns = {}
    for layer in range(layout.n_layers):
        if "neuron" in multipliers:
            fns[Site("mlp_act", layer)] = _scaled(multipliers["neuron"][layer])
        if "head" in multipliers:
            fns[Site("z", layer)] = _scaled(multipliers["head"][layer], per_head=True)
    with ExitStack() as stack:
        if "norm" in multipliers:
            for layer in range(layout.n_layers):
                for index, name in enumerate(("attn_norm", "mlp_norm")[: layout.n_norms]):
                    handle = spec.part(hf, name, layer).register_forward_hook(
                        _norm_hook(multipliers["norm"][layer, index])
                    )
                    stack.callback(handle.remove)
        stack.enter_context(attach(model, fns))
        yield


def _feature_mask(param: torch.Tensor, features: torch.Tensor, side: str, transposed: bool) -> torch.Tensor:
    """A bool mask of ``param``'s shape selecting the ``features`` ([n] bool) of its ``"out"`` or ``"in"`` side:
    a bias (1-D) directly; a weight stored [out, in] (or [in, out] when ``transposed``) by rows or columns."""
    if param.dim() == 1:
        return features.clone()
    rows = (side == "out") != transposed
    return (features[:, None] if rows else features[None, :]).expand(param.shape).clone()


def _covered(model: Model, circuit: Circuit) -> dict[str, tuple[torch.Tensor, float]]:
    """Parameter name → (bool mask of its shape, True inside ``circuit``; the value that zeroes an entry outside)."""
    spec, hf, table = model.spec, model.hf, model.spec.table
    layout = circuit.layout
    if layout != unit_layout(model):
        raise ValueError(f"the circuit's layout {layout} is not this model's {unit_layout(model)}")
    found: dict[str, tuple[torch.Tensor, float]] = {}

    def add(layer: int, part: str, features: torch.Tensor, side: str, fill: float = 0.0) -> None:
        path = getattr(table, part)
        for kind in ("weight", "bias"):
            if kind == "bias" and side == "in":
                continue  # an output projection's bias belongs to no unit
            name = f"{table.blocks}.{layer}.{path}.{kind}"
            param = getattr(spec.part(hf, part, layer), kind, None)
            if param is None:
                continue
            mask = _feature_mask(param, features, side, table.weights_transposed)
            if name in found:  # a fused q/k/v projection, or GPT-J's one norm
                mask = found[name][0] | mask
            found[name] = (mask, fill if kind == "weight" else 0.0)

    h = layout.head_dim
    kv = circuit.kv_groups()
    for layer in range(layout.n_layers):
        neurons = circuit.masks["neuron"][layer]
        add(layer, "mlp_up", neurons, "out")
        if layout.gated:
            add(layer, "mlp_gate", neurons, "out")
        add(layer, "mlp_down", neurons, "in")
        heads = circuit.masks["head"][layer]
        q, k = heads.repeat_interleave(h), kv[layer].repeat_interleave(h)
        if table.qkv_fused == "parts":
            add(layer, "attn_q", torch.cat([q, k, k]), "out")
        elif table.qkv_fused == "heads":
            per_head = kv[layer].repeat_interleave(layout.group_size)
            add(layer, "attn_q", torch.stack([heads, per_head, per_head], 1).repeat_interleave(h, 1).reshape(-1), "out")
        else:
            add(layer, "attn_q", q, "out")
            add(layer, "attn_k", k, "out")
            add(layer, "attn_v", k, "out")
        add(layer, "attn_o_proj", q, "in")
        for index, name in enumerate(("attn_norm", "mlp_norm")[: layout.n_norms]):
            add(layer, name, circuit.masks["norm"][layer, index], "out", fill=-table.norm_gain_offset)
    return found


def parameter_masks(model: Model, circuit: Circuit) -> dict[str, torch.Tensor]:
    """Hugging Face parameter name → bool tensor of the parameter's shape (CPU): True where the entry belongs to
    the circuit's units. Only parameters the units cover appear (used to restrict gradients to a circuit)."""
    return {name: mask for name, (mask, _fill) in _covered(model, circuit).items()}


@contextmanager
def pruned(model: Model, circuit: Circuit) -> Iterator[None]:
    """The paper's circuit model: inside the block every parameter the units cover but ``circuit`` leaves out is
    zero (weights and biases; a Gemma norm gain, stored as ``gain - 1``, is set to -1), in place. Every value is
    restored bit-exactly on exit, exceptions included. ``pruned(model, c.complement())`` is the complementary
    model."""
    covered = _covered(model, circuit)
    params = dict(model.hf.named_parameters())
    saved: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    try:
        with torch.no_grad():
            for name, (mask, fill) in covered.items():
                param = params[name]
                outside = ~mask.to(param.device)
                saved.append((param, outside, param[outside].clone()))
                param[outside] = fill
        yield
    finally:
        with torch.no_grad():
            for param, outside, values in saved:
                param[outside] = values
