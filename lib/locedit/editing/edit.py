"""The :class:`Edit` every editor returns: weight deltas that apply, revert bit-exactly, and save.

An editor never leaves its changes in the model: it computes the deltas (restoring any weight it touched on the
way, whatever happens) and hands back an ``Edit``. Applying it stores the original tensors it overwrites, so
:meth:`Edit.revert` puts back the very same bits (``W + d - d`` would not be bit-exact in floating point).

**Several edits kept at once (sequential editing).** Supported:

- apply any number of edits, in any order (``a.apply(model); b.apply(model); ...``), and revert them in the
  reverse order, last applied first; nested ``with a.applied(model): with b.applied(model): ...`` blocks do exactly
  that, on every exit path;
- edits of *different* weights revert in any order;
- or combine edits into one with ``a + b`` (deltas summed; one apply, one revert).

Refused, with an :class:`EditError` that names the edits to revert first: reverting an edit while a later-applied
edit of the *same* weight is still applied. The snapshot an edit restores was taken before the later edits, so that
revert would silently remove them too (while they still said they were applied), and reverting them afterwards
would write the earlier edit back for good. Each model keeps the stack of edits applied to it
(:func:`applied_edits`), which is how a revert knows. We chose refusing over "subtract the delta after checking
W = snapshot + delta" because only restoring the snapshot is bit-exact, and an edit's revert must give back the
very bits it found.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from locedit.models import Model

# Every function here that takes a model accepts a Model or its bare Hugging Face module (``Model | nn.Module``): the
# edits live on the module (``getattr(model, "hf", model)``), so hooks and code holding only ``model.hf`` can use them.


class EditError(ValueError):
    """A request an editor cannot carry out; the message says how to fix it."""


#: hf module → the edits applied to it that are not reverted yet, in the order they were applied.
_APPLIED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def applied_edits(model: Model | nn.Module) -> list[Edit]:
    """The edits applied to ``model`` and not reverted yet, first applied first (revert them from the end)."""
    return list(_APPLIED.get(getattr(model, "hf", model), []))


@dataclass(eq=False)
class Edit:
    """Weight deltas per parameter name (``"model.layers.5.mlp.down_proj.weight"`` …), plus what made them.

    Use::

        edit = rome(model, record, ROMEHyperParams(layer=5))
        with edit.applied(model):      # or edit.apply(model) … edit.revert(model)
            model.top_tokens("The capital of France is")
        edit.save("edit.pt"); Edit.load("edit.pt")

    Edits compare by identity. Keeping several applied at once: see the module's docstring (revert the last
    applied first).
    """

    deltas: dict[str, torch.Tensor]
    method: str = ""
    info: dict = field(default_factory=dict)
    _originals: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    @property
    def is_applied(self) -> bool:
        return self._originals is not None

    def apply(self, model: Model | nn.Module) -> Edit:
        """Add the deltas to the model's weights (in place), keeping the originals for :meth:`revert`."""
        hf = getattr(model, "hf", model)
        if self.is_applied:
            raise EditError("this edit is already applied; revert it first")
        params = dict(hf.named_parameters())
        missing = [n for n in self.deltas if n not in params]
        if missing:
            raise EditError(f"the model has no parameters {missing}: was this edit made for another model?")
        for name, delta in self.deltas.items():
            if params[name].shape != delta.shape:
                raise EditError(f"{name}: delta shape {tuple(delta.shape)} != weight shape {tuple(params[name].shape)}")
        originals: dict[str, torch.Tensor] = {}
        try:
            with torch.no_grad():
                for name, delta in self.deltas.items():
                    p = params[name]
                    originals[name] = p.detach().clone()
                    p.add_(delta.to(p.device, p.dtype))
        except BaseException:
            _restore(params, originals)
            raise
        self._originals = originals
        _APPLIED.setdefault(hf, []).append(self)
        return self

    def revert(self, model: Model | nn.Module) -> Edit:
        """Put back the exact original weights.

        Refused (:class:`EditError`, nothing changed) while an edit applied after this one changes one of the same
        weights and is still applied: revert that one first (see the module's docstring).
        """
        hf = getattr(model, "hf", model)
        if not self.is_applied:
            raise EditError("this edit is not applied")
        stack = _APPLIED.get(hf, [])
        position = next((i for i, e in enumerate(stack) if e is self), None)
        if position is None:
            raise EditError("this edit was applied to another model: revert it on the model it was applied to")
        later = [e for e in stack[position + 1 :] if set(e.deltas) & set(self.deltas)]
        if later:
            names = ", ".join(_label(e, stack) for e in reversed(later))
            raise EditError(
                f"cannot revert {_label(self, stack)} yet: edits applied after it change the same weights and are "
                f"still applied; revert {names} first (last applied first), or apply edits as one with `a + b`"
            )
        _restore(dict(hf.named_parameters()), self._originals)
        self._originals = None
        del stack[position]
        return self

    @contextmanager
    def applied(self, model: Model | nn.Module) -> Iterator:
        """Apply inside the ``with`` block, revert on every exit path."""
        self.apply(model)
        try:
            yield model
        finally:
            self.revert(model)

    def __add__(self, other: Edit) -> Edit:
        """Two edits as one (deltas summed)."""
        deltas = dict(self.deltas)
        for name, delta in other.deltas.items():
            deltas[name] = deltas[name] + delta if name in deltas else delta
        return Edit(deltas, method=f"{self.method}+{other.method}", info={"parts": [self.info, other.info]})

    def norms(self) -> dict[str, float]:
        """Frobenius norm of each delta."""
        return {name: float(d.float().norm()) for name, d in self.deltas.items()}

    def save(self, path: str | Path) -> None:
        torch.save(
            {"deltas": {k: v.detach().cpu() for k, v in self.deltas.items()}, "method": self.method, "info": self.info},
            Path(path),
        )

    @classmethod
    def load(cls, path: str | Path) -> Edit:
        data = torch.load(Path(path), weights_only=False)
        return cls(deltas=data["deltas"], method=data["method"], info=data["info"])


def _label(edit: Edit, stack: list[Edit]) -> str:
    """``ROME edit 'France' → 'Rome' (applied 2nd)``: which edit, in words."""
    info = edit.info or {}
    requests = [info["request"]] if isinstance(info.get("request"), dict) else info.get("requests") or []
    what = f"{edit.method or 'the'} edit"
    if len(requests) == 1 and isinstance(requests[0], dict):
        what += f" {requests[0].get('subject')!r} → {requests[0].get('target_new')!r}"
    elif requests:
        what += f" of {len(requests)} facts"
    n = next(i for i, e in enumerate(stack) if e is edit) + 1
    suffix = {1: "st", 2: "nd", 3: "rd"}.get(n % 10 if n % 100 not in (11, 12, 13) else 0, "th")
    return f"{what} (applied {n}{suffix})"


def _restore(params: dict[str, torch.Tensor], originals: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for name, original in originals.items():
            params[name].copy_(original)


@contextmanager
def restoring(model: Model | nn.Module, names: list[str]) -> Iterator[dict[str, torch.Tensor]]:
    """Snapshot the named parameters; on exit (any exit) copy the snapshots back. Yields the snapshots."""
    hf = getattr(model, "hf", model)
    params = dict(hf.named_parameters())
    saved = {n: params[n].detach().clone() for n in names}
    try:
        yield saved
    finally:
        _restore(params, saved)


@contextmanager
def frozen(model: Model | nn.Module) -> Iterator[None]:
    """Turn off ``requires_grad`` on every parameter inside the block, and restore the flags after."""
    hf = getattr(model, "hf", model)
    flags = [(p, p.requires_grad) for p in hf.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


@contextmanager
def applied_per_row(model: Model | nn.Module, edits: Sequence[Edit | None]) -> Iterator:
    """Inside the block, batch row ``b`` of every forward pass runs with ``edits[b]`` (``None``: unedited).

    Each edited weight's module gets a forward hook that adds row ``b``'s change to its output: ``x_b @ ΔW_bᵀ`` (plus
    ``Δb_b`` for a bias), which is what applying the edit gives, to float rounding (``(W + ΔW) x`` vs ``W x + ΔW x``).
    That lets a batch hold records that each need their own edit — ROME's and FT-L's evaluation, where one edit is
    made per record — in one forward pass, and above all in one ``generate`` call, instead of one call per record.
    The weights are never touched; the hooks are removed on every exit path. Forward passes inside the block must
    have exactly ``len(edits)`` rows.

    Only weights and biases of linear layers (``nn.Linear``, GPT-2's ``Conv1D``) can be edited per row; apply any
    other edit with :meth:`Edit.applied`. Memory: one dense [out, in] delta per row and edited weight.
    """
    hf = getattr(model, "hf", model)
    params = dict(hf.named_parameters())
    names = sorted({name for e in edits if e is not None for name in e.deltas})
    by_module: dict[str, dict[str, torch.Tensor]] = {}  # module path → {"weight" / "bias": [len(edits), *shape]}
    for name in names:
        if name not in params:
            raise EditError(f"the model has no parameter {name!r}: was this edit made for another model?")
        path, kind = name.rsplit(".", 1)
        module = hf.get_submodule(path)
        if kind not in ("weight", "bias") or type(module).__name__ not in ("Linear", "Conv1D"):
            raise EditError(
                f"{name}: only linear layers' weights and biases can be edited per row; apply this edit to the "
                "whole model with `with edit.applied(model):` instead"
            )
        p = params[name]
        stacked = torch.zeros(len(edits), *p.shape, dtype=p.dtype, device=p.device)
        for b, e in enumerate(edits):
            if e is not None and name in e.deltas:
                stacked[b] = e.deltas[name].to(p.device, p.dtype)
        by_module.setdefault(path, {})[kind] = stacked

    def hook(args, output, deltas, pattern):
        x = args[0]
        if x.shape[0] != len(edits):
            raise EditError(f"a forward pass of {x.shape[0]} rows inside applied_per_row of {len(edits)} edits")
        if "weight" in deltas:
            output = output + torch.einsum(pattern, x, deltas["weight"])
        if "bias" in deltas:
            output = output + deltas["bias"].reshape(len(edits), *[1] * (output.dim() - 2), -1)
        return output

    handles = []
    try:
        for path, deltas in by_module.items():
            module = hf.get_submodule(path)
            # nn.Linear keeps [out, in]; Conv1D keeps [in, out]
            pattern = "b...i,boi->b...o" if type(module).__name__ == "Linear" else "b...i,bio->b...o"
            handles.append(module.register_forward_hook(lambda _m, a, o, d=deltas, p=pattern: hook(a, o, d, p)))
        yield model
    finally:
        for h in handles:
            h.remove()
