"""Copies of a model in another dtype (``dtype=torch.bfloat16`` in every sweep), kept while its weights stay
(:func:`locedit.fingerprints.weights_version` tells when they change)."""

from __future__ import annotations

import copy
import weakref

import torch

from locedit.fingerprints import weights_version
from locedit.models import Model

_COPIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def as_dtype(model: Model, dtype: torch.dtype | None) -> Model:
    """``model`` itself if ``dtype`` is ``None`` or its own dtype, else a copy in ``dtype`` (kept for later calls
    until the weights change)."""
    if dtype is None or dtype == model.dtype:
        return model
    key = weights_version(model.hf)
    copies = _COPIES.setdefault(model.hf, {})
    cached = copies.get(dtype)
    if cached is None or cached[0] != key:
        copies.pop(dtype, None)
        hf = copy.deepcopy(model.hf).to(dtype)
        hf.eval()
        cached = copies[dtype] = (key, hf)
    return Model(hf=cached[1], tokenizer=model.tokenizer, spec=model.spec, name=model.name)
