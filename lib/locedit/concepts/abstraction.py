"""Input abstraction: the same concept asked with a less specific definition.

Each transform keeps the prompt's format and rewrites only the queried definition:

- ``"general genus"``: the genus (the gloss's head noun, "quadruped") replaced by the wider word it falls under
  (:data:`locedit.concepts.gcide.CONCRETE_GENERA`: "animal"), the article fixed ("A quadruped" → "An animal");
- ``"content words"``: the function words (:data:`locedit.concepts.prompts.FUNCTION_WORDS`) and commas removed;
- ``"function words"``: only the function words kept;
- ``"shuffled"``: the words in a random order (``random.Random(seed)``), the first letter re-capitalised;
- ``"genus only"``: the article and the genus alone ("A quadruped").

A transform that leaves the definition unchanged (a genus that is already its own general word) or empty (a
gloss without function words) returns ``None``: the caller counts those and leaves them out of the comparison.
"""

from __future__ import annotations

import random
import re

from locedit.concepts.gcide import Concept, ConceptDataError
from locedit.concepts.prompts import FUNCTION_WORDS

ABSTRACTIONS = ("general genus", "content words", "function words", "shuffled", "genus only")


def _article(word: str) -> str:
    return "An" if word[:1].lower() in "aeiou" else "A"


def _sentence(words: list[str]) -> str | None:
    text = " ".join(words).strip(" ,")
    return text[:1].upper() + text[1:] if text else None


def abstract(concept: Concept, kind: str, seed: int = 0) -> str | None:
    """``concept``'s definition under abstraction ``kind`` (one of :data:`ABSTRACTIONS`), or ``None`` when the
    transform leaves nothing or nothing changed."""
    words = re.findall(r"[A-Za-z'\-]+|,", concept.definition)
    if kind == "general genus":
        if concept.general == concept.genus:
            return None
        out, done = [], False
        for i, w in enumerate(words):
            if not done and w.lower() == concept.genus:
                out.append(concept.general)
                done = True
                if i and out[i - 1].lower() in ("a", "an") and i == 1:
                    out[0] = _article(concept.general)
            else:
                out.append(w)
        text = _sentence(out) if done else None
    elif kind == "content words":
        text = _sentence([w for w in words if w != "," and w.lower() not in FUNCTION_WORDS])
    elif kind == "function words":
        text = _sentence([w for w in words if w.lower() in FUNCTION_WORDS])
    elif kind == "shuffled":
        plain = [w for w in words if w != ","]
        random.Random(seed).shuffle(plain)
        text = _sentence([w.lower() for w in plain])
    elif kind == "genus only":
        text = f"{_article(concept.genus)} {concept.genus}"
    else:
        raise ConceptDataError(f"unknown abstraction {kind!r}: choose from {', '.join(ABSTRACTIONS)}")
    return None if text is None or text == concept.definition else text.replace(" ,", ",")
