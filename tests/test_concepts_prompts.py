"""Reverse-dictionary prompts: formats, counted skips, the queried definition's span and buckets, word classes,
and a trace that corrupts the queried definition only."""

from __future__ import annotations

import pytest
import torch

from locedit.concepts import (
    BUCKETS,
    Concept,
    ConceptDataError,
    bucket_effects,
    bucket_positions,
    bucket_sample,
    build_prompts,
    definition_span,
    render,
    trace_concept,
    word_classes,
)
from locedit.concepts.prompts import is_function_word

CHAIR = Concept("chair", "A movable single seat with a back", "seat", "furniture", 0, "raw")
COAT = Concept("coat", "An outer garment fitting the upper part of the body", "garment", "clothing", 0, "raw")
DOG = Concept("dog", "A quadruped of the genus Canis", "quadruped", "animal", 0, "raw")


def test_render_few_and_zero_shot():
    text = render("3-shot dictionary", DOG.definition, [CHAIR, COAT])
    assert text.startswith("Definition: A movable single seat with a back\nWord: chair\n\n")
    assert text.endswith("Definition: A quadruped of the genus Canis\nWord:")
    assert render("0-shot quoted", DOG.definition) == 'The word for "A quadruped of the genus Canis" is'
    with pytest.raises(ConceptDataError, match="needs shots"):
        render("3-shot dictionary", DOG.definition)
    with pytest.raises(ConceptDataError, match="unknown prompt format"):
        render("2-shot", DOG.definition)
    with pytest.raises(ConceptDataError, match="empty definition"):
        render("0-shot quoted", " ")


def test_build_prompts_counts_every_skip(smollm2):
    multi = Concept("xylograph", "A wooden engraving printed on paper", "engraving", "thing", 0, "raw")
    own = Concept("boat", "A small boat for rowing", "boat", "vehicle", 0, "raw")
    long = Concept("cart", "A wagon " + "very " * 9000, "wagon", "vehicle", 0, "raw")
    items, skipped = build_prompts(smollm2, [DOG, CHAIR, multi, own, long], "3-shot dictionary", [CHAIR, COAT])
    assert [i.word for i in items] == ["dog"]
    assert skipped == {
        "a shot's word": 1,
        "multi-token headword": 1,
        "definition contains its headword": 1,
        "longer than the context": 1,
    }


def test_span_and_buckets_of_the_queried_definition(smollm2):
    prompt = render("3-shot dictionary", DOG.definition, [CHAIR, COAT])
    first, end = definition_span(smollm2, prompt, DOG.definition)
    tokens = smollm2.str_tokens(prompt)
    assert "".join(tokens[first:end]).strip() == DOG.definition
    with pytest.raises(ConceptDataError, match="occurs twice"):
        definition_span(smollm2, render("3-shot dictionary", CHAIR.definition, [CHAIR, COAT]), CHAIR.definition)
    with pytest.raises(ConceptDataError, match="not in the prompt"):
        definition_span(smollm2, prompt, "A cat")


def test_trace_corrupts_only_the_queried_definition(smollm2):
    (item,), _ = build_prompts(smollm2, [DOG], "3-shot dictionary", [CHAIR, COAT])
    n = smollm2.spec.n_layers
    trace = trace_concept(smollm2, item, kinds=("hidden",), samples=2, layers=[0, n - 1], noise=0.1)
    first, end = trace.subject_range
    assert "".join(trace.tokens[first:end]).strip() == DOG.definition
    scores = trace.scores["hidden"]
    # restoring before the definition changes nothing (the shots are clean); restoring the last token at the last
    # layer gives back the clean run exactly
    assert torch.allclose(scores[:, :first], torch.full_like(scores[:, :first], trace.p_corrupt))
    assert abs(float(scores[1, -1]) - trace.p_clean) < 1e-4
    buckets = bucket_positions(trace)
    assert list(buckets) == list(BUCKETS)
    last = len(trace.tokens) - 1
    assert buckets["first definition"] == [first] and buckets["last definition"] == [end - 1]
    assert buckets["first after"] == [end] and buckets["last token"] == [last]
    assert buckets["further template"] == list(range(end + 1, last))
    classes = word_classes(trace)
    assert len(classes) == end - first
    words = [t.strip() for t in trace.tokens[first:end]]
    assert classes[0] == "function" and classes[words.index("of")] == "function" and classes[1] == "content"
    assert classes[-1] == "content"  # the last piece of "Canis"


@pytest.mark.parametrize(("token", "function"), [(" the", True), (" of", True), (",", True), (" Canis", False)])
def test_function_words(token, function):
    assert is_function_word(token) is function


def test_bucket_sample_and_effects_skip_unrestored_tokens(smollm2):
    (item,), _ = build_prompts(smollm2, [DOG], "3-shot dictionary", [CHAIR, COAT])
    first, end = definition_span(smollm2, item.prompt, item.definition)
    positions = bucket_sample(smollm2, item)
    length = len(smollm2.str_tokens(item.prompt))
    assert positions == sorted({first, (first + end - 1) // 2, end - 1, *range(end, length)})
    n = smollm2.spec.n_layers
    trace = trace_concept(smollm2, item, kinds=("hidden",), samples=1, layers=[0, n - 1], noise=0.1,
                          positions=positions)  # fmt: skip
    aie, counts = bucket_effects([trace], "hidden")
    assert aie.shape == (len(BUCKETS), 2) and counts.tolist() == [1.0] * len(BUCKETS)
    assert not bool(torch.isnan(aie).any())  # the middle bucket averages its one restored token only
    middle = (first + end - 1) // 2
    assert torch.allclose(aie[1], trace.effect("hidden")[:, middle])
    with pytest.raises(ConceptDataError, match="no traces"):
        bucket_effects([], "hidden")
