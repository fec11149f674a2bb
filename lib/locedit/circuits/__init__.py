"""Circuits: the task generators and path patching behind chapter 4 (circuit reuse, Merullo et al. 2024).

- :mod:`~locedit.circuits.tasks`: Indirect Object Identification (IOI) and Colored Objects prompts with their
  corrupted twins, token positions and answer ids; the logit-difference metric and accuracy.
- :mod:`~locedit.circuits.path_patching`: path patching from every attention head to the logits (or to other
  heads' z) as the paper's code defines it, on the patching engine, with a plain full-forward reference. (The
  package exports the *function* ``path_patching``; the module is ``importlib.import_module(
  "locedit.circuits.path_patching")``.)
"""

from __future__ import annotations

from locedit.circuits.path_patching import (
    PathLogitDiffs,
    path_patching,
    path_patching_logit_diffs,
    path_patching_reference,
)
from locedit.circuits.tasks import (
    COLORS,
    IOI_TEMPLATES,
    NAMES,
    OBJECTS,
    ColoredObjects,
    IOIPrompts,
    accuracy,
    colored_objects,
    ioi,
    load_colored_objects,
    logit_diff,
)

__all__ = [
    "COLORS",
    "IOI_TEMPLATES",
    "NAMES",
    "OBJECTS",
    "ColoredObjects",
    "IOIPrompts",
    "PathLogitDiffs",
    "accuracy",
    "colored_objects",
    "ioi",
    "load_colored_objects",
    "logit_diff",
    "path_patching",
    "path_patching_logit_diffs",
    "path_patching_reference",
]
