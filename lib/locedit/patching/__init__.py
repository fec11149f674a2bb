"""The patching engine: run many interventions against one base run, computing only what each one changes.

A *sweep* starts from a **base run** (a prompt, or a batch of prompts, optionally with ``base_interventions`` such
as noise on the subject's embeddings) and a list of **patches**. A :class:`Patch` is one batch row: a list of
:class:`~locedit.hooks.Intervention` objects applied together (at one site, or at several layers and sites at
once), starting from one row of the base run. For every patch the sweep returns ``metric(logits)`` at the positions
it reads.

Causal attention makes most of that work redundant. A patch whose earliest intervention sits at layer ``l`` and
position ``p`` leaves every layer below ``l`` and every position before ``p`` exactly as in the base run. So the
engine (``method="incremental"``, the default)

- groups patches by their first position ``p`` and feeds only positions ``>= p``, with the base run's keys and
  values of the earlier positions in a Hugging Face cache, expanded over the batch (the *position half*; it only
  needs the public cache API, so it works for every model that supports a cache);
- calls the decoder layers one at a time, each patch joining the batch at its own first layer from the base run's
  stored residual stream (the *layer half*, through the family's :class:`~locedit.arch.LayerAdapter`; a family
  without one gets the position half only, ``method="cached"``);
- computes logits only at the positions read;
- skips patches that change nothing at all (every intervention replaces a value by the one the base run already
  has there, e.g. restoring a clean state at a position before the first token where clean and corrupted prompts
  differ): their result is the base run's.

``method="full"`` is the plain reference: every patch is one row of an ordinary forward pass under
:func:`locedit.hooks.patch`. Both agree to ~1e-6 in float32 (tested on the real models for every kind of site).

Precision: every sweep takes ``dtype``. ``dtype=torch.bfloat16`` runs on a bf16 copy of the model (made once and
kept while the weights are unchanged). Whether that is faster depends on the processor: on CPUs with bf16
instructions (AVX-512 BF16 on recent AMD EPYC, AMX on recent Xeons) and on GPUs it is 2–4× faster (measured on a
2-core AVX-512 BF16 EPYC: a 300-patch grid in 1.3 s against 2.5 s in float32), but AVX2-only CPUs emulate bf16 and
run it several times *slower* (measured 5× slower on an AVX2 EPYC); ``benchmarks/results.json`` names the machine
it was measured on. bf16 is good enough to *locate* (which layer and position carry an effect, and its rough
size): probabilities move by a few hundredths (``tests/test_patching.py`` states the tolerance per sweep). It is
not good enough to compare small effects (below ~0.05 in probability), to compute differences of nearly equal
quantities, or to check that two methods agree: use float32 for those.

A causal trace (ROME) with this engine::

    clean = record(model, clean_inputs, [f"resid_post.{l}" for l in range(n)])
    noise = Intervention("embed", "add", noise_samples, positions=subject)  # noise_samples: [S, len(subject), d]
    corrupted = {k: v.expand(S, -1) for k, v in clean_inputs.items()}  # one base row per noise sample
    patches = [Patch([Intervention(f"resid_post.{l}", "replace", clean[f"resid_post.{l}"], positions=[t])], row=s)
               for s in range(S) for l in range(n) for t in range(T)]
    scores = sweep(model, corrupted, patches, metric, base_interventions=[noise]).view(S, n, T).mean(0)

A window restores several layers in one patch (several interventions); a "severed" variant adds interventions that
freeze ``mlp_out`` at the corrupted run's values (:func:`record` with the noise as ``interventions``) at the layers
above. Path patching freezes heads the same way, per row and at several layers.

The package, along its seams: :mod:`~locedit.patching.plan` (patches checked and compiled into batched index
operations), :mod:`~locedit.patching.engine` (the base run and the incremental / cached / full runs),
:mod:`~locedit.patching.dtype` (the kept copies in another dtype) and :mod:`~locedit.patching.sweeps` (the public
functions below).
"""

from __future__ import annotations

from locedit.patching.dtype import as_dtype
from locedit.patching.plan import Patch
from locedit.patching.sweeps import activation_patching_grid, record, sweep

__all__ = ["Patch", "activation_patching_grid", "as_dtype", "record", "sweep"]
