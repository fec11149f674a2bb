"""Read and change any activation of a Hugging Face model, for a whole batch at once.

A :class:`Site` names an activation in family-independent terms (``Site("mlp_act", 7)``, or the string
``"mlp_act.7"``); :mod:`locedit.arch` maps it to a module. An :class:`Intervention` says what to do there
(replace, add, scale or clamp), and where: which batch rows, which positions, which heads or neurons.

Everything runs on the real Hugging Face modules through PyTorch hooks, so an unpatched run is bit-identical to
the model's own forward pass. Hooks live only inside the :func:`patch` context manager and are removed on every
exit path, exceptions included.

Shapes: residual-stream sites are [batch, seq, d_model]; ``z`` is [batch, seq, n_heads, head_dim];
``mlp_act`` and ``mlp_up`` are [batch, seq, d_mlp].
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal, Union

import torch
from torch import nn

from locedit.arch import SITES, ArchSpec
from locedit.models import Model

Index = Union[int, Sequence[int], torch.Tensor, slice, None]
Op = Literal["replace", "add", "scale", "clamp"]


@dataclass(frozen=True)
class Site:
    """One activation: ``name`` from :data:`locedit.arch.SITES` at ``layer`` (``None`` only for ``"embed"``)."""

    name: str
    layer: int | None = None

    def __post_init__(self) -> None:
        if self.name not in SITES:
            raise ValueError(f"unknown site {self.name!r}; sites are {', '.join(SITES)}")
        if (self.layer is None) != (self.name == "embed"):
            raise ValueError(f"site {self.name!r} {'takes no' if self.name == 'embed' else 'needs a'} layer")

    @classmethod
    def parse(cls, site: str | Site) -> Site:
        """``"mlp_act.7"`` → ``Site("mlp_act", 7)``; ``"embed"`` → ``Site("embed")``."""
        if isinstance(site, Site):
            return site
        name, _, layer = site.partition(".")
        return cls(name, int(layer) if layer else None)

    def __str__(self) -> str:
        return self.name if self.layer is None else f"{self.name}.{self.layer}"


def _locate(spec: ArchSpec, model: nn.Module, site: Site) -> tuple[nn.Module, str]:
    """The module a site lives on and whether the site is its ``"input"`` or its ``"output"``."""
    if site.layer is not None:
        spec.check_layer(site.layer)
    where = {
        "embed": ("embed", "output"),
        "resid_pre": ("block", "input"),
        "resid_post": ("block", "output"),
        "attn_out": ("attn_out", "output"),
        "z": ("attn_o_proj", "input"),
        "mlp_out": ("mlp_out", "output"),
        "mlp_act": ("mlp_down", "input"),
        "mlp_up": ("mlp_up", "output"),
    }
    part, side = where[site.name]
    if part == "block":
        return spec.block(model, site.layer), side
    return spec.part(model, part, site.layer), side


def _as_index(index: Index, size: int, what: str) -> torch.Tensor:
    """A 1-D or 2-D long tensor of indices into a dimension of ``size``, range-checked."""
    if index is None:
        return torch.arange(size)
    if isinstance(index, slice):
        return torch.arange(size)[index]
    tensor = torch.as_tensor(index).cpu()
    if tensor.dtype == torch.bool:  # a mask would silently be read as the indices 0 and 1
        raise TypeError(f"{what}: pass indices, not a boolean mask (mask.nonzero() gives the indices)")
    tensor = tensor.long()
    if tensor.dim() == 0:
        tensor = tensor[None]
    if tensor.numel() and (tensor.max() >= size or tensor.min() < -size):
        raise IndexError(f"{what} {tensor.tolist()} out of range for size {size}")
    return tensor % size


@dataclass(frozen=True)
class Intervention:
    """Change one site during a forward pass.

    Attributes:
        site: where (a :class:`Site` or a string like ``"resid_post.3"``).
        op: ``"replace"`` (set to ``value``), ``"add"`` (add ``value``), ``"scale"`` (multiply by ``value``) or
            ``"clamp"`` (``value`` = (low, high); either may be ``None``).
        value: a number, a tensor, or a function of the selected activation returning a tensor of its shape. A
            tensor is broadcast to the selection [rows, positions, (index), ...]; a tensor with the site's full
            per-row shape ([1 or batch, seq, ...], e.g. from a cache) is indexed like the activation.
        rows: batch rows (default: all).
        positions: token positions (default: all); a 2-D [rows, k] array gives each row its own positions.
        index: heads for ``z``, neurons for ``mlp_act``/``mlp_up`` (default: all).
    """

    site: Site | str
    op: Op
    value: float | torch.Tensor | tuple | Callable[[torch.Tensor], torch.Tensor]
    rows: Index = None
    positions: Index = None
    index: Index = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "site", Site.parse(self.site))
        if self.op not in ("replace", "add", "scale", "clamp"):
            raise ValueError(f"unknown op {self.op!r}: use 'replace', 'add', 'scale' or 'clamp'")
        if self.index is not None and self.site.name not in ("z", "mlp_act", "mlp_up"):
            raise ValueError(f"index selects heads or neurons; site {self.site} has neither")

    def apply(self, x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        """Return the activation ``x`` ([batch, seq, ...]) changed: a copy, or ``x`` itself when ``inplace``."""
        selector = _selector(x, self.rows, self.positions, self.index, str(self.site))
        current = x[selector]
        value = self.value(current) if callable(self.value) else self.value
        if isinstance(value, torch.Tensor):
            value = value.to(x.device, x.dtype)
            if value.dim() == x.dim() and value.shape[1:] == x.shape[1:] and value.shape[0] in (1, x.shape[0]):
                value = value.expand_as(x)[selector]
        new = _combine(self.op, current, value)
        out = x if inplace else x.clone()
        out[selector] = new
        return out


def _combine(op: Op, current: torch.Tensor, value) -> torch.Tensor:
    """The new values of a selection ``current`` under ``op`` with a resolved (not callable) ``value``."""
    if op == "clamp":
        low, high = value
        return current.clamp(min=low, max=high)
    if isinstance(value, torch.Tensor):
        value = value.to(current.device, current.dtype)
    if op == "replace":
        return torch.broadcast_to(torch.as_tensor(value, dtype=current.dtype, device=current.device), current.shape)
    return current + value if op == "add" else current * value


def _selector(x: torch.Tensor, rows: Index, positions: Index, index: Index, site: str) -> tuple[torch.Tensor, ...]:
    """An advanced-indexing tuple selecting [rows, positions, (index)] of ``x``."""
    r = _as_index(rows, x.shape[0], f"rows of {site}").to(x.device)
    p = _as_index(positions, x.shape[1], f"positions of {site}").to(x.device)
    if p.dim() == 2 and p.shape[0] != r.shape[0]:
        raise ValueError(f"per-row positions for {site} have {p.shape[0]} rows but {r.shape[0]} rows are selected")
    p = p if p.dim() == 2 else p[None, :].expand(r.shape[0], -1)
    if index is None:
        return r[:, None], p
    k = _as_index(index, x.shape[2], f"index (heads/neurons) of {site}").to(x.device)
    return r[:, None, None], p[:, :, None], k[None, None, :]


@contextmanager
def patch(
    model: Model,
    interventions: Sequence[Intervention] = (),
    record: Sequence[Site | str] = (),
    detach: bool = True,
) -> Iterator[dict[str, torch.Tensor]]:
    """Apply ``interventions`` and record ``record`` sites during every forward pass inside the block.

    Yields a dict from site string (``"resid_post.3"``) to the recorded activation (after interventions at that
    site), filled as the model runs; ``detach=False`` keeps the autograd graph. Hooks are removed on exit,
    whatever happens inside.

    Example::

        with patch(model, [Intervention("mlp_act.5", "scale", 0.0, positions=[-1])], record=["resid_post.29"]) as cache:
            model.hf(**model.encode("The Eiffel Tower is in"))
    """
    by_site: dict[Site, list[Intervention]] = {}
    for intervention in interventions:
        by_site.setdefault(intervention.site, []).append(intervention)
    wanted = {Site.parse(s) for s in record}
    cache: dict[str, torch.Tensor] = {}
    handles = []
    try:
        for site in set(by_site) | wanted:
            module, side = _locate(model.spec, model.hf, site)
            fn = _site_function(model.spec, site, by_site.get(site, []), cache if site in wanted else None, detach)
            if side == "output":
                handles.append(module.register_forward_hook(_output_hook(fn)))
            else:
                handles.append(module.register_forward_pre_hook(_input_hook(fn), with_kwargs=True))
        yield cache
    finally:
        for handle in handles:
            handle.remove()


def _site_function(
    spec: ArchSpec,
    site: Site,
    interventions: list[Intervention],
    cache: dict[str, torch.Tensor] | None,
    detach: bool,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function from a module's raw input/output tensor to its replacement (patched, and recorded)."""
    heads = site.name == "z"

    def fn(x: torch.Tensor) -> torch.Tensor:
        shaped = x.reshape(*x.shape[:-1], spec.n_heads, spec.head_dim) if heads else x
        if interventions:
            shaped = shaped.clone()  # one copy per site, however many interventions it carries
            for intervention in interventions:
                shaped = intervention.apply(shaped, inplace=True)
        if cache is not None:
            cache[str(site)] = shaped.detach() if detach else shaped
        return shaped.reshape(x.shape) if heads else shaped

    return fn


def _output_hook(fn: Callable[[torch.Tensor], torch.Tensor]):
    def hook(_module, _args, output):
        if isinstance(output, tuple):
            return (fn(output[0]), *output[1:])
        return fn(output)

    return hook


def _input_hook(fn: Callable[[torch.Tensor], torch.Tensor]):
    def hook(_module, args, kwargs):
        if args:
            return (fn(args[0]), *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": fn(kwargs["hidden_states"])}

    return hook


def run_with(
    model: Model,
    inputs: dict[str, torch.Tensor],
    interventions: Sequence[Intervention] = (),
    record: Sequence[Site | str] = (),
    **forward_kwargs,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One forward pass under :func:`patch`: returns (logits [batch, seq, vocab], recorded activations).

    ``forward_kwargs`` go to the model's forward, e.g. ``logits_to_keep=1`` for the last position's logits only.
    """
    with torch.no_grad(), patch(model, interventions, record) as cache:
        logits = model.hf(**inputs, **forward_kwargs).logits
    return logits, cache


def all_sites(spec: ArchSpec, name: str) -> list[Site]:
    """``name`` at every layer, e.g. ``all_sites(spec, "resid_post")``."""
    return [Site(name, layer) for layer in range(spec.n_layers)]
