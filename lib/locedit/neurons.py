"""Decode every MLP neuron through the unembedding, search neurons by token, check them by activation, clamp them.

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
under ``$LOCEDIT_CACHE/neurons`` keyed by a hash of the weights and the arguments. To search for a concept beyond
the top-``k``, :func:`search_neurons` scores every neuron on a group of tokens (a handful of logits per neuron) and
decodes the best candidates exactly.

Bad input: a word of several tokens is searched by its first token with a warning (:func:`token_ids`); a neuron or
layer out of range raises ``IndexError``; ``kind="gate"`` on an ungated family raises :class:`NoGateError`.

Sites: clamping uses ``mlp_up`` (the up-projection's output, before the product with the gate), as Davies does,
because that is the activation the decoded row ``w_i`` computes: ``up_i(x) = w_i · x``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import html
import math
import os
import time
import warnings
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from locedit.hooks import Intervention, Site, patch
from locedit.models import Model, cache_dir, native_bf16

KINDS: dict[str, str] = {"up": "mlp_up", "gate": "mlp_gate", "down": "mlp_down"}
CACHE_VERSION = "n1"

Neuron = tuple[int, int]  # (layer, index)


class NoGateError(ValueError):
    """The model's MLP has no gate projection (GPT-2, GPT-J, GPT-NeoX): there are no gate neurons to decode."""


# --- weights ------------------------------------------------------------------------------------------------------


def check_neuron(model: Model, layer: int, neuron: int) -> None:
    """Raise ``IndexError`` unless (layer, neuron) exists in this model."""
    model.spec.check_layer(int(layer) if isinstance(layer, np.integer) else layer)
    if not isinstance(neuron, (int, np.integer)) or not 0 <= neuron < model.spec.d_mlp:
        raise IndexError(f"neuron {neuron!r} out of range: layer {layer} has neurons 0..{model.spec.d_mlp - 1}")


def _neurons(model: Model, neurons: Iterable[Neuron]) -> list[tuple[int, int]]:
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


def _readout(model: Model, norm: bool):
    """``f``: rows [n, d_model] → the vectors the unembedding reads (see the module docstring)."""
    if not norm:
        return lambda x: x
    final_norm = model.spec.part(model.hf, "final_norm")
    bias = getattr(final_norm, "bias", None)
    d = model.spec.d_model

    def f(x: torch.Tensor) -> torch.Tensor:
        unit = x * (math.sqrt(d) / x.norm(dim=-1, keepdim=True).clamp_min(1e-12))  # RMS 1
        out = final_norm(unit)
        return out - bias if bias is not None else out

    return f


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


@dataclass
class NeuronDecoding:
    """Every neuron of some layers decoded through the unembedding (one kind, one read-out variant).

    Tensors are indexed [layer position in ``layers``, neuron, …]; with a sample (``neuron_ids``, the same neurons in
    every layer) the second index runs over the sample. ``z1`` is the specialisation score: the top-1
    logit's z-score over the vocabulary, ``(z_max − mean z) / std z``, which does not depend on the row's norm
    (raw probabilities do: a raw row has a small norm and a flat softmax).
    """

    model_name: str
    kind: str
    norm: bool
    k: int
    layers: list[int]
    top_ids: torch.Tensor  # [L, d_mlp, k] int32
    top_probs: torch.Tensor  # [L, d_mlp, k] float32
    z1: torch.Tensor  # [L, d_mlp] float32 (or [L, n] with a sample)
    neuron_ids: torch.Tensor | None = None  # the neurons decoded in every layer when sampled; None = all
    seconds: float = 0.0
    dtype: str = "exact"  # "exact" or "bfloat16" (bf16 candidates, float32 re-scoring: see decode_neurons)
    redone: int = 0  # rows a bfloat16 decode redid in float32 (near-ties at the top-k cut)
    tokenizer: object = None

    @property
    def variant(self) -> str:
        return f"{self.kind}, {'final norm' if self.norm else 'raw'}"

    def _layer_pos(self, layer: int) -> int:
        if layer not in self.layers:
            raise IndexError(f"layer {layer} was not decoded (decoded: {self.layers})")
        return self.layers.index(layer)

    def _neuron_pos(self, neuron: int) -> int:
        if self.neuron_ids is None:
            if not 0 <= neuron < self.top_ids.shape[1]:
                raise IndexError(f"neuron {neuron} out of range 0..{self.top_ids.shape[1] - 1}")
            return neuron
        hits = (self.neuron_ids == neuron).nonzero()
        if not len(hits):
            raise IndexError(f"neuron {neuron} is not in this decoding's sample")
        return int(hits[0, 0])

    @property
    def neurons(self) -> np.ndarray:
        n = self.top_ids.shape[1]
        return np.arange(n) if self.neuron_ids is None else self.neuron_ids.numpy()

    def _str(self, ids: Iterable[int]) -> list[str]:
        return _strs(self.tokenizer, ids)

    def top(self, layer: int, neuron: int, k: int | None = None) -> list[tuple[str, float]]:
        """A neuron's top tokens and probabilities."""
        pos, n = self._layer_pos(layer), self._neuron_pos(neuron)
        k = k or self.k
        ids = self.top_ids[pos, n, :k].tolist()
        return list(zip(self._str(ids), self.top_probs[pos, n, :k].tolist(), strict=True))

    def table(self, k: int = 5) -> pd.DataFrame:
        """One row per neuron: layer, neuron, top-1 token and probability, ``z1``, the top-``k`` tokens joined."""
        n_layers, d_mlp, _ = self.top_ids.shape
        ids = self.top_ids[:, :, :k].reshape(-1, k).numpy()
        unique = np.unique(ids)
        vocab = dict(zip(unique.tolist(), self._str(unique), strict=True))
        words = np.vectorize(vocab.__getitem__, otypes=[object])(ids)
        return pd.DataFrame(
            {
                "layer": np.repeat(self.layers, d_mlp),
                "neuron": np.tile(self.neurons, n_layers),
                "top1": words[:, 0],
                "p1": self.top_probs[:, :, 0].reshape(-1).numpy(),
                "z1": self.z1.reshape(-1).numpy(),
                "top_tokens": [" | ".join(row) for row in words],
            }
        )

    def find(self, ids: Sequence[int], max_rank: int | None = None) -> pd.DataFrame:
        """Neurons with any of the tokens ``ids`` within rank ``max_rank`` (default and at most: the stored top-``k``).

        One row per neuron, best first: ``best_rank`` (0 = top-1), ``best_token``, ``n_hits`` (how many of the
        tokens rank within ``max_rank``), ``group_p`` (their summed probability), the neuron's top-1, ``p1``, ``z1``.
        For ranks beyond ``k`` use :func:`search_neurons`.
        """
        ids = [int(i) for i in ids]
        max_rank = self.k if max_rank is None else max_rank
        if max_rank > self.k:
            raise ValueError(f"this decoding keeps the top-{self.k} only; use search_neurons for deeper ranks")
        hit = self.top_ids[..., None] == torch.tensor(ids, dtype=self.top_ids.dtype)  # [L, N, k, G]
        pos = torch.arange(self.k)[None, None, :, None].expand_as(hit)
        ranks = torch.where(hit, pos, torch.full_like(pos, 10**9)).amin(2)  # [L, N, G]
        probs = (self.top_probs[..., None] * hit).sum(2)
        within = ranks < max_rank
        n_hits = within.sum(-1)
        li, ni = (n_hits > 0).nonzero(as_tuple=True)
        best = ranks[li, ni].min(-1)
        df = pd.DataFrame(
            {
                "layer": [self.layers[i] for i in li.tolist()],
                "neuron": self.neurons[ni.numpy()],
                "best_rank": best.values.numpy(),
                "best_token": self._str([ids[j] for j in best.indices.tolist()]),
                "n_hits": n_hits[li, ni].numpy(),
                "group_p": (probs * within)[li, ni].sum(-1).numpy(),
                "top1": self._str(self.top_ids[li, ni, 0].tolist()),
                "p1": self.top_probs[li, ni, 0].numpy(),
                "z1": self.z1[li, ni].numpy(),
            }
        )
        order = ["best_rank", "n_hits", "group_p"]
        return df.sort_values(order, ascending=[True, False, False]).reset_index(drop=True)

    def by_layer(self, threshold: float = 0.5) -> pd.DataFrame:
        """Per layer: median top-1 probability and ``z1``, and the share of neurons with top-1 p above ``threshold``."""
        p1 = self.top_probs[:, :, 0]
        return pd.DataFrame(
            {
                "layer": self.layers,
                "median_p1": p1.median(1).values.numpy(),
                f"share_p1>{threshold}": (p1 > threshold).float().mean(1).numpy(),
                "median_z1": self.z1.median(1).values.numpy(),
                "max_z1": self.z1.max(1).values.numpy(),
            }
        )

    def subset(self, neuron_ids: torch.Tensor | None) -> NeuronDecoding:
        """The same decoding restricted to ``neuron_ids`` (in every layer), e.g. to compare with a sampled one."""
        if neuron_ids is None:
            return self
        pos = torch.tensor([self._neuron_pos(int(n)) for n in neuron_ids])
        return dataclasses.replace(
            self,
            top_ids=self.top_ids[:, pos],
            top_probs=self.top_probs[:, pos],
            z1=self.z1[:, pos],
            neuron_ids=torch.as_tensor(neuron_ids).clone(),
        )

    def agreement(self, other: NeuronDecoding) -> tuple[float, pd.Series]:
        """Share of neurons whose top-1 token is the same in ``other`` (same layers): overall and per layer."""
        same_sample = (self.neuron_ids is None) == (other.neuron_ids is None) and (
            self.neuron_ids is None or torch.equal(self.neuron_ids, other.neuron_ids)
        )
        if self.layers != other.layers or self.top_ids.shape[:2] != other.top_ids.shape[:2] or not same_sample:
            raise ValueError("decodings cover different layers or sizes: compare the same architecture and layers")
        same = (self.top_ids[:, :, 0] == other.top_ids[:, :, 0]).float()
        return float(same.mean()), pd.Series(same.mean(1).numpy(), index=self.layers, name="same top-1")


def _strs(tokenizer, ids: Iterable[int]) -> list[str]:
    return [tokenizer.decode([int(i)]) if tokenizer is not None else str(int(i)) for i in ids]


def _hash_key(model: Model, kind: str, layers: list[int], args: tuple) -> str:
    digest = hashlib.sha256(repr((CACHE_VERSION, model.spec.family, args)).encode())
    spec, hf = model.spec, model.hf
    tensors = [spec.unembedding(hf), *spec.part(hf, "final_norm").parameters()]
    tensors += [neuron_weights(model, kind, layer) for layer in layers]
    for t in tensors:
        digest.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:24]


# The last unembedding's (mean row, second-moment matrix), keyed by a weak reference to the parameter itself and its
# version counter: a data pointer alone can be reused by another model's tensor once the first is freed.
_MOMENTS: dict = {}


class _Readout:
    """The unembedding and the statistics a decode needs, built once per call."""

    def __init__(self, model: Model, norm: bool):
        hf = model.hf
        self.param = model.spec.unembedding(hf)
        self.W = self.param.detach()  # [V, d]
        self.f = _readout(model, norm)
        self.cap = getattr(hf.config, "final_logit_softcapping", None) if norm else None

    def _stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        # mean and second moment of a logit over the vocabulary are quadratic forms in x: no [n, V] pass for z1
        ref = _MOMENTS.get("ref")
        if ref is None or ref() is not self.param or _MOMENTS["version"] != self.param._version:
            Wf = self.W.float()
            value = (Wf.mean(0), (Wf.T @ Wf) / Wf.shape[0])
            _MOMENTS.update(ref=weakref.ref(self.param), version=self.param._version, value=value)
        return _MOMENTS["value"]

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        z = torch.mm(x, self.W.T)  # [c, V]; mm reads the transposed view without a copy
        if self.cap:
            z = torch.tanh(z / self.cap) * self.cap
        return z.float()

    def moments(self, x: torch.Tensor, z: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation over the vocabulary of each row's logits."""
        if self.cap or (z is not None and z.shape[0] < 512):  # soft-capped logits are not linear in x
            z = self.logits(x) if z is None else z
            return z.mean(-1), z.std(-1, correction=0)
        w_mean, w_cov = self._stats()
        xf = x.float()
        mean = xf @ w_mean
        return mean, ((xf @ w_cov * xf).sum(-1) - mean**2).clamp_min(1e-12).sqrt()

    def unembedder(self, rows: int) -> Callable[[torch.Tensor], torch.Tensor]:
        """``x ↦ x @ W_Uᵀ`` ([c, d] → [c, V], c ≤ ``rows``, W_U's dtype), written into one [rows, V] buffer reused
        for every chunk (no fresh 100 MB result, and its page faults, per chunk). The result is only valid until
        the next call."""
        out = torch.empty(rows, self.W.shape[0], dtype=self.W.dtype, device=self.W.device)
        return lambda x: torch.mm(x, self.W.T, out=out[: x.shape[0]])

    def decode(
        self, x: torch.Tensor, k: int, unembed: Callable[[torch.Tensor], torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Rows [c, d] → top-``k`` token ids [c, k] (int32), their probabilities [c, k], ``z1`` [c] and the rows
        to decode again exactly (none here; see :class:`_Bf16Readout`).

        One pass over the [c, V] logits for the top-k (:func:`_block_topk`) and one fused log-softmax, written over
        the logits in place (each element is read before it is written); the mean and spread for ``z1`` come from
        W_U's moments (:meth:`moments`), not from the logits.
        """
        z = unembed(x).float()
        if self.cap:
            z.div_(self.cap).tanh_().mul_(self.cap)
        vals, ids = _block_topk(z, k)
        mean, std = self.moments(x, z)
        log_probs = torch.log_softmax(z, -1, out=z)
        return ids.int(), log_probs.gather(1, ids).exp_(), (vals[:, 0] - mean) / std, ids.new_empty(0)


class _Bf16Readout(_Readout):
    """The same decode with the vocabulary-wide matmul in bfloat16 (see :func:`decode_neurons`, ``dtype``).

    Logits are shift-invariant, so the bf16 matmul reads the *centred* unembedding ``W_U − mean row`` (smaller
    logits, smaller bf16 rounding). Per chunk: bf16 logits [c, V] → their top ``k + 6`` candidates → those
    candidates' logits recomputed exactly in float32 → the exact top-``k``. The log-partition is the bf16 one with
    the candidates' terms swapped for their exact values. A row whose exact ``k``-th logit does not clear the best
    non-candidate bf16 logit by three times the largest bf16 error seen among its candidates is decoded again in
    float32 (rows with near-ties at the cut; about 1 in 110 on SmolLM2).
    """

    EXTRA = 6  # candidates beyond k
    SAFETY = 3.0  # margin, in units of the row's largest candidate error, below which a row is redone in float32
    SLICE = 512  # rows of float32 work at a time

    def __init__(self, model: Model, norm: bool):
        super().__init__(model, norm)
        if self.cap:
            raise ValueError("a bfloat16 decode needs logits linear in the row; this model soft-caps them")
        self.Wc = self.W.float() - self.W.float().mean(0)  # [V, d], float32
        self.Wc_low = self.Wc.bfloat16()
        # float32 work space for one slice; untouched pages cost nothing, so a small decode uses a corner of it
        self.buffer = torch.empty(self.SLICE, self.W.shape[0], device=self.W.device)
        self.gathered = torch.empty(0, self.W.shape[1], device=self.W.device)  # candidates' W_U rows, grown once

    def unembedder(self, rows: int) -> Callable[[torch.Tensor], torch.Tensor]:
        """``x ↦ bf16(x) @ bf16(W_U − mean)ᵀ``, bf16 [c, V], into one reused buffer (valid until the next call)."""
        low = torch.empty(rows, self.W.shape[0], dtype=torch.bfloat16, device=self.W.device)
        return lambda x: torch.mm(x.to(torch.bfloat16), self.Wc_low.T, out=low[: x.shape[0]])

    def decode(
        self, x: torch.Tensor, k: int, unembed: Callable[[torch.Tensor], torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """As :meth:`_Readout.decode`; the rows returned last (indices into ``x``) must go through :meth:`exact`.

        One bf16 matmul for all of ``x`` (large chunks multiply faster), then the float32 work in slices of
        :attr:`SLICE` rows (a bounded float32 buffer)."""
        x = x.float()
        low = unembed(x)  # [c, V] centred logits, bf16
        parts = [self._settle(x[s : s + self.SLICE], low[s : s + self.SLICE], k) for s in range(0, len(x), self.SLICE)]
        ids, probs, z1, redo = (torch.cat(p) for p in zip(*parts, strict=True))
        return ids, probs, z1, redo.nonzero()[:, 0]

    def _settle(
        self, x: torch.Tensor, low: torch.Tensor, k: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Rows [c, d] and their bf16 logits [c, V] → ids, probabilities, ``z1`` and a redo mask [c]."""
        z = self.buffer[: len(x)].copy_(low)  # the bf16 logits, as float32
        kk = min(k + self.EXTRA, z.shape[1])
        _, cand = _block_topk(z, kk, block=32)  # [c, kk], best bf16 first
        approx = z.gather(1, cand)
        lse = approx[:, 0] - torch.log_softmax(z, -1, out=z).gather(1, cand[:, :1])[:, 0]  # bf16 log-partition
        if self.gathered.shape[0] < cand.numel():  # a fresh 19 MB tensor per slice would page-fault every time
            self.gathered = torch.empty(cand.numel(), self.Wc.shape[1], device=self.Wc.device)
        rows = torch.index_select(self.Wc, 0, cand.flatten(), out=self.gathered[: cand.numel()])
        exact = torch.bmm(rows.view(*cand.shape, -1), x[:, :, None])[..., 0]  # [c, kk] float32
        vals, pos = exact.topk(k, -1)
        swap = (exact - lse[:, None]).exp().sum(-1) - (approx - lse[:, None]).exp().sum(-1)
        lse = lse + torch.log1p(swap)
        error = (exact - approx).abs().amax(-1)
        redo = (vals[:, -1] - approx[:, -1] <= self.SAFETY * error) if kk < z.shape[1] else error < 0
        _, std = self.moments(x)
        return cand.gather(1, pos).int(), (vals - lse[:, None]).exp_(), vals[:, 0] / std, redo

    def _full(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.W.T

    def exact(self, x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The float32 decode (:meth:`_Readout.decode`) of rows [r, d], 512 at a time: ids, probabilities, ``z1``."""
        parts = [_Readout.decode(self, x[s : s + 512], k, self._full)[:3] for s in range(0, len(x), 512)]
        return tuple(torch.cat(p) for p in zip(*parts, strict=True))


def _block_topk(z: torch.Tensor, k: int, block: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """``z.topk(k, -1)`` of [n, V] logits, searched only in each row's ``k`` best blocks of ``block`` columns.

    Exact: any block outside a row's k blocks with the highest maxima has its maximum ≤ the k-th of those maxima,
    so none of its entries is needed for the top-k (an exact tie may pick another id of equal logit, as
    ``torch.topk`` may). One max per block (a vectorised pass) and two small top-k ([n, V / block] maxima, then
    [n, k · block] candidates) replace a selection over the whole row; the last V mod ``block`` columns are always
    candidates. Returns values [n, k] (sorted, highest first) and ids [n, k].
    """
    n, vocab = z.shape
    n_blocks = vocab // block
    if n_blocks <= k:
        return z.topk(k, -1)
    best = z[:, : n_blocks * block].view(n, n_blocks, block).amax(-1).topk(k, -1, sorted=False).indices  # [n, k]
    cols = (best[..., None] * block + torch.arange(block, device=z.device)).view(n, k * block)
    tail = torch.arange(n_blocks * block, vocab, device=z.device).expand(n, -1)
    cols = torch.cat([cols, tail], 1)
    vals, pos = z.gather(1, cols).topk(k, -1)
    return vals, cols.gather(1, pos)


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
            matmul only *finds* candidates (:class:`_Bf16Readout`); their logits are recomputed in float32, so the
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
    ro = _Readout(model, norm)
    if dtype == "auto":
        dtype = torch.bfloat16 if ro.W.dtype == torch.float32 and native_bf16(ro.W.device) else None
    low = dtype not in (None, ro.W.dtype) and not ro.cap
    if low and dtype != torch.bfloat16:
        raise ValueError(f"dtype must be None, 'auto' or torch.bfloat16, not {dtype}")
    path = None
    if cache:
        key = _hash_key(model, kind, layers, (kind, norm, k, sample, seed) + (("bf16",) if low else ()))
        path = cache_dir() / "neurons" / f"{model.spec.family}-{kind}-{key}.pt"
        if path.exists():
            return NeuronDecoding(**torch.load(path), tokenizer=model.tokenizer)

    started = time.perf_counter()
    if low:
        ro = _Bf16Readout(model, norm)
    chunk = chunk or (2048 if low else 512)
    neuron_ids = None
    if sample is not None and sample < spec.d_mlp:
        neuron_ids = torch.randperm(spec.d_mlp, generator=torch.Generator().manual_seed(seed))[:sample].sort().values
    n_layers, d_mlp = len(layers), spec.d_mlp if neuron_ids is None else len(neuron_ids)
    top_ids = torch.empty(n_layers, d_mlp, k, dtype=torch.int32)
    top_probs = torch.empty(n_layers, d_mlp, k)
    z1 = torch.empty(n_layers, d_mlp)
    # Whole layers are decoded one at a time (bounded memory); a sample's rows are few, so all layers' sampled rows
    # go through the chunks together (fewer, larger matmuls).
    per_group = [[layer] for layer in layers] if neuron_ids is None else [layers]
    flat_ids, flat_probs, flat_z1 = top_ids.view(-1, k), top_probs.view(-1, k), z1.view(-1)
    unembed = ro.unembedder(chunk)
    offset, redo, redo_rows = 0, [], []
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
        offset += rows.shape[0]
    redo = torch.cat(redo)
    if len(redo):  # one float32 pass for all rows a bfloat16 decode could not settle
        ids, probs, zscore = ro.exact(torch.cat(redo_rows), k)
        flat_ids[redo], flat_probs[redo], flat_z1[redo] = ids.cpu(), probs.cpu(), zscore.cpu()
    fields = dict(model_name=model.name, kind=kind, norm=norm, k=k, layers=layers, top_ids=top_ids,
                  top_probs=top_probs, z1=z1, neuron_ids=neuron_ids, dtype="bfloat16" if low else "exact",
                  redone=len(redo))  # fmt: skip
    fields["seconds"] = round(time.perf_counter() - started, 2)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        torch.save(fields, tmp)
        tmp.replace(path)
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
    ro = _Readout(model, norm)
    frames: dict[str, list[pd.DataFrame]] = {name: [] for name in groups}
    for layer in layers:
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
        df["best_token"] = _strs(model.tokenizer, np.asarray(g)[df.best_token.to_numpy()])
        out[name] = df.sort_values("best_z", ascending=False).reset_index(drop=True)
    return out if isinstance(ids, dict) else out[""]


@torch.no_grad()
def decode_rows(
    model: Model, neurons: Sequence[Neuron], kind: str = "up", norm: bool = True, k: int = 10, rank_ids=()
) -> pd.DataFrame:
    """Exact decode of a few neurons: top-``k`` tokens and probabilities, ``p1``, ``z1`` and, for ``rank_ids``, the
    best rank (0 = top-1) any of them reaches, which token, and the group's summed probability."""
    neurons = _neurons(model, neurons)
    ro = _Readout(model, norm)
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
            toks = _strs(model.tokenizer, ids[r].tolist())
            rec = {"layer": layer, "neuron": n, "top1": toks[0], "p1": float(vals[r, 0].exp()),
                   "z1": float((z[r].max() - mean[r]) / std[r]), "top_tokens": " | ".join(toks),
                   "top_probs": [round(float(v), 4) for v in vals[r].exp()]}  # fmt: skip
            if rank_ids:
                best_token = _strs(model.tokenizer, [rank_ids[best.indices[r]]])[0]
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


# --- activations --------------------------------------------------------------------------------------------------


@torch.no_grad()
def neuron_activations(
    model: Model,
    texts: Sequence[str],
    neurons: Sequence[Neuron],
    site: str = "mlp_up",
    reduce: str = "max",
    batch_size: int = 16,
) -> np.ndarray:
    """Each neuron's activation per text, reduced over the text's tokens (``"max"`` or ``"mean"``): [texts, neurons].

    ``site`` is ``"mlp_up"`` (the up-projection output, what a decoded up row computes) or ``"mlp_act"`` (the
    neuron's value after the gate, the input of the down-projection). Padding positions are ignored.
    """
    neurons = _neurons(model, neurons)
    if reduce not in ("max", "mean"):
        raise ValueError("reduce must be 'max' or 'mean'")
    layers = sorted({layer for layer, _ in neurons})
    sites = [Site(site, layer) for layer in layers]
    out = []
    for s in range(0, len(texts), batch_size):
        inputs = model.encode(texts[s : s + batch_size])
        mask = inputs["attention_mask"].bool()[..., None]
        with patch(model, record=sites) as rec:
            model.hf(**inputs, logits_to_keep=1)  # the activations are all we read
        cols = []
        for layer, neuron in neurons:
            a = rec[f"{site}.{layer}"][..., [neuron]].float()  # [b, seq, 1]
            if reduce == "max":
                cols.append(a.masked_fill(~mask, float("-inf")).amax(1))
            else:
                cols.append((a * mask).sum(1) / mask.sum(1))
        out.append(torch.cat(cols, -1).cpu())
    return torch.cat(out).numpy()


def cohens_d(a: Sequence[float], b: Sequence[float]) -> float:
    """Cohen's d of two samples: (mean a − mean b) / pooled standard deviation."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    pooled = math.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(a) + len(b) - 2))
    return float((a.mean() - b.mean()) / pooled) if pooled > 0 else float("inf") * np.sign(a.mean() - b.mean())


@dataclass
class ActivationSample:
    """Per-token activations of every neuron at one site over a small text sample (for maxima and examples)."""

    site: str
    texts: list[str]
    tokens: list[list[str]]  # per text
    acts: torch.Tensor  # [n_tokens, n_layers, d_mlp] float16
    where: list[tuple[int, int]]  # per token row: (text index, position)

    def per_text(self) -> torch.Tensor:
        """Each neuron's largest activation in each text: [texts, n_layers, d_mlp] float32."""
        text_of = torch.tensor([t for t, _ in self.where])
        out = torch.full((len(self.texts), *self.acts.shape[1:]), float("-inf"))
        for t in range(len(self.texts)):
            out[t] = self.acts[text_of == t].float().amax(0)
        return out

    def max_activation(self, layer: int, neuron: int) -> float:
        return float(self.acts[:, layer, neuron].float().max())

    def top_examples(self, layer: int, neuron: int, n: int = 5, window: int = 6) -> pd.DataFrame:
        """The ``n`` tokens where the neuron fires most, with ``window`` tokens of context before them."""
        a = self.acts[:, layer, neuron].float()
        vals, rows = a.topk(min(n, a.numel()))
        records = []
        for v, r in zip(vals.tolist(), rows.tolist(), strict=True):
            t, p = self.where[r]
            toks = self.tokens[t]
            records.append(
                {
                    "activation": v,
                    "token": toks[p],
                    "context": "".join(toks[max(0, p - window) : p]) + "[[" + toks[p] + "]]",
                    "text": t,
                }
            )
        return pd.DataFrame(records)


@torch.no_grad()
def record_sample(model: Model, texts: Sequence[str], site: str = "mlp_up", batch_size: int = 16) -> ActivationSample:
    """Run ``texts`` once and keep ``site`` (``"mlp_up"`` or ``"mlp_act"``) at every layer for every real token."""
    sites = [Site(site, layer) for layer in range(model.spec.n_layers)]
    acts, where, tokens = [], [], []
    for s in range(0, len(texts), batch_size):
        batch = list(texts[s : s + batch_size])
        inputs = model.encode(batch, padding_side="right")
        with patch(model, record=sites) as rec:
            model.hf(**inputs, logits_to_keep=1)  # the activations are all we read
        stacked = torch.stack([rec[str(site_)] for site_ in sites], 2)  # [b, seq, L, d_mlp]
        for b in range(len(batch)):
            n = int(inputs["attention_mask"][b].sum())
            acts.append(stacked[b, :n].half().cpu())
            tokens.append([model.tokenizer.decode([int(i)]) for i in inputs["input_ids"][b, :n]])
            where += [(s + b, p) for p in range(n)]
    return ActivationSample(site, list(texts), tokens, torch.cat(acts), where)


# --- clamping and generation -------------------------------------------------------------------------------------


def clamp(neurons: Sequence[Neuron], values: float | Sequence[float], rows=None) -> list[Intervention]:
    """Interventions that set each neuron's up-projection output (site ``mlp_up``) to a constant at every position.

    This is Davies' clamp: ``up_proj(x)[..., i] = c``; the product with ``act(gate)`` then carries it into the
    down-projection. On an ungated family ``mlp_up`` is the pre-activation, so ``c`` passes through the
    activation function. Use inside :func:`locedit.hooks.patch`, which removes the hooks on exit.
    """
    if isinstance(values, (int, float)):
        values = [float(values)] * len(neurons)
    if len(values) != len(neurons):
        raise ValueError("one value per neuron")
    return [
        Intervention(Site("mlp_up", int(layer)), "replace", float(v), rows=rows, index=[int(neuron)])
        for (layer, neuron), v in zip(neurons, values, strict=True)
    ]


def chat_prompt(model: Model, message: str) -> str:
    """``message`` as a user turn in the model's chat template (if it has one), ready for the assistant's reply."""
    template = getattr(model.tokenizer, "chat_template", None)
    if not template:
        return message
    return model.tokenizer.apply_chat_template(
        [{"role": "user", "content": message}], tokenize=False, add_generation_prompt=True
    )


def _check_interventions(model: Model, interventions: Iterable[Intervention]) -> None:
    """Fail before a run, with a clear message, on a neuron index outside the layer."""
    for iv in interventions:
        if iv.site.kind.feature == "neurons" and iv.index is not None and not isinstance(iv.index, slice):
            for neuron in torch.as_tensor(iv.index).reshape(-1).tolist():
                check_neuron(model, iv.site.layer, neuron)


def generate(
    model: Model,
    prompt: str,
    interventions: Sequence[Intervention] = (),
    max_new_tokens: int = 30,
    chat: bool = True,
) -> str:
    """Greedy continuation of ``prompt`` (through the chat template when ``chat``) under ``interventions``."""
    return generate_settings(model, prompt, [list(interventions)], max_new_tokens, chat)[0]


def _per_row(settings: Sequence[Sequence[Intervention]]) -> list[Intervention]:
    """One batch row per setting: each setting's interventions restricted to its own row."""
    return [dataclasses.replace(iv, rows=[r]) for r, ivs in enumerate(settings) for iv in ivs]


@torch.no_grad()
def generate_settings(
    model: Model,
    prompt: str,
    settings: Sequence[Sequence[Intervention]],
    max_new_tokens: int = 30,
    chat: bool = True,
) -> list[str]:
    """Greedy continuations of one prompt, one per setting (a list of interventions, e.g. a clamp value), batched:
    setting ``r`` acts on batch row ``r`` only. ``[[]]`` is the unpatched model."""
    _check_interventions(model, [iv for ivs in settings for iv in ivs])
    text = chat_prompt(model, prompt) if chat else prompt
    ids = model.tokenizer(text, return_tensors="pt", add_special_tokens=not chat)["input_ids"].to(model.device)
    ids = ids.expand(len(settings), -1)
    with patch(model, _per_row(settings)):
        out = model.hf.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=model.tokenizer.pad_token_id,
        )
    return model.tokenizer.batch_decode(out[:, ids.shape[1] :], skip_special_tokens=True)


@torch.no_grad()
def group_prob_settings(
    model: Model, prompts: Sequence[str], ids: Sequence[int], settings: Sequence[Sequence[Intervention]]
) -> np.ndarray:
    """Probability mass of the next token in ``ids`` after each prompt under each setting: [settings, prompts]."""
    _check_interventions(model, [iv for ivs in settings for iv in ivs])
    rows = [p for _ in settings for p in prompts]
    n = len(prompts)
    ivs = [dataclasses.replace(iv, rows=list(range(r * n, (r + 1) * n))) for r, s in enumerate(settings) for iv in s]
    with patch(model, ivs):
        probs = model.next_token_probs(rows)
    return probs[:, list(ids)].sum(-1).reshape(len(settings), n).cpu().numpy()


@torch.no_grad()
def group_prob(
    model: Model, prompts: Sequence[str], ids: Sequence[int], interventions: Sequence[Intervention] = ()
) -> np.ndarray:
    """Next-token probability mass of the tokens ``ids`` after each prompt, under ``interventions``: [prompts]."""
    _check_interventions(model, interventions)
    with patch(model, interventions):
        probs = model.next_token_probs(list(prompts))
    return probs[:, list(ids)].sum(-1).cpu().numpy()


# --- views: plotly figure and a Jupyter browser ---------------------------------------------------------------------


def specialisation_figure(decodings: Sequence[NeuronDecoding], threshold: float = 0.5):
    """Plotly: per layer, the median ``z1`` and the share of neurons with top-1 p > ``threshold``, one trace pair per
    decoding, with a dropdown to switch decodings (the first is shown initially)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=1, cols=2, subplot_titles=("median z1 (top-1 logit z-score)", f"share with p1 > {threshold}")
    )
    for j, dec in enumerate(decodings):
        by = dec.by_layer(threshold)
        visible = j == 0
        fig.add_trace(go.Bar(x=by.layer, y=by.median_z1, name=dec.variant, visible=visible), 1, 1)
        fig.add_trace(go.Bar(x=by.layer, y=by[f"share_p1>{threshold}"], name=dec.variant, visible=visible), 1, 2)
    buttons = [
        dict(
            label=dec.variant,
            method="update",
            args=[{"visible": [i // 2 == j for i in range(2 * len(decodings))]}],
        )
        for j, dec in enumerate(decodings)
    ]
    fig.update_layout(
        updatemenus=[dict(buttons=buttons, x=0, y=1.25, xanchor="left")],
        showlegend=False,
        height=360,
        margin=dict(t=90),
    )
    fig.update_xaxes(title_text="layer")
    return fig


def neuron_card_html(dec: NeuronDecoding, layer: int, neuron: int, sample: ActivationSample | None = None) -> str:
    """HTML: a neuron's top tokens (with probabilities) and its strongest activating tokens in ``sample``."""
    from locedit.viz import show_token

    pos = dec._layer_pos(layer)
    tops = " ".join(
        f"<code>{html.escape(show_token(t))}</code><small> {p:.2f}</small>" for t, p in dec.top(layer, neuron)
    )
    body = f"<p><b>L{layer}.N{neuron}</b> ({dec.variant}; z1 = {float(dec.z1[pos, neuron]):.1f}): {tops}</p>"
    if sample is not None:
        ex = sample.top_examples(layer, neuron, n=5)
        rows = "".join(
            f"<tr><td>{r.activation:.2f}</td><td><code>{html.escape(r.context)}</code></td></tr>"
            for r in ex.itertuples()
        )
        body += f'<table style="font-size:12px"><tr><th>{sample.site}</th><th>context [[token]]</th></tr>{rows}</table>'
    return body


def neuron_browser(dec: NeuronDecoding, sample: ActivationSample | None = None, query: str = " dog", max_rows: int = 8):
    """A Jupyter neuron browser: type token(s) (comma-separated, leading spaces kept) and pick a layer ("all" or
    one); it lists the neurons whose top-``k`` holds a token, with their top tokens and strongest activating
    examples in ``sample``. The initial query is rendered at build time so a static page shows it."""
    import ipywidgets as widgets
    from IPython.display import HTML

    box = widgets.Text(value=query, description="token(s)", continuous_update=False)
    layer = widgets.Dropdown(options=["all", *dec.layers], value="all", description="layer")
    out = widgets.Output(layout=widgets.Layout(border="1px solid #ddd", padding="4px"))
    tok = dec.tokenizer

    def render(*_args) -> None:
        words = [w for w in box.value.split(",") if w]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ids = [tok(w, add_special_tokens=False)["input_ids"][0] for w in words]
            hits = dec.find(ids)
            if layer.value != "all":
                hits = hits[hits.layer == layer.value]
            if hits.empty:
                body = f"<p>No neuron has {html.escape(box.value)!s} in its top-{dec.k} ({dec.variant}).</p>"
            else:
                body = f"<p>{len(hits)} neuron(s); showing {min(len(hits), max_rows)}.</p>" + "".join(
                    neuron_card_html(dec, int(r.layer), int(r.neuron), sample) for r in hits.head(max_rows).itertuples()
                )
        except (IndexError, ValueError) as err:
            body = f'<p style="color:#b00">{html.escape(str(err))}</p>'
        out.outputs = ()
        out.append_display_data(HTML(body))

    box.observe(render, names="value")
    layer.observe(render, names="value")
    render()
    return widgets.VBox([widgets.HBox([box, layer]), out])
