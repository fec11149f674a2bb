"""Circuits: the task generators and path patching behind chapter 4 (circuit reuse, Merullo et al. 2024).

- :mod:`~locedit.circuits.ioi`: Indirect Object Identification (IOI) prompts with their corrupted twins, token
  positions and answer ids.
- :mod:`~locedit.circuits.colored_objects`: Colored Objects prompts (generated, or loaded from the paper's released
  files) with their corrupted twins, the colours' token positions and answer ids.
- :mod:`~locedit.circuits.metrics`: the logit-difference metric and accuracy.
- :mod:`~locedit.circuits.tokens`: single-token vocabularies and token positions, shared by the two tasks;
- :mod:`~locedit.circuits.attention`: every head's attention probabilities (rebuilt from the recorded queries and
  keys), and attention forced onto chosen positions at the last position (the paper's intervention);
- :mod:`~locedit.circuits.inputs`: the checks of heads and prompts that the other modules share, and clean /
  corrupted prompt pairs grouped by length;
- :mod:`~locedit.circuits.frozen_run`: the fast pass behind path patching: the sender-patched run with every other
  head frozen, at the last position only, as MLP-only layers over all prompts × senders at once;
- :mod:`~locedit.circuits.path_patching`: path patching from every attention head to the logits (or to other
  heads' q, k, v or z) as the paper's code defines it, on that fast pass and the patching engine, with a plain
  full-forward reference. (The
  package exports the *functions* ``path_patching``, ``ioi`` and ``colored_objects``; the modules of those names are
  ``importlib.import_module("locedit.circuits.path_patching")`` and so on.)
- :mod:`~locedit.circuits.heads`: circuits as the top k% of heads per path-patching stage, their overlap against
  random head sets (permutation and hypergeometric p-values), Spearman's rho with ties, and the attention
  signatures of head classes (attention from one position to others, previous-token scores);
- :mod:`~locedit.circuits.intervention`: heads made to attend uniformly to chosen tokens at the last position
  (the paper's steering on Colored Objects), accuracy before / after, new mistakes, per-head effects.

Chapter 5 (circuits meet knowledge editing, Ge et al. 2024):

- :mod:`~locedit.circuits.units`: circuits as sets of structured units (MLP neurons, attention heads, norm gain
  elements), their exact parameter counts and densities, random circuits of a given density, unit masks (hooks
  that multiply the units' sites) and the pruned "circuit model" (weights outside the circuit zeroed, restored
  exactly).
- :mod:`~locedit.circuits.classifier`: the two-way score head on the frozen model's last-token final state (the
  paper's ``score`` layer), its logits and accuracy on a task, under a circuit;
- :mod:`~locedit.circuits.masks`: circuit discovery with a hard-concrete mask over units (straight-through, a rising
  sparsity weight, a stop at the target density), the paper's faithfulness / circuit / complement accuracy, runs
  cached by content. (The classifier's ``accuracy`` is not re-exported: ``accuracy`` here is the IOI metric.)
- :mod:`~locedit.circuits.circuit_editing`: the paper's edit (SGD with gradients masked to a circuit, its
  complement or any parameter masks, clamped around the originals, restored exactly after each request) and its
  metric before / after; editing the pruned network; ROME at the circuit's densest vs sparsest MLP layer.
"""

from __future__ import annotations

from locedit.circuits.attention import attention_patterns, force_attention
from locedit.circuits.circuit_editing import (
    EditOutcome,
    MaskedFTSettings,
    edit_sweep,
    masked_finetuned,
    masked_ft,
    rome_inside_outside,
)
from locedit.circuits.classifier import (
    AnswerHead,
    ScoreHead,
    TaskHead,
    answer_head,
    head_logits,
    last_token_states,
    train_head,
)
from locedit.circuits.colored_objects import COLORS, OBJECTS, ColoredObjects, colored_objects, load_colored_objects
from locedit.circuits.heads import (
    OverlapTest,
    attention_to,
    circuit,
    circuit_heads,
    hypergeometric_tail,
    overlap_test,
    previous_token_score,
    spearman,
    stagewise_overlap_test,
    top_heads,
)
from locedit.circuits.intervention import (
    SteeringOutcome,
    head_intervention_effects,
    other_positions,
    steered_logits,
    steering_outcome,
)
from locedit.circuits.ioi import IOI_TEMPLATES, NAMES, IOIPrompts, ioi
from locedit.circuits.masks import CircuitScores, LearnedCircuit, MaskSettings, circuit_scores, learn_circuit
from locedit.circuits.metrics import accuracy, logit_diff
from locedit.circuits.path_patching import (
    PathLogitDiffs,
    path_patching,
    path_patching_logit_diffs,
)
from locedit.circuits.units import (
    UNIT_KINDS,
    Circuit,
    UnitLayout,
    empty_circuit,
    full_circuit,
    parameter_masks,
    pruned,
    random_circuit,
    unit_layout,
    unit_masks,
)

__all__ = [
    "learn_circuit",
    "circuit_scores",
    "MaskSettings",
    "LearnedCircuit",
    "CircuitScores",
    "train_head",
    "last_token_states",
    "head_logits",
    "TaskHead",
    "ScoreHead",
    "AnswerHead",
    "answer_head",
    "COLORS",
    "EditOutcome",
    "MaskedFTSettings",
    "edit_sweep",
    "masked_finetuned",
    "masked_ft",
    "rome_inside_outside",
    "UNIT_KINDS",
    "Circuit",
    "UnitLayout",
    "empty_circuit",
    "full_circuit",
    "parameter_masks",
    "pruned",
    "random_circuit",
    "unit_layout",
    "unit_masks",
    "IOI_TEMPLATES",
    "NAMES",
    "OBJECTS",
    "ColoredObjects",
    "IOIPrompts",
    "OverlapTest",
    "PathLogitDiffs",
    "SteeringOutcome",
    "accuracy",
    "attention_patterns",
    "attention_to",
    "circuit",
    "circuit_heads",
    "colored_objects",
    "force_attention",
    "head_intervention_effects",
    "hypergeometric_tail",
    "ioi",
    "load_colored_objects",
    "logit_diff",
    "other_positions",
    "overlap_test",
    "path_patching",
    "path_patching_logit_diffs",
    "previous_token_score",
    "spearman",
    "stagewise_overlap_test",
    "steered_logits",
    "steering_outcome",
    "top_heads",
]
