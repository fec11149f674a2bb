"""Read and change any activation of a Hugging Face model, for a whole batch at once.

A :class:`Site` names an activation in family-independent terms (``Site("mlp_act", 7)``, or the string
``"mlp_act.7"``); :mod:`locedit.arch` maps it to a module. An :class:`Intervention` says what to do there
(replace, add, scale or clamp), and where: which batch rows, which positions, which heads or neurons.

Everything runs on the real Hugging Face modules through PyTorch hooks, so an unpatched run is bit-identical to
the model's own forward pass. Hooks live only inside the :func:`patch` context manager and are removed on every
exit path, exceptions included. ``patch(model, record=[...], stop=True)`` ends the forward pass once the last
recorded site has been computed (ROME's ``nethook.Trace(stop=True)``): keys and residuals at a middle layer without
running the layers above.

The site layer underneath, shared with the patching engine (:mod:`locedit.patching`): :func:`locate` (the module
a site lives on, and whether it is that module's input or output, from the table :data:`locedit.arch.SITES`),
:func:`attach` (hook site functions onto their modules for the duration of a ``with`` block), :func:`as_index`
and :func:`combine` (the index and arithmetic rules of an intervention).

Shapes: residual-stream sites are [batch, seq, d_model]; ``q`` and ``z`` are [batch, seq, n_heads, head_dim], ``k``
and ``v`` [batch, seq, n_kv_heads, head_dim]; ``mlp_act`` and ``mlp_up`` are [batch, seq, d_mlp].
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Literal, Union

import numpy as np
import torch
from torch import nn

from locedit.arch import SITES, ArchSpec, SiteKind
from locedit.models import Model

Index = Union[int, Sequence[int], torch.Tensor, slice, None]
Op = Literal["replace", "add", "scale", "clamp"]


@dataclass(frozen=True)
class Site:
    """One activation: ``name`` from :data:`locedit.arch.SITES` at ``layer`` (``None`` only for ``"embed"``).

    ``layer`` may be any integer, Python, NumPy or a one-element integer tensor (``torch.argmax(...)``); it is
    stored as a Python ``int``. A bool or a float is refused.
    """

    name: str
    layer: int | None = None

    def __post_init__(self) -> None:
        kind = SITES.get(self.name)
        if kind is None:
            raise ValueError(f"unknown site {self.name!r}; sites are {', '.join(SITES)}")
        if (self.layer is None) == kind.layered:
            raise ValueError(f"site {self.name!r} {'needs a' if kind.layered else 'takes no'} layer")
        if self.layer is not None:
            object.__setattr__(self, "layer", _as_layer(self.layer, self.name))

    @property
    def kind(self) -> SiteKind:
        """What the site is (module part, input or output side, feature shape …): ``SITES[self.name]``."""
        return SITES[self.name]

    @classmethod
    def parse(cls, site: str | Site) -> Site:
        """``"mlp_act.7"`` → ``Site("mlp_act", 7)``; ``"embed"`` → ``Site("embed")``."""
        if isinstance(site, Site):
            return site
        name, _, layer = site.partition(".")
        if not layer:
            return cls(name)
        try:
            number = int(layer)
        except ValueError:
            raise ValueError(f"site {site!r}: the layer after the dot must be an integer ('resid_post.3')") from None
        return cls(name, number)

    def __str__(self) -> str:
        return self.name if self.layer is None else f"{self.name}.{self.layer}"


def _as_layer(layer, name: str) -> int:
    """``layer`` as a Python int (NumPy and torch integers included); bools and floats are refused."""
    if isinstance(layer, (bool, np.bool_)) or (isinstance(layer, torch.Tensor) and layer.dtype == torch.bool):
        raise TypeError(f"site {name!r}: the layer must be an integer, got the bool {layer!r}")
    try:
        return operator.index(layer)
    except TypeError:
        raise TypeError(
            f"site {name!r}: the layer must be an integer, got {type(layer).__name__} {layer!r} (round it with int())"
        ) from None


def locate(spec: ArchSpec, hf: nn.Module, site: Site) -> tuple[nn.Module, Literal["input", "output"]]:
    """The module ``site`` lives on in the Hugging Face model ``hf``, and whether the site is its ``"input"`` or its
    ``"output"`` (from :data:`locedit.arch.SITES`). Raises ``IndexError`` for a layer outside the model."""
    kind = SITES[site.name]
    if site.layer is not None:
        spec.check_layer(site.layer)
    if kind.part == "block":
        return spec.block(hf, site.layer), kind.side
    return spec.part(hf, kind.part, site.layer), kind.side


def as_index(index: Index, size: int, what: str) -> torch.Tensor:
    """``index`` (``None``: all, a slice, an int, a list or a tensor of ints) as a 1-D or 2-D long tensor of
    indices into a dimension of ``size``, negative ones wrapped, on the CPU; ``what`` names it in errors."""
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
        index: heads for ``q`` and ``z``, KV heads for ``k`` and ``v``, neurons for ``mlp_act``/``mlp_up`` (default:
            all).
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
        if self.index is not None and not self.site.kind.indexable:
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
        new = combine(self.op, current, value)
        out = x if inplace else x.clone()
        out[selector] = new
        return out


def combine(op: Op, current: torch.Tensor, value) -> torch.Tensor:
    """The new values of a selection ``current`` under ``op`` with a resolved (not callable) ``value``: a
    number, a tensor broadcastable to ``current``, or a (low, high) pair for ``"clamp"``."""
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
    r = as_index(rows, x.shape[0], f"rows of {site}").to(x.device)
    p = as_index(positions, x.shape[1], f"positions of {site}").to(x.device)
    if p.dim() == 2 and p.shape[0] != r.shape[0]:
        raise ValueError(f"per-row positions for {site} have {p.shape[0]} rows but {r.shape[0]} rows are selected")
    p = p if p.dim() == 2 else p[None, :].expand(r.shape[0], -1)
    if index is None:
        return r[:, None], p
    k = as_index(index, x.shape[2], f"index (heads/neurons) of {site}").to(x.device)
    return r[:, None, None], p[:, :, None], k[None, None, :]


SiteFn = Callable[[torch.Tensor], torch.Tensor]


@contextmanager
def attach(model: Model, site_fns: Mapping[Site, SiteFn] | Iterable[tuple[Site, SiteFn]]) -> Iterator[None]:
    """Hook each site function onto its module for the duration of the block; every hook is removed on exit,
    whatever happens (an exception inside the block, or a site that fails to resolve midway).

    A site function takes the site's activation as :data:`locedit.arch.SITES` shapes it ([batch, seq, d_model],
    [batch, seq, n_heads, head_dim] for ``q`` and ``z``, [batch, seq, n_kv_heads, head_dim] for ``k`` and ``v``,
    [batch, seq, d_mlp]) and returns the tensor that replaces it (``x``
    itself to only read it); :func:`patch` and the patching engine (:mod:`locedit.patching`) build theirs on this.
    """
    handles = []
    try:
        for site, fn in site_fns.items() if isinstance(site_fns, Mapping) else site_fns:
            module, side = locate(model.spec, model.hf, site)
            fn = _site_shaped(fn, model.spec, site.kind)
            if side == "output":
                handles.append(module.register_forward_hook(_output_hook(fn)))
            else:
                handles.append(module.register_forward_pre_hook(_input_hook(fn), with_kwargs=True))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _site_shaped(fn: SiteFn, spec: ArchSpec, kind: SiteKind) -> SiteFn:
    """``fn`` on the site's own shape, for a module that sees it otherwise: heads flattened [..., n * head_dim]
    (``q``, ``k``, ``v``, ``z``), or one third of a fused q/k/v projection's output (GPT-2's ``c_attn``: [q | k | v];
    GPT-NeoX's ``query_key_value``: [q_h | k_h | v_h] per head)."""
    if kind.feature not in ("heads", "kv_heads"):
        return fn
    n, head_dim = kind.feature_shape(spec)
    third = spec.qkv_part(kind.part)
    if third is None:
        return lambda x: fn(x.unflatten(-1, (n, head_dim))).flatten(-2)

    def select(x: torch.Tensor) -> torch.Tensor:  # a view of the part, [..., n, head_dim]
        if spec.table.qkv_fused == "parts":
            return x.unflatten(-1, (3, n, head_dim))[..., third, :, :]
        return x.unflatten(-1, (n, 3, head_dim))[..., third, :]

    def fused(x: torch.Tensor) -> torch.Tensor:
        part = select(x)
        new = fn(part)
        if new is part:  # only read
            return x
        out = x.clone()
        select(out).copy_(new)
        return out

    return fused


def _output_hook(fn: SiteFn):
    def hook(_module, _args, output):
        if isinstance(output, tuple):
            return (fn(output[0]), *output[1:])
        return fn(output)

    return hook


def _input_hook(fn: SiteFn):
    def hook(_module, args, kwargs):
        if args:
            return (fn(args[0]), *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": fn(kwargs["hidden_states"])}

    return hook


class _StopForward(Exception):
    """Raised by :func:`patch`'s stop hook once the last recorded site has been computed; ``patch`` catches its own."""

    def __init__(self, token: object) -> None:
        super().__init__("forward pass stopped after the last recorded site (patch(..., stop=True))")
        self.token = token


@contextmanager
def _stop_after(model: Model, sites: Iterable[Site], token: object) -> Iterator[None]:
    """A hook that raises :class:`_StopForward` right after the latest of ``sites`` along the forward pass has been
    computed: after its own module for a point of the residual stream (``embed``, ``resid_pre.l`` at the input of
    block l, ``resid_post.l``), after block l for a site inside it. Enter it after the recording hooks (hooks on
    one module run in the order they were registered). Removed on exit."""
    # stream point j is both resid_post.(j-1) and resid_pre.j (embed and resid_pre.0 for j = 0): the input of
    # block j comes last, since block j's pre-hooks run only after block j-1's hooks
    last = max(sites, key=lambda s: (s.kind.stage(s.layer), s.kind.layered and s.kind.place == "before"))
    if last.kind.in_block:
        module, side = model.spec.block(model.hf, last.layer), "output"
    else:
        module, side = locate(model.spec, model.hf, last)

    def stop(*_args):
        raise _StopForward(token)

    if side == "output":
        handle = module.register_forward_hook(stop)
    else:
        handle = module.register_forward_pre_hook(stop, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def patch(
    model: Model,
    interventions: Sequence[Intervention] = (),
    record: Sequence[Site | str] = (),
    detach: bool = True,
    stop: bool = False,
) -> Iterator[dict[str, torch.Tensor]]:
    """Apply ``interventions`` and record ``record`` sites during every forward pass inside the block.

    Yields a dict from site string (``"resid_post.3"``) to the recorded activation (after interventions at that
    site), filled as the model runs; ``detach=False`` keeps the autograd graph. Hooks are removed on exit,
    whatever happens inside.

    ``stop=True`` (ROME's ``nethook.Trace(stop=True)``) ends the forward pass as soon as the last recorded site
    along it has been computed (a ``resid_pre.l`` at the input of block l, any other site of layer l at the end of
    block l): the later blocks, the final norm and the unembedding never run. The forward call then leaves the
    ``with`` block at once (code after it inside the block does not run) and the recorded activations are in the
    dict; any other exception propagates as usual.

    Example::

        with patch(model, [Intervention("mlp_act.5", "scale", 0.0, positions=[-1])], record=["resid_post.29"]) as cache:
            model.hf(**model.encode("The Eiffel Tower is in"))

        with patch(model, record=["mlp_act.6"], stop=True) as cache:  # blocks 7.. are skipped
            model.hf(**inputs)
    """
    by_site: dict[Site, list[Intervention]] = {}
    for intervention in interventions:
        by_site.setdefault(intervention.site, []).append(intervention)
    wanted = {Site.parse(s) for s in record}
    if stop and not wanted:
        raise ValueError("stop=True stops after the last recorded site: give the sites to record")
    cache: dict[str, torch.Tensor] = {}
    fns = {
        site: _site_function(site, by_site.get(site, []), cache if site in wanted else None, detach)
        for site in set(by_site) | wanted
    }
    token = object()
    stopper = _stop_after(model, wanted, token) if stop else nullcontext()
    with attach(model, fns), stopper:
        try:
            yield cache
        except _StopForward as stopped:
            if stopped.token is not token:
                raise


def _site_function(
    site: Site,
    interventions: list[Intervention],
    cache: dict[str, torch.Tensor] | None,
    detach: bool,
) -> SiteFn:
    """A site function (see :func:`attach`) applying ``interventions`` in order, then recording into ``cache``."""

    def fn(x: torch.Tensor) -> torch.Tensor:
        if interventions:
            x = x.clone()  # one copy per site, however many interventions it carries
            for intervention in interventions:
                x = intervention.apply(x, inplace=True)
        if cache is not None:
            cache[str(site)] = x.detach() if detach else x
        return x

    return fn


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
