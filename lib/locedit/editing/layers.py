"""Which layer to edit: one rule, applied by :func:`edit_layer`, used by the editors' defaults, chapter 1 and the
README alike.

**The rule (ROME's, Meng et al. 2022 §2–3).** The edit layer l* is the layer at the centre of the restored MLP
window with the largest *average indirect effect at the last subject token*, over the traced facts: the peak of
the ``"last subject"`` row of :func:`locedit.tracing.average_effects` for ``kind="mlp"``. Windows that contain
layer 0 are left out (``skip_layer0=True``): in Llama-family models the first MLP works as part of the token
embedding, so restoring it repairs the noise itself rather than the recall of a fact (its effect is large at every
subject token). On GPT-2 XL the paper's MLP-window peak at the last subject token is centred on layer 17 of 48,
the layer ROME edits there.

**MEMIT's layers** are the ``n`` layers ending at l*: ``memit_layers(l_star, n)`` = (l* − n + 1, …, l*) — the top
layer, where MEMIT optimises its target residuals, is the traced peak, and the lower layers share the update. (The
released MEMIT edits GPT-J at 3–8, a range around ROME's GPT-J layer 5; ending the range at l* is the book's choice,
with ``n`` = :data:`MEMIT_N_LAYERS` = 4.)

**Defaults.** :data:`EDIT_LAYERS` holds l* for the built-in models, measured with :func:`edit_layer` at chapter 1's
full-size settings. ``ROMEHyperParams().layer``, ``FTHyperParams().layer`` and ``MEMITHyperParams().layers`` are
``None``, which the editors resolve from this table for the model they edit (:func:`default_edit_layer`,
:func:`memit_layers`); a model not in the table gets an :class:`EditError` saying how to measure its l* (trace a
few facts it knows, then ``edit_layer(traces)``) — never another model's layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from locedit._checks import integer
from locedit.editing.edit import EditError
from locedit.models import Model
from locedit.tracing import BUCKETS, Trace, average_effects

#: l* per built-in model, measured with :func:`edit_layer` at chapter 1's full-size settings: 50 facts of the
#: book's file (``balanced(facts, 50, seed=0)``), one noise draw each (ν = 3σ_t over all the facts' subjects), every
#: layer, MLP window 6. SmolLM2-135M: the last-subject MLP AIE rises to 0.126 at layer 3 (windows holding layer 0),
#: then peaks at 0.057 at layer 5 (0.057 in float32 too), and falls below 0.045 from layer 6 on.
EDIT_LAYERS: dict[str, int] = {"smollm2-135m": 5}

#: How many layers MEMIT spreads its update over by default (the layers ending at l*).
MEMIT_N_LAYERS = 4


def layer_index(value, name: str, minimum: int = 0) -> int:
    """``value`` as a plain int ≥ ``minimum`` (any integer type), or a TypeError / ValueError naming ``name``."""
    return integer(value, name, minimum, "give a layer index, e.g. 5 (numpy and torch integers are fine)")


def edit_layer(
    traces_or_effects: Sequence[Trace] | torch.Tensor,
    layers: Sequence[int] | None = None,
    *,
    window: int | None = None,
    skip_layer0: bool = True,
) -> int:
    """l*: the layer of the peak average indirect effect of the restored MLP window at the last subject token.

    Args:
        traces_or_effects: the traces of the facts (each traced with ``"mlp"`` among its kinds, at the same layers);
            or the MLP's average effects, either [6, n] (:func:`~locedit.tracing.average_effects`' first output) or
            the [n] curve of the last subject token.
        layers: the layer of each of the n rows (default: the traces' own ``layers``; else 0..n−1).
        window: the MLP window's width (default: the traces' own; required with ``skip_layer0`` for effects).
        skip_layer0: leave out the windows that contain layer 0 (see the module's docstring).

    Ties go to the lower layer. Raises ``ValueError`` when no traced layer is left, or every effect is NaN.
    """
    if isinstance(traces_or_effects, torch.Tensor):
        effects = traces_or_effects.detach().float().cpu()
        if effects.dim() == 2:
            if effects.shape[0] != len(BUCKETS):
                raise ValueError(f"effects of shape {tuple(effects.shape)}: expected [{len(BUCKETS)}, n] or [n]")
            effects = effects[BUCKETS.index("last subject")]
        elif effects.dim() != 1:
            raise ValueError(f"effects of shape {tuple(effects.shape)}: expected [{len(BUCKETS)}, n] or [n]")
        if window is None and skip_layer0:
            raise ValueError("pass window= (the trace's MLP window, Trace.window) to leave out the layer-0 windows")
    else:
        traces = list(traces_or_effects)
        if not traces or not all(isinstance(t, Trace) for t in traces):
            raise TypeError("edit_layer takes a non-empty list of Trace objects (causal_trace) or an effects tensor")
        if any("mlp" not in t.scores for t in traces):
            raise ValueError("every trace needs the 'mlp' kind: causal_trace(..., kinds=('mlp', ...))")
        own = {tuple(t.layers) if t.layers is not None else None for t in traces}
        if len(own) > 1:
            raise ValueError("the traces were restored at different layers: trace every fact at the same layers")
        (own_layers,) = own
        if layers is None and own_layers is not None:
            layers = list(own_layers)
        windows = {t.window for t in traces}
        if window is None:
            if len(windows) > 1:
                raise ValueError(f"the traces use different MLP windows {sorted(windows)}: trace with one window")
            (window,) = windows
        effects = average_effects(traces, "mlp")[0][BUCKETS.index("last subject")]
    n = effects.shape[0]
    layers = list(range(n)) if layers is None else [layer_index(x, "layers[i]") for x in layers]
    if len(layers) != n:
        raise ValueError(f"{len(layers)} layers for {n} rows of effects")
    half = layer_index(window, "window", 1) // 2 if skip_layer0 and layers else 0
    keep = [j for j, layer in enumerate(layers) if not skip_layer0 or layer - half >= 1]
    if not keep:
        raise ValueError(f"no traced layer is left once the windows holding layer 0 are dropped (layers {layers})")
    values = effects[keep]
    if bool(torch.isnan(values).all()):
        raise ValueError("every effect is NaN: the traces have no last subject token restored")
    return layers[keep[int(torch.nan_to_num(values, nan=-float("inf")).argmax())]]


def memit_layers(l_star: int, n: int = MEMIT_N_LAYERS) -> tuple[int, ...]:
    """The ``n`` layers ending at ``l_star``: (l* − n + 1, …, l*), cut at layer 0 (then fewer than ``n``)."""
    l_star, n = layer_index(l_star, "l_star"), layer_index(n, "n", 1)
    return tuple(range(max(0, l_star - n + 1), l_star + 1))


def default_edit_layer(model: Model) -> int:
    """l* of a built-in model (:data:`EDIT_LAYERS`); an :class:`EditError` saying how to measure it otherwise."""
    name = getattr(model, "name", None)
    if name in EDIT_LAYERS and EDIT_LAYERS[name] < model.spec.n_layers:
        return EDIT_LAYERS[name]
    raise EditError(
        f"no measured edit layer for model {name!r} (measured: {EDIT_LAYERS}): trace a few facts it knows and pass "
        "the rule's layer, e.g. ROMEHyperParams(layer=edit_layer(traces)) with locedit.editing.edit_layer "
        "(chapter 1 shows how), or choose a layer yourself: ROMEHyperParams(layer=...)"
    )
