"""MEMIT, Mass-Editing Memory in a Transformer (Meng et al. 2023; code ``memit/memit_main.py``).

Many facts at once, spread over a range R of MLP layers:

1. for each fact i, z_i = the residual stream at the top layer of R (at the subject's last token) that makes the
   model say o*_i, found as in ROME (δ added to that layer's output; :func:`locedit.editing.values.optimise_value`);
2. for each layer l in R, bottom to top: K_l = the facts' keys at l (averaged over the prefixes, recomputed with
   the updates of the layers below in place), R = (Z − current top-layer residuals) / (layers left), and
   ΔW_l = R K_lᵀ (λ C_l + K_l K_lᵀ)⁻¹, with C_l = E[k kᵀ] and λ = ``mom2_update_weight``.

Defaults are the released code's for GPT-J (clamp 0.75, 25 steps, lr 0.5, KL 0.0625, λ 15000, prefixes: five
10-token samples from "The", "Therefore", "Because", "I", "You"). The layer range defaults to the model's
:func:`~locedit.editing.layers.memit_layers`: the 4 layers ending at its measured l* (2–5 for SmolLM2-135M).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace

import torch

from locedit.editing.common import context_templates, edited_weight, token_index
from locedit.editing.edit import Edit, restoring
from locedit.editing.layers import default_edit_layer, layer_index, memit_layers
from locedit.editing.rome import prefixed_keys
from locedit.editing.stats import key_second_moment
from locedit.editing.values import ValueHyperParams, edit_requests, optimise_values
from locedit.hooks import patch
from locedit.models import Model
from locedit.tokens import pad_id, pad_rows


@dataclass(kw_only=True)
class MEMITHyperParams(ValueHyperParams):
    """MEMIT's settings; defaults are the released code's for GPT-J except ``layers``. All but ``layers`` are
    keyword-only; the value optimisation's settings are :class:`~locedit.editing.values.ValueHyperParams`', with
    MEMIT's own defaults below.

    ``layers=None`` (the default) spreads the update over ``memit_layers(l*)``, the 4 layers ending at the model's
    measured l* (:mod:`locedit.editing.layers`); any integer types are accepted. :meth:`for_model` fills them in.
    """

    # None: memit_layers(the model's l*). The code: GPT-J 3..8 of 28
    layers: tuple[int, ...] | None = field(default=None, kw_only=False)
    v_num_grad_steps: int = 25
    clamp_norm_factor: float = 0.75
    mom2_update_weight: float = 15_000.0
    context_template_length_params: tuple[tuple[int, int], ...] = ((10, 5),)
    context_starts: tuple[str, ...] = ("The", "Therefore", "Because", "I", "You")
    z_batch: int = 16  # facts whose z are optimised in one batch of forward passes

    def __post_init__(self):
        if self.layers is not None:
            if isinstance(self.layers, (str, bytes)) or not hasattr(self.layers, "__iter__"):
                raise TypeError(
                    f"MEMITHyperParams.layers must be a sequence of layer indices such as (2, 3, 4, 5), got "
                    f"{type(self.layers).__name__} {self.layers!r}"
                )
            self.layers = tuple(layer_index(x, "MEMITHyperParams.layers[i]") for x in self.layers)

    def for_model(self, model: Model) -> MEMITHyperParams:
        """These settings with ``layers=None`` replaced by ``memit_layers(model's l*)``."""
        return self if self.layers is not None else replace(self, layers=memit_layers(default_edit_layer(model)))

    @property
    def edited_layers(self) -> tuple[int, ...]:
        """``layers`` (empty while ``None``)."""
        return self.layers or ()


@torch.no_grad()
def _residuals(model: Model, layer: int, requests, fact_token: str) -> torch.Tensor:
    """Residual stream after block ``layer`` at each bare prompt's fact token: [n, d_model]."""
    rows = [model.tokenizer(r.text)["input_ids"] for r in requests]
    index = torch.tensor([token_index(model, r.prompt, r.subject, fact_token) for r in requests])
    with patch(model, record=[f"resid_post.{layer}"], stop=True) as acts:
        model.hf(**pad_rows(rows, pad_id(model), "right", model.device))
    return acts[f"resid_post.{layer}"][torch.arange(len(rows)), index].float()


def memit(model: Model, facts, hparams: MEMITHyperParams | None = None, verbose: bool = False) -> Edit:
    """Edit all ``facts`` at once; returns an :class:`Edit` (not applied; the weights are restored on return)."""
    hp, requests = edit_requests(model, facts, hparams, MEMITHyperParams, "memit")
    layers = sorted(hp.layers)
    weights = {layer: edited_weight(model, layer) for layer in layers}
    started = time.perf_counter()
    top = layers[-1]
    templates = context_templates(model, hp.context_template_length_params, starts=hp.context_starts, seed=hp.seed)
    # 1. target residuals z_i at the top layer
    block = model.spec.block(model.hf, top)
    zs, _ = optimise_values(model, requests, block, templates, hp, hp.z_batch)  # [n, d_model]
    t_z = time.perf_counter() - started
    # 2. key statistics of every layer, from the unedited model, in one pass
    covs = key_second_moment(model, layers, n_tokens=hp.mom2_n_samples, seq_len=hp.mom2_seq_len, seed=hp.seed)
    names = [weights[layer][0] for layer in layers]
    deltas: dict[str, torch.Tensor] = {}
    log = []
    with restoring(model, names):
        for i, layer in enumerate(layers):
            name, weight, transposed = weights[layer]
            ks = prefixed_keys(model, layer, requests, templates, hp.fact_token).T.double()  # [d_mlp, n]
            current = _residuals(model, top, requests, hp.fact_token)
            targets = (zs - current).T.double()  # [d_model, n]
            cov = covs[layer].double()
            adj = torch.linalg.solve(hp.mom2_update_weight * cov + ks @ ks.T, ks)  # [d_mlp, n]
            resid = targets / (len(layers) - i)
            update = (resid @ adj.T).float()  # [d_model, d_mlp]
            if transposed:
                update = update.T
            with torch.no_grad():
                weight.add_(update.to(weight.dtype))
            deltas[name] = update.to(weight.dtype).cpu()
            log.append({"layer": layer, "residual_norm": float(targets.norm(dim=0).mean()),
                        "update_norm": float(update.norm())})  # fmt: skip
    info = {
        "requests": [asdict(r) for r in requests],
        "hparams": asdict(hp),
        "layers": log,
        "seconds_z": round(t_z, 2),
        "seconds": round(time.perf_counter() - started, 2),
    }
    if verbose:
        print(f"MEMIT: {len(requests)} facts over layers {layers}, {info['seconds']} s (z: {info['seconds_z']} s)")
    return Edit(deltas, method="MEMIT", info=info)
