"""Copies of a model in another dtype (``dtype=torch.bfloat16`` in every sweep), kept while its weights stay."""

from __future__ import annotations

import copy
import weakref

import torch
from torch import nn

from locedit.models import Model

_COPIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _fingerprint(hf: nn.Module) -> tuple:
    """Changes whenever a weight is replaced or edited in place (version counter, plus a strided checksum that also
    catches edits through ``.data``, which do not bump the version)."""
    parts = []
    with torch.no_grad():
        for p in hf.parameters():
            flat = p.detach().reshape(-1)
            parts.append((p.data_ptr(), p._version, float(flat[:: max(1, flat.numel() // 257)].double().sum())))
    return tuple(parts)


def as_dtype(model: Model, dtype: torch.dtype | None) -> Model:
    """``model`` itself if ``dtype`` is ``None`` or its own dtype, else a copy in ``dtype`` (kept for later calls
    until the weights change)."""
    if dtype is None or dtype == model.dtype:
        return model
    key = _fingerprint(model.hf)
    copies = _COPIES.setdefault(model.hf, {})
    cached = copies.get(dtype)
    if cached is None or cached[0] != key:
        copies.pop(dtype, None)
        hf = copy.deepcopy(model.hf).to(dtype)
        hf.eval()
        cached = copies[dtype] = (key, hf)
    return Model(hf=cached[1], tokenizer=model.tokenizer, spec=model.spec, name=model.name)
