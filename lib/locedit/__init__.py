"""locedit: the library behind the book *Locate & Edit*.

The chapters import what they need from the modules; the most used names are re-exported here.
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
