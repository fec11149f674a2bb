"""Explorers (locedit.widgets): they render at build time from the data or the functions they are given."""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd
import pytest
import torch

from locedit.lens import lens_logprobs
from locedit.models import Model
from locedit.widgets import lens_explorer, lens_table_html, neuron_browser, neuron_card_html, rome_explorer
from word_model import PROMPT, tiny_word_llama


@pytest.fixture(scope="module")
def tiny_llama() -> Model:
    return tiny_word_llama()


def test_lens_table_html(tiny_llama):
    logprobs = lens_logprobs(tiny_llama, PROMPT, positions=[-1])[:, 0]
    html = lens_table_html(tiny_llama, PROMPT, logprobs, k=3, target="Paris")
    assert html.count("<tr>") == 1 + tiny_llama.spec.n_layers  # header + one row per layer
    assert "top 3" in html and "p(Paris)" in html and "rank" in html


def test_lens_explorer_renders_without_a_kernel(tiny_llama):
    box = lens_explorer(tiny_llama, lens_logprobs, prompt=PROMPT, target="Paris")
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
    box = lens_explorer(smollm2, lens_logprobs)
    html = box.children[1].outputs[0]["data"]["text/html"]
    assert "␣Paris" in html and html.count("<tr>") == 1 + smollm2.spec.n_layers


def test_rome_explorer_traces_edits_and_reverts(tiny_llama):
    """The chapter's composition: trace = causal_trace on the MLP windows, edit = ROME, compare with the
    evaluation module's generate and target_prob."""
    from locedit.editing import ROMEHyperParams, rome
    from locedit.evaluation import generate, target_prob
    from locedit.tracing import causal_trace

    fact = {
        "requested_rewrite": {"prompt": "The {} is in the city of", "subject": "Eiffel Tower",
                              "target_true": {"str": "Paris"}, "target_new": {"str": "Rome"}}
    }  # fmt: skip
    hp = ROMEHyperParams(layer=1, context_template_length_params=((3, 1),), mom2_n_samples=256, mom2_seq_len=16,
                         v_num_grad_steps=3)  # fmt: skip
    weights = {n: p.detach().clone() for n, p in tiny_llama.hf.named_parameters()}
    box = rome_explorer(
        tiny_llama,
        [fact],
        trace=partial(causal_trace, kinds=("mlp",), noise=0.5, samples=1),
        edit=partial(rome, hparams=hp),
        generate=partial(generate, max_length=40, seed=1),
        prob=target_prob,
    )
    picker, texts, buttons, out = box.children
    prompt_box, subject_box, new_box = texts.children
    assert prompt_box.value == "The Eiffel Tower is in the city of" and new_box.value == "Rome"
    assert len(out.outputs) == 2  # the first trace is rendered at build time: a caption and the heat map
    assert "application/vnd.plotly.v1+json" in out.outputs[1]["data"]
    buttons.children[1].click()  # Edit (with ROME)
    (result,) = out.outputs
    assert "→" in result["data"]["text/html"] and "<table" in result["data"]["text/html"]
    assert all(torch.equal(p, weights[n]) for n, p in tiny_llama.hf.named_parameters())  # reverted
    subject_box.value = "Big Ben"
    buttons.children[0].click()  # Trace a subject that is not in the prompt: a clear message, no exception
    assert "not in the prompt" in out.outputs[0]["data"]["text/html"]


def test_rome_explorer_with_stub_methods(tiny_llama):
    """The explorer only composes what it is given: stub trace / edit / generate / prob calls, in order, and their
    results (or errors) shown."""
    calls = []

    class StubTrace:
        scores = {"mlp": torch.rand(3, 7)}  # [layers, tokens]
        tokens = ["a", "b", "c", "d", "e", "f", "g"]
        target, p_clean, p_corrupt, samples, seconds = " Paris", 0.5, 0.1, 4, 0.25

    class StubEdit:
        method, info = "STUB", {"layer": 2, "seconds": 0.5}

        def applied(self, model):
            from contextlib import contextmanager

            @contextmanager
            def on():
                calls.append("apply")
                yield
                calls.append("revert")

            return on()

    def trace(model, prompt, subject):
        calls.append(("trace", prompt, subject))
        if subject not in prompt:
            raise ValueError(f"subject {subject!r} not in the prompt")
        return StubTrace()

    def edit(model, fact):
        calls.append(("edit", fact["prompt"], fact["subject"], fact["target_new"]))
        return StubEdit()

    def generate(model, prompts):
        return [p + (" edited" if "apply" in calls and "revert" not in calls else " plain") for p in prompts]

    def prob(model, prompts, targets):
        return [0.75, 0.125] if "apply" in calls else [0.25, 0.5]

    fact = {
        "requested_rewrite": {"prompt": "The {} is in the city of", "subject": "Eiffel Tower",
                              "target_true": {"str": "Paris"}, "target_new": {"str": "Rome"}}
    }  # fmt: skip
    box = rome_explorer(tiny_llama, [fact], trace=trace, edit=edit, generate=generate, prob=prob)
    picker, texts, buttons, out = box.children
    assert calls == [("trace", "The Eiffel Tower is in the city of", "Eiffel Tower")]
    caption = out.outputs[0]["data"]["text/html"]
    assert "clean 0.500, corrupted 0.100 (4 noise samples, 0.2 s)" in caption
    buttons.children[1].click()
    assert calls[1:] == [("edit", "The Eiffel Tower is in the city of", "Eiffel Tower", "Rome"), "apply", "revert"]
    (result,) = out.outputs
    body = result["data"]["text/html"]
    assert "STUB at layer 2, 0.5 s" in body and "0.250 → 0.750" in body and " edited" in body and " plain" in body
    texts.children[1].value = "Big Ben"
    buttons.children[0].click()
    assert "not in the prompt" in out.outputs[0]["data"]["text/html"]


class StubDecoding:
    """What the neuron views read from a NeuronDecoding: two neurons of layer 1 hold " dog"."""

    layers, k, variant = [0, 1], 3, "up, final norm"

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def top(self, layer, neuron):
        return [(" dog", 0.5), ("<b>", 0.25)]

    def score(self, layer, neuron):
        return 7.25 + neuron

    def find(self, ids):
        if ids != [self.tokenizer("Paris", add_special_tokens=False)["input_ids"][0]]:
            return pd.DataFrame({"layer": [], "neuron": []})
        return pd.DataFrame({"layer": [1, 1], "neuron": [4, 9]})


class StubSample:
    site = "mlp_up"

    def top_examples(self, layer, neuron, n=5):
        return pd.DataFrame({"activation": [3.5], "context": ["a [[dog]]"]})


def test_neuron_card_and_browser(tiny_llama):
    dec, sample = StubDecoding(tiny_llama.tokenizer), StubSample()
    card = neuron_card_html(dec, 1, 4, sample)
    assert "<b>L1.N4</b> (up, final norm; z1 = 11.2)" in card and "␣dog" in card and "&lt;b&gt;" in card
    assert "<th>mlp_up</th>" in card and "3.50" in card and "a [[dog]]" in card
    assert "<table" not in neuron_card_html(dec, 1, 4)

    box = neuron_browser(dec, sample, query="Paris", max_rows=1)
    controls, out = box.children
    text, layer = controls.children
    assert list(layer.options) == ["all", 0, 1]
    body = out.outputs[0]["data"]["text/html"]  # rendered at build time
    assert "2 neuron(s); showing 1." in body and "L1.N4" in body and "L1.N9" not in body
    layer.value = 0
    assert "No neuron has Paris in its top-3 (up, final norm)" in out.outputs[0]["data"]["text/html"]
    text.value = "Rome"
    assert "No neuron" in out.outputs[0]["data"]["text/html"]


def _heat_z(output: dict) -> np.ndarray:
    """The z of the first trace of a plotly display_data output (decoded from plotly's base64 typed array)."""
    import base64

    z = output["data"]["application/vnd.plotly.v1+json"]["data"][0]["z"]
    if isinstance(z, dict):  # {"dtype": "f8", "bdata": ..., "shape": "1, 5"}
        shape = [int(n) for n in z["shape"].split(",")]
        return np.frombuffer(base64.b64decode(z["bdata"]), dtype=z["dtype"]).reshape(shape)
    return np.asarray(z)


def test_head_browser_renders_the_chosen_head_and_switches():
    from locedit.widgets import head_browser

    torch.manual_seed(0)
    patterns = torch.rand(3, 2, 5, 5).tril()
    patterns = patterns / patterns.sum(-1, keepdim=True)
    tokens = ["<s>", " Mary", " and", " John", " to"]
    effects = {"logits": torch.tensor([[0.1, -0.5], [0.3, 0.0], [0.9, float("nan")]])}
    box = head_browser(patterns, tokens, effects, roles={"name mover": [(2, 0)]}, layer=2, head=0, marks={1: "IO"})
    (controls, out) = box.children
    layer_box, head_box, view = controls.children
    card, fig = out.outputs  # rendered at build time: the static book shows it from the widget state
    assert "head 2.0" in card["data"]["text/html"] and "name mover" in card["data"]["text/html"]
    assert "+0.900 (rank 1 of 5)" in card["data"]["text/html"]
    assert np.allclose(_heat_z(fig), patterns[2, 0, -1][None].numpy())  # the last query row of head 2.0
    head_box.value = 1  # head 2.1: not a sender in the logits stage
    card, fig = out.outputs
    assert "not a sender" in card["data"]["text/html"] and "roles: none" in card["data"]["text/html"]
    view.value = "whole pattern"
    _, fig = out.outputs
    assert np.allclose(_heat_z(fig), patterns[2, 1].numpy())
    with pytest.raises(ValueError, match=r"head \(3, 0\) is out of range"):
        head_browser(patterns, tokens, effects, layer=3)
    with pytest.raises(ValueError, match=r"seq = len\(tokens\) = 4"):
        head_browser(patterns, tokens[:4], effects)
    with pytest.raises(ValueError, match=r"effects\['x'\]"):
        head_browser(patterns, tokens, {"x": torch.zeros(2, 2)})
