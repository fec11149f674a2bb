"""FT-L: constrained fine-tuning of one layer's MLP (the baseline of ROME's Table 4; code ``baselines/ft``).

Adam on the NLL of ``target_new`` after the prompt, updating only the MLP output projection at ``layer`` (or the
whole MLP with ``whole_mlp=True``), and after every step clamping each weight to within ``norm_constraint``
of its original value (an L∞ ball). Defaults are the released code's FT-L settings (lr 5e-4, 25 steps,
norm_constraint 5e-4). One difference: the code scores every target token at the prompt's last position; we
teacher-force the target tokens (the NLL the metrics use).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace

import torch

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
    ids, mask, labels = _rows(model, requests)
    log = []
    with restoring(model, names) as originals, frozen(model), torch.enable_grad():
        trained = [params[n] for n in names]
        for p in trained:
            p.requires_grad_(True)
        optimiser = torch.optim.Adam(trained, lr=hp.lr, weight_decay=hp.weight_decay)
        for step in range(hp.num_steps):
            optimiser.zero_grad()
            loss = _row_nll(model.hf(input_ids=ids, attention_mask=mask).logits, labels).mean()
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
        ids, mask, labels = _rows(model, chunk)
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
                    loss = _row_nll(model.hf(input_ids=ids, attention_mask=mask).logits, labels)  # [n]
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


def _rows(model: Model, requests) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded prompt + target ids, mask and labels (-100 except on the target tokens): [n, T] each."""
    tok = model.tokenizer
    rows, spans = [], []
    for r in requests:
        target = target_ids(model, r.target_new)
        prompt = tok(r.text)["input_ids"]
        rows.append(prompt + target)
        spans.append((len(prompt), target))
    batch = pad_rows(rows, pad_id(model), "right", model.device)
    labels = torch.full_like(batch["input_ids"], -100, device="cpu")
    for i, (start, target) in enumerate(spans):
        labels[i, start : start + len(target)] = torch.tensor(target)
    return batch["input_ids"], batch["attention_mask"], labels.to(model.device)


def _row_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean NLL of the labelled tokens of each row: [n]."""
    logits, shifted = logits[:, :-1].float(), labels[:, 1:]
    valid = shifted != -100
    picked = logits.log_softmax(-1).gather(2, shifted.clamp(min=0)[..., None])[..., 0]
    return -(picked * valid).sum(1) / valid.sum(1)
