"""locedit: the library behind the book *Locate & Edit*.

The chapters import what they need from the modules; the most used names are re-exported here.

Map of the library: one line per module, what it holds, and the locedit modules it may import. Data flows one way:
chapter → task data → models + hooks → method module → evaluation / views → chapter. Nothing imports a chapter,
only ``arch`` names module paths, and no module imports another's ``_private`` name (``tests/test_imports.py``).

Foundations (import nothing else of locedit, or only what is listed):
    files         atomic writes, torch files that load as None when unreadable, folder manifests, stale-temp sweep
    fingerprints  content digests of weights (disk cache keys) and in-process weight versions       (models)
    progress      tqdm.auto bars for long loops; LOCEDIT_PROGRESS=0 silences them
    _checks       argument checks shared by the entry points (integers, strings, prompt lists, counts)
    threads       how many torch threads a hot loop uses: affinity, cgroup quota, idle CPUs; LOCEDIT_THREADS
    devices       resolve_device ("auto", "cpu", "cuda", "mps" with clear errors), native_bf16
    arch          one FamilyTable per model family, BlockSizes, the SITES table, layer adapters, output head
    models        load_model, the Model handle, built-in offline models and their verified cache
                                                                                    (arch, files, devices, _checks)
    tokens        a target's token ids with its leading space, the pad-id rule, padding of id rows  (models)
    hooks         Site, Intervention, patch(record, stop), attach, locate: the site layer            (arch, models)
Methods (may import the foundations and the methods listed):
    patching/     plan (patches → compiled ops), engine (layer-by-layer runs), dtype, sweeps (sweep, record, grid)
    lens          logit lens, decode any vector, unembedding readouts                                (hooks)
    tracing       causal tracing on the patching engine, bucketed effects                            (patching)
    neuron_decoding  NeuronDecoding: one decoded weight matrix (top tokens, z-scores), its cache checks
    neurons       decode every MLP neuron through the unembedding, search by token   (lens, neuron_decoding)
    activations   neuron activations over texts, activation samples                                  (neurons)
    clamping      clamp neurons, generate and score under clamps                                     (neurons)
    editing/      edit (Edit, stacks, per-row edits), common (requests), layers (which layer to edit),
                  stats (key statistics), values (ROME/MEMIT value optimisation), rome, memit, ft (and its loss)
                                                                                   (tracing, tokens)
    evaluation    CounterFact metrics                                                   (editing.edit, data)
    concepts/     GCIDE nouns and modern glosses (cached), reverse-dictionary prompts, definition buckets and
                  word classes of a concept trace, input abstraction                         (tracing, tokens)
    circuits/     IOI and Colored Objects tasks, attention patterns and forced attention, path patching
                  (frozen_run: its fast last-position pass), heads (top-k% circuits, overlap vs random,
                  Spearman), intervention (attention steering), units (circuits of neurons, heads and norm
                  elements: unit masks, pruned weights), classifier (a task's score head), masks (learned
                  unit masks: circuit discovery), circuit_editing (masked fine-tuning inside / outside
                  a circuit, ROME at the circuit's densest / sparsest layer), masked_sgd (its SGD step on
                  masked entries: dense, or a linear layer's chosen rows / columns)
                                                                                 (patching, editing, evaluation)
    data/         the book's facts, relation templates, CounterFact / known_1000 loaders; classification tasks
                  (hierarchy, agreement, persona) and the hierarchy edit requests
    results       the chapters' results files (strict JSON), claims with their criteria, verdicts    (files)
    scorecard     the reproduction scorecard: book page, README table, a chapter's claims table    (results)
Views (import only models, arch and each other; a chapter composes them with the methods):
    viz/          figures: style (template, token labels, titles), heatmaps (layer x position grids, logit lens),
                  curves (one value per layer), heads (attention heads, head-circuit overlaps), unit_circuits:
                  a circuit's composition by layer, density sweeps, Jaccard maps, mask training
    widgets       ipywidgets explorers and the neuron browser                                        (viz)
"""

from locedit.arch import SITES, ArchSpec, UnsupportedArchitectureError
from locedit.hooks import Intervention, Site, patch, run_with
from locedit.lens import decode, logit_lens
from locedit.models import BUILTINS, Model, ModelNotAvailableError, cache_dir, load_model

__all__ = [
    "BUILTINS",
    "SITES",
    "ArchSpec",
    "Intervention",
    "Model",
    "ModelNotAvailableError",
    "Site",
    "UnsupportedArchitectureError",
    "cache_dir",
    "decode",
    "load_model",
    "logit_lens",
    "patch",
    "run_with",
]
__version__ = "0.1.0"
