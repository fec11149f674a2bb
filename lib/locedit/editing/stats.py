"""Second moment of the MLP keys, C = E[k kᵀ], the statistic ROME and MEMIT need (ROME's ``layer_stats.py``).

A key k is the input of a layer's MLP output projection (the ``mlp_act`` site). ROME estimates C from 100,000
token positions of Wikipedia; offline we use **text the model writes itself**: sequences sampled from the model
with a fixed seed (top-k sampling from a list of one-word starts), so the statistic describes the model's own
distribution of keys. The book says so where it uses it.

Both the corpus (token ids) and each layer's C are cached under ``cache_dir()/"stats"``, in files named by the
model, a fingerprint of its weights (so an edited model, or another checkpoint under the same name, gets its own
statistics), the layer, the corpus id and the number of tokens. Files are written atomically; a file that cannot
be read (truncated, garbled) counts as missing and is recomputed. Every layer asked for in one call is computed in
one pass over the corpus.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import torch

from locedit.files import load_torch, remove_stale_temps, save_atomic
from locedit.fingerprints import model_digest
from locedit.hooks import patch
from locedit.models import Model, cache_dir
from locedit.progress import progress
from locedit.threads import loop_threads

#: One-word starts of the sampled corpus (several topics, so the keys are not all from one kind of text).
STARTS = (
    "The", "In", "A", "When", "Today", "My", "There", "This", "After", "It", "We", "Scientists", "History",
    "Music", "Many", "Our", "According", "During", "Water", "People", "Once", "If", "How", "Since", "Most",
    "Every", "Some", "Although", "During", "She", "He", "They",
)  # fmt: skip


def model_fingerprint(model: Model, layer: int | None = None) -> str:
    """A short hash of the weights a layer's keys depend on (embeddings and blocks 0..layer; all if ``None``).

    :func:`locedit.fingerprints.model_digest`: a strided sample of every such parameter (up to 65,536 values
    each), enough to tell checkpoints and edits apart without reading every byte.
    """
    last = model.spec.n_layers - 1 if layer is None else layer
    return model_digest(model, range(last + 1))


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[-60:]


@torch.no_grad()
def sample_corpus(
    model: Model, n_tokens: int, seq_len: int = 128, top_k: int = 40, seed: int = 0, batch_size: int = 32
) -> torch.Tensor:
    """Token ids [n_seq, seq_len] sampled from the model: ≥ ``n_tokens`` positions in all (cached on disk)."""
    n_seq = -(-n_tokens // seq_len)
    corpus_id = f"sampled-k{top_k}-s{seed}-len{seq_len}"
    path = cache_dir() / "stats" / f"{_safe(model.name)}-{model_fingerprint(model)}-{corpus_id}-n{n_seq}.pt"
    cached = load_torch(path)
    if isinstance(cached, torch.Tensor) and cached.ndim == 2 and len(cached) == n_seq:
        return cached
    tok = model.tokenizer
    starts = [tok(" " + s if i else s, add_special_tokens=False)["input_ids"][:1] for i, s in enumerate(STARTS)]
    rows = []
    for b in progress(range(0, n_seq, batch_size), "sampling the statistics corpus", unit="batch"):
        torch.manual_seed(seed * 100_003 + b)
        first = torch.tensor([starts[(b + i) % len(starts)] for i in range(min(batch_size, n_seq - b))])
        out = model.hf.generate(
            input_ids=first.to(model.device),
            attention_mask=torch.ones_like(first).to(model.device),
            do_sample=True,
            top_k=top_k,
            max_length=seq_len,
            min_length=seq_len,
            pad_token_id=tok.pad_token_id,
        )
        rows.append(out[:, :seq_len].cpu())
    ids = torch.cat(rows)
    save_atomic(ids, path)
    return ids


def _stat_path(model: Model, layer: int, corpus_id: str, n_tokens: int, fingerprint: str) -> Path:
    name = f"{_safe(model.name)}-{fingerprint}-L{layer}-{corpus_id}-n{n_tokens}.pt"
    return cache_dir() / "stats" / name


def key_second_moment(
    model: Model,
    layers: int | list[int],
    n_tokens: int = 20_000,
    seq_len: int = 128,
    seed: int = 0,
    batch_size: int = 16,
    verbose: bool = False,
) -> dict[int, torch.Tensor]:
    """C_l = E[k kᵀ] over ≥ ``n_tokens`` positions of model-sampled text, float64 [d_mlp, d_mlp], for each layer.

    Cached on disk per (model, weights fingerprint, layer, corpus, n_tokens); missing layers are computed
    together in one pass over the corpus.
    """
    try:  # one layer (a Python, NumPy or torch integer) or an iterable of them
        layers, single = [model.spec.check_layer(layers)], True
    except TypeError:
        if not isinstance(layers, Iterable) or isinstance(layers, str):
            raise  # check_layer's message: what a layer must be
        layers, single = [model.spec.check_layer(layer) for layer in layers], False
    corpus_id = f"sampled-k40-s{seed}-len{seq_len}"
    paths = {layer: _stat_path(model, layer, corpus_id, n_tokens, model_fingerprint(model, layer)) for layer in layers}
    remove_stale_temps(cache_dir() / "stats")  # left by killed writes
    out: dict[int, torch.Tensor] = {}
    missing = []
    for layer, path in paths.items():
        cached = load_torch(path)
        if isinstance(cached, dict) and isinstance(cached.get("mom2"), torch.Tensor):
            out[layer] = cached["mom2"]
        else:
            missing.append(layer)
    if missing:
        started = time.perf_counter()
        names = f"layer {missing[0]}" if len(missing) == 1 else f"layers {missing}"
        print(f"computing key statistics of {names} over {n_tokens:,} tokens, once; cached in "
              f"{paths[missing[0]].parent}", file=sys.stderr, flush=True)  # fmt: skip
        with loop_threads():  # sampling and the corpus pass: the threads the machine can give now
            ids = sample_corpus(model, n_tokens, seq_len=seq_len, seed=seed)
            d = model.spec.d_mlp
            sums = {layer: torch.zeros(d, d, dtype=torch.float64) for layer in missing}
            count = 0
            with torch.no_grad():
                for b in progress(range(0, len(ids), batch_size), "key statistics", unit="batch"):
                    batch = ids[b : b + batch_size].to(model.device)
                    with patch(model, record=[f"mlp_act.{layer}" for layer in missing], stop=True) as acts:
                        model.hf(input_ids=batch, attention_mask=torch.ones_like(batch))
                    for layer in missing:
                        k = acts[f"mlp_act.{layer}"].reshape(-1, d).to("cpu", torch.float64)
                        sums[layer].addmm_(k.T, k)
                    count += batch.numel()
        for layer in missing:
            mom2 = sums[layer] / count
            save_atomic({"mom2": mom2, "count": count, "corpus": corpus_id, "model": model.name}, paths[layer])
            out[layer] = mom2
        if verbose:
            print(f"key statistics for layers {missing}: {count} tokens, {time.perf_counter() - started:.1f} s")
    return out[layers[0]] if single else out
