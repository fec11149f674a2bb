"""Concepts for the reverse-dictionary task of chapter 3: GCIDE nouns and their modern glosses (``gcide``), the
prompts that ask a model to name them and the token buckets of their traces (``prompts``), and less specific
versions of a definition (``abstraction``)."""

from locedit.concepts.abstraction import ABSTRACTIONS, abstract
from locedit.concepts.gcide import CONCRETE_GENERA, Concept, ConceptDataError, load_concepts, lookup
from locedit.concepts.prompts import (
    BUCKETS,
    FORMATS,
    SHOT_WORDS,
    ConceptPrompt,
    bucket_effects,
    bucket_positions,
    bucket_sample,
    build_prompts,
    by_frequency,
    definition_span,
    render,
    sample,
    trace_concept,
    word_classes,
)

__all__ = [
    "ABSTRACTIONS",
    "BUCKETS",
    "CONCRETE_GENERA",
    "FORMATS",
    "SHOT_WORDS",
    "Concept",
    "ConceptDataError",
    "ConceptPrompt",
    "abstract",
    "bucket_effects",
    "bucket_positions",
    "bucket_sample",
    "build_prompts",
    "by_frequency",
    "sample",
    "by_frequency",
    "definition_span",
    "load_concepts",
    "lookup",
    "render",
    "trace_concept",
    "word_classes",
]
