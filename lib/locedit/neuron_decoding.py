"""A decoding of MLP neurons through the unembedding (:class:`NeuronDecoding`, made by
:func:`locedit.neurons.decode_neurons`) and the check a cached one passes before it is used (:func:`cache_problem`).
Re-exported by :mod:`locedit.neurons`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch


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
        return token_strings(self.tokenizer, ids)

    def top(self, layer: int, neuron: int, k: int | None = None) -> list[tuple[str, float]]:
        """A neuron's top tokens and probabilities."""
        pos, n = self._layer_pos(layer), self._neuron_pos(neuron)
        k = k or self.k
        ids = self.top_ids[pos, n, :k].tolist()
        return list(zip(self._str(ids), self.top_probs[pos, n, :k].tolist(), strict=True))

    def score(self, layer: int, neuron: int) -> float:
        """A neuron's specialisation score ``z1`` (in a sampled decoding too: found by neuron id)."""
        return float(self.z1[self._layer_pos(layer), self._neuron_pos(neuron)])

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


def token_strings(tokenizer, ids: Iterable[int]) -> list[str]:
    return [tokenizer.decode([int(i)]) if tokenizer is not None else str(int(i)) for i in ids]


def cache_problem(
    cached: object, expected: dict, neuron_ids: torch.Tensor | None, shape: tuple[int, int, int], vocab: int
) -> str | None:
    """Why a loaded cache entry cannot be used (one short phrase), or ``None`` if it holds the decoding asked for.

    ``expected``: the arguments it must record; ``neuron_ids``: the sample (``None``: every neuron); ``shape``:
    (layers, neurons, k) of its tensors; ``vocab``: the bound of its token ids. Cheap checks only (fields, types,
    shapes, id range, a few milliseconds): the file's name already stands for the weights and arguments.
    """
    if not isinstance(cached, dict):
        return f"it holds a {type(cached).__name__}, not the decoding's fields"
    fields = [f for f in dataclasses.fields(NeuronDecoding) if f.name != "tokenizer"]
    missing = [f.name for f in fields if f.default is dataclasses.MISSING and f.name not in cached]
    unknown = sorted(set(cached) - {f.name for f in fields}, key=str)
    if missing or unknown:
        return f"fields {', '.join(missing)} missing" if missing else f"unknown fields {', '.join(map(str, unknown))}"
    cached = {**{f.name: f.default for f in fields if f.default is not dataclasses.MISSING}, **cached}
    for name, value in expected.items():
        if cached[name] != value:
            return f"its {name} is {cached[name]!r}, not {value!r}"
    n_layers, n, k = shape
    tensors = {
        "top_ids": ((n_layers, n, k), torch.int32),
        "top_probs": ((n_layers, n, k), torch.float32),
        "z1": ((n_layers, n), torch.float32),
    }
    for name, (want, dtype) in tensors.items():
        t = cached[name]
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != want or t.dtype != dtype:
            got = f"{tuple(t.shape)} {t.dtype}" if isinstance(t, torch.Tensor) else type(t).__name__
            return f"its {name} is {got}, not {want} {dtype}"
    ids = cached["neuron_ids"]
    if (ids is None) != (neuron_ids is None):
        return "it holds a sample, not every neuron" if neuron_ids is None else "it holds every neuron, not a sample"
    if ids is not None and (not isinstance(ids, torch.Tensor) or not torch.equal(ids, neuron_ids)):
        return "its neuron sample differs"
    top = cached["top_ids"]
    if top.numel() and (int(top.min()) < 0 or int(top.max()) >= vocab):
        return "its token ids are outside the vocabulary"
    return None
