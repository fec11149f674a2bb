"""locedit.circuits.tokens: single-token vocabularies."""

from __future__ import annotations

from locedit.circuits.tokens import single_token_words


def test_vocabularies_are_filtered_to_single_tokens(smollm2):
    names = single_token_words(smollm2.tokenizer, ["Mary", "Dylan", "John"], "names", strict=False)
    assert names == ("Mary", "John")  # " Dylan" is two tokens for SmolLM2
