"""The value optimisation ROME and MEMIT share: the output of a module at each subject's fact token that makes the
model say a new object (ROME's ``compute_v``, MEMIT's ``compute_z``), and the settings it reads
(:class:`ValueHyperParams`, which :class:`~locedit.editing.rome.ROMEHyperParams` and
:class:`~locedit.editing.memit.MEMITHyperParams` extend).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Self, TypeVar

import torch
from torch import nn

from locedit.arch import LayerAdapter, layer_adapter, output_head
from locedit.editing.common import (
    Request,
    as_request,
    check_edit_layer,
    fact_list,
    target_ids,
    token_index,
    warn_if_already_predicted,
)
from locedit.editing.edit import EditError, frozen
from locedit.hooks import patch
from locedit.models import Model
from locedit.progress import progress
from locedit.threads import loop_threads
from locedit.tokens import pad_id, pad_rows


@dataclass(kw_only=True)
class ValueHyperParams:
    """The settings ROME and MEMIT share: the value optimisation's (:func:`optimise_value`), the prefixes'
    (:func:`~locedit.editing.common.context_templates`) and the key statistics' sample
    (:func:`~locedit.editing.stats.key_second_moment`). The defaults are ROME's (the released code's for GPT-2 XL);
    :class:`~locedit.editing.memit.MEMITHyperParams` overrides those MEMIT's code sets otherwise. Keyword-only."""

    fact_token: str = "subject_last"
    v_num_grad_steps: int = 20
    v_lr: float = 0.5
    v_loss_layer: int | None = None  # None: the last layer (the code's choice: 47 for XL)
    v_weight_decay: float = 0.5
    clamp_norm_factor: float = 4.0  # 3 for GPT-2 Medium
    kl_factor: float = 0.0625
    early_stop_loss: float = 5e-2
    mom2_n_samples: int = 20_000  # the code uses 100,000 Wikipedia tokens; we sample text from the model
    mom2_seq_len: int = 128  # length of the sampled sequences of the statistics corpus
    context_template_length_params: tuple[tuple[int, int], ...] = ((5, 10), (10, 10))
    context_starts: tuple[str, ...] | None = None  # the code: None (prefixes sampled from <|endoftext|> alone)
    seed: int = 0

    def for_model(self, model: Model) -> Self:
        """These settings with the edited layer(s) filled in for ``model`` (each editor's rule; here: unchanged)."""
        return self

    @property
    def edited_layers(self) -> tuple[int, ...]:
        """The layers whose MLP output projection the editor rewrites (once :meth:`for_model` has filled them in)."""
        return ()


H = TypeVar("H", bound=ValueHyperParams)


def edit_requests(
    model: Model, facts, hparams: H | None, kind: type[H], editor: str, one: str | None = None
) -> tuple[H, list[Request]]:
    """The entry checks ROME and MEMIT share: (settings, requests), or a clear error before any work.

    ``hparams`` must be a ``kind`` (``None``: ``kind()``) and is filled in for ``model``
    (:meth:`ValueHyperParams.for_model`); the model needs a tokenizer, every edited layer must be inside it and the
    loss read at its last layer; ``facts`` must be a non-empty list (``editor`` and ``one`` name the entry point and
    the single-fact editor in :func:`~locedit.editing.common.fact_list`'s errors), each read as a
    :class:`~locedit.editing.common.Request`. A request whose new object the model already predicts gets a warning
    (:func:`~locedit.editing.common.warn_if_already_predicted`).
    """
    method = kind.__name__.removesuffix("HyperParams")
    if hparams is not None and not isinstance(hparams, kind):
        raise TypeError(f"hparams must be a {kind.__name__}, got {type(hparams).__name__}")
    facts = fact_list(facts, editor, one=one)
    if not facts:
        raise EditError("no facts to edit: pass a non-empty list of CounterFact records or requests")
    hp = (hparams or kind()).for_model(model)
    if model.tokenizer is None:
        raise EditError("the model has no tokenizer; editors need one to read prompts")
    if not hp.edited_layers:
        raise EditError(f"{method} needs at least one layer in hparams.layers")
    for layer in hp.edited_layers:
        check_edit_layer(model, layer, f"{method}'s edited layers")
    if hp.v_loss_layer not in (None, model.spec.n_layers - 1):
        raise EditError("only v_loss_layer=None (the last layer, the code's choice) is supported")
    requests = [as_request(f) for f in facts]
    warn_if_already_predicted(model, requests, method)
    return hp, requests


def _split_rows(
    model: Model, rows: list[list[int]], split: list[int]
) -> tuple[dict[str, torch.Tensor] | None, dict[str, torch.Tensor]]:
    """Cut each row at ``split[i]``: the prefixes, left-padded to one width so that every row's cut lines up (``None``
    when every cut is 0), and the suffixes, right-padded, with the attention mask over prefix + suffix and the
    position ids of the suffix tokens."""
    pad, c = pad_id(model), max(split)
    pre = pad_rows([row[:k] for row, k in zip(rows, split, strict=True)], pad, "left", model.device, width=c)
    suffix = pad_rows([row[k:] for row, k in zip(rows, split, strict=True)], pad, "right", model.device)
    prefix = None
    if c:
        prefix = {**pre, "position_ids": (pre["attention_mask"].cumsum(1) - 1).clamp(min=0)}
    width = suffix["input_ids"].shape[1]
    suffix["attention_mask"] = torch.cat([pre["attention_mask"], suffix["attention_mask"]], 1)
    suffix["position_ids"] = (torch.tensor(split)[:, None] + torch.arange(width)[None]).to(model.device)
    return prefix, suffix


@loop_threads()
def optimise_value(
    model: Model,
    requests: list[Request],
    module: nn.Module,
    templates: list[str],
    hp: ValueHyperParams,
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

    Runs with the threads the machine can give it now (:func:`locedit.threads.loop_threads`; ``LOCEDIT_THREADS``
    overrides).
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
    model: Model,
    requests: list[Request],
    module: nn.Module,
    templates: list[str],
    hp: ValueHyperParams,
    batch_size: int,
) -> tuple[torch.Tensor, list[list[dict]]]:
    """:func:`optimise_value` for many requests, ``batch_size`` of similar length at a time (:func:`by_suffix_length`).
    Returns v* [n, d_model] and each request's own optimisation log, both in the order of ``requests``."""
    v_star = torch.empty(len(requests), model.spec.d_model)
    logs: list[list[dict]] = [[] for _ in requests]
    order = by_suffix_length(model, requests, hp.fact_token)
    for b in progress(range(0, len(order), batch_size), f"optimising values ({batch_size} facts a batch)"):
        part = order[b : b + batch_size]
        part_log: list = []
        v_star[part] = optimise_value(model, [requests[i] for i in part], module, templates, hp, log=part_log)[1].cpu()
        for j, i in enumerate(part):
            logs[i] = [{k: (v[j] if isinstance(v, list) else v) for k, v in step.items()} for step in part_log]
    return v_star.to(model.device), logs
