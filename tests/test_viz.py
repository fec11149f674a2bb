"""Figures (locedit.viz) and explorers (locedit.widgets): they build, with the expected shapes, axes and content."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from locedit.arch import spec_for
from locedit.lens import logit_lens
from locedit.models import Model
from locedit.viz import layer_curve, layer_token_heatmap, lens_heatmap, lens_logprobs, position_labels, show_token
from locedit.widgets import lens_explorer, lens_table_html

WORDS = ["The", "Eiffel", "Tower", "is", "in", "Paris", "Rome", "city", "of", "the", "a", "to"]


@pytest.fixture(scope="module")
def tiny_llama() -> Model:
    """A 3-layer random Llama with a word-level tokenizer (no download, builds in well under a second)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {"<s>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    vocab.update({f"w{i}": i for i in range(len(vocab), 64)})
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", pad_token="</s>", bos_token="<s>", eos_token="</s>"
    )
    config = LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=32, bos_token_id=0, eos_token_id=1, pad_token_id=1,
    )  # fmt: skip
    torch.manual_seed(0)
    hf = LlamaForCausalLM(config).eval()
    return Model(hf=hf, tokenizer=tokenizer, spec=spec_for(hf), name="tiny-llama")


PROMPT = "The Eiffel Tower is in the city of"


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


def test_lens_logprobs_matches_logit_lens(tiny_llama):
    full = logit_lens(tiny_llama, PROMPT)
    part = lens_logprobs(tiny_llama, PROMPT, positions=[0, -1])
    assert part.shape == (3, 2, 64)
    torch.testing.assert_close(part, full[:, [0, -1]])


def test_lens_heatmap_tiny(tiny_llama):
    n_layers, seq = tiny_llama.spec.n_layers, len(tiny_llama.str_tokens(PROMPT))
    fig = lens_heatmap(tiny_llama, PROMPT)
    (trace,) = fig.data
    assert np.asarray(trace.z).shape == (n_layers, seq)
    assert np.asarray(trace.text).shape == (n_layers, seq)
    assert ((np.asarray(trace.z) > 0) & (np.asarray(trace.z) <= 1)).all()  # top-1 probabilities
    lens = logit_lens(tiny_llama, PROMPT)
    top = tiny_llama.tokenizer.decode([int(lens[1, 2].argmax())])
    assert trace.text[1][2] == show_token(top)[:8]
    assert trace.zmin == 0 and trace.zmax == 1

    # a target colours by its probability; precomputed logprobs and a subset of positions/layers give the same cells
    by_target = lens_heatmap(
        tiny_llama, PROMPT, target="Paris", logprobs=lens, positions=slice(-3, None), layers=[0, 2]
    )
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
    fig = lens_heatmap(smollm2, "The Eiffel Tower is located in the city of", target=" Paris", positions=[-1])
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


def test_lens_table_html(tiny_llama):
    html = lens_table_html(tiny_llama, PROMPT, k=3, target="Paris")
    assert html.count("<tr>") == 1 + tiny_llama.spec.n_layers  # header + one row per layer
    assert "top 3" in html and "p(Paris)" in html and "rank" in html


def test_lens_explorer_renders_without_a_kernel(tiny_llama):
    box = lens_explorer(tiny_llama, prompt=PROMPT, target="Paris")
    controls, out = box.children
    prompt_box, target_box, button = controls.children
    assert prompt_box.value == PROMPT and target_box.value == "Paris"
    (first,) = out.outputs  # rendered at build time: a static page shows it
    assert first["output_type"] == "display_data" and "<table" in first["data"]["text/html"]

    prompt_box.value = "The city of"  # Enter / new value re-renders
    (second,) = out.outputs
    assert "␣city" in second["data"]["text/html"] or "city" in second["data"]["text/html"]
    assert second["data"]["text/html"] != first["data"]["text/html"]

    target_box.value = "not-a-word-in-vocab two"
    button.click()  # a bad target reports an error in the Output instead of raising
    (third,) = out.outputs
    assert "token" in third["data"]["text/html"]


def test_lens_explorer_smollm2(smollm2):
    box = lens_explorer(smollm2)
    html = box.children[1].outputs[0]["data"]["text/html"]
    assert "␣Paris" in html and html.count("<tr>") == 1 + smollm2.spec.n_layers


def test_rome_explorer_traces_edits_and_reverts(tiny_llama):
    from locedit.editing import ROMEHyperParams
    from locedit.widgets import rome_explorer

    fact = {
        "requested_rewrite": {"prompt": "The {} is in the city of", "subject": "Eiffel Tower",
                              "target_true": {"str": "Paris"}, "target_new": {"str": "Rome"}}
    }  # fmt: skip
    hp = ROMEHyperParams(layer=1, context_template_length_params=((3, 1),), mom2_n_samples=256, mom2_seq_len=16,
                         v_num_grad_steps=3)  # fmt: skip
    weights = {n: p.detach().clone() for n, p in tiny_llama.hf.named_parameters()}
    box = rome_explorer(tiny_llama, [fact], hp, noise=0.5, samples=1)
    picker, texts, buttons, out = box.children
    prompt_box, subject_box, new_box = texts.children
    assert prompt_box.value == "The Eiffel Tower is in the city of" and new_box.value == "Rome"
    assert len(out.outputs) == 2  # the first trace is rendered at build time: a caption and the heat map
    assert "application/vnd.plotly.v1+json" in out.outputs[1]["data"]
    buttons.children[1].click()  # Edit with ROME
    (result,) = out.outputs
    assert "→" in result["data"]["text/html"] and "<table" in result["data"]["text/html"]
    assert all(torch.equal(p, weights[n]) for n, p in tiny_llama.hf.named_parameters())  # reverted
    subject_box.value = "Big Ben"
    buttons.children[0].click()  # Trace a subject that is not in the prompt: a clear message, no exception
    assert "not in the prompt" in out.outputs[0]["data"]["text/html"]
