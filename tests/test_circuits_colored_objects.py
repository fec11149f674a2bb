"""locedit.circuits.colored_objects: Colored Objects prompts (generated and loaded), their corruptions, positions and
answers."""

from __future__ import annotations

import json

import pytest
import torch

from locedit.circuits.colored_objects import colored_objects, load_colored_objects


@pytest.fixture(scope="module")
def tok(smollm2):
    return smollm2.tokenizer


def _decode(tok, ids, pos) -> str:
    return tok.decode([ids[int(pos)]])


def test_objects_are_filtered_to_single_tokens(tok):
    c = colored_objects(tok, n=30, seed=0)
    used = {o for objs in c.objects for o in objs}
    assert "mug" not in used and "leash" not in used and len(used) > 5


def test_bad_input_names_the_offender(tok):
    with pytest.raises(ValueError, match=r"objects: ' mug' is 2 tokens"):
        colored_objects(tok, n=2, objects=["cup", "mug", "pen", "ball"])
    with pytest.raises(ValueError, match=r"colors: ' Turquoise' is 2 tokens"):  # " turquoise" is one; the answer is not
        colored_objects(tok, n=2, colors=["red", "blue", "turquoise"])
    with pytest.raises(TypeError, match=r"n must be an integer, got str"):
        colored_objects(tok, n="10")
    with pytest.raises(TypeError, match=r"n_objects must be an integer, not a bool"):
        colored_objects(tok, n=2, n_objects=True)


@pytest.mark.parametrize("n_objects", [2, 3])
def test_colored_objects(tok, n_objects):
    c = colored_objects(tok, n=12, seed=5, n_objects=n_objects)
    assert c.color_pos.shape == c.candidates.shape == (12, n_objects)
    for i in range(len(c)):
        ids = c.tokens[i]
        assert [_decode(tok, ids, p) for p in c.color_pos[i]] == [" " + col for col in c.colors[i]]
        assert c.labels[i] == " " + c.colors[i][c.query[i]].title()
        assert c.corrupt_labels[i] == " " + c.colors[i][c.corrupt_query[i]].title()
        assert c.query[i] != c.corrupt_query[i]
        assert c.answers[i].tolist() == [tok(c.labels[i])["input_ids"][0], tok(c.corrupt_labels[i])["input_ids"][0]]
        assert c.answers[i, 0] in c.candidates[i] and c.answers[i, 1] in c.candidates[i]
        changed = [p for p in range(len(ids)) if ids[p] != c.corrupt_tokens[i][p]]
        assert len(ids) == len(c.corrupt_tokens[i]) and changed == [len(ids) - 5]  # "... the <object>?\nA:"
        assert c.prompts[i].count("Q: ") == 2 and c.prompts[i].endswith("?\nA:")
    if n_objects == 2:
        assert " and a" in c.prompts[0].split("\n")[-2] and ", and" not in c.prompts[0].split("\n")[-2]
    swapped = c.corrupted()
    assert swapped.prompts == c.corrupt_prompts and torch.equal(swapped.answers, c.answers.flip(1))


# two items of the paper's released datasets/cobjs_data_42.json and cobjs_mindiff_data_42.json (MIT)
RELEASED = [
    [
        "Q: On the table, I see an orange textbook, a red puzzle, and a purple cup. What color is the textbook?\nA: "
        "Orange\nQ: On the table, there is a blue pencil, a black necklace, and a yellow lighter. What color is the "
        "pencil?\nA:",
        " Blue",
    ],
    [
        "Q: On the floor, there is a green necklace, an orange pencil, and a red leash. What color is the leash?\nA: "
        "Red\nQ: On the table, there is a purple cup, a black notebook, and a brown mug. What color is the cup?\nA:",
        " Purple",
    ],
]
RELEASED_MINDIFF = [
    [RELEASED[0][0].replace("the pencil?\nA:", "the necklace?\nA:"), " Black"],
    [RELEASED[1][0].replace("the cup?\nA:", "the notebook?\nA:"), " Black"],
]


def test_load_released_shape(tok, tmp_path):
    path, mindiff = tmp_path / "cobjs.json", tmp_path / "mindiff.json"
    path.write_text(json.dumps(RELEASED))
    mindiff.write_text(json.dumps(RELEASED_MINDIFF))
    c = load_colored_objects(tok, path, mindiff)
    assert c.labels == (" Blue", " Purple") and c.corrupt_labels == (" Black", " Black")
    assert c.objects[1] == ("cup", "notebook", "mug") and c.query == (0, 0) and c.corrupt_query == (1, 1)
    assert [_decode(tok, c.tokens[0], p) for p in c.color_pos[0]] == [" blue", " black", " yellow"]
    # without the corrupted file, the other object is drawn here; asking about " mug" (2 tokens) would change the
    # length, so such pairs are skipped
    drawn = load_colored_objects(tok, RELEASED, seed=0)
    assert all(q != cq for q, cq in zip(drawn.query, drawn.corrupt_query, strict=True))
    mug = [[RELEASED[1][0], " Purple"]], [[RELEASED[1][0].replace("the cup?", "the mug?"), " Brown"]]
    with pytest.raises(ValueError, match="no items left"):
        load_colored_objects(tok, *mug)
    assert load_colored_objects(tok, *mug, same_length=False).corrupt_labels == (" Brown",)


def test_load_round_trips_the_generator(tok):
    c = colored_objects(tok, n=8, seed=9)
    pairs = [[p, lab] for p, lab in zip(c.prompts, c.labels, strict=True)]
    corrupt = [[p, lab] for p, lab in zip(c.corrupt_prompts, c.corrupt_labels, strict=True)]
    back = load_colored_objects(tok, pairs, corrupt)
    assert torch.equal(back.answers, c.answers) and torch.equal(back.color_pos, c.color_pos)
    assert back.objects == c.objects and back.tokens == c.tokens


def test_load_bad_items(tok):
    with pytest.raises(ValueError, match=r"source item 0 is .*\[prompt, label\] pair"):
        load_colored_objects(tok, [["just a prompt"]])
    with pytest.raises(ValueError, match=r"does not end in a question"):
        load_colored_objects(tok, [["Q: What is 2 + 2?\nA:", " 4"]])
    with pytest.raises(ValueError, match=r"label ' Red' is not the colour of the pencil"):
        load_colored_objects(tok, [[RELEASED[0][0], " Red"]])
