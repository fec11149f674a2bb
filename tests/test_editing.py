"""The Edit object and the editors (ROME, FT-L, MEMIT) on tiny models; key statistics."""

from __future__ import annotations

import contextlib
from dataclasses import replace

import pytest
import torch

from locedit.editing import (
    Edit,
    EditError,
    FTHyperParams,
    MEMITHyperParams,
    Request,
    ROMEHyperParams,
    applied_per_row,
    ft,
    key_second_moment,
    memit,
    rome,
)
from locedit.editing.common import edited_weight, token_index
from locedit.models import Model

FAST = {"context_template_length_params": ((3, 2),), "mom2_n_samples": 256, "mom2_seq_len": 16, "v_num_grad_steps": 4}
FACT = {"prompt": "The capital of {} is", "subject": "France", "target_new": {"str": "Rome"}}


def _tiny_with_tokenizer(family: str, tokenizer, n_layers: int = 2) -> Model:
    """A random model of ``n_layers`` whose vocabulary matches ``tokenizer`` (so the editors can read prompts)."""
    from transformers import AutoModelForCausalLM, Gemma3TextConfig, GPT2Config, LlamaConfig

    from locedit.arch import spec_for

    vocab = len(tokenizer)
    if family == "gpt2":
        config = GPT2Config(vocab_size=vocab, n_layer=n_layers, n_embd=32, n_head=4, n_positions=128)
    elif family == "gemma3_text":
        config = Gemma3TextConfig(vocab_size=vocab, num_hidden_layers=n_layers, hidden_size=32, num_attention_heads=4,
                                  num_key_value_heads=1, head_dim=16, intermediate_size=48,
                                  max_position_embeddings=128, sliding_window=4)  # fmt: skip
    else:
        config = LlamaConfig(vocab_size=vocab, num_hidden_layers=n_layers, hidden_size=32, num_attention_heads=4,
                             num_key_value_heads=2, intermediate_size=48, max_position_embeddings=128)  # fmt: skip
    torch.manual_seed(0)
    hf = AutoModelForCausalLM.from_config(config).eval()
    return Model(hf=hf, tokenizer=tokenizer, spec=spec_for(hf), name=f"tiny-{family}-tok")


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def tiny_tok(request, smollm2) -> Model:
    return _tiny_with_tokenizer(request.param, smollm2.tokenizer)


def _snapshot(model: Model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.hf.named_parameters()}


def _same(model: Model, snapshot: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(p, snapshot[n]) for n, p in model.hf.named_parameters())


def test_rome_edit_shapes_revert_save(tiny_tok, tmp_path):
    before = _snapshot(tiny_tok)
    edit = rome(tiny_tok, FACT, ROMEHyperParams(layer=1, **FAST))
    assert _same(tiny_tok, before)  # editors never leave changes behind
    name, weight, transposed = edited_weight(tiny_tok, 1)
    assert list(edit.deltas) == [name] and edit.deltas[name].shape == weight.shape
    assert transposed == (tiny_tok.spec.family == "gpt2")
    singular = torch.linalg.svdvals(edit.deltas[name].double())
    assert singular[1] < 1e-5 * singular[0]  # rank one
    with edit.applied(tiny_tok):
        assert not torch.equal(weight, before[name])
        # the rank-one update maps the bare prompt's key onto v* exactly
        from locedit.editing.rome import _input_output

        _, v = _input_output(tiny_tok, 1, Request("The capital of {} is", "France", "Rome"), "subject_last")
        assert torch.allclose(v, edit.info["v_star"], atol=1e-4)
    assert _same(tiny_tok, before)  # bit-exact revert
    edit.save(tmp_path / "e.pt")
    loaded = Edit.load(tmp_path / "e.pt")
    assert loaded.method == "ROME" and torch.equal(loaded.deltas[name], edit.deltas[name])
    loaded.apply(tiny_tok)
    with pytest.raises(EditError, match="already applied"):
        loaded.apply(tiny_tok)
    loaded.revert(tiny_tok)
    assert _same(tiny_tok, before)


def test_ft_and_memit_tiny(tiny_tok):
    before = _snapshot(tiny_tok)
    facts = [FACT, {"prompt": "{} plays the", "subject": "Jimi Hendrix", "target_new": "piano"}]
    edit = ft(tiny_tok, facts, FTHyperParams(layer=0, num_steps=3))
    assert _same(tiny_tok, before)
    (delta,) = edit.deltas.values()
    assert 0 < delta.abs().max() <= 5e-4 + 1e-7  # the L-infinity bound
    hp = MEMITHyperParams(
        layers=(0, 1), v_num_grad_steps=3, mom2_n_samples=256, mom2_seq_len=16, context_template_length_params=((3, 5),)
    )
    edit = memit(tiny_tok, facts, hp)
    assert _same(tiny_tok, before)
    assert len(edit.deltas) == 2
    with edit.applied(tiny_tok):
        pass
    assert _same(tiny_tok, before)


def test_target_loss_is_each_rows_teacher_forced_nll(tiny_tok):
    """FT-L's loss (shared with chapter 5's masked fine-tuning): rows of different prompt and target lengths,
    right-padded, with only the logits of the positions that predict a target token, give each row's own mean NLL
    (the metrics' target_nll, and the row run alone)."""
    from locedit.editing.ft import target_loss, target_rows
    from locedit.evaluation import target_nll
    from locedit.tokens import target_ids

    prompts, targets = ["The Eiffel Tower is located in the city of", "Jimi Hendrix plays the"], ["Rome", "bass guitar"]
    p_ids = [tiny_tok.tokenizer(p)["input_ids"] for p in prompts]
    t_ids = [target_ids(tiny_tok, t) for t in targets]
    assert len(p_ids[0]) > len(p_ids[1]) and len(t_ids[1]) > 1 == len(t_ids[0])
    rows = target_rows(tiny_tok, p_ids, t_ids)
    assert rows.labels.shape == (2, rows.ids.shape[1] - len(p_ids[1]) + 1)  # the earlier prompt positions are left out
    assert rows.mask.sum(1).tolist() == [len(p) + len(t) - 1 for p, t in zip(p_ids, t_ids, strict=True)]
    with torch.no_grad():
        loss = target_loss(tiny_tok, rows)
        alone = torch.cat(
            [target_loss(tiny_tok, target_rows(tiny_tok, [p], [t])) for p, t in zip(p_ids, t_ids, strict=True)]
        )
    assert loss.shape == (2,) and loss.dtype == torch.float32
    assert torch.allclose(loss.double(), target_nll(tiny_tok, prompts, targets), rtol=1e-4, atol=1e-5)
    assert torch.allclose(loss, alone, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="at least one token"):
        target_rows(tiny_tok, [p_ids[0]], [[]])
    with pytest.raises(ValueError, match="1 prompts but 2 targets"):
        target_rows(tiny_tok, [p_ids[0]], t_ids)


def test_memit_does_not_depend_on_the_order_of_facts(tiny_tok):
    """MEMIT optimises its z's in batches sorted by length; each z must go back to its own fact, so the same facts
    in another order (and in batches of one) give the same update."""
    facts = [
        {"prompt": "{} is the capital of", "subject": "Paris", "target_new": "Spain"},
        FACT,
        {"prompt": "{} is located in", "subject": "Rome", "target_new": "Norway"},
    ]
    hp = MEMITHyperParams(
        layers=(0, 1), v_num_grad_steps=3, mom2_n_samples=256, mom2_seq_len=16, context_template_length_params=((3, 2),)
    )
    reference = memit(tiny_tok, facts, hp).deltas
    for other in (memit(tiny_tok, facts[::-1], hp), memit(tiny_tok, facts, replace(hp, z_batch=1))):
        for name, delta in reference.items():
            assert torch.allclose(other.deltas[name], delta, rtol=1e-4, atol=1e-6), name


def test_errors(tiny_tok):
    hp = ROMEHyperParams(layer=1, **FAST)
    with pytest.raises(EditError, match="not in the prompt"):
        rome(tiny_tok, {"prompt": "The capital is", "subject": "France", "target_new": "Rome"}, hp)
    with pytest.raises(EditError, match="empty target"):
        rome(tiny_tok, {"prompt": "The capital of {} is", "subject": "France", "target_new": " "}, hp)
    with pytest.raises(EditError, match="out of range"):
        rome(tiny_tok, FACT, ROMEHyperParams(layer=7))
    with pytest.raises(EditError, match="no facts"):
        memit(tiny_tok, [])
    with pytest.raises(EditError, match="no facts"):
        ft(tiny_tok, [])
    # a prompt without {} but with the subject written out is accepted
    assert token_index(tiny_tok, "The capital of {} is", "France") >= 3


def test_family_without_mlp_output(tiny_tok, monkeypatch):
    import dataclasses

    table = dataclasses.replace(tiny_tok.spec.table, mlp_down="no_such_module")
    monkeypatch.setattr(tiny_tok, "spec", dataclasses.replace(tiny_tok.spec, table=table))
    with pytest.raises(EditError, match="mlp_down"):
        rome(tiny_tok, FACT, ROMEHyperParams(layer=1, **FAST))


def test_exception_mid_edit_leaves_weights(tiny_tok, monkeypatch):
    before = _snapshot(tiny_tok)
    calls = {"n": 0}
    original = torch.optim.Adam.step

    def failing(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("boom")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", failing)
    for editor in (
        lambda: ft(tiny_tok, FACT, FTHyperParams(layer=0, num_steps=4)),
        lambda: memit(
            tiny_tok, [FACT], MEMITHyperParams(layers=(0, 1), v_num_grad_steps=4, mom2_n_samples=256, mom2_seq_len=16)
        ),
        lambda: rome(tiny_tok, FACT, ROMEHyperParams(layer=1, **FAST)),
    ):
        calls["n"] = 0
        with pytest.raises(RuntimeError, match="boom"):
            editor()
        assert _same(tiny_tok, before)
        assert all(p.requires_grad for p in tiny_tok.hf.parameters())


def test_apply_failure_restores(tiny_tok):
    before = _snapshot(tiny_tok)
    name, weight, _ = edited_weight(tiny_tok, 0)
    edit = Edit({name: torch.ones_like(weight), "not.a.param": torch.zeros(1)})
    with pytest.raises(EditError, match="no parameters"):
        edit.apply(tiny_tok)
    assert _same(tiny_tok, before)
    with pytest.raises(EditError, match="not applied"):
        Edit({name: torch.ones_like(weight)}).revert(tiny_tok)


def test_applied_per_row_matches_applying_each_edit(tiny_tok):
    """Row b of a batch under applied_per_row gives the logits of the model with edits[b] applied; the weights are
    never touched and the hooks go, even after an exception."""
    before = _snapshot(tiny_tok)
    name, weight, _ = edited_weight(tiny_tok, 1)
    generator = torch.Generator().manual_seed(0)
    edits = [Edit({name: 0.5 * torch.randn(weight.shape, generator=generator)}), None]
    bias = name.rsplit(".", 1)[0] + ".bias"
    if bias in before:  # GPT-2's Conv1D: an edit of a weight and a bias
        delta = 0.5 * torch.randn(weight.shape, generator=generator)
        edits.append(Edit({name: delta, bias: torch.ones(weight.shape[-1])}))
    ids = torch.tensor([tiny_tok.tokenizer("The capital of France is")["input_ids"]] * len(edits))
    with torch.no_grad(), applied_per_row(tiny_tok, edits):
        rows = tiny_tok.hf(input_ids=ids).logits
        with pytest.raises(EditError, match="rows inside applied_per_row"):
            tiny_tok.hf(input_ids=ids[:1])
    assert _same(tiny_tok, before)
    for b, e in enumerate(edits):
        with torch.no_grad(), e.applied(tiny_tok) if e is not None else contextlib.nullcontext():
            alone = tiny_tok.hf(input_ids=ids[:1]).logits[0]
        assert torch.allclose(rows[b], alone, atol=1e-5), b
    assert not torch.allclose(rows[0], rows[1], atol=1e-3)  # the edit does change the output
    module = tiny_tok.hf.get_submodule(name.rsplit(".", 1)[0])
    assert not module._forward_hooks  # removed, also after the error above
    norm = tiny_tok.spec.part(tiny_tok.hf, "final_norm")
    norm_name = next(n for n, p in tiny_tok.hf.named_parameters() if p is norm.weight)
    per_norm = applied_per_row(tiny_tok, [Edit({norm_name: torch.zeros_like(norm.weight)})])
    with pytest.raises(EditError, match="only linear layers"), per_norm:
        pass


def test_key_statistics_cached(tiny_tok):
    c = key_second_moment(tiny_tok, [0, 1], n_tokens=256, seq_len=16)
    assert c[0].dtype == torch.float64 and c[0].shape == (tiny_tok.spec.d_mlp,) * 2
    assert torch.allclose(c[1], c[1].T)
    again = key_second_moment(tiny_tok, 1, n_tokens=256, seq_len=16)
    assert torch.equal(again, c[1])


def test_batched_editors_match_one_at_a_time(tiny_tok):
    """rome_each / ft_each compute independent edits together; each acts like the one-at-a-time edit."""
    from locedit.editing import as_request, ft_each, rome_each
    from locedit.editing.values import by_suffix_length
    from locedit.evaluation import target_prob

    facts = [
        FACT,
        {"prompt": "{} is the capital of", "subject": "Paris", "target_new": "Spain"},
        {"prompt": "{} is located in", "subject": "Rome", "target_new": "Norway"},
    ]
    hp, hp_ft = ROMEHyperParams(layer=1, **FAST), FTHyperParams(layer=1, num_steps=5)
    # tokens per optimisation step: 2 + 1, 5 + 1, 4 + 1, so the batches of two are [0, 2] + [1], not [0, 1] + [2]
    assert by_suffix_length(tiny_tok, [as_request(f) for f in facts], "subject_last") == [0, 2, 1]
    before = _snapshot(tiny_tok)
    single_rome = [rome(tiny_tok, f, hp) for f in facts]
    for batched, single in (
        (rome_each(tiny_tok, facts, hp), single_rome),  # batches of 2: [2 facts] + [1 fact]
        (rome_each(tiny_tok, facts, hp, batch_size=3), single_rome),
        (ft_each(tiny_tok, facts, hp_ft), [ft(tiny_tok, f, hp_ft) for f in facts]),
    ):
        assert _same(tiny_tok, before)
        for fact, a, b in zip(facts, batched, single, strict=True):
            prompt = fact["prompt"].format(fact["subject"])
            new = fact["target_new"]["str"] if isinstance(fact["target_new"], dict) else fact["target_new"]
            with a.applied(tiny_tok):
                pa = target_prob(tiny_tok, [prompt], [new])
            with b.applied(tiny_tok):
                pb = target_prob(tiny_tok, [prompt], [new])
            assert torch.allclose(pa, pb, rtol=1e-3, atol=1e-6), (a.method, pa, pb)
            (da,), (db,) = a.deltas.values(), b.deltas.values()
            assert (da - db).norm() <= 1e-3 * db.norm() + 1e-6
            if a.method == "ROME":  # each edit carries its own fact's optimisation log
                assert a.info["steps"] and isinstance(a.info["steps"][-1]["p_target"], float)
                assert a.info["steps"][0]["p_target"] == pytest.approx(b.info["steps"][0]["p_target"], rel=1e-4)
    with pytest.raises(EditError, match="no facts"):
        rome_each(tiny_tok, [], hp)
    with pytest.raises(EditError, match="batch_size"):
        rome_each(tiny_tok, facts, hp, batch_size=0)


def test_prefixes_start_at_the_document_boundary(smollm2, monkeypatch):
    """Every sampled prefix starts at <|endoftext|>; MEMIT's start words follow it, and count in the length as in
    the released code (its max_out_len), while the boundary token does not."""
    from locedit.editing.common import context_templates

    tok = smollm2.tokenizer
    boundary = tok.get_vocab()["<|endoftext|>"]
    calls = []
    generate = smollm2.hf.generate

    def spy(**kwargs):
        calls.append((kwargs["input_ids"][0].tolist(), kwargs["max_new_tokens"]))
        return generate(**kwargs)

    monkeypatch.setattr(smollm2.hf, "generate", spy)
    words = context_templates(smollm2, ((6, 2),), starts=("The", "Because"), seed=4242)
    bare = context_templates(smollm2, ((6, 1),), seed=4242)
    the, because = (
        tok("The", add_special_tokens=False)["input_ids"],
        tok("Because", add_special_tokens=False)["input_ids"],
    )
    assert calls == [([boundary, *the], 6 - len(the)), ([boundary, *because], 6 - len(because)), ([boundary], 5)]
    assert words[0] == "{}" and words[1].startswith("The") and words[2].startswith("Because")
    assert all(t.endswith(". {}") for t in words[1:] + bare[1:])


# --- issue #19: stacked edits, reverted in the wrong order, must not silently change the weights -----------------


def _two_edits_of_one_layer(model: Model) -> tuple[Edit, Edit, str]:
    name = next(n for n, p in model.hf.named_parameters() if n.endswith("mlp.down_proj.weight"))
    shape = dict(model.hf.named_parameters())[name].shape
    generator = torch.Generator().manual_seed(3)
    a = Edit({name: torch.randn(shape, generator=generator)}, method="A")
    b = Edit({name: torch.randn(shape, generator=generator)}, method="B")
    return a, b, name


def test_reverting_stacked_edits_out_of_order_is_refused():
    """Two edits of one weight, the first reverted first: refused (it would restore its snapshot and so remove the
    second edit as well, which would still say it is applied); reverted last applied first, bit-exact."""
    from conftest import tiny_model

    model = tiny_model("llama")
    before = _snapshot(model)
    a, b, name = _two_edits_of_one_layer(model)
    a.apply(model)
    b.apply(model)
    both = _snapshot(model)
    with pytest.raises(EditError, match=r"revert .*B.* first"):
        a.revert(model)
    assert a.is_applied and b.is_applied
    assert _same(model, both)  # the refused revert changed nothing
    b.revert(model)
    assert not b.is_applied
    a.revert(model)
    assert _same(model, before)
    # edits of different weights revert in any order
    other = next(n for n in before if n.endswith("0.mlp.up_proj.weight"))
    c = Edit({other: torch.ones_like(before[other])}, method="C")
    a.apply(model)
    c.apply(model)
    a.revert(model)
    c.revert(model)
    assert _same(model, before)


def test_nested_applied_blocks_and_exceptions():
    from conftest import tiny_model

    model = tiny_model("llama")
    before = _snapshot(model)
    a, b, _ = _two_edits_of_one_layer(model)
    with a.applied(model), b.applied(model):
        assert a.is_applied and b.is_applied
    assert _same(model, before) and not a.is_applied and not b.is_applied
    with pytest.raises(RuntimeError, match="inside"), a.applied(model), b.applied(model):
        raise RuntimeError("inside")
    assert _same(model, before) and not a.is_applied and not b.is_applied
    # an edit left applied inside a block makes the block's exit refuse, and nothing is silently undone
    with pytest.raises(EditError, match="first"), a.applied(model):
        b.apply(model)
    assert a.is_applied and b.is_applied
    b.revert(model)
    a.revert(model)
    assert _same(model, before)


def test_applied_edits_lists_the_stack_and_revert_checks_the_model():
    from conftest import tiny_model
    from locedit.editing import applied_edits

    model, other = tiny_model("llama"), tiny_model("llama", seed=1)
    a, b, _ = _two_edits_of_one_layer(model)
    assert applied_edits(model) == []
    a.apply(model)
    b.apply(model)
    assert [e.method for e in applied_edits(model)] == ["A", "B"]
    with pytest.raises(EditError, match="another model"):
        b.revert(other)
    b.revert(model)
    a.revert(model)
    assert applied_edits(model) == []


# --- issue #19: one rule for the edit layer ---------------------------------------------------------------------


def _fake_trace(effect_by_layer, layers, window=6):
    """A Trace whose MLP effect at its last subject token (position 1 of 3) is ``effect_by_layer``."""
    from locedit.tracing import Trace

    scores = torch.zeros(len(layers), 3)
    scores[:, 1] = torch.tensor(effect_by_layer)
    fact = {"prompt": "a b c", "subject": "b", "target": "x", "tokens": ["a", "b", "c"], "subject_range": (1, 2)}
    return Trace(**fact, p_clean=1.0, p_corrupt=0.0, scores={"mlp": scores}, noise=1.0, samples=1, window=window,
                 layers=list(layers))  # fmt: skip


def test_edit_layer_rule():
    import numpy as np

    from locedit.editing import edit_layer, memit_layers
    from locedit.tracing import BUCKETS

    curve = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.1, 0.3, 0.2, 0.05])
    assert edit_layer(curve, window=6) == 5  # windows holding layer 0 (layers 0..3) are left out
    assert edit_layer(curve, window=6, skip_layer0=False) == 0
    assert edit_layer(curve, window=2) == 2  # window [l - 1, l]: layer 1's holds layer 0
    full = torch.full((len(BUCKETS), 8), float("nan"))
    full[BUCKETS.index("last subject")] = curve
    assert edit_layer(full, window=6) == 5
    assert edit_layer(curve[::2], layers=[0, 2, 4, 6], window=6) == 6
    with pytest.raises(ValueError, match="window"):
        edit_layer(curve)
    with pytest.raises(ValueError, match="no traced layer"):
        edit_layer(curve[:3], window=6)
    # from traces: their own layers and window; the average over facts decides
    traces = [_fake_trace([0.5, 0.1, 0.2, 0.0], [0, 4, 6, 8]), _fake_trace([0.5, 0.0, 0.3, 0.4], [0, 4, 6, 8])]
    assert edit_layer(traces) == 6
    with pytest.raises(ValueError, match="different layers"):
        edit_layer([traces[0], _fake_trace([0.1, 0.2, 0.3, 0.4], [0, 5, 6, 8])])
    assert memit_layers(5) == (2, 3, 4, 5) and memit_layers(np.int64(5), 2) == (4, 5)
    assert memit_layers(1, 4) == (0, 1)
    with pytest.raises(ValueError, match="n must be ≥ 1"):
        memit_layers(5, 0)


def test_defaults_follow_the_rule_and_layers_take_any_integer(smollm2, tiny_tok):
    import numpy as np

    from locedit.editing import EDIT_LAYERS, default_edit_layer, memit_layers

    l_star = EDIT_LAYERS["smollm2-135m"]
    assert default_edit_layer(smollm2) == l_star
    assert ROMEHyperParams().for_model(smollm2).layer == l_star
    assert FTHyperParams().for_model(smollm2).layer == l_star
    assert MEMITHyperParams().for_model(smollm2).layers == memit_layers(l_star)
    assert MEMITHyperParams().for_model(smollm2).layers[-1] == ROMEHyperParams().for_model(smollm2).layer
    with pytest.raises(EditError, match="no measured edit layer.*edit_layer"):
        rome(tiny_tok, FACT, ROMEHyperParams(**FAST))
    with pytest.raises(EditError, match="no measured edit layer"):
        memit(tiny_tok, [FACT])
    for layer in (np.int64(1), torch.tensor(1), np.int32(1)):
        hp = ROMEHyperParams(layer=layer)
        assert hp.layer == 1 and type(hp.layer) is int
    assert MEMITHyperParams(layers=[np.int64(0), torch.tensor(1)]).layers == (0, 1)
    assert type(FTHyperParams(layer=np.int16(1)).layer) is int
    for bad in (1.0, "1", True):
        with pytest.raises(TypeError, match="layer must be an integer"):
            ROMEHyperParams(layer=bad)
    with pytest.raises(TypeError, match="sequence of layer indices"):
        MEMITHyperParams(layers=5)
    with pytest.raises(TypeError, match="ROMEHyperParams"):
        rome(tiny_tok, FACT, MEMITHyperParams())


# --- issue #19: a request that changes nothing; arguments of the wrong type -----------------------------------------

EIFFEL = "The Eiffel Tower is located in the city of {}"


def test_request_whose_new_target_is_the_true_one_is_refused():
    from locedit.editing import as_request

    same = {"prompt": "The capital of {} is", "subject": "France", "target_new": {"str": "Paris"},
            "target_true": {"str": " Paris"}}  # fmt: skip
    with pytest.raises(EditError, match="target_new 'Paris' is target_true"):
        as_request(same)
    with pytest.raises(EditError, match="is target_true"):
        as_request(Request("The capital of {} is", "France", "Paris", "Paris"))


def test_request_the_model_already_answers_warns(smollm2, monkeypatch):
    """SmolLM2's top-1 next token after "The Eiffel Tower is located in the city of" is " Paris": asking ROME to
    make it say Paris warns, naming the fact (and the edit goes on)."""
    import importlib
    import warnings

    from locedit.editing import as_request
    from locedit.editing.common import warn_if_already_predicted

    prompt = "The Eiffel Tower is located in the city of"
    paris = as_request({"prompt": prompt, "subject": "The Eiffel Tower", "target_new": "Paris"})
    with pytest.warns(UserWarning, match=r"already predicts ' Paris'.*'The Eiffel Tower' → 'Paris'"):
        warn_if_already_predicted(smollm2, [paris], "ROME")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_already_predicted(smollm2, [as_request({**vars(paris), "target_new": "Rome"})], "ROME")

    def stop(*args, **kwargs):
        raise RuntimeError("stop after the entry checks")

    monkeypatch.setattr(importlib.import_module("locedit.editing.rome"), "keys_at", stop)
    with pytest.warns(UserWarning, match="already predicts"), pytest.raises(RuntimeError, match="stop after"):
        rome(smollm2, paris, ROMEHyperParams(layer=5, **FAST))


@pytest.mark.parametrize(
    ("fact", "message"),
    [
        ({"prompt": 5, "subject": "France", "target_new": "Rome"}, "prompt must be a string"),
        ({"prompt": "The capital of {} is", "subject": ["France"], "target_new": "Rome"}, "subject must be a string"),
        ({"prompt": "The capital of {} is", "subject": "France", "target_new": 3}, "target_new must be a string"),
        ({"prompt": "The capital of {} is", "subject": "France", "target_new": {"str": 3}}, "target_new must be"),
        ({"prompt": "The capital of {} is", "subject": "France", "target_new": "Rome", "target_true": 1},
         "target_true must be a string"),
    ],
)  # fmt: skip
def test_request_fields_must_be_strings(fact, message):
    from locedit.editing import as_request

    with pytest.raises(TypeError, match=message):
        as_request(fact)


def test_editor_entry_points_check_their_arguments(tiny_tok):
    from locedit.editing import ft_each, rome_each

    hp = ROMEHyperParams(layer=1, **FAST)
    with pytest.raises(TypeError, match="list of facts.*rome\\(model, fact\\)"):
        rome_each(tiny_tok, FACT, hp)
    with pytest.raises(TypeError, match="batch_size must be an integer"):
        rome_each(tiny_tok, [FACT], hp, batch_size=2.0)
    with pytest.raises(TypeError, match="group must be an integer"):
        ft_each(tiny_tok, [FACT], FTHyperParams(layer=1), group="4")
    with pytest.raises(TypeError, match="list of facts"):
        ft_each(tiny_tok, FACT, FTHyperParams(layer=1))
    with pytest.raises(TypeError, match="prompt must be a string"):
        memit(tiny_tok, [{"prompt": None, "subject": "France", "target_new": "Rome"}], MEMITHyperParams(layers=(0,)))
    with pytest.raises(TypeError, match="subject must be a string"):
        ft(tiny_tok, {"prompt": "The capital of {} is", "subject": 7, "target_new": "Rome"}, FTHyperParams(layer=0))
    with pytest.raises(EditError, match="cannot read a request from str"):
        memit(tiny_tok, "France", MEMITHyperParams(layers=(0,)))


def test_cold_key_statistics_say_what_they_compute(tiny_tok, tmp_path, monkeypatch, capsys):
    """Issue #19: the first edit on a cold cache computes the statistics for minutes; one line on stderr says so."""
    monkeypatch.setenv("LOCEDIT_CACHE", str(tmp_path))
    key_second_moment(tiny_tok, 1, n_tokens=64, seq_len=16)
    err = capsys.readouterr().err
    assert "computing key statistics of layer 1 over 64 tokens, once; cached in" in err
    assert str(tmp_path / "stats") in err
    key_second_moment(tiny_tok, 1, n_tokens=64, seq_len=16)  # warm: silent
    assert "computing" not in capsys.readouterr().err
