"""Fingerprints of (some of) a model's weights: one home for the two kinds the library needs.

* :func:`weights_digest` (and :func:`model_digest`, which picks a model's embedding and blocks) is a **content
  digest**: BLAKE2b over each tensor's shape and values (as float32), the same in every process and on every
  device, so it can name files in an on-disk cache (the key statistics of :mod:`locedit.editing.stats`, the neuron
  decodings of :mod:`locedit.neurons`). ``sample`` bounds the values read per tensor: a strided sample of at most
  that many (enough to tell checkpoints and edits such as ROME's rank-one updates apart, without reading every
  byte; a change to one value that falls between the samples is not seen), or ``None`` for every value (then any
  changed value changes the digest).
* :func:`weights_version` is a cheap **in-process staleness key**: each parameter's storage address, autograd
  version counter and a checksum of 257 strided values. It is for a copy kept in memory
  (:func:`locedit.patching.as_dtype`'s bfloat16 copy), checked before every sweep, so it must cost next to
  nothing; it means nothing in another process (addresses), so it never names a file. The version counter sees
  every in-place edit made through the parameter (``w[0, 0] += 1`` under ``no_grad``, an optimiser step), the
  address sees a replaced tensor, and the checksum sees edits through ``.data``, which bypass the counter, where
  they touch a sampled value (ROME and MEMIT write through the parameter, so the counter sees them).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from locedit.models import Model

#: The default number of values :func:`weights_digest` reads per tensor (a strided sample).
SAMPLE = 65_536


def weights_digest(
    tensors: Iterable[torch.Tensor], *, sample: int | None = SAMPLE, salt: str = "", size: int = 8
) -> str:
    """Hex BLAKE2b (``size`` bytes) of ``salt`` and each tensor's shape and float32 values, in order.

    ``sample``: read at most about this many values per tensor (every ``numel // sample``-th), or every value if
    ``None``. ``salt``: text hashed first (e.g. a cache version and the arguments a cached result depends on).
    Stable across processes, devices and runs: fit for naming files.
    """
    digest = hashlib.blake2b(digest_size=size)
    if salt:
        digest.update(salt.encode())
    with torch.no_grad():
        for t in tensors:
            flat = t.detach().reshape(-1)
            if sample is not None:
                flat = flat[:: max(1, flat.numel() // sample)]
            values = flat.float().cpu().contiguous()
            digest.update(str(tuple(t.shape)).encode())
            digest.update(memoryview(values.numpy()).cast("B"))
    return digest.hexdigest()


def model_digest(
    model: Model, layers: Iterable[int] | None = None, *, embed: bool = True, sample: int | None = SAMPLE, size: int = 8
) -> str:
    """:func:`weights_digest` of a :class:`~locedit.models.Model`'s parameters: the token embedding (if ``embed``),
    then every parameter of each block in ``layers`` (default: all), in that order."""
    spec, hf = model.spec, model.hf
    layers = range(spec.n_layers) if layers is None else layers
    params = list(spec.part(hf, "embed").parameters()) if embed else []
    for layer in layers:
        params += list(spec.block(hf, layer).parameters())
    return weights_digest(params, sample=sample, size=size)


def weights_version(module: nn.Module) -> tuple:
    """A key that changes when a parameter of ``module`` is replaced or edited in place, cheaply (see the module
    docstring for what it sees and why it is not :func:`weights_digest`). Compare it only within one process."""
    parts = []
    with torch.no_grad():
        for p in module.parameters():
            flat = p.detach().reshape(-1)
            parts.append((p.data_ptr(), p._version, float(flat[:: max(1, flat.numel() // 257)].double().sum())))
    return tuple(parts)
