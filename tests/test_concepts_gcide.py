"""GCIDE concepts: cleaning, the genus and sense rules, counted skips, the cache keyed on the package version."""

from __future__ import annotations

import json
import time

import pytest

from locedit.concepts import gcide
from locedit.concepts.gcide import (
    CONCRETE_GENERA,
    ConceptDataError,
    build_concepts,
    choose_sense,
    clean_definition,
    contains_word,
    genus,
    load_concepts,
    lookup,
)


def entry(word: str, *senses: str, pos: str = "n.") -> dict:
    definitions = [{"text": s, "examples": []} for s in senses]
    return {"entry": word, "pos": [{"part_of_speech": pos, "definitions": definitions}]}


def test_clean_definition_drops_notes_asides_and_later_clauses():
    raw = "A quadruped of the genus Canis, esp. the domestic dog (Canis familiaris).\n[1913 Webster]"
    assert clean_definition(raw) == "A quadruped of the genus Canis"
    assert clean_definition("a hot dish; a stew: eaten cold") == "A hot dish"
    assert clean_definition("An utensil -- called also pan. See Pot.") == "An utensil"


@pytest.mark.parametrize(
    ("definition", "expected"),
    [
        ("A movable single seat with a back", "seat"),
        ("The fleshy pome or fruit of a rosaceous tree", "fruit"),
        ("An article of food made from flour", "food"),
        ("Any animal belonging to the natural family Felidae", "animal"),
        ("A warm-blooded, feathered vertebrate provided with wings", "vertebrate"),
        ("Food; sustenance", None),
    ],
)
def test_genus_is_the_head_noun_after_the_article(definition, expected):
    assert genus(definition) == expected


def test_the_first_modern_concrete_sense_is_chosen():
    concept, reason = choose_sense(
        "hospital",
        ["A place for shelter or entertainment; an inn. [Obs.]", "A building in which the sick are treated."],
    )
    assert reason == "ok" and concept.sense == 1 and concept.genus == "building"
    assert concept.general == CONCRETE_GENERA["building"]
    assert concept.definition == "A building in which the sick are treated"
    # a usage label rules a sense out even when its genus is concrete
    concept, _ = choose_sense("x", ["Orig., a small vessel for water", "A large ship for war"])
    assert concept.sense == 1


def test_skips_are_counted_by_reason():
    entries = {
        "dog": entry("dog", "A quadruped of the genus Canis"),
        "cat": entry("cat", "A small animal that hunts the cat of the house"),  # holds its own headword
        "run": entry("run", "To move fast", pos="v. i."),
        "idea": entry("idea", "A thought or notion in the mind"),  # abstract: no concrete genus
        "Paris": entry("Paris", "A city of France"),
        "hut": entry("hut", "A small house with a `roof"),  # markup residue
    }
    concepts, counts = build_concepts(entries)
    assert [c.word for c in concepts] == ["dog"]
    assert counts == {
        "kept": 1,
        "definition contains its headword": 1,
        "not first a noun": 1,
        "no modern concrete sense": 1,
        "headword not 3-12 lower-case letters": 1,
        "markup left in the definition": 1,
    }
    assert sum(counts.values()) == len(entries)


def test_contains_word_matches_whole_words_and_plurals():
    assert contains_word("Food for dogs", "dog") and contains_word("A Dog kennel", "dog")
    assert not contains_word("A dogma of faith", "dog")


def test_real_dictionary_gives_hundreds_of_concepts_fast_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCEDIT_CACHE", str(tmp_path))
    concepts, counts = load_concepts()
    assert len(concepts) >= 300 and counts["kept"] == len(concepts)
    files = list((tmp_path / "concepts").glob("gcide-*.json"))
    assert len(files) == 1 and gcide.gcide_version() in files[0].name
    started = time.perf_counter()
    again, _ = load_concepts()
    assert time.perf_counter() - started < 2 and again == concepts
    hospital = lookup(concepts, "hospital")
    assert hospital.sense > 0 and "inn" not in hospital.definition  # GCIDE's first sense is archaic
    with pytest.raises(ConceptDataError, match="not among"):
        lookup(concepts, "zzzz")


def test_a_damaged_cache_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCEDIT_CACHE", str(tmp_path))
    monkeypatch.setattr(gcide, "read_entries", lambda: {"dog": entry("dog", "A quadruped of the genus Canis")})
    first, _ = load_concepts()
    (path,) = (tmp_path / "concepts").glob("gcide-*.json")
    path.write_text("{not json")
    again, _ = load_concepts()
    assert again == first and json.loads(path.read_text())["concepts"][0]["word"] == "dog"
