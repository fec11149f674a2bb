"""Model editors (ROME, MEMIT, constrained fine-tuning) and the :class:`Edit` they all return.

Each editor takes a model and one or more facts (CounterFact records, their ``requested_rewrite`` dicts, or
:class:`Request` objects) and returns an :class:`Edit`: the weight deltas, not yet applied. Apply and revert
exactly with ``with edit.applied(model): ...``, or ``edit.apply(model)`` / ``edit.revert(model)``.
"""

from locedit.editing.common import Request, as_request, context_templates
from locedit.editing.edit import Edit, EditError, applied_edits, applied_per_row
from locedit.editing.ft import FTHyperParams, ft, ft_each
from locedit.editing.layers import EDIT_LAYERS, default_edit_layer, edit_layer, memit_layers
from locedit.editing.memit import MEMITHyperParams, memit
from locedit.editing.rome import ROMEHyperParams, rome, rome_each
from locedit.editing.stats import key_second_moment

__all__ = [
    "EDIT_LAYERS",
    "Edit",
    "EditError",
    "FTHyperParams",
    "MEMITHyperParams",
    "ROMEHyperParams",
    "Request",
    "applied_edits",
    "applied_per_row",
    "as_request",
    "context_templates",
    "default_edit_layer",
    "edit_layer",
    "ft",
    "ft_each",
    "key_second_moment",
    "memit",
    "memit_layers",
    "rome",
    "rome_each",
]
