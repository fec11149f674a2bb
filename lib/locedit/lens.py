"""The logit lens and "decode any vector through the unembedding".

``decode`` maps vectors through the final norm (optional) and the unembedding W_U: for the last layer this is
exactly the model's own output head, so the lens at the top layer reproduces the model's logits.
:func:`logit_lens` and :func:`lens_logprobs` read the residual stream after every block of one prompt.

For many vectors at once (every MLP neuron's weight row, say) :class:`Readout` keeps only what a reader needs per
vector — its top-``k`` tokens, their probabilities and a scale-free specialisation score ``z1`` — in chunked
matmuls, so the [vectors × vocab] logits never exist; :class:`Bf16Readout` does the vocabulary-wide matmul in
bfloat16 and re-scores the candidates in float32. Both read a vector ``x`` as ``W_U f(x)`` with ``f`` from
:func:`readout` (raw, or through the final norm as if ``x`` were the last residual state).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Sequence

import torch

from locedit.arch import logit_cap, output_head, soft_cap
from locedit.hooks import all_sites, run_with
from locedit.models import Model


def decode(model: Model, vectors: torch.Tensor, norm: bool = True) -> torch.Tensor:
    """Logits of residual-stream vectors: [..., d_model] → [..., vocab].

    ``norm=True`` runs the model's own output head: final norm, unembedding (with its bias, if any) and logit
    soft-capping, if any. ``norm=False`` reads the raw direction through W_U alone, ``W_U @ v`` (a neuron's weight
    row, say): no norm, no output bias (GPT-J has one), no soft-capping.
    """
    spec, hf = model.spec, model.hf
    with torch.no_grad():
        x = vectors.to(model.device, model.dtype)
        if not norm:
            return (x @ spec.unembedding(hf).T).float()
        logits = output_head(hf, spec, spec.part(hf, "final_norm")(x))
    return logits.float()


def logit_lens(model: Model, prompt: str) -> torch.Tensor:
    """Log-probabilities the lens reads after every block: [n_layers, seq, vocab] for one prompt."""
    sites = all_sites(model.spec, "resid_post")
    _, cache = run_with(model, model.encode(prompt), record=sites)
    stacked = torch.stack([cache[str(site)][0] for site in sites])  # [n_layers, seq, d_model]
    return decode(model, stacked).log_softmax(-1)


def lens_logprobs(model: Model, prompt: str, positions: Sequence[int] | None = None) -> torch.Tensor:
    """Logit-lens log-probabilities [n_layers, len(positions), vocab] for one prompt, decoding only ``positions``
    (default: all). Same numbers as :func:`logit_lens` restricted to those positions, without unembedding the
    positions nobody looks at."""
    sites = all_sites(model.spec, "resid_post")
    _, cache = run_with(model, model.encode(prompt), record=sites)
    stacked = torch.stack([cache[str(site)][0] for site in sites])  # [n_layers, seq, d_model]
    if positions is not None:
        stacked = stacked[:, list(positions)]
    return decode(model, stacked).log_softmax(-1)


def top_tokens(model: Model, logits: torch.Tensor, k: int = 5) -> list[list[tuple[str, float]]]:
    """The ``k`` most likely tokens and their probabilities for each row of ``logits`` [n, vocab]."""
    probs, ids = logits.float().softmax(-1).topk(k, dim=-1)
    return [
        [(model.tokenizer.decode([int(i)]), float(p)) for p, i in zip(row_p, row_i, strict=True)]
        for row_p, row_i in zip(probs, ids, strict=True)
    ]


def token_ranks(logits: torch.Tensor, token_ids: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """Rank (0 = top) of each token in each row: logits [..., vocab], ids [k] → ranks [..., k]."""
    ids = torch.as_tensor(token_ids, device=logits.device)
    chosen = logits[..., ids]
    return (logits[..., None, :] > chosen[..., :, None]).sum(-1)


# --- many vectors at once: top-k tokens per vector, in chunks -----------------------------------------------------


def readout(model: Model, norm: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """``f``: rows [n, d_model] → the vectors the unembedding reads, so that a row ``x`` decodes to ``W_U f(x)``.

    ``norm=False``: the identity (the raw row). ``norm=True``: the final norm applied to the row as if it were the
    last residual state, after rescaling the row to unit RMS (``x·√d/‖x‖``), so for RMSNorm ``f(x) = g ⊙ x·√d/‖x‖``
    exactly (eps no longer matters) and the probabilities sit on the scale of the model's own outputs. For
    LayerNorm families ``f`` centres the row and applies the gain but **drops the norm's bias**: it adds the same
    logits to every row and would make all rows decode to the same few tokens.
    """
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


# The last unembedding's (mean row, second-moment matrix), keyed by a weak reference to the parameter itself and its
# version counter: a data pointer alone can be reused by another model's tensor once the first is freed.
_MOMENTS: dict = {}


class Readout:
    """Decode many vectors at once through the unembedding: top-``k`` tokens, their probabilities and ``z1``.

    Holds W_U, the read-out ``f`` (:func:`readout`), Gemma's soft-cap (``norm=True`` only) and W_U's first two
    moments (for ``z1`` without a [n, V] pass); build it once per call and feed it chunks of rows, each through
    one reusable logits buffer (:meth:`unembedder`). ``z1`` is the top-1 logit's z-score over the vocabulary,
    ``(z_max − mean z) / std z``. :func:`locedit.neurons.decode_neurons` decodes every MLP neuron with it.
    """

    def __init__(self, model: Model, norm: bool):
        hf = model.hf
        self.param = model.spec.unembedding(hf)
        self.W = self.param.detach()  # [V, d]
        self.f = readout(model, norm)
        self.cap = logit_cap(hf) if norm else None

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
        return soft_cap(z, self.cap).float()

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
        to decode again exactly (none here; see :class:`Bf16Readout`).

        One pass over the [c, V] logits for the top-k (:func:`block_topk`) and one fused log-softmax, written over
        the logits in place (each element is read before it is written); the mean and spread for ``z1`` come from
        W_U's moments (:meth:`moments`), not from the logits.
        """
        z = unembed(x).float()
        if self.cap:
            z.div_(self.cap).tanh_().mul_(self.cap)
        vals, ids = block_topk(z, k)
        mean, std = self.moments(x, z)
        log_probs = torch.log_softmax(z, -1, out=z)
        return ids.int(), log_probs.gather(1, ids).exp_(), (vals[:, 0] - mean) / std, ids.new_empty(0)


class Bf16Readout(Readout):
    """The same decode with the vocabulary-wide matmul in bfloat16 (:func:`locedit.neurons.decode_neurons`'s ``dtype``).

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
        """As :meth:`Readout.decode`; the rows returned last (indices into ``x``) must go through :meth:`exact`.

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
        _, cand = block_topk(z, kk, block=32)  # [c, kk], best bf16 first
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
        """The float32 decode (:meth:`Readout.decode`) of rows [r, d], 512 at a time: ids, probabilities, ``z1``."""
        parts = [Readout.decode(self, x[s : s + 512], k, self._full)[:3] for s in range(0, len(x), 512)]
        return tuple(torch.cat(p) for p in zip(*parts, strict=True))


def block_topk(z: torch.Tensor, k: int, block: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
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
