"""Causal tracing (Meng et al. 2022, §2 and App. B; the released code's ``experiments/causal_trace.py``).

Three runs of one fact prompt, e.g. "The Eiffel Tower is located in the city of" → " Paris":

- the **clean** run, with probability P[o] of the answer's first token at the last position;
- the **corrupted** run: Gaussian noise ε ~ N(0, ν²) added to the subject tokens' embeddings, with ν = 3 σ_t (σ_t
  the standard deviation of the subjects' embedding entries, :func:`embedding_std`); probability P*[o], averaged
  over ``samples`` noise draws;
- **corrupted with restoration**: the corrupted run with one state put back to its clean value; P*_{clean h}[o].

The indirect effect of a state is IE = P*_{clean h}[o] − P*[o]; the total effect TE = P[o] − P*[o]. Kinds of state:

- ``"hidden"``: the residual stream after block l at token t, one (layer, token) at a time;
- ``"mlp"`` / ``"attn"``: the MLP (attention) outputs at token t in a *window* of consecutive layers around l
  (``range(l − w//2, l − w//2 + w)`` clipped to the model, as in the code; ``window=10`` on the paper's 48-layer
  GPT-2 XL; the default here scales it to the model's depth);
- ``"hidden-sever-mlp"`` / ``"hidden-sever-attn"`` (Figure 3): the hidden-state restoration with the MLP (attention)
  outputs at token t frozen at their corrupted values in every layer, which cuts the path through those modules.

Every restoration of every noise sample is one row of a single :func:`locedit.patching.sweep`: the base run holds
one corrupted row per noise sample (the noise is a ``base_intervention``), a window is a patch with several
interventions, and a severed restore adds ``replace`` interventions with the recorded corrupted outputs. The engine
computes only what a restoration can change (layers from its first one on, tokens from its own on); restorations
before the subject change nothing at all, so they are not run (their score is the corrupted run's).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from locedit._checks import integer, string
from locedit.hooks import Intervention
from locedit.models import Model
from locedit.patching import Patch, record, sweep
from locedit.threads import loop_threads
from locedit.tokens import first_target_id

KINDS = ("hidden", "mlp", "attn", "hidden-sever-mlp", "hidden-sever-attn")

#: The six token buckets of the paper's average-effect figures, in order.
BUCKETS = ("first subject", "middle subject", "last subject", "first subsequent", "further tokens", "last token")

__all__ = [
    "BUCKETS",
    "KINDS",
    "Trace",
    "TraceError",
    "average_effects",
    "causal_trace",
    "default_window",
    "embedding_std",
    "subject_range",
]


class TraceError(ValueError):
    """A fact that cannot be traced as asked (subject not in the prompt, empty target, unknown kind ...)."""


@dataclass
class Trace:
    """One fact's causal trace.

    Attributes:
        prompt, subject, target: the fact; ``target`` is the answer string whose first token is scored.
        tokens: the prompt's tokens as strings (length T).
        subject_range: (first, last + 1) token positions of the subject.
        p_clean: P[o] in the clean run; ``p_corrupt``: P*[o], the mean over noise samples.
        scores: kind → [n_layers, T] mean P*_{clean h}[o] over the noise samples (restorations before the subject
            equal ``p_corrupt`` exactly: they change nothing).
        noise: ν, the noise's standard deviation; ``samples``: noise draws; ``window``: MLP/attention window.
        seconds: wall time of the trace.
        layers: the layer of each row of ``scores`` (the ``layers`` it was traced at).
    """

    prompt: str
    subject: str
    target: str
    tokens: list[str]
    subject_range: tuple[int, int]
    p_clean: float
    p_corrupt: float
    scores: dict[str, torch.Tensor]
    noise: float
    samples: int
    window: int
    seconds: float = 0.0
    per_sample: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    layers: list[int] | None = None  # the layer of each row of ``scores`` (None: 0..n_layers-1)

    def effect(self, kind: str) -> torch.Tensor:
        """The indirect effects IE = P*_{clean h}[o] − P*[o] of ``kind``: [n_layers, T]."""
        return self.scores[kind] - self.p_corrupt

    @property
    def total_effect(self) -> float:
        """TE = P[o] − P*[o]."""
        return self.p_clean - self.p_corrupt


def subject_range(model: Model, prompt: str, subject: str) -> tuple[int, int]:
    """(first, last + 1) token positions of ``subject``'s first occurrence in ``prompt`` (as the model tokenizes
    the whole prompt, special tokens included)."""
    if not subject:
        raise TraceError("empty subject: give the subject's text as it appears in the prompt")
    start = prompt.find(subject)
    if start < 0:
        raise TraceError(
            f"subject {subject!r} is not in the prompt {prompt!r}: pass the subject exactly as it is written "
            "there (same case and spelling)"
        )
    enc = model.tokenizer(prompt, return_offsets_mapping=True)
    end = start + len(subject)
    toks = [i for i, (a, b) in enumerate(enc["offset_mapping"]) if b > a and a < end and b > start]
    if not toks:
        raise TraceError(f"subject {subject!r} covers no token of {prompt!r}")
    return toks[0], toks[-1] + 1


def embedding_std(model: Model, subjects: Sequence[str]) -> float:
    """σ_t: the standard deviation of all embedding entries of the subjects' tokens (the code's
    ``collect_embedding_std``: each subject embedded on its own, entries pooled). Noise ν = 3 σ_t."""
    if not subjects:
        raise TraceError("embedding_std needs at least one subject")
    embed = model.spec.part(model.hf, "embed")
    rows = []
    with torch.no_grad():
        for s in subjects:
            ids = model.tokenizer(s, add_special_tokens=False, return_tensors="pt")["input_ids"].to(model.device)
            rows.append(embed(ids)[0].float().reshape(-1))
    return float(torch.cat(rows).std())


def default_window(n_layers: int) -> int:
    """The paper's window of 10 layers on 48-layer GPT-2 XL, scaled to ``n_layers`` (6 for a 30-layer model)."""
    return max(1, round(10 * n_layers / 48))


def _window(layer: int, width: int, n_layers: int) -> list[int]:
    lo = layer - width // 2
    return [j for j in range(lo, lo + width) if 0 <= j < n_layers]


def _target_token(model: Model, target: str | None, clean_logits: torch.Tensor) -> tuple[int, str]:
    if target is None:
        tid = int(clean_logits.argmax())
        return tid, model.tokenizer.decode([tid])
    if not target.strip():
        raise TraceError("empty target: give the answer, e.g. 'Paris', or None to trace the model's own prediction")
    return first_target_id(model, target), target


@loop_threads()
def causal_trace(
    model: Model,
    prompt: str,
    subject: str,
    target: str | None = None,
    *,
    kinds: Sequence[str] = ("hidden", "mlp", "attn"),
    noise: float | None = None,
    samples: int = 10,
    window: int | None = None,
    layers: Sequence[int] | None = None,
    positions: Sequence[int] | None = None,
    seed: int = 1,
    dtype: torch.dtype | None = None,
    method: str = "incremental",
    batch_size: int | None = None,
) -> Trace:
    """Trace one fact: P[answer] under every restoration of ``kinds``, averaged over ``samples`` noise draws.

    Args:
        model: the model.
        prompt: the fact prompt, subject written out ("The Eiffel Tower is located in the city of").
        subject: the subject as it appears in the prompt ("The Eiffel Tower").
        target: the answer whose first token is scored; ``None``: the clean run's top token.
        kinds: any of :data:`KINDS`.
        noise: ν; default 3 × :func:`embedding_std` of this subject (pass one ν computed over the whole fact set, as
            the paper does, to compare facts).
        samples: noise draws (the paper: 10).
        window: layers per MLP/attention window (default :func:`default_window`).
        layers: the layers to restore at (default all); rows of ``scores`` follow this order.
        positions: restore only at these token positions (default all); the other columns of ``scores`` are NaN
            (e.g. ``[last_subject_token]`` for the severed kinds, the paper's Figure 3).
        seed: noise seed (the draws are the same for every kind).
        dtype, method, batch_size: passed to :func:`locedit.patching.sweep`.

    Runs with the threads the machine can give it now (:func:`locedit.threads.loop_threads`; ``LOCEDIT_THREADS``
    overrides).
    """
    started = time.perf_counter()
    string(prompt, "causal_trace's prompt", "The Eiffel Tower is located in the city of")
    string(subject, "causal_trace's subject", "The Eiffel Tower")
    if target is not None:
        string(target, "causal_trace's target", "Paris")
    kinds = list(kinds)
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise TraceError(f"unknown trace kind(s) {unknown}: choose from {', '.join(KINDS)}")
    samples = integer(samples, "samples", fix="the number of noise draws, e.g. samples=10")
    if samples < 1:
        raise TraceError("samples must be ≥ 1")
    spec = model.spec
    n_layers = spec.n_layers
    if layers is not None:
        layers = [integer(x, "each of layers", fix="layer indices, e.g. layers=[0, 5, 10]") for x in layers]
    layers = list(range(n_layers)) if layers is None else layers
    for layer in layers:
        spec.check_layer(layer)
    width = default_window(n_layers) if window is None else integer(window, "window", fix="layers per window, e.g. 6")
    if width < 1:
        raise TraceError("window must be ≥ 1 layer")
    first, last = subject_range(model, prompt, subject)
    subj = list(range(first, last))
    inputs = model.encode(prompt)
    ids = inputs["input_ids"]
    seq = ids.shape[1]
    if seq != len(model.tokenizer(prompt)["input_ids"]):
        raise TraceError(f"the prompt {prompt!r} tokenizes differently on its own and in a batch; pass one prompt")
    if positions is not None:
        positions = [integer(p, "each of positions", fix="token positions, e.g. positions=[3]") for p in positions]
    if positions is not None and any(not -seq <= p < seq for p in positions):  # before any forward pass
        raise IndexError(f"positions {list(positions)} out of range for a {seq}-token prompt")
    wanted = range(seq) if positions is None else sorted({p % seq for p in positions})
    if noise is None:
        noise = 3 * embedding_std(model, [subject])
    gen = torch.Generator().manual_seed(seed)
    eps = torch.randn(samples, len(subj), spec.d_model, generator=gen) * noise
    corrupt = Intervention("embed", "add", eps.to(model.device, model.dtype), positions=subj)
    base = {"input_ids": ids.expand(samples, -1)}

    # clean values (restored) and, for the severed kinds, the corrupted module outputs (frozen)
    need = {f"resid_post.{j}" for j in layers} if any(k.startswith("hidden") for k in kinds) else set()
    for kind in ("mlp", "attn"):
        if kind in kinds:
            need |= {f"{kind}_out.{j}" for layer in layers for j in _window(layer, width, n_layers)}
    clean = record(model, inputs, sorted(need), dtype=dtype) if need else {}
    severed = [k[len("hidden-sever-") :] for k in kinds if k.startswith("hidden-sever")]
    frozen_sites = [f"{module}_out.{j}" for module in severed for j in range(n_layers)]
    frozen = record(model, base, frozen_sites, interventions=[corrupt], dtype=dtype) if frozen_sites else {}
    with torch.no_grad():
        clean_logits = model.hf(**inputs, logits_to_keep=1).logits[0, -1].float()
    tid, target = _target_token(model, target, clean_logits)
    p_clean = float(clean_logits.softmax(-1)[tid])

    def restore(kind: str, layer: int, t: int) -> list[Intervention]:
        if kind == "hidden" or kind.startswith("hidden-sever"):
            ivs = [Intervention(f"resid_post.{layer}", "replace", clean[f"resid_post.{layer}"], positions=[t])]
            if kind.startswith("hidden-sever"):
                module = kind[len("hidden-sever-") :]
                ivs += [
                    Intervention(f"{module}_out.{j}", "replace", frozen[f"{module}_out.{j}"], positions=[t])
                    for j in range(layer + 1, n_layers)
                ]
            return ivs
        return [
            Intervention(f"{kind}_out.{j}", "replace", clean[f"{kind}_out.{j}"], positions=[t])
            for j in _window(layer, width, n_layers)
        ]

    def score(logits: torch.Tensor) -> torch.Tensor:
        return logits[:, -1].softmax(-1)[:, tid]

    # Restorations before the subject change nothing (the noise starts at the subject): they are not run, their
    # score is the corrupted run's. The corrupted run itself is an empty patch per noise sample.
    span = [t for t in wanted if t >= first]
    patches = [Patch([], row=s) for s in range(samples)] + [
        Patch(restore(kind, layer, t), row=s)
        for kind in kinds
        for layer in layers
        for t in span
        for s in range(samples)
    ]
    probs = sweep(model, base, patches, score, base_interventions=[corrupt], dtype=dtype, method=method,
                  batch_size=batch_size)  # fmt: skip
    corrupted, restored = probs[:samples], probs[samples:].reshape(len(kinds), len(layers), len(span), samples)
    per_sample = corrupted.expand(len(kinds), len(layers), seq, samples).clone()
    if positions is not None:
        per_sample[:, :, [t for t in range(seq) if t not in wanted]] = float("nan")
    per_sample[:, :, span] = restored
    return Trace(
        prompt=prompt,
        subject=subject,
        target=target,
        tokens=model.str_tokens(prompt),
        subject_range=(first, last),
        p_clean=p_clean,
        p_corrupt=float(corrupted.mean()),
        scores={k: per_sample[i].mean(-1) for i, k in enumerate(kinds)},
        noise=float(noise),
        samples=samples,
        window=width,
        seconds=time.perf_counter() - started,
        per_sample={k: per_sample[i] for i, k in enumerate(kinds)},
        layers=layers,
    )


def _buckets(trace: Trace) -> dict[str, list[int]]:
    """Token positions of each bucket for one trace (empty where the prompt has no such token)."""
    first, end = trace.subject_range
    last_subj, last = end - 1, len(trace.tokens) - 1
    return {
        "first subject": [first],
        "middle subject": list(range(first + 1, last_subj)),
        "last subject": [last_subj],
        "first subsequent": [end] if end <= last else [],
        "further tokens": list(range(end + 1, last)),
        "last token": [last],
    }


def average_effects(traces: Sequence[Trace], kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's average indirect effect (AIE) of ``kind`` by token bucket × layer.

    Within a trace, the effects of a bucket's tokens are averaged; each bucket is then averaged over the traces
    that have it (a one-token subject counts as both first and last subject token; a subject right before the
    last token has its first subsequent token = the last token, as in the paper's figures).

    Returns (aie [6, n_layers] with NaN where no trace has the bucket, counts [6]) in :data:`BUCKETS` order.
    """
    if not traces:
        raise TraceError("no traces to average: trace at least one fact first")
    n_layers = traces[0].scores[kind].shape[0]
    sums = torch.zeros(len(BUCKETS), n_layers)
    counts = torch.zeros(len(BUCKETS))
    for trace in traces:
        effect = trace.effect(kind)
        for b, positions in enumerate(_buckets(trace).values()):
            if positions:
                sums[b] += effect[:, positions].mean(1)
                counts[b] += 1
    return sums / counts[:, None].clamp(min=1) + torch.where(counts[:, None] > 0, 0.0, float("nan")), counts
