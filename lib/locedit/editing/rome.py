"""ROME, Rank-One Model Editing (Meng et al. 2022, §3.1 and App. E.5; the released code's ``rome/``).

The MLP output projection W at layer l* is treated as a linear associative memory: key k (its input, at the last
subject token) → value v (its output). ROME

1. computes k*, the key at the subject's last token, averaged over the prompt behind 20 sampled prefixes plus
   the bare prompt (``compute_u``);
2. finds v* by gradient descent on a vector δ added to W's output at that token, minimising
   −log P[o* | prefix + prompt] (mean over target tokens, then prompts) + KL on "{subject} is a" to keep the
   subject's essence + a decay term, with ‖δ‖ clamped (``compute_v``);
3. writes the rank-one update Ŵ = W + Λ (C⁻¹k*)ᵀ with Λ = (v* − W k) / ((C⁻¹k*)ᵀ k), k the bare prompt's key,
   so that Ŵ k = v* exactly (C = E[k kᵀ], :mod:`locedit.editing.stats`).

Hyper-parameters default to the released code's (``hparams/ROME/gpt2-xl.json``).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace

import torch

from locedit._checks import integer
from locedit.editing.common import Request, context_templates, edited_weight, token_index
from locedit.editing.edit import Edit, EditError
from locedit.editing.layers import default_edit_layer, layer_index
from locedit.editing.stats import key_second_moment
from locedit.editing.values import ValueHyperParams, edit_requests, optimise_values
from locedit.hooks import patch
from locedit.models import Model
from locedit.tokens import pad_id, pad_rows


@dataclass(kw_only=True)
class ROMEHyperParams(ValueHyperParams):
    """ROME's settings; defaults are the released code's for GPT-2 XL except ``layer``. The value optimisation's
    settings and their defaults are :class:`~locedit.editing.values.ValueHyperParams`'; all but ``layer`` are
    keyword-only.

    ``layer=None`` (the default) edits the model's measured l* (:data:`locedit.editing.layers.EDIT_LAYERS`: 5 for
    SmolLM2-135M, found with :func:`locedit.editing.edit_layer`'s rule); a model without a measured l* gets an
    :class:`EditError` saying how to find it. Any integer type is accepted (``np.int64(5)``).
    :meth:`for_model` gives the settings with the layer filled in.
    """

    # None: the model's l*. The code: GPT-2 XL 17 of 48, GPT-2 Medium 8 of 24, GPT-J 5 of 28
    layer: int | None = field(default=None, kw_only=False)
    mom2_adjustment: bool = True
    mom2_ridge: float = 0.0  # added to C's diagonal, as a fraction of its mean diagonal

    def __post_init__(self):
        if self.layer is not None:
            self.layer = layer_index(self.layer, "ROMEHyperParams.layer")

    def for_model(self, model: Model) -> ROMEHyperParams:
        """These settings with ``layer=None`` replaced by ``model``'s l* (:func:`default_edit_layer`)."""
        return self if self.layer is not None else replace(self, layer=default_edit_layer(model))

    @property
    def edited_layers(self) -> tuple[int, ...]:
        """``(layer,)`` (empty while ``layer`` is ``None``)."""
        return () if self.layer is None else (self.layer,)


@torch.no_grad()
def keys_at(
    model: Model, layer: int, templates: list[str], subjects: list[str], fact_token: str = "subject_last"
) -> torch.Tensor:
    """Keys (MLP activations at ``layer``) at the fact token of each ``template.format(subject)``: [n, d_mlp]."""
    rows = [model.tokenizer(t.format(s))["input_ids"] for t, s in zip(templates, subjects, strict=True)]
    index = torch.tensor([token_index(model, t, s, fact_token) for t, s in zip(templates, subjects, strict=True)])
    with patch(model, record=[f"mlp_act.{layer}"], stop=True) as acts:
        model.hf(**pad_rows(rows, pad_id(model), "right", model.device))
    return acts[f"mlp_act.{layer}"][torch.arange(len(rows)), index].float()


def prefixed_keys(
    model: Model, layer: int, requests: list[Request], templates: list[str], fact_token: str
) -> torch.Tensor:
    """Each request's key at ``layer`` averaged over its prompt behind each prefix of ``templates`` (ROME's k*,
    MEMIT's columns of K_l): [n, d_mlp]."""
    prompts = [t.format(r.prompt) for r in requests for t in templates]
    subjects = [r.subject for r in requests for _ in templates]
    keys = keys_at(model, layer, prompts, subjects, fact_token)
    return keys.reshape(len(requests), len(templates), -1).mean(1)


@torch.no_grad()
def _input_output(model: Model, layer: int, request: Request, fact_token: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The MLP output projection's input (key) and output (value) at the fact token of the bare prompt."""
    module = model.spec.part(model.hf, "mlp_down", layer)
    idx = token_index(model, request.prompt, request.subject, fact_token)
    seen = {}
    handle = module.register_forward_hook(lambda _m, args, out: seen.update(k=args[0][0, idx], v=out[0, idx]))
    try:
        model.hf(**model.encode(request.text))
    finally:
        handle.remove()
    return seen["k"].float(), seen["v"].float()


def solve_c(c: torch.Tensor, x: torch.Tensor, ridge: float = 0.0) -> torch.Tensor:
    """C⁻¹ x in float64 (with ``ridge`` × mean diagonal added to C's diagonal)."""
    c = c.double()
    if ridge:
        c = c + ridge * c.diagonal().mean() * torch.eye(len(c), dtype=c.dtype, device=c.device)
    return torch.linalg.solve(c, x.double().to(c.device))


def rome(model: Model, fact, hparams: ROMEHyperParams | None = None, verbose: bool = False) -> Edit:
    """One ROME edit of ``fact`` (a CounterFact record, its requested_rewrite, or a :class:`Request`).

    Returns an :class:`~locedit.editing.edit.Edit` (not applied). The model's weights are untouched. Refused: a
    ``target_new`` equal to ``target_true`` (:class:`EditError`); warned about: a ``target_new`` whose first token
    the model already predicts after the prompt (``UserWarning`` naming the fact).
    """
    if isinstance(fact, (list, tuple)):
        raise TypeError("rome edits one fact; for a list of facts call rome_each(model, facts)")
    return rome_each(model, [fact], hparams, verbose)[0]


def rome_each(
    model: Model, facts: list, hparams: ROMEHyperParams | None = None, verbose: bool = False, batch_size: int = 2
) -> list[Edit]:
    """One *independent* ROME edit per fact (each to be applied on its own, as in the paper's evaluation), computed
    together: the keys in one forward pass and the values in batched optimisations of ``batch_size`` facts of
    similar length (:func:`by_suffix_length`; each fact has its own δ and loss, so the edits are those :func:`rome`
    gives one at a time, to float rounding).

    ``batch_size`` bounds memory: with the paper's 21 prompts a fact holds about 320 MB of activations for the
    backward pass on SmolLM2 (100 facts at once would need 32 GB). Two facts at a time was the fastest per fact on
    a 2-core CPU (1.6 s per two-step fact against 2.1 s alone and 2.6 s in batches of 8).

    To write many facts into one model at once, use :func:`locedit.editing.memit` instead: these edits are not
    meant to be summed.
    """
    batch_size = integer(batch_size, "batch_size", fix="facts per batch of the value optimisation, e.g. 2")
    if batch_size < 1:
        raise EditError("batch_size must be ≥ 1")
    hp, requests = edit_requests(model, facts, hparams, ROMEHyperParams, "rome_each", one="rome(model, fact)")
    name, weight, transposed = edited_weight(model, hp.layer)
    started = time.perf_counter()
    templates = context_templates(model, hp.context_template_length_params, starts=hp.context_starts, seed=hp.seed)
    # Step 1: the keys k* (averaged over prefixes) and the directions u = C⁻¹k* / ‖C⁻¹k*‖.
    k_star = prefixed_keys(model, hp.layer, requests, templates, hp.fact_token)  # [n, d_mlp]
    if hp.mom2_adjustment:
        c = key_second_moment(model, hp.layer, n_tokens=hp.mom2_n_samples, seq_len=hp.mom2_seq_len, seed=hp.seed)
        u = solve_c(c, k_star.T, hp.mom2_ridge).T  # [n, d_mlp]
    else:
        u = k_star.double()
    u = (u / u.norm(dim=1, keepdim=True)).float()
    # Step 2: the values v*, ``batch_size`` facts of similar length at a time.
    module = model.spec.part(model.hf, "mlp_down", hp.layer)
    v_star, logs = optimise_values(model, requests, module, templates, hp, batch_size)
    seconds = round(time.perf_counter() - started, 2)
    # Step 3: the rank-one updates, each exact on its bare prompt's key.
    edits = []
    for i, request in enumerate(requests):
        k_cur, v_cur = _input_output(model, hp.layer, request, hp.fact_token)
        right = (v_star[i] - v_cur) / torch.dot(k_cur, u[i])
        delta = torch.outer(right, u[i])  # [d_model, d_mlp]
        if transposed:
            delta = delta.T
        steps = logs[i]
        info = {
            "request": asdict(request),
            "hparams": asdict(hp),
            "layer": hp.layer,
            "v_star": v_star[i].detach().cpu(),
            "steps": steps,
            "seconds": seconds if len(requests) == 1 else round(seconds / len(requests), 2),
        }
        if verbose:
            print(
                f"ROME layer {hp.layer}: {len(steps)} steps, p(target) {steps[0]['p_target']:.3f} → "
                f"{steps[-1]['p_target']:.3f}, ‖ΔW‖ {delta.norm():.3f}, {seconds} s"
                + (f" for {len(requests)} facts" if len(requests) > 1 else "")
            )
        edits.append(Edit({name: delta.to(weight.dtype).detach().cpu()}, method="ROME", info=info))
    return edits
