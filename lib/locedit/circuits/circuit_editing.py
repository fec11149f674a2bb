"""Editing inside and outside a circuit (Ge, Rudzicz, Zhu 2024, PAPERS.md §2 steps 4-5; chapter 5).

**The edit (the paper's constrained fine-tuning).** For one request (prompt, subject, target_new): plain SGD
(learning rate 5e-4, no weight decay, batch 1) on the mean NLL of the tokens of ``" " + target_new`` after the
prompt, for at most 10 steps, stopping before a step once the loss is below 1e-2. Each parameter's gradient is
multiplied by its mask (``param_masks``: hf name → bool tensor of the parameter's shape, True where the entry may
move), so only masked entries move, and after every step each entry is clamped to ±5e-4 (L∞) around its
original value. ``param_masks=None`` lets every parameter of the decoder blocks move (the paper's "full model"
row; embeddings, the final norm and the unembedding stay fixed). Each request is edited on the unedited weights:
they are restored bit-exactly after every edit, also after an exception.

**The metric (the paper's ``editor.py``, ROME's ``test_batch_prediction``).** The mean per-token NLL of
``" " + target_new`` and of ``" " + target_true`` after the rewrite prompt, before and after the edit (teacher
forced, :func:`locedit.evaluation.target_nll`): success = NLL_new < NLL_true, magnitude = exp(−NLL_new) −
exp(−NLL_true); the same over the paraphrase prompts (averaged within a request).

**Pruned networks.** ``edit_sweep(..., within=circuit)`` edits the paper's *circuit model*: every parameter outside
``circuit`` set to 0 (:func:`locedit.circuits.units.pruned`), the metric read in that network before and after.
The paper edits it with the circuit's own mask (``parameter_masks(model, circuit)``), so that pruned entries stay
0; a mask that would move a pruned entry is refused.

**Speed.** One edit is 10 forward + backward passes of one short prompt. Only parameters with a mask entry get a
gradient (autograd then stops below the lowest of them), and a linear weight whose mask is whole rows or columns
(a circuit's neurons and heads) gets the gradient of those alone (:mod:`locedit.circuits.masked_sgd`); only the
logits of the target's positions are computed (FT-L's loss, :func:`locedit.editing.ft.target_loss`); the weights
are snapshot once per sweep (restored by copying back) with the clamp bounds precomputed; the metric before the
edits runs for all requests together, and after each edit one call scores its rewrite prompt and paraphrases
against both targets. The floor is the forward and the input-gradient half of the backward pass, which any edit
of the lowest layers needs.

:func:`rome_inside_outside` runs chapter 1's ROME at the layer where a circuit holds the largest share of MLP
neurons and at the layer where it holds the smallest (the rule is in its docstring).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace

import pandas as pd
import torch

from locedit._checks import integer
from locedit.circuits.masked_sgd import DenseEntries, FeatureEntries, entries_for
from locedit.circuits.units import Circuit, parameter_masks, pruned
from locedit.editing.common import Request, as_request
from locedit.editing.edit import EditError, frozen, restoring
from locedit.editing.ft import target_loss, target_rows
from locedit.editing.rome import ROMEHyperParams, rome_each
from locedit.evaluation import evaluate, target_nll
from locedit.models import Model
from locedit.progress import progress
from locedit.tokens import target_ids


@dataclass(frozen=True)
class MaskedFTSettings:
    """The paper's edit settings (its released ``hparams`` for the hierarchy task).

    ``single_token``: refuse a request whose ``target_new`` or ``target_true`` is more than one token (the
    hierarchy requests are built from single-token hypernyms; set it to catch a request that is not).
    """

    lr: float = 5e-4
    steps: int = 10
    clamp: float = 5e-4
    early_stop_loss: float = 1e-2
    single_token: bool = False

    def __post_init__(self):
        for name in ("lr", "clamp"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ValueError(f"MaskedFTSettings.{name} must be a positive finite number, got {value!r}")
        loss = self.early_stop_loss
        if isinstance(loss, bool) or not isinstance(loss, (int, float)) or not 0 <= loss < math.inf:
            raise ValueError(f"MaskedFTSettings.early_stop_loss must be a finite number ≥ 0, got {loss!r}")
        integer(self.steps, "MaskedFTSettings.steps", 1, "SGD steps per edit, e.g. 10")


@dataclass
class EditOutcome:
    """One request's edit: the metric before and after, and what the edit did.

    Success is NLL_new < NLL_true on the rewrite prompt, magnitude exp(−NLL_new) − exp(−NLL_true). The paraphrase
    fields are the same averaged over the request's paraphrase prompts (``None`` when it has none). ``losses``:
    the training loss at each step's forward pass (before that step's update; one more than ``steps`` when the
    edit stopped early, its last loss under ``early_stop_loss``);
    ``moved``: how many parameter entries the edit changed; ``max_change``: the largest absolute change.
    """

    case_id: object
    pre_success: bool
    post_success: bool
    pre_magnitude: float
    post_magnitude: float
    paraphrase_pre_success: float | None
    paraphrase_post_success: float | None
    paraphrase_pre_magnitude: float | None
    paraphrase_post_magnitude: float | None
    steps: int
    losses: list[float] = field(default_factory=list)
    moved: int = 0
    max_change: float = 0.0
    seconds: float = 0.0


@dataclass(frozen=True)
class _Item:
    """A request read for editing: its rewrite text, paraphrases and token ids."""

    case_id: object
    request: Request
    paraphrases: tuple[str, ...]
    prompt_ids: tuple[int, ...]
    new_ids: tuple[int, ...]


@dataclass(frozen=True)
class _Scores:
    success: bool
    magnitude: float
    paraphrase_success: float | None
    paraphrase_magnitude: float | None


def _items(model: Model, requests, settings: MaskedFTSettings) -> list[_Item]:
    if isinstance(requests, (dict, Request, str)) or not isinstance(requests, Sequence):
        raise TypeError("requests must be a list of CounterFact records; for one request call masked_ft")
    if not requests:
        raise EditError("no requests to edit: pass a non-empty list (e.g. hierarchy_edits())")
    if model.tokenizer is None:
        raise EditError(f"model {model.name!r} has no tokenizer: the edits read prompts as text")
    items = []
    for i, record in enumerate(requests):
        request = as_request(record)
        case_id = record.get("case_id", i) if isinstance(record, dict) else i
        if request.target_true is None:
            raise EditError(
                f"request {case_id} has no target_true: the metric compares target_new with it; give "
                "'target_true': {'str': 'dog'}"
            )
        paraphrases = tuple(record.get("paraphrase_prompts", [])) if isinstance(record, dict) else ()
        if not all(isinstance(p, str) and p.strip() for p in paraphrases):
            raise TypeError(f"request {case_id}'s paraphrase_prompts must be non-empty strings")
        new_ids = target_ids(model, request.target_new)
        if settings.single_token:
            for target in (request.target_new, request.target_true):
                ids = target_ids(model, target)
                if len(ids) != 1:
                    pieces = [model.tokenizer.decode([t]) for t in ids]
                    raise EditError(
                        f"request {case_id}: target {target!r} is {len(ids)} tokens {pieces}, and single_token=True "
                        "asks for one; pick a single-token target or set MaskedFTSettings(single_token=False)"
                    )
        prompt_ids = model.tokenizer(request.text)["input_ids"]
        items.append(_Item(case_id, request, paraphrases, tuple(prompt_ids), tuple(new_ids)))
    return items


def _scores(model: Model, items: Sequence[_Item], when: str) -> list[_Scores]:
    """The metric of each item in the model as it is now: one batched :func:`target_nll` call for all of them."""
    prompts, owner, rewrite = [], [], []
    for i, item in enumerate(items):
        for j, prompt in enumerate((item.request.text, *item.paraphrases)):
            prompts.append(prompt)
            owner.append(i)
            rewrite.append(j == 0)
    trues = [items[i].request.target_true for i in owner]
    news = [items[i].request.target_new for i in owner]
    nll = target_nll(model, prompts + prompts, trues + news)
    nll_true, nll_new = nll[: len(prompts)], nll[len(prompts) :]
    if not bool(torch.isfinite(nll).all()):
        bad = items[owner[int((~torch.isfinite(nll_true + nll_new)).nonzero()[0])]].case_id
        raise EditError(
            f"the target NLL {when} is not finite (request {bad}): the weights hold NaN or inf, or the edit diverged "
            "(lower MaskedFTSettings.lr)"
        )
    wins = (nll_new < nll_true).double()
    magnitude = torch.exp(-nll_new) - torch.exp(-nll_true)
    out = []
    for i in range(len(items)):
        mine = [k for k, o in enumerate(owner) if o == i]
        first, rest = mine[0], mine[1:]
        out.append(
            _Scores(
                success=bool(wins[first]),
                magnitude=float(magnitude[first]),
                paraphrase_success=float(wins[rest].mean()) if rest else None,
                paraphrase_magnitude=float(magnitude[rest].mean()) if rest else None,
            )
        )
    return out


@dataclass
class _Trainable:
    """The parameters an edit may move (hf names), their masks (``None``: every entry) and how each is trained."""

    names: list[str]
    masks: list[torch.Tensor | None]
    parts: list[DenseEntries | FeatureEntries]


def _trainable(model: Model, param_masks: dict[str, torch.Tensor] | None) -> _Trainable:
    """Check ``param_masks`` against the model and keep the parameters that have at least one entry to move."""
    params = dict(model.hf.named_parameters())
    if param_masks is None:
        prefix = model.spec.table.blocks + "."
        names = [n for n in params if n.startswith(prefix)]
        return _Trainable(names, [None] * len(names), [DenseEntries(params[n], None) for n in names])
    if not isinstance(param_masks, dict):
        raise TypeError(
            f"param_masks must be a dict (parameter name → bool tensor) or None, got {type(param_masks).__name__}"
        )
    names, masks = [], []
    for name, mask in param_masks.items():
        if name not in params:
            example = next((n for n in params if n.startswith(model.spec.table.blocks)), "")
            raise EditError(
                f"param_masks names {name!r}, which model {model.name!r} does not have (its parameters are named "
                f"like {example!r}); build the masks for this model, e.g. parameter_masks(model, circuit)"
            )
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            raise TypeError(f"param_masks[{name!r}] must be a bool tensor, got {getattr(mask, 'dtype', type(mask))}")
        if mask.shape != params[name].shape:
            raise EditError(
                f"param_masks[{name!r}] has shape {tuple(mask.shape)}, the parameter {tuple(params[name].shape)}"
            )
        if not bool(mask.any()):
            continue  # nothing of it moves: no gradient needed
        names.append(name)
        masks.append(None if bool(mask.all()) else mask)
    if not names:
        raise EditError(
            "param_masks lets no parameter entry move (an empty circuit, or masks all False): the edit could change "
            "nothing; pass a circuit with units in it, or param_masks=None to edit every block parameter"
        )
    return _Trainable(names, masks, [entries_for(model, n, params[n], m) for n, m in zip(names, masks, strict=True)])


def _check_inside(model: Model, trainable: _Trainable, within: Circuit) -> None:
    """Refuse masks that would move entries ``pruned(model, within)`` sets to 0 (the pruned network would grow)."""
    inside = parameter_masks(model, within)
    for name, mask in zip(trainable.names, trainable.masks, strict=True):
        if name not in inside:
            continue
        movable = torch.ones_like(inside[name]) if mask is None else mask.to(inside[name].device)
        if bool((movable & ~inside[name].cpu()).any()):
            raise EditError(
                f"param_masks lets entries of {name!r} move that the pruned network sets to 0: edit a pruned network "
                "with masks inside it, e.g. param_masks=parameter_masks(model, circuit) with within=circuit"
            )


def _nan_error(step: int, loss: float) -> EditError:
    return EditError(
        f"the edit's loss is {loss} at step {step}: the weights hold NaN or inf or the edit diverged (lower "
        "MaskedFTSettings.lr); the weights were restored"
    )


def _train(model: Model, item: _Item, trainable: _Trainable, settings: MaskedFTSettings) -> tuple[list[float], int]:
    """Run the edit on the model's weights in place (the caller restores them): (the loss at each step's forward
    pass, the number of SGD steps taken)."""
    rows = target_rows(model, [item.prompt_ids], [item.new_ids])
    losses: list[float] = []
    try:
        for part in trainable.parts:
            part.start()
        for step in range(settings.steps):
            with torch.enable_grad():
                (loss,) = target_loss(model, rows)  # FT-L's loss (locedit.editing.ft)
            value = loss.item()
            losses.append(value)
            if not math.isfinite(value):
                raise _nan_error(step, value)
            if value < settings.early_stop_loss:
                return losses, step
            loss.backward()
            with torch.no_grad():
                for part in trainable.parts:
                    part.step(settings.lr)
    finally:
        for part in trainable.parts:
            part.stop()
    return losses, settings.steps


@contextmanager
def _prepared(model: Model, trainable: _Trainable, settings: MaskedFTSettings) -> Iterator[None]:
    """Snapshot the trainable parameters and their clamp bounds; restore them on every exit path, gradients off."""
    with restoring(model, trainable.names) as snapshots, frozen(model):
        for name, part in zip(trainable.names, trainable.parts, strict=True):
            part.prepare(settings.clamp, snapshots[name])
        yield


def _change(trainable: _Trainable) -> tuple[int, float]:
    """How many entries moved and the largest absolute change (the weights against the snapshot)."""
    moved, largest = 0, 0.0
    with torch.no_grad():
        for part in trainable.parts:
            diff = (part.now() - part.original).abs_()
            moved += int(torch.count_nonzero(diff))
            largest = max(largest, float(diff.max()))
    return moved, largest


def _restore(trainable: _Trainable) -> None:
    with torch.no_grad():
        for part in trainable.parts:
            part.restore()


@contextmanager
def masked_finetuned(
    model: Model, request, param_masks: dict[str, torch.Tensor] | None, settings: MaskedFTSettings | None = None
) -> Iterator[list[float]]:
    """Inside the block the model holds the edit of ``request`` (the paper's masked, clamped SGD); the weights are
    restored bit-exactly on every exit path. Yields the training loss at each step. For inspecting one edit;
    :func:`masked_ft` and :func:`edit_sweep` measure it."""
    settings = _settings(settings)
    (item,) = _items(model, [request], settings)
    trainable = _trainable(model, param_masks)
    with _prepared(model, trainable, settings):
        yield _train(model, item, trainable, settings)[0]


def _settings(settings) -> MaskedFTSettings:
    if settings is None:
        return MaskedFTSettings()
    if not isinstance(settings, MaskedFTSettings):
        raise TypeError(f"settings must be a MaskedFTSettings, got {type(settings).__name__}")
    return settings


def edit_sweep(
    model: Model,
    requests: Sequence[dict],
    param_masks: dict[str, torch.Tensor] | None,
    settings: MaskedFTSettings | None = None,
    *,
    within: Circuit | None = None,
) -> list[EditOutcome]:
    """Edit each request on its own (the weights restored exactly between edits) and measure it before and after.

    Args:
        requests: CounterFact records (``requested_rewrite`` with ``target_true``, optional
            ``paraphrase_prompts``), e.g. :func:`locedit.data.classification.hierarchy_edits`.
        param_masks: hf parameter name → bool tensor (True: the entry may move), e.g.
            :func:`locedit.circuits.units.parameter_masks`; ``None``: every block parameter moves.
        within: edit the pruned network of this circuit (the paper's circuit model; its complement gives the
            complementary model); the metric is read in it too. ``None``: the whole network.

    Returns one :class:`EditOutcome` per request, in order. Raises :class:`~locedit.editing.EditError` for masks
    that move nothing, a NaN loss or metric, and requests it cannot read; the weights are restored in every case.
    """
    settings = _settings(settings)
    items = _items(model, requests, settings)
    trainable = _trainable(model, param_masks)
    if within is not None and not isinstance(within, Circuit):
        raise TypeError(f"within must be a Circuit or None, got {type(within).__name__}")
    outcomes = []
    with pruned(model, within) if within is not None else nullcontext():
        if within is not None:
            _check_inside(model, trainable, within)
        before = _scores(model, items, "before the edits")
        with _prepared(model, trainable, settings):
            for item, pre in progress(zip(items, before, strict=True), "masked edits", len(items), "edit"):
                started = time.perf_counter()
                try:
                    losses, steps = _train(model, item, trainable, settings)
                    (post,) = _scores(model, [item], f"after editing request {item.case_id}")
                    moved, largest = _change(trainable)
                finally:
                    _restore(trainable)
                outcomes.append(
                    EditOutcome(
                        case_id=item.case_id,
                        pre_success=pre.success,
                        post_success=post.success,
                        pre_magnitude=pre.magnitude,
                        post_magnitude=post.magnitude,
                        paraphrase_pre_success=pre.paraphrase_success,
                        paraphrase_post_success=post.paraphrase_success,
                        paraphrase_pre_magnitude=pre.paraphrase_magnitude,
                        paraphrase_post_magnitude=post.paraphrase_magnitude,
                        steps=steps,
                        losses=losses,
                        moved=moved,
                        max_change=largest,
                        seconds=time.perf_counter() - started,
                    )
                )
    return outcomes


def masked_ft(
    model: Model, request: dict, param_masks: dict[str, torch.Tensor] | None, settings: MaskedFTSettings | None = None
) -> EditOutcome:
    """Edit one request (see :func:`edit_sweep`; ``param_masks=None``: every block parameter moves)."""
    if isinstance(request, (list, tuple)):
        raise TypeError("masked_ft edits one request; for a list call edit_sweep(model, requests, param_masks)")
    return edit_sweep(model, [request], param_masks, settings)[0]


def summarize(outcomes: Sequence[EditOutcome]) -> dict[str, float | int | None]:
    """Rates and means over the outcomes: ``n``, ``pre_success`` / ``post_success`` (fraction of requests),
    ``pre_magnitude`` / ``post_magnitude`` (means), ``paraphrase_pre_success`` / ``paraphrase_post_success``
    (means over the requests with paraphrases; ``None`` when none has), ``steps`` (mean SGD steps), ``moved``
    (mean entries changed) and ``seconds_per_edit``."""
    outcomes = list(outcomes)
    if not outcomes:
        raise ValueError("no outcomes to summarize: run edit_sweep on at least one request")

    def mean(values):
        values = [v for v in values if v is not None]
        return sum(values) / len(values) if values else None

    return {
        "n": len(outcomes),
        "pre_success": mean([float(o.pre_success) for o in outcomes]),
        "post_success": mean([float(o.post_success) for o in outcomes]),
        "pre_magnitude": mean([o.pre_magnitude for o in outcomes]),
        "post_magnitude": mean([o.post_magnitude for o in outcomes]),
        "paraphrase_pre_success": mean([o.paraphrase_pre_success for o in outcomes]),
        "paraphrase_post_success": mean([o.paraphrase_post_success for o in outcomes]),
        "steps": mean([o.steps for o in outcomes]),
        "moved": mean([o.moved for o in outcomes]),
        "seconds_per_edit": mean([o.seconds for o in outcomes]),
    }


def densest_and_sparsest_layers(circuit: Circuit) -> tuple[int, int]:
    """(densest, sparsest): the layers where ``circuit`` keeps the largest and the smallest fraction of MLP
    neurons; ties go to the lower layer. An :class:`EditError` when every layer keeps the same fraction."""
    share = circuit.masks["neuron"].float().mean(1)  # [n_layers]
    if bool((share == share[0]).all()):
        raise EditError(
            f"the circuit keeps the same share of MLP neurons ({float(share[0]):.3f}) at every layer, so no layer is "
            "densest or sparsest: pass layers=(inside, outside) to rome_inside_outside"
        )
    densest = int((share == share.max()).nonzero()[0])
    sparsest = int((share == share.min()).nonzero()[0])
    return densest, sparsest


def rome_inside_outside(
    model: Model,
    requests: Sequence[dict],
    circuit: Circuit,
    layers: tuple[int, int] | None = None,
    hparams: ROMEHyperParams | None = None,
) -> pd.DataFrame:
    """Chapter 1's ROME at a layer inside the circuit and at one outside it, on the whole (unpruned) model.

    **The rule.** "Inside" is the layer where ``circuit`` keeps the largest fraction of its MLP neurons, "outside"
    the layer where it keeps the smallest (ties: the lower layer; :func:`densest_and_sparsest_layers`). ROME writes
    the MLP output projection, whose input is exactly those neurons, so the neuron share is the share of the edited
    weight's columns that belong to the circuit. ``layers=(inside, outside)`` overrides the rule.

    Returns one row per layer: ``role`` ("inside" / "outside"), ``layer``, ``neuron_share`` (the circuit's fraction
    of that layer's MLP neurons), and the CounterFact metrics of :func:`locedit.evaluation.evaluate` (×100): before
    (``pre_ES``, ``pre_PS``) and after the edits (``ES`` efficacy success, ``EM`` its magnitude P[new] − P[true],
    ``PS`` / ``PM`` the same over the paraphrases), each request edited on its own.
    """
    if not isinstance(circuit, Circuit):
        raise TypeError(f"circuit must be a Circuit, got {type(circuit).__name__}")
    if layers is None:
        layers = densest_and_sparsest_layers(circuit)
    if len(layers) != 2:
        raise ValueError(f"layers must be (inside, outside), got {layers!r}")
    layers = tuple(integer(x, "layers", 0, f"a layer below {circuit.layout.n_layers}") for x in layers)
    for layer in layers:
        model.spec.check_layer(layer)
    hp = hparams or ROMEHyperParams()
    if not isinstance(hp, ROMEHyperParams):
        raise TypeError(f"hparams must be a ROMEHyperParams, got {type(hp).__name__}")
    records = list(requests)
    if not records:
        raise EditError("no requests to edit: pass a non-empty list")
    before = evaluate(model, records).attrs["summary"]
    share = circuit.masks["neuron"].float().mean(1)
    rows = []
    for role, layer in zip(("inside", "outside"), layers, strict=True):
        edits = rome_each(model, records, replace(hp, layer=layer))
        after = evaluate(model, records, edits=edits).attrs["summary"]
        rows.append(
            {
                "role": role,
                "layer": layer,
                "neuron_share": float(share[layer]),
                "pre_ES": before.get("ES"),
                "pre_PS": before.get("PS"),
                **{k: after.get(k) for k in ("ES", "EM", "PS", "PM")},
            }
        )
    return pd.DataFrame(rows)
