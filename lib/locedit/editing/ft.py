"""FT-L: constrained fine-tuning of one layer's MLP (the baseline of ROME's Table 4; code ``baselines/ft``).

Adam on the NLL of ``target_new`` after the prompt, updating only the MLP output projection at ``layer`` (or the
whole MLP with ``whole_mlp=True``), and after every step clamping each weight to within ``norm_constraint``
of its original value (an L∞ ball). Defaults are the released code's FT-L settings (lr 5e-4, 25 steps,
norm_constraint 5e-4). One difference: the code scores every target token at the prompt's last position; we
teacher-force the target tokens (the NLL the metrics use).

The loss, :func:`target_loss` on :func:`target_rows`, is shared with chapter 5's masked fine-tuning
(:mod:`locedit.circuits.circuit_editing`): the mean NLL of each target's tokens after its prompt, with the logits of
only the positions that predict a target token computed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import NamedTuple

import torch
from torch.nn import functional as F

from locedit._checks import integer
from locedit.editing.common import (
    as_request,
    check_edit_layer,
    edited_weight,
    fact_list,
    target_ids,
    warn_if_already_predicted,
)
from locedit.editing.edit import Edit, EditError, frozen, restoring
from locedit.editing.layers import default_edit_layer, layer_index
from locedit.models import Model
from locedit.progress import progress
from locedit.tokens import pad_id, pad_rows


@dataclass
class FTHyperParams:
    """FT-L's settings (the released code's). ``layer=None`` (the default): the model's measured l*, as ROME's."""

    layer: int | None = None
    num_steps: int = 25
    lr: float = 5e-4
    weight_decay: float = 0.0
    norm_constraint: float | None = 5e-4  # None: unconstrained fine-tuning (FT)
    early_stop_loss: float = 1e-2
    whole_mlp: bool = False

    def __post_init__(self):
        if self.layer is not None:
            self.layer = layer_index(self.layer, "FTHyperParams.layer")

    def for_model(self, model: Model) -> FTHyperParams:
        """These settings with ``layer=None`` replaced by ``model``'s l*."""
        return self if self.layer is not None else replace(self, layer=default_edit_layer(model))


def _hparams(hparams, model: Model) -> FTHyperParams:
    if hparams is not None and not isinstance(hparams, FTHyperParams):
        raise TypeError(f"hparams must be an FTHyperParams, got {type(hparams).__name__}")
    return (hparams or FTHyperParams()).for_model(model)


def ft(model: Model, facts, hparams: FTHyperParams | None = None) -> Edit:
    """Fine-tune on one fact or a list of facts; returns an :class:`Edit` (not applied; weights untouched)."""
    facts = fact_list(facts, "ft")
    if not facts:
        raise EditError("no facts to edit: pass one fact or a non-empty list")
    hp = _hparams(hparams, model)
    check_edit_layer(model, hp.layer)
    requests = [as_request(f) for f in facts]
    warn_if_already_predicted(model, requests, "FT")
    name, weight, _ = edited_weight(model, hp.layer)
    if hp.whole_mlp:
        mlp = model.spec.part(model.hf, "mlp", hp.layer)
        by_id = {id(p): n for n, p in model.hf.named_parameters()}
        names = [by_id[id(p)] for p in mlp.parameters()]
    else:
        names = [name]
    params = dict(model.hf.named_parameters())
    started = time.perf_counter()
    rows = _rows(model, requests)
    log = []
    with restoring(model, names) as originals, frozen(model), torch.enable_grad():
        trained = [params[n] for n in names]
        for p in trained:
            p.requires_grad_(True)
        optimiser = torch.optim.Adam(trained, lr=hp.lr, weight_decay=hp.weight_decay)
        for step in range(hp.num_steps):
            optimiser.zero_grad()
            loss = target_loss(model, rows).mean()
            log.append({"step": step, "loss": loss.item()})
            if loss.item() < hp.early_stop_loss:
                break
            loss.backward()
            optimiser.step()
            if hp.norm_constraint is not None:
                with torch.no_grad():
                    for n, p in zip(names, trained, strict=True):
                        eps = hp.norm_constraint
                        p.copy_(torch.clamp(p, originals[n] - eps, originals[n] + eps))
        deltas = {n: (params[n].detach() - originals[n]).cpu() for n in names}
    info = {
        "requests": [asdict(r) for r in requests],
        "hparams": asdict(hp),
        "steps": log,
        "seconds": round(time.perf_counter() - started, 2),
    }
    return Edit(deltas, method="FT-L" if hp.norm_constraint is not None else "FT", info=info)


def ft_each(model: Model, facts: list, hparams: FTHyperParams | None = None, group: int = 25) -> list[Edit]:
    """One *independent* FT-L edit per fact (each applied on its own, as in the paper's evaluation), trained
    ``group`` facts at a time in one batch: each fact gets its own copy of the output projection's change ΔW_i,
    added on its own batch row by a hook (y = W k + ΔW_i k), with its own loss, Adam state (elementwise, so the
    facts do not interact), L∞ bound and early stop. Same result as :func:`ft` per fact, to float rounding; much
    faster on a CPU. Only the default setting (output projection, no weight decay) is batched; other settings
    run :func:`ft` once per fact.
    """
    facts = fact_list(facts, "ft_each", one="ft(model, fact)")
    if not facts:
        raise EditError("no facts to edit: pass a non-empty list")
    hp = _hparams(hparams, model)
    group = integer(group, "group", 1, "facts trained together in one batch, e.g. 25")
    if hp.whole_mlp or hp.weight_decay:
        return [ft(model, f, hp) for f in progress(facts, "fine-tuning facts", unit="fact")]
    check_edit_layer(model, hp.layer)
    requests = [as_request(f) for f in facts]
    warn_if_already_predicted(model, requests, "FT")
    name, weight, transposed = edited_weight(model, hp.layer)
    module = model.spec.part(model.hf, "mlp_down", hp.layer)
    d_out, d_in = (weight.shape[1], weight.shape[0]) if transposed else tuple(weight.shape)
    edits: list[Edit] = []
    for lo in progress(range(0, len(requests), group), f"fine-tuning ({group} facts a group)", unit="group"):
        chunk = requests[lo : lo + group]
        started = time.perf_counter()
        rows = _rows(model, chunk)
        n = len(chunk)
        delta = torch.zeros(n, d_out, d_in, device=weight.device, dtype=torch.float32, requires_grad=True)
        optimiser = torch.optim.Adam([delta], lr=hp.lr)

        def hook(_module, args, output, delta=delta):
            return output + torch.einsum("bti,boi->bto", args[0].float(), delta).to(output.dtype)

        handle = module.register_forward_hook(hook)
        done = torch.zeros(n, dtype=torch.bool, device=weight.device)
        losses: list[list[float]] = []
        try:
            with frozen(model), torch.enable_grad():
                for _step in range(hp.num_steps):
                    optimiser.zero_grad()
                    loss = target_loss(model, rows)  # [n]
                    losses.append(loss.detach().tolist())
                    done = done | (loss.detach() < hp.early_stop_loss)
                    if bool(done.all()):
                        break
                    kept = delta.detach().clone()
                    loss[~done].sum().backward()
                    optimiser.step()
                    with torch.no_grad():
                        delta[done] = kept[done]
                        if hp.norm_constraint is not None:
                            delta.clamp_(-hp.norm_constraint, hp.norm_constraint)
        finally:
            handle.remove()
        seconds = round((time.perf_counter() - started) / n, 2)
        for i, request in enumerate(chunk):
            change = delta[i].detach().to(weight.dtype)
            change = (change.T if transposed else change).cpu()
            info = {
                "requests": [asdict(request)],
                "hparams": asdict(hp),
                "steps": [{"step": s, "loss": step[i]} for s, step in enumerate(losses)],
                "seconds": seconds,
            }
            edits.append(Edit({name: change}, method="FT-L" if hp.norm_constraint is not None else "FT", info=info))
    return edits


class TargetRows(NamedTuple):
    """Teacher-forced rows for the NLL of targets after prompts (:func:`target_rows`)."""

    ids: torch.Tensor  # [n, T] each prompt + its target without the last token, right-padded
    mask: torch.Tensor  # [n, T] 1 on tokens, 0 on padding
    labels: torch.Tensor  # [n, keep] the token each of the last keep positions predicts, -100 where none


def target_rows(model: Model, prompts: Sequence[Sequence[int]], targets: Sequence[Sequence[int]]) -> TargetRows:
    """The rows :func:`target_loss` reads, for target token ids ``targets[i]`` after prompt ids ``prompts[i]``.

    The last target token is never an input, and ``keep`` (``labels.shape[1]``) reaches back to the earliest
    position that predicts a target token, so the logits of the prompts' earlier positions are never computed.
    """
    if len(prompts) != len(targets):
        raise ValueError(f"{len(prompts)} prompts but {len(targets)} targets")
    if not prompts:
        raise ValueError("no rows: give at least one prompt and target")
    if not all(len(p) and len(t) for p, t in zip(prompts, targets, strict=True)):
        raise ValueError("every prompt and every target needs at least one token")
    rows = [[*p, *t[:-1]] for p, t in zip(prompts, targets, strict=True)]
    batch = pad_rows(rows, pad_id(model), "right", model.device)
    first = min(len(p) for p in prompts) - 1  # the earliest position predicting a target token
    keep = batch["input_ids"].shape[1] - first
    labels = torch.full((len(prompts), keep), -100, dtype=torch.long)
    for i, (prompt, target) in enumerate(zip(prompts, targets, strict=True)):
        start = len(prompt) - 1 - first
        labels[i, start : start + len(target)] = torch.tensor(target)
    return TargetRows(batch["input_ids"], batch["attention_mask"], labels.to(model.device))


def target_loss(model: Model, rows: TargetRows) -> torch.Tensor:
    """The mean NLL of each row's target tokens after its prompt, teacher-forced, differentiable: float32 [n].

    One forward pass computing the logits of the last ``rows.labels.shape[1]`` positions only (``logits_to_keep``).
    """
    keep = rows.labels.shape[1]
    logits = model.hf(input_ids=rows.ids, attention_mask=rows.mask, logits_to_keep=keep, use_cache=False).logits
    nll = F.cross_entropy(logits.float().flatten(0, 1), rows.labels.flatten(), reduction="none")  # 0 at -100
    return nll.view_as(rows.labels).sum(1) / (rows.labels != -100).sum(1)


def _rows(model: Model, requests) -> TargetRows:
    """The :func:`target_rows` of the requests' prompts and ``target_new`` tokens."""
    tok = model.tokenizer
    return target_rows(
        model, [tok(r.text)["input_ids"] for r in requests], [target_ids(model, r.target_new) for r in requests]
    )
