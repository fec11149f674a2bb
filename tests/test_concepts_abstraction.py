"""Input abstraction: each transform rewrites the definition as stated, and says when it has nothing to do."""

from __future__ import annotations

import pytest

from locedit.concepts import ABSTRACTIONS, Concept, ConceptDataError, abstract

DOG = Concept("dog", "A quadruped of the genus Canis", "quadruped", "animal", 0, "raw")


def test_each_abstraction():
    assert abstract(DOG, "general genus") == "An animal of the genus Canis"
    assert abstract(DOG, "content words") == "Quadruped genus Canis"
    assert abstract(DOG, "function words") == "A of the"
    assert abstract(DOG, "genus only") == "A quadruped"
    shuffled = abstract(DOG, "shuffled", seed=3)
    assert sorted(shuffled.lower().split()) == sorted(DOG.definition.lower().split())
    assert abstract(DOG, "shuffled", seed=3) == shuffled  # seeded


def test_no_change_or_nothing_left_gives_none():
    animal = Concept("beast", "An animal with four legs", "animal", "animal", 0, "raw")
    assert abstract(animal, "general genus") is None
    bare = Concept("x", "Red wooden crate", "crate", "container", 0, "raw")
    assert abstract(bare, "function words") is None


def test_unknown_kind_is_refused():
    assert "shuffled" in ABSTRACTIONS
    with pytest.raises(ConceptDataError, match="unknown abstraction"):
        abstract(DOG, "hypernyms")
