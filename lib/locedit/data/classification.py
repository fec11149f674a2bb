"""Three small true/false text classification tasks and the hierarchy edit requests (chapter 5, Ge et al. 2024).

Ge, Rudzicz & Zhu find circuits for classification tasks (a two-way score head on GPT-2's last token) and then edit
knowledge inside and outside those circuits. Their data (PAPERS.md §2) are CSV files of labelled texts; ours are
written for this book, in the same shapes:

- :func:`hierarchy_task`: "A beagle is a kind of dog." (1) and its false twin "A beagle is a kind of cat." (0), one
  pair per hyponym–hypernym pair of :data:`HIERARCHY` (the paper: 99 pairs from Ge et al., arXiv 2406.17253);
- :func:`agreement_task`: determiner–noun agreement from templates, as BLiMP's ``determiner_noun_agreement`` sets
  ("Anna saw these old chairs." 1 / "Anna saw this old chairs." 0), regular and irregular plurals, with and without
  an adjective;
- :func:`persona_task`: first-person statements an extravert would (1) or would not (0) make;
- :func:`hierarchy_edits`: the hierarchy pairs as CounterFact-format edit requests ("A beagle is a kind of" dog →
  cat, with two paraphrases), as the paper's ``hierarchy_data.json``.

Every task is balanced (as many 1s as 0s). Texts that belong together (a true statement and its false twin, a
grammatical sentence and its ungrammatical twin) share a *group*, and :meth:`ClassificationTask.split` and
:meth:`ClassificationTask.subset` keep groups whole, so a test text's twin never sits in the training set.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from locedit._checks import integer

PERSONA_PATH = Path(__file__).with_name("persona_extraversion.tsv")

__all__ = [
    "HIERARCHY",
    "HIERARCHY_DOMAINS",
    "PERSONA_PATH",
    "TASKS",
    "ClassificationTask",
    "agreement_task",
    "hierarchy_choice_task",
    "hierarchy_edits",
    "hierarchy_pairs",
    "hierarchy_task",
    "persona_task",
]


@dataclass(frozen=True)
class ClassificationTask:
    """Labelled texts for a two-way classifier.

    Attributes:
        name: ``"hierarchy"``, ``"agreement"``, ``"persona"`` (or any name).
        texts: the texts, distinct.
        labels: one per text; 1 = true / grammatical / the persona agrees, 0 otherwise.
        groups: one integer per text; texts with the same group (a minimal pair) stay together in splits and
            subsets. ``None``: every text is its own group.
        answers: for a task read by the model's own next token (``locedit.circuits.classifier.answer_head``), one
            pair per text: its class-0 and class-1 continuations (e.g. ``("cat", "dog")`` after "A beagle is a kind
            of", label 1). ``None`` for statement tasks read by a trained score head.
    """

    name: str
    texts: list[str]
    labels: list[int]
    groups: list[int] | None = field(default=None)
    answers: list[tuple[str, str]] | None = field(default=None)

    def __post_init__(self) -> None:
        if not self.texts:
            raise ValueError(f"task {self.name!r} has no texts: give at least one text of each label")
        if len(self.texts) != len(self.labels):
            raise ValueError(f"task {self.name!r}: {len(self.texts)} texts but {len(self.labels)} labels")
        if self.groups is not None and len(self.groups) != len(self.texts):
            raise ValueError(f"task {self.name!r}: {len(self.texts)} texts but {len(self.groups)} groups")
        if self.answers is not None:
            if len(self.answers) != len(self.texts):
                raise ValueError(f"task {self.name!r}: {len(self.texts)} texts but {len(self.answers)} answer pairs")
            bad = [
                a for a in self.answers if len(a) != 2 or a[0].strip() == a[1].strip() or not all(x.strip() for x in a)
            ]
            if bad:
                raise ValueError(
                    f"task {self.name!r}: answers must be pairs of two different non-empty continuations, got {bad[:2]}"
                )
        bad = [label for label in self.labels if label not in (0, 1) or isinstance(label, bool)]
        if bad:
            raise ValueError(f"task {self.name!r}: labels must be the integers 0 or 1, got {bad[:3]}")
        if set(self.labels) != {0, 1}:
            raise ValueError(f"task {self.name!r} has only label {self.labels[0]}: a classifier needs both 0 and 1")
        if not all(isinstance(t, str) and t.strip() for t in self.texts):
            raise ValueError(f"task {self.name!r}: every text must be a non-empty string")
        seen: set[str] = set()
        duplicates = [t for t in self.texts if t in seen or seen.add(t)]
        if duplicates:
            raise ValueError(f"task {self.name!r} repeats texts {duplicates[:3]}: keep each text once")

    def __len__(self) -> int:
        return len(self.texts)

    def _groups(self) -> dict[int, list[int]]:
        """group → the indices of its texts, in order of first appearance."""
        groups = self.groups if self.groups is not None else list(range(len(self.texts)))
        out: dict[int, list[int]] = defaultdict(list)
        for i, g in enumerate(groups):
            out[g].append(i)
        return dict(out)

    def _shuffled_groups(self, seed: int) -> dict[tuple[int, ...], list[list[int]]]:
        """The groups sorted by their labels (e.g. ``(0, 1)`` for a minimal pair, ``(1,)`` for a lone true text),
        shuffled with ``seed`` within each kind."""
        by_kind: dict[tuple[int, ...], list[list[int]]] = defaultdict(list)
        for members in self._groups().values():
            by_kind[tuple(sorted(self.labels[i] for i in members))].append(members)
        rng = random.Random(integer(seed, "seed", 0, "e.g. seed=0"))
        for kind in sorted(by_kind):
            rng.shuffle(by_kind[kind])
        return {kind: by_kind[kind] for kind in sorted(by_kind)}

    def _take(self, indices: list[int], suffix: str) -> ClassificationTask:
        indices = sorted(indices)
        return ClassificationTask(
            name=f"{self.name}{suffix}",
            texts=[self.texts[i] for i in indices],
            labels=[self.labels[i] for i in indices],
            groups=None if self.groups is None else [self.groups[i] for i in indices],
            answers=None if self.answers is None else [self.answers[i] for i in indices],
        )

    def split(self, test_fraction: float = 0.2, seed: int = 0) -> tuple[ClassificationTask, ClassificationTask]:
        """(train, test): a seeded split with about ``test_fraction`` of the groups of each label kind in test.

        Groups stay whole and each label kind (minimal pairs, lone 1s, lone 0s) is split in the same proportion, so
        a balanced task gives two balanced halves. The paper splits 80/20.
        """
        if not (isinstance(test_fraction, float | int) and 0 < test_fraction < 1):
            raise ValueError(f"test_fraction must be in (0, 1), e.g. 0.2; got {test_fraction!r}")
        train: list[int] = []
        test: list[int] = []
        for kind, groups in self._shuffled_groups(seed).items():
            n_test = round(test_fraction * len(groups))
            if n_test == 0 or n_test == len(groups):
                raise ValueError(
                    f"task {self.name!r}: {len(groups)} groups with labels {kind} cannot be split with "
                    f"test_fraction={test_fraction}: one side would have none; use a fraction nearer 0.5 or more texts"
                )
            test += [i for g in groups[:n_test] for i in g]
            train += [i for g in groups[n_test:] for i in g]
        return self._take(train, "/train"), self._take(test, "/test")

    def subset(self, n: int, seed: int = 0) -> ClassificationTask:
        """``n`` texts, balanced: whole groups drawn with ``seed``, one label kind after another in turn, so a task of
        minimal pairs gives ``n / 2`` pairs and a task of lone texts ``n / 2`` of each label. ``n`` must be even."""
        n = integer(n, "n", 2, f"the number of texts to keep, at most {len(self)}", maximum=len(self))
        if n % 2:
            raise ValueError(f"n = {n} is odd: a balanced subset needs an even number of texts")
        queues = list(self._shuffled_groups(seed).values())
        chosen: list[int] = []
        ones = 0
        while len(chosen) < n and any(queues):
            for queue in queues:
                if queue and len(chosen) + len(queue[0]) <= n:
                    group = queue.pop(0)
                    chosen += group
                    ones += sum(self.labels[i] for i in group)
                elif queue:
                    queue.pop(0)  # too big for what is left: skip it
        if len(chosen) != n or 2 * ones != n:
            raise ValueError(f"task {self.name!r}: no balanced subset of {n} texts from whole groups; try another n")
        return self._take(chosen, f"/{n}")


# --- hierarchy: "X is a kind of Y" -----------------------------------------------------------------------------------

# hypernym → its hyponyms (subjects as they open a sentence). Every hypernym is one token with a leading space for
# SmolLM2's tokenizer (tests check this). A subject's hypernym never occurs inside the subject itself.
HIERARCHY: dict[str, str] = {
    "dog": "A beagle; A poodle; A dachshund; A labrador; A pug; A greyhound; A chihuahua; A terrier; A collie; "
    "A husky; A Dalmatian; A rottweiler",
    "cat": "A Siamese; A Persian; A Maine Coon; A Bengal; A Sphynx; A Ragdoll; An Abyssinian; A tabby",
    "bird": "A robin; A sparrow; A parrot; An eagle; A pigeon; A penguin; An owl; A heron; A flamingo; A crow; A swan",
    "fish": "A salmon; A trout; A tuna; A cod; A carp; A herring; A sardine; A mackerel; A halibut",
    "snake": "A cobra; A python; A viper; A boa; An anaconda; A mamba",
    "insect": "An ant; A beetle; A mosquito; A grasshopper; A wasp; A termite; A moth; A dragonfly",
    "horse": "A Clydesdale; A mustang; A thoroughbred; A pony; An Arabian",
    "tree": "An oak; A maple; A pine; A birch; A willow; An elm; A cedar; A spruce; A redwood",
    "flower": "A tulip; A rose; A daisy; A lily; An orchid; A daffodil; A carnation; A marigold",
    "herb": "Basil; Parsley; Oregano; Thyme; Rosemary; Mint; Cilantro; Dill",
    "fruit": "An apple; A banana; A mango; A peach; A pear; A cherry; A plum; A kiwi",
    "vegetable": "A carrot; A potato; A cabbage; A turnip; A radish; Broccoli; Spinach; Celery; A beet",
    "cheese": "Cheddar; Brie; Gouda; Camembert; Parmesan; Mozzarella; Feta; Roquefort; Stilton",
    "bread": "A baguette; Sourdough; Ciabatta; Pita; Focaccia; A bagel",
    "pasta": "Spaghetti; Penne; Linguine; Fettuccine; Macaroni; Ravioli; Lasagna",
    "nut": "An almond; A cashew; A pecan; A pistachio; A macadamia",
    "spice": "Cinnamon; Nutmeg; Paprika; Cumin; Turmeric; Saffron; Cardamom; Clove",
    "wine": "Merlot; Chardonnay; Cabernet; Riesling; Pinot Noir; Sauvignon Blanc; Shiraz; Malbec",
    "beer": "A lager; A stout; A pilsner; An IPA",
    "tea": "Earl Grey; Oolong; Darjeeling; Matcha; Sencha",
    "coffee": "An espresso; A latte; A cappuccino; A macchiato; An Americano; A mocha",
    "car": "A sedan; A convertible; A hatchback; A coupe; A limousine; A station wagon",
    "boat": "A canoe; A kayak; A yacht; A gondola; A dinghy; A catamaran; A raft",
    "aircraft": "A helicopter; A glider; A jet; A blimp; A biplane",
    "instrument": "A violin; A cello; A flute; A trumpet; A clarinet; A harp; An oboe; A trombone; A saxophone; "
    "A banjo; A tuba",
    "tool": "A hammer; A wrench; A screwdriver; A chisel; A saw; A drill; A shovel; A rake; A mallet",
    "weapon": "A sword; A spear; A dagger; A rifle; A crossbow; A pistol; A cannon",
    "furniture": "A sofa; A couch; A wardrobe; A dresser; A bookcase; An armchair; A desk; A cabinet; A stool",
    "hat": "A fedora; A beret; A sombrero; A beanie; A Stetson; A bonnet",
    "shoe": "A sneaker; A loafer; A sandal; A moccasin; A clog; A slipper",
    "jacket": "A blazer; A windbreaker; An anorak; A parka",
    "dance": "The tango; The waltz; The salsa; The foxtrot; The polka; The rumba; Ballet; The samba; The flamenco",
    "sport": "Tennis; Soccer; Basketball; Golf; Hockey; Rugby; Volleyball; Baseball; Badminton",
    "game": "Chess; Checkers; Poker; Monopoly; Scrabble; Backgammon; Solitaire; Dominoes",
    "metal": "Copper; Iron; Aluminum; Zinc; Nickel; Tin; Silver; Gold; Titanium",
    "gem": "A ruby; An emerald; A sapphire; A diamond; An opal; A topaz; An amethyst",
    "rock": "Granite; Basalt; Marble; Limestone; Sandstone; Slate; Obsidian; Pumice; Shale",
    "fabric": "Cotton; Silk; Wool; Linen; Denim; Velvet; Polyester; Satin; Tweed",
}

# The false twin's hypernym comes from the same domain, so "A beagle is a kind of cat" (not "... of cheese").
HIERARCHY_DOMAINS: dict[str, tuple[str, ...]] = {
    "animals": ("dog", "cat", "bird", "fish", "snake", "insect", "horse"),
    "plants": ("tree", "flower", "herb"),
    "foods": ("fruit", "vegetable", "cheese", "bread", "pasta", "nut", "spice"),
    "drinks": ("wine", "beer", "tea", "coffee"),
    "vehicles": ("car", "boat", "aircraft"),
    "artifacts": ("instrument", "tool", "weapon", "furniture"),
    "clothes": ("hat", "shoe", "jacket"),
    "activities": ("dance", "sport", "game"),
    "materials": ("metal", "gem", "rock", "fabric"),
}

# Wrong hypernyms that would be arguably true (or a pun) for a subject, never drawn as its false twin.
_ARGUABLY_TRUE: dict[str, set[str]] = {
    "Chess": {"sport"},
    "Poker": {"sport"},
    "Nutmeg": {"nut"},
    "An almond": {"fruit"},
    "A cashew": {"fruit"},
    "A pecan": {"fruit"},
    "A pistachio": {"fruit"},
    "A macadamia": {"fruit"},
    "A mallet": {"instrument", "weapon"},
    "A hammer": {"weapon"},
    "A spear": {"tool"},
    "A dagger": {"tool"},
}

HIERARCHY_PROMPT = "{} is a kind of"
HIERARCHY_PARAPHRASES = ("{} is a type of", "{} falls under the category of")


def hierarchy_pairs(seed: int = 0) -> list[dict]:
    """Every pair of :data:`HIERARCHY` with its false hypernym: ``{"subject", "true", "false", "domain"}``.

    The false hypernym is drawn with ``random.Random(seed)`` from the other hypernyms of the same domain
    (:data:`HIERARCHY_DOMAINS`), never one that is arguably true of the subject.
    """
    rng = random.Random(integer(seed, "seed", 0, "e.g. seed=0"))
    domain_of = {h: d for d, hs in HIERARCHY_DOMAINS.items() for h in hs}
    missing = set(HIERARCHY) - set(domain_of)
    if missing:
        raise ValueError(f"hypernyms without a domain in HIERARCHY_DOMAINS: {sorted(missing)}")
    pairs = []
    for hypernym, subjects in HIERARCHY.items():
        domain = domain_of[hypernym]
        for subject in (s.strip() for s in subjects.split(";")):
            wrong = [h for h in HIERARCHY_DOMAINS[domain] if h != hypernym and h not in _ARGUABLY_TRUE.get(subject, ())]
            pairs.append({"subject": subject, "true": hypernym, "false": rng.choice(wrong), "domain": domain})
    return pairs


def hierarchy_task(seed: int = 0) -> ClassificationTask:
    """ "X is a kind of Y." statements: each pair of :func:`hierarchy_pairs` gives a true one (label 1) and its false
    twin with the wrong hypernym (label 0), in one group."""
    texts, labels, groups = [], [], []
    for g, pair in enumerate(hierarchy_pairs(seed)):
        for hypernym, label in ((pair["true"], 1), (pair["false"], 0)):
            texts.append(f"{HIERARCHY_PROMPT.format(pair['subject'])} {hypernym}.")
            labels.append(label)
            groups.append(g)
    return ClassificationTask("hierarchy", texts, labels, groups)


def hierarchy_choice_task(seed: int = 0) -> ClassificationTask:
    """The hierarchy pairs as prompts read by the model's own next token: "A beagle is a kind of" with the answers
    (false, true) hypernym, label 1, or (true, false), label 0, alternating so the task is balanced (an odd last pair
    is left out). The class the model picks is the hypernym it gives the higher logit
    (``locedit.circuits.classifier.answer_head``)."""
    texts, labels, answers = [], [], []
    pairs = hierarchy_pairs(seed)
    for i, pair in enumerate(pairs[: len(pairs) // 2 * 2]):
        texts.append(HIERARCHY_PROMPT.format(pair["subject"]))
        label = 1 - i % 2
        labels.append(label)
        answers.append((pair["false"], pair["true"]) if label else (pair["true"], pair["false"]))
    return ClassificationTask("hierarchy", texts, labels, answers=answers)


def hierarchy_edits(seed: int = 0) -> list[dict]:
    """The hierarchy pairs as CounterFact-format edit requests, one per pair, as the paper's ``hierarchy_data.json``.

    ``{"case_id": 0, "requested_rewrite": {"prompt": "{} is a kind of", "subject": "A beagle", "relation_id":
    "hypernym", "target_true": {"str": "dog"}, "target_new": {"str": "cat"}}, "paraphrase_prompts": ["A beagle is a
    type of", "A beagle falls under the category of"], "neighborhood_prompts": [], "attribute_prompts": [],
    "generation_prompts": []}``; ``target_new`` is the false twin's hypernym of :func:`hierarchy_task`. The paper's
    requests have no neighbourhood prompts either. Whether the model knows a pair before the edit (the paper's
    pre-edit success is NLL(target_new) < NLL(target_true)) is a measurement: ``locedit.evaluation.target_nll``.
    """
    records = []
    for case_id, pair in enumerate(hierarchy_pairs(seed)):
        records.append(
            {
                "case_id": case_id,
                "requested_rewrite": {
                    "prompt": HIERARCHY_PROMPT,
                    "subject": pair["subject"],
                    "relation_id": "hypernym",
                    "target_true": {"str": pair["true"]},
                    "target_new": {"str": pair["false"]},
                },
                "paraphrase_prompts": [p.format(pair["subject"]) for p in HIERARCHY_PARAPHRASES],
                "neighborhood_prompts": [],
                "attribute_prompts": [],
                "generation_prompts": [],
            }
        )
    return records


# --- determiner-noun agreement (BLiMP's determiner_noun_agreement sets) -----------------------------------------------

_NAMES = (
    "Anna", "Ben", "Carla", "David", "Emma", "Frank", "Grace", "Henry", "Irene", "Jack", "Laura", "Martin", "Nina",
    "Oscar", "Paula", "Raymond", "Sarah", "Thomas", "Vera", "William",
)  # fmt: skip
_VERBS = (
    "saw", "noticed", "found", "described", "photographed", "remembers", "was looking at", "is watching",
    "was talking about", "forgot about", "liked", "pointed at", "is thinking about", "heard about",
)  # fmt: skip
_REGULAR = (
    "book", "chair", "car", "dog", "apple", "window", "table", "picture", "bicycle", "cup", "painting", "horse",
    "river", "lamp", "computer", "shirt", "flower", "student", "teacher", "door", "bottle", "garden", "song", "actor",
)  # fmt: skip
_IRREGULAR = (
    ("child", "children"), ("man", "men"), ("woman", "women"), ("mouse", "mice"), ("foot", "feet"),
    ("tooth", "teeth"), ("goose", "geese"), ("person", "people"), ("cactus", "cacti"), ("fungus", "fungi"),
    ("ox", "oxen"), ("knife", "knives"), ("leaf", "leaves"), ("wolf", "wolves"), ("shelf", "shelves"),
    ("loaf", "loaves"), ("calf", "calves"), ("thesis", "theses"), ("analysis", "analyses"), ("wife", "wives"),
    ("phenomenon", "phenomena"), ("alumnus", "alumni"),
)  # fmt: skip
_ADJECTIVES = (
    "big", "small", "old", "new", "red", "green", "beautiful", "strange", "heavy", "tiny", "famous", "dirty",
    "clean", "broken", "lovely", "quiet",
)  # fmt: skip
_DETERMINERS = {False: ("this", "that"), True: ("these", "those")}  # plural? → determiners
AGREEMENT_CONDITIONS = ("regular", "irregular", "regular+adjective", "irregular+adjective")


def agreement_task(n: int = 400, seed: int = 0) -> ClassificationTask:
    """Determiner–noun agreement minimal pairs from templates: ``n / 2`` pairs, ``n`` texts.

    "{name} {verb} {determiner} [{adjective}] {noun}." with this/that before a singular noun and these/those before
    a plural one is grammatical (label 1); its twin breaks the agreement (label 0) by changing the noun's number
    ("this chairs", as BLiMP's ``determiner_noun_agreement_1``) or the determiner's ("these chair", as ``_2``), in
    alternate pairs. The pairs cycle through :data:`AGREEMENT_CONDITIONS` (regular or irregular plurals, without or
    with an adjective: BLiMP's dna, dnai, dnaa, dnaai sets), so each condition holds a quarter of them. The paper
    used BLiMP's own files (2,000 sentences per set); these are written for the book, drawn with ``seed``.
    """
    n = integer(n, "n", 4, "an even number of texts, e.g. 400")
    if n % 2:
        raise ValueError(f"n = {n} is odd: the task holds minimal pairs, give an even number of texts")
    rng = random.Random(integer(seed, "seed", 0, "e.g. seed=0"))
    nouns = {"regular": [(s, s + "s") for s in _REGULAR], "irregular": list(_IRREGULAR)}
    texts: list[str] = []
    labels: list[int] = []
    groups: list[int] = []
    seen: set[str] = set()
    for _ in range(50 * n):
        pair = len(groups) // 2
        if pair == n // 2:
            break
        condition = AGREEMENT_CONDITIONS[pair % len(AGREEMENT_CONDITIONS)]
        singular, plural = rng.choice(nouns[condition.split("+")[0]])
        is_plural = rng.random() < 0.5
        adjective = rng.choice(_ADJECTIVES) + " " if condition.endswith("adjective") else ""
        start = f"{rng.choice(_NAMES)} {rng.choice(_VERBS)}"
        determiner = rng.choice(_DETERMINERS[is_plural])
        good = f"{start} {determiner} {adjective}{plural if is_plural else singular}."
        if pair % 2 == 0:  # change the noun
            bad = f"{start} {determiner} {adjective}{singular if is_plural else plural}."
        else:  # change the determiner
            bad = f"{start} {rng.choice(_DETERMINERS[not is_plural])} {adjective}{plural if is_plural else singular}."
        if good in seen or bad in seen:
            continue
        seen.update((good, bad))
        texts += [good, bad]
        labels += [1, 0]
        groups += [pair, pair]
    if len(texts) < n:
        raise ValueError(f"only {len(texts)} distinct agreement sentences could be drawn; ask for fewer than {n}")
    return ClassificationTask("agreement", texts, labels, groups)


# --- persona ------------------------------------------------------------------------------------------------------


def persona_task() -> ClassificationTask:
    """Extraversion statements: first-person sentences an extravert would say (label 1) or would not (label 0).

    The paper used Anthropic's persona files (Perez et al. 2022, "model-written evaluations": extraversion, HHH,
    risk aversion, technology, "use more resources"; 1,000 statements each). Ours are one persona, extraversion,
    written for this book in the same style (:data:`PERSONA_PATH`: ``label<TAB>statement`` per line), half of them
    agreeing with it and half disagreeing. Every text is its own group.
    """
    texts, labels = [], []
    for number, line in enumerate(PERSONA_PATH.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        label, _, text = line.partition("\t")
        if label not in ("0", "1") or not text.strip():
            raise ValueError(f"{PERSONA_PATH}:{number}: expected 'label<TAB>statement' with label 0 or 1")
        texts.append(text.strip())
        labels.append(int(label))
    return ClassificationTask("persona", texts, labels)


#: The chapter's three tasks. Hierarchy is asked as a prompt read by the model's own answer tokens
#: (:func:`hierarchy_task` holds the same pairs as true / false statements for a score head).
TASKS: dict[str, Callable[[], ClassificationTask]] = {
    "hierarchy": hierarchy_choice_task,
    "agreement": agreement_task,
    "persona": persona_task,
}
