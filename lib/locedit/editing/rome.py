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

import copy
import time
from dataclasses import asdict, dataclass, replace

import torch
from torch import nn

from locedit._checks import integer
from locedit.arch import LayerAdapter, layer_adapter, output_head
from locedit.editing.common import (
    Request,
    as_request,
    check_edit_layer,
    context_templates,
    edited_weight,
    fact_list,
    target_ids,
    token_index,
    warn_if_already_predicted,
)
from locedit.editing.edit import Edit, EditError, frozen
from locedit.editing.layers import _integer, default_edit_layer
from locedit.editing.stats import key_second_moment
from locedit.hooks import patch
from locedit.models import Model


@dataclass
class ROMEHyperParams:
    """ROME's settings; defaults are the released code's for GPT-2 XL except ``layer``.

    ``layer=None`` (the default) edits the model's measured l* (:data:`locedit.editing.layers.EDIT_LAYERS`: 5 for
    SmolLM2-135M, found with :func:`locedit.editing.edit_layer`'s rule); a model without a measured l* gets an
    :class:`EditError` saying how to find it. Any integer type is accepted (``np.int64(5)``).
    :meth:`for_model` gives the settings with the layer filled in.
    """

    layer: int | None = None  # None: the model's l*. The code: GPT-2 XL 17 of 48, GPT-2 Medium 8 of 24, GPT-J 5 of 28
    fact_token: str = "subject_last"
    v_num_grad_steps: int = 20
    v_lr: float = 0.5
    v_loss_layer: int | None = None  # None: the last layer (the code's choice: 47 for XL)
    v_weight_decay: float = 0.5
    clamp_norm_factor: float = 4.0  # 3 for GPT-2 Medium
    kl_factor: float = 0.0625
    early_stop_loss: float = 5e-2
    mom2_adjustment: bool = True
    mom2_n_samples: int = 20_000  # the code uses 100,000 Wikipedia tokens; we sample text from the model
    mom2_ridge: float = 0.0  # added to C's diagonal, as a fraction of its mean diagonal
    mom2_seq_len: int = 128  # length of the sampled sequences of the statistics corpus
    context_template_length_params: tuple[tuple[int, int], ...] = ((5, 10), (10, 10))
    context_starts: tuple[str, ...] | None = None  # the code: None (prefixes sampled from <|endoftext|> alone)
    seed: int = 0

    def __post_init__(self):
        if self.layer is not None:
            self.layer = _integer(self.layer, "ROMEHyperParams.layer")

    def for_model(self, model: Model) -> ROMEHyperParams:
        """These settings with ``layer=None`` replaced by ``model``'s l* (:func:`default_edit_layer`)."""
        return self if self.layer is not None else replace(self, layer=default_edit_layer(model))


def _check(model: Model, layer: int, loss_layer: int | None) -> None:
    if model.tokenizer is None:
        raise EditError("the model has no tokenizer; editors need one to read prompts")
    check_edit_layer(model, layer)
    if loss_layer not in (None, model.spec.n_layers - 1):
        raise EditError("only v_loss_layer=None (the last layer, the code's choice) is supported")


def _batch(model: Model, rows: list[list[int]]) -> dict[str, torch.Tensor]:
    """Right-padded ids and mask for token-id rows."""
    pad = model.tokenizer.pad_token_id or 0
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    return {"input_ids": ids.to(model.device), "attention_mask": mask.to(model.device)}


@torch.no_grad()
def keys_at(
    model: Model, layer: int, templates: list[str], subjects: list[str], fact_token: str = "subject_last"
) -> torch.Tensor:
    """Keys (MLP activations at ``layer``) at the fact token of each ``template.format(subject)``: [n, d_mlp]."""
    rows = [model.tokenizer(t.format(s))["input_ids"] for t, s in zip(templates, subjects, strict=True)]
    index = torch.tensor([token_index(model, t, s, fact_token) for t, s in zip(templates, subjects, strict=True)])
    with patch(model, record=[f"mlp_act.{layer}"], stop=True) as acts:
        model.hf(**_batch(model, rows))
    return acts[f"mlp_act.{layer}"][torch.arange(len(rows)), index].float()


def _split_rows(
    model: Model, rows: list[list[int]], split: list[int]
) -> tuple[dict[str, torch.Tensor] | None, dict[str, torch.Tensor]]:
    """Cut each row at ``split[i]``: the prefixes, left-padded to one width so that every row's cut lines up (``None``
    when every cut is 0), and the suffixes, right-padded, with the attention mask over prefix + suffix and the
    position ids of the suffix tokens."""
    pad = model.tokenizer.pad_token_id or 0
    n, c = len(rows), max(split)
    s = max(len(r) - k for r, k in zip(rows, split, strict=True))
    pre_ids = torch.full((n, c), pad, dtype=torch.long)
    pre_mask = torch.zeros_like(pre_ids)
    suf_ids = torch.full((n, s), pad, dtype=torch.long)
    suf_mask = torch.zeros_like(suf_ids)
    for i, (row, k) in enumerate(zip(rows, split, strict=True)):
        if k:
            pre_ids[i, c - k :] = torch.tensor(row[:k])
            pre_mask[i, c - k :] = 1
        suf_ids[i, : len(row) - k] = torch.tensor(row[k:])
        suf_mask[i, : len(row) - k] = 1
    device = model.device
    prefix = None
    if c:
        prefix = {
            "input_ids": pre_ids.to(device),
            "attention_mask": pre_mask.to(device),
            "position_ids": (pre_mask.cumsum(1) - 1).clamp(min=0).to(device),
        }
    suffix = {
        "input_ids": suf_ids.to(device),
        "attention_mask": torch.cat([pre_mask, suf_mask], 1).to(device),
        "position_ids": (torch.tensor(split)[:, None] + torch.arange(s)[None]).to(device),
    }
    return prefix, suffix


def optimise_value(
    model: Model,
    requests: list[Request],
    module: nn.Module,
    templates: list[str],
    hp,
    kl_prompts: tuple[str, ...] = ("{} is a",),
    log: list | None = None,
    fast: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """ROME's ``compute_v`` / MEMIT's ``compute_z``, for several requests at once: the output of ``module`` at each
    subject's fact token that makes the model say its ``target_new``. Returns (v_init, v*), both [n, d_model];
    v_init is the unchanged output in each request's first prompt.

    Each request has its own δ, its own prompts and its own loss; they share forward passes only, so the result is
    what separate runs give (a request that reaches the early-stop loss stops moving). ``hp`` supplies v_lr,
    v_num_grad_steps, v_weight_decay, clamp_norm_factor, kl_factor, early_stop_loss and fact_token. The model's
    weights are not touched: a hook adds δ during the forward passes.

    Speed (``fast=True``): δ enters at the fact token in the decoder layer l that holds ``module``, so nothing before
    that token, and nothing below layer l, depends on δ. The tokens before each prompt's fact token run once, into
    a key/value cache (rows left-padded so the fact tokens line up); the tokens from the fact token on run once
    through layers 0..l−1 (their residual stream entering layer l is kept); each optimisation step then runs only
    those tokens through layers l..L−1 (through the family's :class:`~locedit.arch.LayerAdapter`; a family without
    one runs them through every layer), and applies the output head (a [vocab, d_model] product, the largest in a
    small model) only at the (row, position) pairs the loss reads. ``fast=False`` runs every step on whole prompts
    through the whole model (the reference; same losses to ~1e-6).
    """
    tok = model.tokenizer
    n = len(requests)
    rows, index, owner, targets, is_kl = [], [], [], [], []
    n_targets = []
    for j, request in enumerate(requests):
        target = target_ids(model, request.target_new)
        n_targets.append(len(target))
        for t in templates:
            template = t.format(request.prompt)
            row = tok(template.format(request.subject))["input_ids"] + target[:-1]
            rows.append(row)
            index.append(token_index(model, template, request.subject, hp.fact_token))
            targets.append(target)
            owner.append(j)
            is_kl.append(False)
        for k in kl_prompts:
            rows.append(tok(k.format(request.subject))["input_ids"])
            index.append(token_index(model, k, request.subject, hp.fact_token))
            targets.append(None)
            owner.append(j)
            is_kl.append(True)
    split = list(index) if fast else [0] * len(rows)
    prefix, suffix = _split_rows(model, rows, split)
    device = model.device
    col = torch.tensor([i - k for i, k in zip(index, split, strict=True)], device=device)  # δ's column per row
    # the (row, column) positions the loss reads: the fact token of KL rows, the positions before each target token
    reads: list[tuple[int, int, int]] = []  # (row, column, token) for NLL; token -1 marks a KL read
    for i, target in enumerate(targets):
        if target is None:
            reads.append((i, int(col[i]), -1))
        else:
            first = len(rows[i]) - (len(target) - 1) - split[i] - 1  # column predicting the first target token
            reads += [(i, first + m, token) for m, token in enumerate(target)]
    read_row = torch.tensor([r for r, _, _ in reads], device=device)
    read_col = torch.tensor([c for _, c, _ in reads], device=device)
    read_tok = torch.tensor([t for _, _, t in reads], device=device)
    read_kl = read_tok < 0
    owner_t = torch.tensor(owner, device=device)
    kl_mask = torch.tensor(is_kl, device=device)
    n_rw = torch.bincount(owner_t[~kl_mask], minlength=n).float()
    n_kl = torch.bincount(owner_t[kl_mask], minlength=n).float()
    n_tgt = torch.tensor(n_targets, dtype=torch.float, device=device)
    first_row = torch.tensor([owner.index(j) for j in range(n)], device=device)

    past = None
    if prefix is not None:
        with torch.no_grad():
            past = model.hf.base_model(**prefix, use_cache=True).cache
    adapter = layer_adapter(model.spec) if fast else None
    start, entering = 0, None  # the layer δ enters at; the suffix's residual stream entering it
    if adapter is not None:
        start = _layer_of(model, module)
        entering = _stream_into(model, start, suffix, past)

    delta = torch.zeros(n, model.spec.d_model, device=device, requires_grad=True)
    optimiser = torch.optim.Adam([delta], lr=hp.v_lr)
    state: dict = {}
    all_rows = torch.arange(len(rows), device=device)

    def hook(_module, _args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        if "v_init" not in state:
            state["v_init"] = hidden[first_row, col[first_row]].detach().float().clone()
        hidden = hidden.clone()
        hidden[all_rows, col] = hidden[all_rows, col] + delta[owner_t].to(hidden.dtype)
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    handle = module.register_forward_hook(hook)
    kl_init = None
    done = torch.zeros(n, dtype=torch.bool, device=device)
    try:
        with frozen(model), torch.enable_grad():
            for step in range(hp.v_num_grad_steps):
                optimiser.zero_grad()
                cache = copy.deepcopy(past) if past is not None else None
                if entering is None:
                    hidden = model.hf.base_model(**suffix, cache=cache, use_cache=cache is not None).last_hidden_state
                    logits = output_head(model.hf, model.spec, hidden[read_row, read_col])  # only where read
                else:
                    hidden = _layers_from(model, adapter, start, entering, suffix, cache)
                    logits = adapter.logits(model.hf, model.spec, hidden[read_row, read_col])
                logprobs = logits.float().log_softmax(-1)  # [reads, vocab]
                # KL on the next-token distribution at the fact token of the KL prompts
                kl_logits = logprobs[read_kl]
                if kl_init is None:
                    kl_init = kl_logits.detach().clone()
                # the code's kl_div(init, current, log_target=True) is KL(P_current || P_init)
                kl_each = (kl_logits.exp() * (kl_logits - kl_init)).sum(-1)
                kl_owner = owner_t[read_row[read_kl]]
                kl_req = torch.zeros(n, device=device).index_add(0, kl_owner, kl_each) / n_kl.clamp(min=1)
                # NLL of the target tokens, mean over tokens, then over the request's prompts
                picked = logprobs[~read_kl].gather(1, read_tok[~read_kl, None])[:, 0]
                nll_owner = owner_t[read_row[~read_kl]]
                denom = n_tgt[nll_owner] * n_rw[nll_owner]
                nll_req = torch.zeros(n, device=device).index_add(0, nll_owner, -picked / denom)
                decay = hp.v_weight_decay * delta.norm(dim=1) / state["v_init"].norm(dim=1) ** 2
                loss_req = nll_req + hp.kl_factor * kl_req + decay
                if log is not None:
                    log.append(
                        {"step": step, "loss": loss_req.detach().tolist(), "nll": nll_req.detach().tolist(),
                         "p_target": torch.exp(-nll_req).detach().tolist()}
                    )  # fmt: skip
                done = done | (loss_req.detach() < hp.early_stop_loss)
                if bool(done.all()) or step == hp.v_num_grad_steps - 1:
                    break
                kept = delta.detach().clone()
                loss_req[~done].sum().backward()
                optimiser.step()
                with torch.no_grad():
                    delta[done] = kept[done]  # finished requests stop moving
                    max_norm = hp.clamp_norm_factor * state["v_init"].norm(dim=1)
                    norms = delta.norm(dim=1)
                    scale = torch.where(norms > max_norm, max_norm / norms.clamp(min=1e-12), torch.ones_like(norms))
                    delta.mul_(scale[:, None])
    finally:
        handle.remove()
    v_init = state["v_init"]
    return v_init, v_init + delta.detach().float()


def _layer_of(model: Model, module: nn.Module) -> int:
    """The index of the decoder layer that holds ``module`` (or is it)."""
    for j, block in enumerate(model.spec.blocks(model.hf)):
        if module is block or any(m is module for m in block.modules()):
            return j
    raise EditError("the module to optimise at is not inside a decoder layer of this model")


@torch.no_grad()
def _stream_into(model: Model, layer: int, inputs: dict[str, torch.Tensor], past) -> torch.Tensor:
    """The residual stream entering decoder layer ``layer`` in the model's own forward pass over ``inputs``
    (after the cached ``past``, left untouched): [batch, seq, d_model]. Layer ``layer`` and those above are not run."""
    cache = copy.deepcopy(past) if past is not None else None
    with patch(model, record=[f"resid_pre.{layer}"], stop=True) as acts:
        model.hf(**inputs, cache=cache, use_cache=cache is not None)
    return acts[f"resid_pre.{layer}"]


def _layers_from(
    model: Model, adapter: LayerAdapter, start: int, hidden: torch.Tensor, inputs: dict[str, torch.Tensor], cache
) -> torch.Tensor:
    """Decoder layers ``start``.. of ``inputs``' tokens from their residual stream ``hidden`` [batch, seq, d_model]
    entering layer ``start`` (earlier positions' keys and values in ``cache``, updated in place); returns the last
    layer's output, before the final norm."""
    blocks = model.spec.blocks(model.hf)
    kwargs = adapter.layer_kwargs(model.hf, hidden, inputs["attention_mask"], cache, inputs["position_ids"])
    for j in range(start, model.spec.n_layers):
        hidden = blocks[j](hidden, cache=cache, **kwargs[j])
    return hidden


def by_suffix_length(model: Model, requests: list[Request], fact_token: str) -> list[int]:
    """Indices of ``requests``, shortest first, by the tokens an optimisation step runs for each: from the fact token
    to the end of the prompt, plus the target. A batch pads every row to its longest, so batching requests of
    similar length wastes less: on chapter 1's 100 facts, padding falls from 34% to 6% of the positions in batches of
    16 (MEMIT's) and from 13% to 1% in pairs (``rome_each``'s)."""

    def steps_tokens(r: Request) -> int:
        prompt = len(model.tokenizer(r.text)["input_ids"])
        return prompt - token_index(model, r.prompt, r.subject, fact_token) + len(target_ids(model, r.target_new))

    return sorted(range(len(requests)), key=lambda i: steps_tokens(requests[i]))


def optimise_values(
    model: Model, requests: list[Request], module: nn.Module, templates: list[str], hp, batch_size: int
) -> tuple[torch.Tensor, list[list[dict]]]:
    """:func:`optimise_value` for many requests, ``batch_size`` of similar length at a time (:func:`by_suffix_length`).
    Returns v* [n, d_model] and each request's own optimisation log, both in the order of ``requests``."""
    v_star = torch.empty(len(requests), model.spec.d_model)
    logs: list[list[dict]] = [[] for _ in requests]
    order = by_suffix_length(model, requests, hp.fact_token)
    for b in range(0, len(order), batch_size):
        part = order[b : b + batch_size]
        part_log: list = []
        v_star[part] = optimise_value(model, [requests[i] for i in part], module, templates, hp, log=part_log)[1].cpu()
        for j, i in enumerate(part):
            logs[i] = [{k: (v[j] if isinstance(v, list) else v) for k, v in step.items()} for step in part_log]
    return v_star.to(model.device), logs


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
    if hparams is not None and not isinstance(hparams, ROMEHyperParams):
        raise TypeError(f"hparams must be a ROMEHyperParams, got {type(hparams).__name__}")
    facts = fact_list(facts, "rome_each", one="rome(model, fact)")
    if not facts:
        raise EditError("no facts to edit: pass a non-empty list of CounterFact records or requests")
    hp = (hparams or ROMEHyperParams()).for_model(model)
    _check(model, hp.layer, hp.v_loss_layer)
    batch_size = integer(batch_size, "batch_size", fix="facts per batch of the value optimisation, e.g. 2")
    if batch_size < 1:
        raise EditError("batch_size must be ≥ 1")
    requests = [as_request(f) for f in facts]
    warn_if_already_predicted(model, requests, "ROME")
    name, weight, transposed = edited_weight(model, hp.layer)
    started = time.perf_counter()
    templates = context_templates(model, hp.context_template_length_params, starts=hp.context_starts, seed=hp.seed)
    # Step 1: the keys k* (averaged over prefixes) and the directions u = C⁻¹k* / ‖C⁻¹k*‖.
    prompts = [t.format(r.prompt) for r in requests for t in templates]
    subjects = [r.subject for r in requests for _ in templates]
    k_star = keys_at(model, hp.layer, prompts, subjects, hp.fact_token).reshape(len(requests), len(templates), -1)
    k_star = k_star.mean(1)  # [n, d_mlp]
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
