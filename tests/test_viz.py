"""Figures (locedit.viz): they build from the numbers they are given, with the expected shapes, axes and content."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from locedit.lens import lens_logprobs, logit_lens
from locedit.models import Model
from locedit.viz import (
    layer_curve,
    layer_token_heatmap,
    lens_heatmap,
    position_labels,
    show_token,
    specialisation_figure,
)
from word_model import PROMPT, tiny_word_llama


@pytest.fixture(scope="module")
def tiny_llama() -> Model:
    return tiny_word_llama()


def test_show_token_and_labels():
    assert show_token(" Paris") == "␣Paris"
    assert show_token("a\nb") == "a\\nb"
    assert show_token("") == "∅"
    assert position_labels(["a", "b"], positions=[4, 9]) == ["4 a", "9 b"]
    labels = position_labels([" the", " cat", " the"])
    assert labels == ["0 ␣the", "1 ␣cat", "2 ␣the"]
    assert len(set(labels)) == 3  # a repeated token still gets its own column


def test_layer_token_heatmap_layers_on_y():
    values = torch.arange(12, dtype=torch.float32).reshape(4, 3)  # [n_layers, seq]
    fig = layer_token_heatmap(values, ["The", " cat", " the"], "t", "p", text=[["x"] * 3] * 4)
    (trace,) = fig.data
    assert np.asarray(trace.z).shape == (4, 3)
    np.testing.assert_array_equal(np.asarray(trace.z), values.numpy())
    assert list(fig.layout.xaxis.ticktext) == ["0 The", "1 ␣cat", "2 ␣the"]
    assert list(fig.layout.yaxis.ticktext) == ["0", "1", "2", "3"]
    assert fig.layout.yaxis.title.text == "layer" and fig.layout.xaxis.title.text == "token"
    assert np.asarray(trace.customdata).shape == (4, 3, 3)  # layer, token label, extra hover
    assert trace.customdata[2][1][0] == 2 and trace.customdata[2][1][1] == "1 ␣cat"
    assert "layer %{customdata[0]}" in trace.hovertemplate and "p = %{z" in trace.hovertemplate
    assert np.asarray(trace.text).shape == (4, 3)


def test_layer_token_heatmap_transposed_and_layer_numbers():
    values = np.random.default_rng(0).random((5, 2))
    fig = layer_token_heatmap(values, ["a", "b"], layers=[0, 3, 6, 9, 12], layers_on="x")
    (trace,) = fig.data
    assert np.asarray(trace.z).shape == (2, 5)  # tokens down, layers across
    np.testing.assert_allclose(np.asarray(trace.z), values.T)
    assert list(fig.layout.xaxis.ticktext) == ["0", "3", "6", "9", "12"]
    assert list(fig.layout.yaxis.ticktext) == ["0 a", "1 b"]
    assert fig.layout.yaxis.autorange == "reversed"  # reading order top to bottom
    assert trace.customdata[1][4][0] == 12  # the hover names the real layer number


def test_layer_token_heatmap_plain_labels_and_errors():
    fig = layer_token_heatmap(np.zeros((2, 3)), ["H0", "H1", "H2"], label_tokens=False, token_axis="head")
    assert list(fig.layout.xaxis.ticktext) == ["H0", "H1", "H2"]
    with pytest.raises(ValueError, match="columns"):
        layer_token_heatmap(np.zeros((2, 3)), ["a", "b"])
    with pytest.raises(ValueError, match="2-D"):
        layer_token_heatmap(np.zeros(3), ["a", "b", "c"])
    with pytest.raises(ValueError, match="layer numbers"):
        layer_token_heatmap(np.zeros((2, 1)), ["a"], layers=[0])
    with pytest.raises(ValueError, match="shape of values"):
        layer_token_heatmap(np.zeros((2, 1)), ["a"], text=[["x"]])
    with pytest.raises(ValueError, match="positions"):
        layer_token_heatmap(np.zeros((2, 2)), ["a", "b"], positions=[3])
    with pytest.raises(ValueError, match="layers_on"):
        layer_token_heatmap(np.zeros((2, 1)), ["a"], layers_on="z")


def test_lens_heatmap_tiny(tiny_llama):
    n_layers, seq = tiny_llama.spec.n_layers, len(tiny_llama.str_tokens(PROMPT))
    lens = logit_lens(tiny_llama, PROMPT)
    fig = lens_heatmap(tiny_llama, PROMPT, lens)
    (trace,) = fig.data
    assert np.asarray(trace.z).shape == (n_layers, seq)
    assert np.asarray(trace.text).shape == (n_layers, seq)
    assert ((np.asarray(trace.z) > 0) & (np.asarray(trace.z) <= 1)).all()  # top-1 probabilities
    top = tiny_llama.tokenizer.decode([int(lens[1, 2].argmax())])
    assert trace.text[1][2] == show_token(top)[:8]
    assert trace.zmin == 0 and trace.zmax == 1

    # a target colours by its probability; precomputed logprobs and a subset of positions/layers give the same cells
    by_target = lens_heatmap(tiny_llama, PROMPT, lens, target="Paris", positions=slice(-3, None), layers=[0, 2])
    (t2,) = by_target.data
    assert np.asarray(t2.z).shape == (2, 3)
    pid = tiny_llama.token_id("Paris")
    np.testing.assert_allclose(np.asarray(t2.z), lens[[0, 2]][:, -3:, pid].exp().numpy(), rtol=1e-5)
    assert "rank of" in t2.customdata[0][0][2]
    assert list(by_target.layout.yaxis.ticktext) == ["0", "2"]
    seq_tokens = tiny_llama.str_tokens(PROMPT)
    assert list(by_target.layout.xaxis.ticktext) == [
        f"{seq - 3 + j} {show_token(seq_tokens[-3 + j])}" for j in range(3)
    ]


def test_lens_heatmap_smollm2_reads_paris(smollm2):
    prompt = "The Eiffel Tower is located in the city of"
    fig = lens_heatmap(smollm2, prompt, lens_logprobs(smollm2, prompt, [-1]), target=" Paris", positions=[-1])
    (trace,) = fig.data
    assert np.asarray(trace.z).shape == (smollm2.spec.n_layers, 1)
    assert trace.text[-1][0] == "␣Paris"  # the top layer's lens is the model's own answer
    assert trace.z[-1][0] > 0.5


def test_layer_curve():
    ax = layer_curve({"a": torch.rand(5), "b": np.arange(5.0)}, ylabel="p", title="t", hlines={"clean": 0.5})
    assert len(ax.lines) == 3 and ax.get_xlabel() == "layer" and ax.get_ylabel() == "p"
    np.testing.assert_array_equal(ax.lines[1].get_ydata(), np.arange(5.0))
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b", "clean"]
    plt.close(ax.figure)
    ax = layer_curve([1.0, 2.0], layers=[10, 20])
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), [10, 20])
    assert ax.get_legend() is None
    plt.close(ax.figure)


def test_lens_heatmap_takes_the_shown_positions_only(tiny_llama):
    """Log-probabilities of the shown positions alone draw the same cells as the whole prompt's; a wrong shape is
    refused with the shapes it takes."""
    full = lens_heatmap(tiny_llama, PROMPT, logit_lens(tiny_llama, PROMPT), target="Paris", positions=[1, -1])
    part = lens_heatmap(
        tiny_llama, PROMPT, lens_logprobs(tiny_llama, PROMPT, [1, -1]), target="Paris", positions=[1, -1]
    )
    np.testing.assert_allclose(np.asarray(part.data[0].z), np.asarray(full.data[0].z), rtol=1e-5)
    assert [list(r) for r in part.data[0].text] == [list(r) for r in full.data[0].text]
    with pytest.raises(ValueError, match="logprobs must be"):
        lens_heatmap(tiny_llama, PROMPT, lens_logprobs(tiny_llama, PROMPT, [0, 1, 2]), positions=[-1])


def test_specialisation_figure():
    """One bar pair per decoding, the first visible, a dropdown button per decoding."""
    from conftest import tiny_model
    from locedit.neurons import decode_neurons

    model = tiny_model("llama")
    decs = [decode_neurons(model, kind, k=3, cache=False, dtype=None) for kind in ("up", "down")]
    fig = specialisation_figure(decs, threshold=0.2)
    assert len(fig.data) == 4
    assert [t.visible for t in fig.data] == [True, True, False, False]
    by = decs[1].by_layer(0.2)
    np.testing.assert_allclose(np.asarray(fig.data[2].y), by.median_z1.to_numpy())
    np.testing.assert_allclose(np.asarray(fig.data[3].y), by["share_p1>0.2"].to_numpy())
    buttons = fig.layout.updatemenus[0].buttons
    assert [b.label for b in buttons] == [d.variant for d in decs]
    assert buttons[1].args[0]["visible"] == [False, False, True, True]


def test_attention_figures():
    from locedit.viz import attention_matrices_figure, attention_rows_figure

    rows = np.array([[0.1, 0.9, 0.0], [0.5, 0.25, 0.25]])
    fig = attention_rows_figure(rows, ["a", " b", " c"], [(3, 1), (4, 0)], title="movers", marks={1: "IO"})
    assert np.allclose(fig.data[0].z, rows) and list(fig.layout.yaxis.ticktext) == ["3.1", "4.0"]
    assert list(fig.layout.xaxis.ticktext)[1] == "1 ␣b (IO)"
    with pytest.raises(ValueError, match=r"rows must be \[len\(heads\)=1"):
        attention_rows_figure(rows, ["a", "b", "c"], [(3, 1)])
    pats = np.tile(np.eye(3), (2, 1, 1))
    fig = attention_matrices_figure(pats, ["a", "b", "c"], [(1, 2), (2, 0)], title="duplicate")
    assert len(fig.data) == 2 and fig.layout.annotations[1].text == "head 2.0"
    with pytest.raises(ValueError, match="1 to 3 heads"):
        attention_matrices_figure(np.tile(np.eye(3), (4, 1, 1)), ["a", "b", "c"], [(0, 0)] * 4)


def test_overlap_figures():
    from locedit.viz import overlap_figure, overlap_sweep_figure

    fig = overlap_figure(np.array([0, 1, 1, 2, 1, 0]), observed=5, expected=0.8, title="IOI vs Colored Objects")
    assert list(fig.data[0].x) == [0, 1, 2, 3, 4, 5] and fig.data[0].y[1] == pytest.approx(0.5)
    assert {s.x0 for s in fig.layout.shapes} == {5, 0.8}
    with pytest.raises(ValueError, match="null is empty"):
        overlap_figure(np.array([]), 1, 1.0)
    sweep = overlap_sweep_figure([0.02, 0.05], [5, 9], [0.5, 2.0], [0, 0], [2, 5])
    assert list(sweep.data[2].y) == [5, 9] and list(sweep.data[2].x) == [2, 5]
    with pytest.raises(ValueError, match="one value per fraction"):
        overlap_sweep_figure([0.02], [5, 9], [0.5], [0], [2])
