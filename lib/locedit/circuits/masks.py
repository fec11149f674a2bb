"""Circuit discovery with a learned mask over structured units (Ge et al. 2024, after Cao et al. 2021).

Each unit u (an MLP neuron, an attention head, a norm gain element; :mod:`locedit.circuits.units`) has a mask
logit l_u, initialised from N(``init_mean``, 0.01). Every step samples a hard-concrete mask

    s_u = sigmoid((l_u + g_u) / tau),   g_u = log U - log(1 - U),  U ~ Uniform(0, 1),
    m_u = 1[s_u > 0.5]  forward,   dm_u / dl_u = ds_u / dl_u  backward (straight-through),

multiplies each unit's site by m_u (:func:`~locedit.circuits.units.unit_masks`) and minimises

    L = CE(head(masked final states), argmax head(full final states))              (faithfulness)
        + lambda_t * sum_u p_u sigmoid(l_u) / sum_u p_u                              (sparsity)

with p_u the parameters unit u owns and lambda_t = ``lambda_start`` + (t - 1) * ``lambda_step`` at step t = 1, 2, ...;
only the mask logits learn (the model's weights are frozen, ``requires_grad`` off during training and restored
after). The circuit after a step is {u : l_u > 0}; training stops at the first step whose circuit holds at most
``target_density`` of the units' parameters (or has no unit left).

Deviations from the paper, for two CPU cores: units, not parameters (80,910 logits for SmolLM2-135M instead of
106M); by default only MLP neurons and attention heads are masked (``kinds``): in our first trials (score heads on
SmolLM2) masking norm gains as well left circuits at chance on held-out texts, so a norm run is a separate choice;
temperature 0.5 instead of 0.01 (the straight-through gradient ds/dl = s(1 - s)/tau has the same mean over the noise
but far less variance); AdamW at lr 0.5 from logits near 5 (the paper: lr 0.01-0.1 from 2.7) and lambda rising by 4
a step, not 1 an epoch, at most 200 steps (the paper: up to 10,000 epochs), batches of 32 texts. These settings
were chosen on SmolLM2's hierarchy task read by its answer tokens (held-out faithfulness at 50% / 35% / 15%
density: 0.85 / 0.72 / 0.66 against 0.81 / 0.78 / 0.52 with lambda rising by 10, and 0.76 / 0.76 at 50% / 35%
with lr 0.2 from 3, lambda +2, batches of 16). One step costs a forward and a backward pass (to the activations
only) over one batch: about 2.5 s for 32 prompts of about 8 tokens on one core, near its matmul floor.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from locedit.circuits.classifier import (
    LabeledTexts,
    TaskHead,
    check_task,
    encode_texts,
    final_states,
    head_logits,
    select,
)
from locedit.circuits.units import Circuit, UnitLayout, check_kind, full_circuit, unit_layout
from locedit.files import load_torch, save_atomic
from locedit.fingerprints import weights_digest
from locedit.models import Model, cache_dir
from locedit.progress import bar
from locedit.threads import loop_threads

#: Bump when the training changes what a cached circuit would be.
VERSION = 2


@dataclass(frozen=True)
class MaskSettings:
    """How a mask is learned. ``batch_size``: texts per step, all in one padded pass (a random subset each step
    when the task has more); ``kinds``: the unit kinds masked (the others stay whole); ``dtype``: the forward
    and backward passes' dtype (``None``: the model's own; ``"bfloat16"`` runs a bfloat16 copy)."""

    lr: float = 0.5
    temperature: float = 0.5
    init_mean: float = 5.0
    lambda_start: float = 10.0
    lambda_step: float = 4.0
    max_steps: int = 200
    batch_size: int = 32
    seed: int = 0
    kinds: tuple[str, ...] = ("neuron", "head")
    dtype: str | None = None

    def __post_init__(self) -> None:
        for kind in self.kinds:
            check_kind(kind)
        if not self.kinds:
            raise ValueError("MaskSettings.kinds is empty: mask at least one unit kind ('neuron', 'head', 'norm')")
        for name in ("lr", "temperature"):
            if not getattr(self, name) > 0:
                raise ValueError(f"MaskSettings.{name} must be positive, got {getattr(self, name)}")
        if self.max_steps < 1 or self.batch_size < 1:
            raise ValueError("MaskSettings.max_steps and batch_size must be at least 1")


@dataclass
class CircuitScores:
    """The paper's evaluation of a circuit on its task: ``faithfulness`` = the fraction of texts where the circuit's
    prediction equals the full model's; accuracies against the labels for the circuit, its complement and the full
    model."""

    faithfulness: float
    circuit_accuracy: float
    complement_accuracy: float
    full_accuracy: float


@dataclass
class LearnedCircuit:
    """A learned circuit and how it was found. ``reached``: the circuit holds at most ``target_density`` of the
    parameters and is not empty; ``stop`` says why training ended; ``log``: one dict per step (step, lambda,
    faithfulness loss, sparsity, density, seconds)."""

    circuit: Circuit
    target_density: float
    reached: bool
    steps: int
    seconds: float
    log: list[dict]
    scores: CircuitScores
    task: str
    stop: str = ""
    settings: dict = field(default_factory=dict)


def circuit_scores(model: Model, task: LabeledTexts, head: TaskHead, circuit: Circuit) -> CircuitScores:
    """Faithfulness, circuit / complement / full-model accuracy of ``circuit`` on ``task`` (three passes)."""
    check_task(task)
    labels = torch.tensor(list(task.labels))
    full = head_logits(model, head, task.texts).argmax(1)
    inside = head_logits(model, head, task.texts, circuit.masks).argmax(1)
    outside = head_logits(model, head, task.texts, circuit.complement().masks).argmax(1)
    return CircuitScores(
        faithfulness=float((inside == full).float().mean()),
        circuit_accuracy=float((inside == labels).float().mean()),
        complement_accuracy=float((outside == labels).float().mean()),
        full_accuracy=float((full == labels).float().mean()),
    )


def _weights(layout: UnitLayout, kinds: tuple[str, ...]) -> dict[str, float]:
    """Each kind's parameters per unit, divided by the parameters of all masked units (the sparsity weights)."""
    total = sum(layout.params_per_unit(k) * math.prod(layout.shape(k)) for k in kinds)
    return {k: layout.params_per_unit(k) / total for k in kinds}


def _circuit(layout: UnitLayout, logits: dict[str, torch.Tensor]) -> Circuit:
    """The units with a positive logit; kinds not learned are kept whole."""
    masks = full_circuit(layout).masks
    masks.update({kind: (value.detach() > 0).cpu() for kind, value in logits.items()})
    return Circuit(layout, masks, tuple(logits))


def _collapsed(circuit: Circuit, kinds: tuple[str, ...]) -> bool:
    """Whether no unit of the learned ``kinds`` is left."""
    return not any(circuit.masks[kind].any() for kind in kinds)


def _cache_key(model: Model, task: LabeledTexts, head: TaskHead, settings: MaskSettings) -> str:
    """A digest of what a training run depends on (not the target: one run passes every density on its way)."""
    digest = hashlib.blake2b(digest_size=12)
    digest.update(f"v{VERSION}|{json.dumps(asdict(settings), sort_keys=True)}".encode())
    digest.update(weights_digest(model.hf.parameters()).encode())
    digest.update(json.dumps([task.name, list(task.texts), list(task.labels)]).encode())
    digest.update(head.digest().encode())
    return digest.hexdigest()


def _cache_path(key: str) -> Path:
    return cache_dir() / "circuit_masks" / f"{key}.pt"


@dataclass
class _Run:
    """One training run: per step its log entry and its circuit; ``final`` when it ended at ``max_steps`` or in a
    collapse (so no later step exists), not at a target; ``scores``: per step index, scores already computed."""

    log: list[dict]
    circuits: list[Circuit]
    final: bool
    scores: dict[int, CircuitScores] = field(default_factory=dict)

    def step_for(self, target: float, kinds: tuple[str, ...]) -> int | None:
        """The index of the first step at or below ``target`` or collapsed (or the last step of a final run), else
        ``None``."""
        for index, entry in enumerate(self.log):
            if entry["density"] <= target or _collapsed(self.circuits[index], kinds):
                return index
        return len(self.log) - 1 if self.final and self.log else None

    def as_record(self) -> dict:
        return {
            "version": VERSION,
            "log": self.log,
            "circuits": [c.to_dict() for c in self.circuits],
            "final": self.final,
            "scores": {i: asdict(s) for i, s in self.scores.items()},
        }

    @classmethod
    def from_record(cls, record) -> _Run | None:
        if not isinstance(record, dict) or record.get("version") != VERSION:
            return None
        return cls(
            log=record["log"],
            circuits=[Circuit.from_dict(c) for c in record["circuits"]],
            final=record["final"],
            scores={int(i): CircuitScores(**s) for i, s in record["scores"].items()},
        )


def check_density(density: float) -> float:
    """``density`` as a float in (0, 1), else a ValueError."""
    value = float(density)
    if not 0.0 < value < 1.0 or math.isnan(value):
        raise ValueError(f"target density {density!r} is outside (0, 1): give the fraction of parameters to keep")
    return value


def learn_circuit(
    model: Model,
    task: LabeledTexts,
    head: TaskHead,
    target_density: float,
    settings: MaskSettings | None = None,
    cache: bool = True,
) -> LearnedCircuit:
    """Learn a circuit of ``task`` holding at most ``target_density`` of the units' parameters (module docstring).

    Returns the circuit of the first step at or below the target density, or, if ``max_steps`` pass first, the
    last step's circuit with ``reached=False`` (``stop`` says so). A circuit that collapses to no unit is
    reported the same way. A NaN loss raises ``FloatingPointError``.

    Cached under ``cache_dir()/circuit_masks`` by a digest of the model's weights, the task, the head and the
    settings (``cache=False`` recomputes and writes nothing). The file holds the whole run, every step's circuit:
    the target only decides where a run stops, so a run to 5% answers 15%, 35% and 50% too (and ``seconds`` is
    then the training time to that step).
    """
    target = check_density(target_density)
    check_task(task)
    settings = settings or MaskSettings()
    key = _cache_key(model, task, head, settings) if cache else None
    run = _Run.from_record(load_torch(_cache_path(key))) if key is not None else None
    index = run.step_for(target, settings.kinds) if run is not None else None
    if index is None:
        run = _train(model, task, head, target, settings)
        index = run.step_for(target, settings.kinds)
    circuit = run.circuits[index]
    fresh = index not in run.scores
    if fresh:
        run.scores[index] = circuit_scores(model, task, head, circuit)
    if key is not None and fresh:
        save_atomic(run.as_record(), _cache_path(key))
    entry = run.log[index]
    collapsed = _collapsed(circuit, settings.kinds)
    reached = entry["density"] <= target and not collapsed
    if collapsed:
        stop = f"collapsed to no unit at step {entry['step']} (lower lambda_step or lr)"
    elif reached:
        stop = f"reached density {entry['density']:.4f} <= {target} at step {entry['step']}"
    else:
        stop = (
            f"density {entry['density']:.4f} still above {target} after {entry['step']} steps (raise max_steps or "
            "lambda_step)"
        )
    return LearnedCircuit(
        circuit=circuit,
        target_density=target,
        reached=reached,
        steps=entry["step"],
        seconds=entry["seconds"],
        log=run.log[: index + 1],
        scores=run.scores[index],
        task=task.name,
        stop=stop,
        settings=asdict(settings),
    )


@loop_threads()
def _train(model: Model, task: LabeledTexts, head: TaskHead, target: float, settings: MaskSettings) -> _Run:
    """One training run (module docstring), under the thread policy of :mod:`locedit.threads`."""
    start = time.perf_counter()
    layout = unit_layout(model)
    run = model
    if settings.dtype is not None:
        from locedit.patching import as_dtype

        run = as_dtype(model, getattr(torch, settings.dtype))
    reader = head.to(run.device, run.dtype)
    texts = list(task.texts)
    batch = encode_texts(run, texts)
    n = batch["input_ids"].shape[0]

    def read(rows: torch.Tensor | None, masks: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Class logits of the texts ``rows`` (``None``: all of them, the batch as it is) under ``masks``."""
        if rows is None:
            return reader.logits(final_states(run, batch, masks), texts)
        return reader.logits(final_states(run, select(batch, rows), masks), [texts[i] for i in rows.tolist()])

    with torch.no_grad():
        wanted = torch.cat([read(rows).argmax(1) for rows in torch.arange(n).split(settings.batch_size)])
    generator = torch.Generator().manual_seed(settings.seed)
    logits = {
        kind: (settings.init_mean + 0.01 * torch.randn(layout.shape(kind), generator=generator)).requires_grad_()
        for kind in settings.kinds
    }
    weights = _weights(layout, settings.kinds)
    optimizer = torch.optim.AdamW(logits.values(), lr=settings.lr, weight_decay=0.0)
    requires = [p.requires_grad for p in run.hf.parameters()]
    run.hf.requires_grad_(False)
    log: list[dict] = []
    circuits: list[Circuit] = []
    progress = bar(f"mask of {task.name} to density {target:g}", total=settings.max_steps, unit="step")
    try:
        for step in range(1, settings.max_steps + 1):
            lam = settings.lambda_start + (step - 1) * settings.lambda_step
            rows = torch.randperm(n, generator=generator)[: settings.batch_size] if n > settings.batch_size else None
            masks = {}
            for kind, value in logits.items():
                u = torch.rand(value.shape, generator=generator).clamp(1e-6, 1 - 1e-6)
                soft = torch.sigmoid((value + u.log() - (-u).log1p()) / settings.temperature)
                masks[kind] = (soft > 0.5).float() + soft - soft.detach()
            out = read(rows, masks).float()
            faith = torch.nn.functional.cross_entropy(out, wanted if rows is None else wanted[rows.to(wanted.device)])
            sparsity = sum(weights[k] * torch.sigmoid(v).sum() for k, v in logits.items())
            loss = faith + lam * sparsity
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"the mask loss became {loss.item()} at step {step} (faithfulness {faith.item()}, sparsity "
                    f"{sparsity.item()}): lower MaskSettings.lr or lambda, or run in float32 (dtype=None)"
                )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            circuit = _circuit(layout, logits)
            circuits.append(circuit)
            log.append(
                {"step": step, "lambda": lam, "faithfulness_loss": faith.item(), "sparsity": sparsity.item(),
                 "density": circuit.density, "seconds": time.perf_counter() - start}
            )  # fmt: skip
            progress.update()
            progress.set_postfix(density=f"{circuit.density:.3f}", faithfulness_loss=f"{faith.item():.3f}")
            if circuit.density <= target or _collapsed(circuit, settings.kinds):
                break
    finally:
        progress.close()
        for param, flag in zip(run.hf.parameters(), requires, strict=True):
            param.requires_grad_(flag)
    return _Run(log=log, circuits=circuits, final=len(log) == settings.max_steps or _collapsed(circuit, settings.kinds))
