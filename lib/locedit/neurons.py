"""Decode every MLP neuron through the unembedding and search neurons by token.

Davies (2025, *Flash Interpretability*) reads each row ``w_i`` of an MLP's up-projection as a direction in the same
space the LM head reads, and decodes it like a final residual-stream state:

    z_i = W_U f(w_i),    p_i = softmax(z_i)

``f`` is either the identity (``norm=False``: the raw row) or the model's final norm applied to the row as if it
were the last residual state (``norm=True``). The row is first rescaled to unit RMS (``w·√d/‖w‖``), so for RMSNorm
``f(w) = g ⊙ w·√d/‖w‖`` exactly (eps no longer matters) and a neuron's probabilities sit on the same scale as the
model's own outputs. For LayerNorm families (GPT-2, GPT-J, GPT-NeoX) ``f`` centres the row and applies the norm's
gain but **drops the norm's bias**, and the unembedding's bias (GPT-J) is dropped too: both add the same logits to
every neuron and would make all neurons decode to the same few tokens. Gemma's logit soft-capping is applied when
``norm=True`` (it keeps the ranking).

Three kinds of neuron direction:

- ``"up"``: rows of the up-projection (read directions; Davies' choice);
- ``"gate"``: rows of the gate projection (read directions; gated MLPs only, else :class:`NoGateError`);
- ``"down"``: columns of the down-projection (write directions: what the neuron adds to the stream, Geva et al.).

The whole model is decoded in chunked matmuls (``chunk`` rows at a time, one layer's rows in memory at a time), so
the [neurons × vocab] logits are never materialised: per neuron we keep the top-``k`` tokens, their probabilities
and a scale-free specialisation score (the top-1 logit's z-score across the vocabulary). Results are cached on disk
under ``$LOCEDIT_CACHE/neurons`` keyed by a hash of the weights and the arguments, written atomically
(:func:`locedit.files.save_atomic`); a cached file that cannot be read, or whose fields or shapes are not the ones
asked for, is decoded again with a one-line note on stderr, and temporary files a killed run left behind are
removed after an hour. A long decode shows a progress bar (:mod:`locedit.progress`). To search for a concept beyond
the top-``k``, :func:`search_neurons` scores every neuron on a group of tokens (a handful of logits per neuron) and
decodes the best candidates exactly.

The read-out ``f`` and the chunked top-``k`` decode live in :mod:`locedit.lens` (:func:`~locedit.lens.readout`,
:class:`~locedit.lens.Readout`, :class:`~locedit.lens.Bf16Readout`): they decode any vectors, neurons among them.
What the neurons do on text is in :mod:`locedit.activations`; clamping them, in :mod:`locedit.clamping`.

Bad input: a word of several tokens is searched by its first token with a warning (:func:`token_ids`); a neuron or
layer out of range raises ``IndexError``; ``kind="gate"`` on an ungated family raises :class:`NoGateError`.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import torch

from locedit.files import load_torch, remove_stale_temps, save_atomic
from locedit.fingerprints import weights_digest
from locedit.lens import Bf16Readout, Readout
from locedit.models import Model, cache_dir, native_bf16
from locedit.neuron_decoding import NeuronDecoding, cache_problem, token_strings
from locedit.progress import bar, progress

KINDS: dict[str, str] = {"up": "mlp_up", "gate": "mlp_gate", "down": "mlp_down"}
CACHE_VERSION = "n2"  # n2: keys from locedit.fingerprints.weights_digest (n1's sha256 keys are never looked up)

Neuron = tuple[int, int]  # (layer, index)


class NoGateError(ValueError):
    """The model's MLP has no gate projection (GPT-2, GPT-J, GPT-NeoX): there are no gate neurons to decode."""


# --- weights ------------------------------------------------------------------------------------------------------


def check_neuron(model: Model, layer: int, neuron: int) -> None:
    """Raise ``IndexError`` unless (layer, neuron) exists in this model."""
    model.spec.check_layer(int(layer) if isinstance(layer, np.integer) else layer)
    if not isinstance(neuron, (int, np.integer)) or not 0 <= neuron < model.spec.d_mlp:
        raise IndexError(f"neuron {neuron!r} out of range: layer {layer} has neurons 0..{model.spec.d_mlp - 1}")


def checked_neurons(model: Model, neurons: Iterable[Neuron]) -> list[tuple[int, int]]:
    """Checked (layer, neuron) pairs as plain ints."""
    out = []
    for layer, neuron in neurons:
        check_neuron(model, layer, neuron)
        out.append((int(layer), int(neuron)))
    return out


def neuron_weights(model: Model, kind: str, layer: int) -> torch.Tensor:
    """The neuron directions of one layer as [d_mlp, d_model]: up/gate rows (read) or down columns (write).

    Handles GPT-2's Conv1D, which stores weights as [in, out].
    """
    if kind not in KINDS:
        raise ValueError(f"unknown neuron kind {kind!r}; use one of {', '.join(KINDS)}")
    spec = model.spec
    if kind == "gate" and not spec.gated_mlp:
        raise NoGateError(
            f"family {spec.family!r} has an ungated MLP (act(W_in x)): there are no gate neurons; decode kind='up' "
            "(its input projection) or 'down'"
        )
    weight = spec.part(model.hf, KINDS[kind], layer).weight.detach()
    # nn.Linear stores [out, in]: up/gate rows are [d_mlp, d_model] already, down is [d_model, d_mlp].
    # Conv1D stores [in, out]: the opposite.
    transposed = spec.table.weights_transposed
    if (kind == "down") != transposed:
        weight = weight.T
    return weight


# --- token groups -------------------------------------------------------------------------------------------------


def token_ids(model: Model, words: str | Iterable[str], multi: str = "first") -> list[int]:
    """Token ids of ``words`` (mind the leading space: ``" dog"``), without duplicates, in order.

    A word that is several tokens: ``multi="first"`` uses its first token and warns (the default; the first piece
    of ``" Chihuahua"`` is ``" Chihu"``, so read the warning), ``"drop"`` leaves it out silently, ``"error"`` raises.
    """
    if isinstance(words, str):
        words = [words]
    ids: list[int] = []
    for word in words:
        pieces = model.tokenizer(word, add_special_tokens=False)["input_ids"]
        if not pieces:
            raise ValueError(f"{word!r} has no tokens")
        if len(pieces) > 1:
            if multi == "error":
                model.token_id(word)  # raises with the pieces named
            if multi == "drop":
                continue
            shown = [model.tokenizer.decode([i]) for i in pieces]
            warnings.warn(f"{word!r} is {len(pieces)} tokens {shown}; using the first, {shown[0]!r}", stacklevel=2)
        if pieces[0] not in ids:
            ids.append(pieces[0])
    return ids


def token_group(model: Model, words: Iterable[str]) -> list[int]:
    """The single-token surface forms of ``words``: each with and without a leading space, lower and Capitalised.

    ``token_group(model, ["dog", "dogs", "puppy"])`` → ids of " dog", "dog", " Dog", "Dog", " dogs" … — forms that
    are several tokens are left out (silently: a group is a set of whole-word tokens).
    """
    forms = []
    for word in words:
        base = word.strip()
        for w in dict.fromkeys([base, base.lower(), base.capitalize()]):
            forms += [" " + w, w]
    return token_ids(model, forms, multi="drop")


# --- decoding -----------------------------------------------------------------------------------------------------


def _hash_key(model: Model, kind: str, layers: list[int], args: tuple) -> str:
    """The cache key: a digest of every value of the weights a decoding reads (the unembedding, the final norm and
    the layers' neuron directions; a change to any one value is seen) and of the arguments."""
    spec, hf = model.spec, model.hf
    tensors = [spec.unembedding(hf), *spec.part(hf, "final_norm").parameters()]
    tensors += [neuron_weights(model, kind, layer) for layer in layers]
    return weights_digest(tensors, sample=None, salt=repr((CACHE_VERSION, spec.family, args)), size=12)


@torch.no_grad()
def decode_neurons(
    model: Model,
    kind: str = "up",
    norm: bool = True,
    k: int = 10,
    layers: Sequence[int] | None = None,
    chunk: int | None = None,
    cache: bool = True,
    sample: int | None = None,
    seed: int = 0,
    dtype: torch.dtype | str | None = "auto",
) -> NeuronDecoding:
    """Decode every neuron of ``layers`` (default all) through the unembedding: top-``k`` tokens per neuron.

    Args:
        kind: ``"up"`` (up-projection rows), ``"gate"`` (gate rows; gated MLPs only) or ``"down"`` (down columns).
        norm: read each direction through the final norm (``f`` in the module docstring) or raw.
        chunk: rows per matmul (default 512 exact, 2,048 in bfloat16, whose matmul gains from larger blocks); peak
            extra memory ≈ chunk × vocab × 4 bytes exact (512 × 49,152: 100 MB); in bfloat16 (chunk × 2 + 512 × 4)
            × vocab bytes plus the centred W_U in float32 and bfloat16 (2,048: 300 MB + 170 MB).
        cache: reuse / store the result under ``$LOCEDIT_CACHE/neurons`` (keyed by the weights and arguments).
        sample: decode only this many neurons per layer, the same random (``seed``) indices in every layer.
        dtype: the vocabulary-wide matmul's dtype. ``None``: the weights' own (exact). ``torch.bfloat16``: the
            matmul only *finds* candidates (:class:`Bf16Readout`); their logits are recomputed in float32, so the
            top-``k`` tokens are float32's and a row with a near-tie at the cut is redone in float32. The
            probabilities keep the other tokens' bf16 rounding in the normaliser. Measured on all 46,080 SmolLM2 up
            neurons (``benchmarks/neurons.py``): identical top-10 sets, the order differing in 4–6 neurons between
            tokens tied to 1e-5, probabilities within 0.75 % relative (0.002 absolute), ``z1`` within 3e-5; 406
            rows redone. ``"auto"`` (default): bfloat16 for a float32 model on hardware that multiplies it
            natively (:func:`locedit.models.native_bf16`; 2.4× faster on an AVX-512 BF16 CPU), else exact.
            Soft-capped logits (Gemma 2) are not linear in the row, so they always take the exact path.
    """
    spec = model.spec
    layers = list(range(spec.n_layers)) if layers is None else [int(layer) for layer in layers]
    for layer in layers:
        spec.check_layer(layer)
    neuron_weights(model, kind, layers[0])  # validates kind (and the gate) before any work
    if not 1 <= k <= spec.vocab_size:
        raise ValueError(f"k must be in 1..{spec.vocab_size}")
    ro = Readout(model, norm)
    if dtype == "auto":
        dtype = torch.bfloat16 if ro.W.dtype == torch.float32 and native_bf16(ro.W.device) else None
    low = dtype not in (None, ro.W.dtype) and not ro.cap
    if low and dtype != torch.bfloat16:
        raise ValueError(f"dtype must be None, 'auto' or torch.bfloat16, not {dtype}")
    neuron_ids = None
    if sample is not None and sample < spec.d_mlp:
        neuron_ids = torch.randperm(spec.d_mlp, generator=torch.Generator().manual_seed(seed))[:sample].sort().values
    n_layers, d_mlp = len(layers), spec.d_mlp if neuron_ids is None else len(neuron_ids)
    path = None
    if cache:
        key = _hash_key(model, kind, layers, (kind, norm, k, sample, seed) + (("bf16",) if low else ()))
        path = cache_dir() / "neurons" / f"{model.spec.family}-{kind}-{key}.pt"
        remove_stale_temps(path.parent)
        cached = load_torch(path)
        if cached is not None:
            expected = {"kind": kind, "norm": norm, "k": k, "layers": layers,
                        "dtype": "bfloat16" if low else "exact"}  # fmt: skip
            try:
                problem = cache_problem(cached, expected, neuron_ids, (n_layers, d_mlp, k), spec.vocab_size)
            except Exception as err:  # noqa: BLE001 - a garbled object that even the checks trip over
                problem = f"its contents cannot be checked ({type(err).__name__}: {err})"
            if problem is None:
                return NeuronDecoding(**cached, tokenizer=model.tokenizer)
            print(f"locedit: decoding the neurons again: the cache file {path} is unusable: {problem}", file=sys.stderr)

    started = time.perf_counter()
    if low:
        ro = Bf16Readout(model, norm)
    chunk = chunk or (2048 if low else 512)
    top_ids = torch.empty(n_layers, d_mlp, k, dtype=torch.int32)
    top_probs = torch.empty(n_layers, d_mlp, k)
    z1 = torch.empty(n_layers, d_mlp)
    # Whole layers are decoded one at a time (bounded memory); a sample's rows are few, so all layers' sampled rows
    # go through the chunks together (fewer, larger matmuls).
    per_group = [[layer] for layer in layers] if neuron_ids is None else [layers]
    flat_ids, flat_probs, flat_z1 = top_ids.view(-1, k), top_probs.view(-1, k), z1.view(-1)
    unembed = ro.unembedder(chunk)
    offset, redo, redo_rows = 0, [], []
    with bar(f"decoding {kind} neurons", total=n_layers * d_mlp, unit="neuron") as shown:  # one update per chunk
        for group in per_group:
            rows = []
            for layer in group:
                w = neuron_weights(model, kind, layer)
                rows.append(w if neuron_ids is None else w[neuron_ids.to(w.device)])
            rows = ro.f(torch.cat(rows).to(ro.W.dtype))
            for s in range(0, rows.shape[0], chunk):
                at = slice(offset + s, offset + s + min(chunk, rows.shape[0] - s))
                ids, probs, zscore, again = ro.decode(rows[s : s + chunk], k, unembed)
                flat_ids[at], flat_probs[at], flat_z1[at] = ids.cpu(), probs.cpu(), zscore.cpu()
                redo.append(again.cpu() + at.start)
                redo_rows.append(rows[s + again])
                shown.update(at.stop - at.start)
            offset += rows.shape[0]
        redo = torch.cat(redo)
        if len(redo):  # one float32 pass for all rows a bfloat16 decode could not settle
            shown.set_postfix_str(f"redoing {len(redo)} rows in float32", refresh=False)
            ids, probs, zscore = ro.exact(torch.cat(redo_rows), k)
            flat_ids[redo], flat_probs[redo], flat_z1[redo] = ids.cpu(), probs.cpu(), zscore.cpu()
    fields = dict(model_name=model.name, kind=kind, norm=norm, k=k, layers=layers, top_ids=top_ids,
                  top_probs=top_probs, z1=z1, neuron_ids=neuron_ids, dtype="bfloat16" if low else "exact",
                  redone=len(redo))  # fmt: skip
    fields["seconds"] = round(time.perf_counter() - started, 2)
    if path is not None:
        save_atomic(fields, path)
    return NeuronDecoding(**fields, tokenizer=model.tokenizer)


def compare_checkpoints(
    a: Model, b: Model, kind: str = "up", norm: bool = True, sample: int | None = None, seed: int = 0
) -> tuple[float, pd.Series]:
    """Share of neurons whose top-1 token is the same in two checkpoints of one architecture (Davies: base vs
    Instruct), overall and per layer; both decoded with the same arguments (and the same ``sample`` of neurons).

    Raises ``ValueError`` naming the mismatch when the two differ in layers, MLP width or vocabulary: a neuron index
    or a token id would not mean the same thing in both.
    """
    checks = {
        "layers": (a.spec.n_layers, b.spec.n_layers),
        "MLP neurons per layer": (a.spec.d_mlp, b.spec.d_mlp),
        "vocabulary size": (a.spec.vocab_size, b.spec.vocab_size),
    }
    for what, (x, y) in checks.items():
        if x != y:
            raise ValueError(f"the checkpoints differ in {what} ({x} vs {y}): compare two checkpoints of one model")
    if a.tokenizer is not None and b.tokenizer is not None and a.tokenizer.get_vocab() != b.tokenizer.get_vocab():
        raise ValueError("the tokenizers map tokens to different ids: compare two checkpoints of one model")
    dec_a, dec_b = (decode_neurons(m, kind, norm, k=1, sample=sample, seed=seed) for m in (a, b))
    return dec_a.agreement(dec_b)


@torch.no_grad()
def concept_scores(
    model: Model,
    ids: Sequence[int] | dict[str, Sequence[int]],
    kind: str = "up",
    norm: bool = True,
    layers: Sequence[int] | None = None,
) -> pd.DataFrame | dict[str, pd.DataFrame]:
    """How strongly every neuron prefers the tokens ``ids``, in seconds: no full decode needed.

    For each neuron and token t the z-score ``(z_t − mean z) / std z`` of its logit over the vocabulary (only
    ``len(ids)`` logits per neuron are computed; the mean and spread come from W_U's first two moments). Returns
    one row per neuron — layer, neuron, ``best_z`` (the group's highest z-score) and ``best_token`` — sorted best
    first. A high z-score is necessary for a high rank, so the top of this list holds the candidates that
    :func:`search_neurons` then decodes exactly. ``ids`` may be a dict of groups: then a dict of tables comes back
    (the neurons are read once for all groups).
    """
    spec = model.spec
    groups = ids if isinstance(ids, dict) else {"": ids}
    groups = {name: [int(i) for i in g] for name, g in groups.items()}
    layers = list(range(spec.n_layers)) if layers is None else list(layers)
    ro = Readout(model, norm)
    frames: dict[str, list[pd.DataFrame]] = {name: [] for name in groups}
    for layer in progress(layers, f"scoring {kind} neurons", unit="layer"):
        x = ro.f(neuron_weights(model, kind, layer).to(ro.W.dtype))
        mean, std = ro.moments(x)
        for name, g in groups.items():
            z = (x @ ro.W[g].T).float()
            if ro.cap:
                z = torch.tanh(z / ro.cap) * ro.cap
            best = ((z - mean[:, None]) / std[:, None]).max(-1)
            frames[name].append(
                pd.DataFrame(
                    {
                        "layer": layer,
                        "neuron": np.arange(spec.d_mlp),
                        "best_z": best.values.numpy(),
                        "best_token": best.indices.numpy(),
                    }
                )  # fmt: skip
            )
    out = {}
    for name, g in groups.items():
        df = pd.concat(frames[name], ignore_index=True)
        df["best_token"] = token_strings(model.tokenizer, np.asarray(g)[df.best_token.to_numpy()])
        out[name] = df.sort_values("best_z", ascending=False).reset_index(drop=True)
    return out if isinstance(ids, dict) else out[""]


@torch.no_grad()
def decode_rows(
    model: Model, neurons: Sequence[Neuron], kind: str = "up", norm: bool = True, k: int = 10, rank_ids=()
) -> pd.DataFrame:
    """Exact decode of a few neurons: top-``k`` tokens and probabilities, ``p1``, ``z1`` and, for ``rank_ids``, the
    best rank (0 = top-1) any of them reaches, which token, and the group's summed probability."""
    neurons = checked_neurons(model, neurons)
    ro = Readout(model, norm)
    rank_ids = [int(i) for i in rank_ids]
    records = []
    for s in range(0, len(neurons), 256):
        part = list(neurons[s : s + 256])
        x = torch.stack([neuron_weights(model, kind, layer)[n] for layer, n in part]).to(ro.W.dtype)
        x = ro.f(x)
        z = ro.logits(x)
        lp = z.log_softmax(-1)
        vals, ids = lp.topk(k, dim=-1)
        mean, std = ro.moments(x, z)
        if rank_ids:
            chosen = z[:, rank_ids]
            ranks = torch.stack([(z > chosen[:, j : j + 1]).sum(-1) for j in range(len(rank_ids))], -1)
            best = ranks.min(-1)
            group_p = lp[:, rank_ids].exp().sum(-1)
        for r, (layer, n) in enumerate(part):
            toks = token_strings(model.tokenizer, ids[r].tolist())
            rec = {"layer": layer, "neuron": n, "top1": toks[0], "p1": float(vals[r, 0].exp()),
                   "z1": float((z[r].max() - mean[r]) / std[r]), "top_tokens": " | ".join(toks),
                   "top_probs": [round(float(v), 4) for v in vals[r].exp()]}  # fmt: skip
            if rank_ids:
                best_token = token_strings(model.tokenizer, [rank_ids[best.indices[r]]])[0]
                rec.update(best_rank=int(best.values[r]), best_token=best_token, group_p=float(group_p[r]))
            records.append(rec)
    return pd.DataFrame(records)


def search_neurons(
    model: Model,
    ids: Sequence[int] | dict[str, Sequence[int]],
    kind: str = "up",
    norm: bool = True,
    candidates: int = 300,
    k: int = 10,
    layers: Sequence[int] | None = None,
) -> pd.DataFrame:
    """Neurons that decode to any of the tokens ``ids``, ranked by the best exact rank any of them reaches.

    Two steps: :func:`concept_scores` ranks all neurons by the group's z-score (cheap), then the top
    ``candidates`` are decoded exactly (:func:`decode_rows`). Sorted by ``best_rank`` then ``group_p``; the column
    ``best_z`` is kept. Use a full :func:`decode_neurons` + :meth:`NeuronDecoding.find` to check that no neuron
    outside the candidates has a better rank (the chapter does). A dict of groups gives a dict of tables.
    """
    scores = concept_scores(model, ids, kind, norm, layers)
    groups = ids if isinstance(ids, dict) else {"": ids}
    scores = scores if isinstance(ids, dict) else {"": scores}
    out = {}
    for name, g in groups.items():
        top = scores[name].head(candidates)
        rows = decode_rows(model, list(zip(top.layer, top.neuron, strict=True)), kind, norm, k, rank_ids=g)
        rows["best_z"] = top.best_z.to_numpy()
        out[name] = rows.sort_values(["best_rank", "group_p"], ascending=[True, False]).reset_index(drop=True)
    return out if isinstance(ids, dict) else out[""]
