"""locedit.circuits.circuit_editing: the paper's masked, clamped fine-tuning, its metric, pruned networks, ROME
inside / outside a circuit; exact restores and masks that hold."""

from __future__ import annotations

import math

import pytest
import torch

from locedit.arch import spec_for
from locedit.circuits.circuit_editing import (
    EditOutcome,
    MaskedFTSettings,
    densest_and_sparsest_layers,
    edit_sweep,
    masked_finetuned,
    masked_ft,
    rome_inside_outside,
    summarize,
)
from locedit.circuits.units import (
    Circuit,
    empty_circuit,
    parameter_masks,
    pruned,
    random_circuit,
    unit_layout,
)
from locedit.editing import EditError, ROMEHyperParams
from locedit.evaluation import target_nll
from locedit.models import Model
from word_model import tiny_word_llama

#: Settings that move a random tiny model visibly within 10 steps (the paper's lr 5e-4 barely moves it).
STRONG = MaskedFTSettings(lr=0.5, steps=10, clamp=2e-2)


def _record(case_id, subject, true, new, prompt="{} is in the city of", paraphrases=None) -> dict:
    if paraphrases is None:
        paraphrases = [f"{subject} is in the", f"the {subject} is in"]
    return {
        "case_id": case_id,
        "requested_rewrite": {"prompt": prompt, "subject": subject, "target_true": {"str": true},
                              "target_new": {"str": new}},
        "paraphrase_prompts": paraphrases,
        "neighborhood_prompts": [],
    }  # fmt: skip


REQUESTS = [_record(0, "The Eiffel Tower", "Paris", "Rome"), _record(1, "Rome", "Rome", "Paris", paraphrases=[])]


def _gpt2_like(llama: Model) -> Model:
    """A random GPT-2 (Conv1D weights stored [in, out], biases) over the word model's vocabulary."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=64, n_layer=2, n_embd=32, n_head=4, n_positions=32, bos_token_id=0,
                        eos_token_id=1, pad_token_id=1)  # fmt: skip
    hf = GPT2LMHeadModel(config).eval()
    return Model(hf=hf, tokenizer=llama.tokenizer, spec=spec_for(hf), name="tiny-gpt2-words")


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def model(request) -> Model:
    llama = tiny_word_llama()
    return llama if request.param == "llama" else _gpt2_like(llama)


def _snapshot(model: Model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.hf.named_parameters()}


def _unchanged(model: Model, snapshot: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(p, snapshot[n]) for n, p in model.hf.named_parameters())


def _random_masks(model: Model, fraction: float = 0.3, seed: int = 0) -> dict[str, torch.Tensor]:
    """Per-entry random masks on every MLP weight of the blocks, plus one whole (all-True) norm weight."""
    generator = torch.Generator().manual_seed(seed)
    params = dict(model.hf.named_parameters())
    masks = {n: torch.rand(p.shape, generator=generator) < fraction for n, p in params.items()
             if ".mlp." in n and n.endswith("weight")}  # fmt: skip
    norm = next(n for n in params if n.startswith(model.spec.table.blocks) and params[n].dim() == 1)
    masks[norm] = torch.ones_like(params[norm], dtype=torch.bool)
    return masks


def test_settings_refuse_bad_values():
    assert MaskedFTSettings() == MaskedFTSettings(lr=5e-4, steps=10, clamp=5e-4, early_stop_loss=1e-2)
    for bad in ({"lr": 0}, {"lr": -1e-3}, {"lr": math.nan}, {"clamp": math.inf}, {"clamp": True},
                {"early_stop_loss": -1.0}, {"early_stop_loss": math.nan}):  # fmt: skip
        with pytest.raises(ValueError, match="MaskedFTSettings"):
            MaskedFTSettings(**bad)
    with pytest.raises(ValueError, match="steps"):
        MaskedFTSettings(steps=0)
    with pytest.raises(TypeError, match="steps"):
        MaskedFTSettings(steps=2.5)


def test_masked_entries_never_move_and_moved_ones_stay_in_the_clamp(model):
    before = _snapshot(model)
    flags = [p.requires_grad for p in model.hf.parameters()]
    masks = _random_masks(model)
    with masked_finetuned(model, REQUESTS[0], masks, STRONG) as losses:
        assert len(losses) == STRONG.steps and losses[-1] < losses[0]
        moved = 0
        for name, p in model.hf.named_parameters():
            change = (p.detach() - before[name]).abs()
            if name not in masks:
                assert torch.equal(p, before[name]), f"{name} has no mask and moved"
                continue
            assert torch.equal(p[~masks[name]], before[name][~masks[name]]), f"{name} moved outside its mask"
            # the clamp, in float32 rounding of original ± clamp
            assert float(change.max()) <= STRONG.clamp * (1 + 1e-5) + 1e-7
            moved += int(torch.count_nonzero(change))
        assert moved > 0
        assert any(float((p.detach() - before[n]).abs().max()) > 0.99 * STRONG.clamp for n, p in
                   model.hf.named_parameters() if n in masks)  # the clamp binds at this lr  # fmt: skip
    assert _unchanged(model, before)
    assert [p.requires_grad for p in model.hf.parameters()] == flags  # the model's own flags again


def test_sweep_edits_each_request_on_the_unedited_weights(model):
    before = _snapshot(model)
    flags = [p.requires_grad for p in model.hf.parameters()]
    outcomes = edit_sweep(model, REQUESTS, None, STRONG)
    assert _unchanged(model, before)
    assert [p.requires_grad for p in model.hf.parameters()] == flags
    assert [o.case_id for o in outcomes] == [0, 1] and all(isinstance(o, EditOutcome) for o in outcomes)
    # the second request alone gives what it gave after the first: the first edit was undone exactly
    alone = masked_ft(model, REQUESTS[1], None, STRONG)
    assert alone.losses == outcomes[1].losses and alone.post_magnitude == outcomes[1].post_magnitude
    for o in outcomes:
        assert o.post_magnitude > o.pre_magnitude  # the edit pushes target_new up against target_true
        assert o.steps == len(o.losses) == STRONG.steps and o.moved > 0
        assert 0 < o.max_change <= STRONG.clamp * (1 + 1e-5) + 1e-7
        assert o.pre_success == (o.pre_magnitude > 0) and o.post_success == (o.post_magnitude > 0)
    assert outcomes[1].paraphrase_pre_success is None and outcomes[0].paraphrase_post_success is not None
    # the metric is the paper's: success NLL_new < NLL_true, magnitude exp(-NLL_new) - exp(-NLL_true)
    rw = REQUESTS[0]["requested_rewrite"]
    prompt = rw["prompt"].format(rw["subject"])
    prompts = [prompt, *REQUESTS[0]["paraphrase_prompts"]]
    nll_true = target_nll(model, prompts, ["Paris"] * 3)
    nll_new = target_nll(model, prompts, ["Rome"] * 3)
    magnitude = torch.exp(-nll_new) - torch.exp(-nll_true)
    assert outcomes[0].pre_magnitude == pytest.approx(float(magnitude[0]), abs=1e-9)
    assert outcomes[0].paraphrase_pre_magnitude == pytest.approx(float(magnitude[1:].mean()), abs=1e-9)
    assert outcomes[0].paraphrase_pre_success == float((nll_new[1:] < nll_true[1:]).double().mean())


def test_early_stop_before_any_step_changes_nothing(model):
    outcome = masked_ft(model, REQUESTS[0], None, MaskedFTSettings(early_stop_loss=1e6))
    assert outcome.steps == 0 and len(outcome.losses) == 1 and outcome.moved == 0
    assert outcome.post_magnitude == pytest.approx(outcome.pre_magnitude, abs=1e-6)  # batched vs alone: rounding


def test_summarize_rates_and_means(model):
    outcomes = edit_sweep(model, REQUESTS, _random_masks(model), STRONG)
    summary = summarize(outcomes)
    assert summary["n"] == 2
    assert summary["post_success"] == sum(o.post_success for o in outcomes) / 2
    assert summary["post_magnitude"] == pytest.approx(sum(o.post_magnitude for o in outcomes) / 2)
    assert summary["paraphrase_post_success"] == outcomes[0].paraphrase_post_success  # the other has none
    assert summary["steps"] == STRONG.steps and summary["seconds_per_edit"] > 0
    with pytest.raises(ValueError, match="no outcomes"):
        summarize([])


def test_an_exception_mid_edit_restores_the_weights(model):
    before = _snapshot(model)
    calls = []

    def fail_on_third_forward(_module, _args, _output):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("boom")

    handle = model.hf.get_submodule(model.spec.table.blocks)[0].register_forward_hook(fail_on_third_forward)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            edit_sweep(model, REQUESTS, None, STRONG)
    finally:
        handle.remove()
    assert len(calls) == 3 and _unchanged(model, before)
    with pytest.raises(RuntimeError, match="inside"), masked_finetuned(model, REQUESTS[0], None, STRONG):
        assert not _unchanged(model, before)
        raise RuntimeError("inside")
    assert _unchanged(model, before)


def test_a_nan_loss_is_a_clear_error_and_the_weights_come_back(model):
    before = _snapshot(model)
    calls = []

    def nan_from_the_third_forward(_module, _args, output):
        # forward 1 is the metric before the edit, 2 the first training step, 3 the second
        calls.append(1)
        if len(calls) < 3:
            return output
        return (output[0] * math.nan, *output[1:]) if isinstance(output, tuple) else output * math.nan

    handle = model.hf.get_submodule(model.spec.table.blocks)[-1].register_forward_hook(nan_from_the_third_forward)
    try:
        with pytest.raises(EditError, match=r"loss is nan at step 1.*restored"):
            masked_ft(model, REQUESTS[1], None, STRONG)
    finally:
        handle.remove()
    assert _unchanged(model, before)


def test_bad_masks_and_requests_are_refused(model):
    params = dict(model.hf.named_parameters())
    name = next(n for n in params if ".mlp." in n and n.endswith("weight"))
    with pytest.raises(EditError, match="no parameter entry move"):
        masked_ft(model, REQUESTS[0], {})
    with pytest.raises(EditError, match="no parameter entry move"):
        masked_ft(model, REQUESTS[0], {name: torch.zeros_like(params[name], dtype=torch.bool)})
    with pytest.raises(EditError, match="no parameter entry move"):
        masked_ft(model, REQUESTS[0], parameter_masks(model, empty_circuit(unit_layout(model))))
    with pytest.raises(EditError, match="does not have"):
        masked_ft(model, REQUESTS[0], {"model.layers.99.mlp.up_proj.weight": torch.ones(2, dtype=torch.bool)})
    with pytest.raises(EditError, match="shape"):
        masked_ft(model, REQUESTS[0], {name: torch.ones(3, dtype=torch.bool)})
    with pytest.raises(TypeError, match="bool tensor"):
        masked_ft(model, REQUESTS[0], {name: torch.ones_like(params[name])})
    with pytest.raises(TypeError, match="dict"):
        masked_ft(model, REQUESTS[0], [torch.ones(2, dtype=torch.bool)])
    with pytest.raises(TypeError, match="edit_sweep"):
        masked_ft(model, REQUESTS, None)
    with pytest.raises(TypeError, match="list"):
        edit_sweep(model, REQUESTS[0], None)
    with pytest.raises(EditError, match="no requests"):
        edit_sweep(model, [], None)
    no_true = {"requested_rewrite": {"prompt": "{} is in the city of", "subject": "Rome", "target_new": {"str": "a"}}}
    with pytest.raises(EditError, match="target_true"):
        masked_ft(model, no_true, None)
    with pytest.raises(TypeError, match="MaskedFTSettings"):
        masked_ft(model, REQUESTS[0], None, {"lr": 1e-3})


def test_multi_token_targets_train_on_every_token_unless_one_is_required(model):
    two = _record(3, "The Eiffel Tower", "Paris", "Rome Paris")  # two words: two tokens of the word tokenizer
    outcome = masked_ft(model, two, None, STRONG)
    assert outcome.post_magnitude > outcome.pre_magnitude
    with pytest.raises(EditError, match=r"'Rome Paris' is 2 tokens.*single_token"):
        masked_ft(model, two, None, MaskedFTSettings(single_token=True))


def test_editing_a_pruned_network_keeps_it_pruned(model):
    before = _snapshot(model)
    circuit = random_circuit(unit_layout(model), 0.4, seed=1)
    masks = parameter_masks(model, circuit)
    outcomes = edit_sweep(model, REQUESTS, masks, STRONG, within=circuit)
    assert _unchanged(model, before)
    with pruned(model, circuit):
        # the metric before the edit was read in the pruned network
        rw = REQUESTS[0]["requested_rewrite"]
        prompt = rw["prompt"].format(rw["subject"])
        nll = target_nll(model, [prompt, prompt], ["Paris", "Rome"])
        assert outcomes[0].pre_magnitude == pytest.approx(float(torch.exp(-nll[1]) - torch.exp(-nll[0])), abs=1e-9)
        zeros = {n: p.detach().clone() for n, p in model.hf.named_parameters() if n in masks}
        with masked_finetuned(model, REQUESTS[0], masks, STRONG):
            for name, p in model.hf.named_parameters():
                if name in masks:
                    assert torch.equal(p[~masks[name]], zeros[name][~masks[name]])  # pruned entries stay put
    assert _unchanged(model, before)
    assert outcomes[0].post_magnitude != outcomes[0].pre_magnitude
    with pytest.raises(EditError, match="pruned network sets to 0"):
        edit_sweep(model, REQUESTS, None, STRONG, within=circuit)
    with pytest.raises(EditError, match="pruned network sets to 0"):
        edit_sweep(model, REQUESTS, parameter_masks(model, circuit.complement()), STRONG, within=circuit)
    with pytest.raises(TypeError, match="Circuit"):
        edit_sweep(model, REQUESTS, masks, STRONG, within=masks)
    assert _unchanged(model, before)


def _neuron_circuit(model: Model, per_layer: list[float]) -> Circuit:
    """A circuit keeping the first ``per_layer[l]`` fraction of layer l's neurons (and nothing else)."""
    layout = unit_layout(model)
    masks = {k: v.clone() for k, v in empty_circuit(layout).masks.items()}
    for layer, share in enumerate(per_layer):
        masks["neuron"][layer, : round(share * layout.d_mlp)] = True
    return Circuit(layout, masks)


def test_densest_and_sparsest_layers_rule(model):
    n = unit_layout(model).n_layers
    shares = [0.5] * n
    shares[-1], shares[0] = 0.75, 0.25
    assert densest_and_sparsest_layers(_neuron_circuit(model, shares)) == (n - 1, 0)
    with pytest.raises(EditError, match="same share"):
        densest_and_sparsest_layers(_neuron_circuit(model, [0.5] * n))


def test_rome_inside_outside(model):
    fast = ROMEHyperParams(context_template_length_params=((3, 2),), mom2_n_samples=256, mom2_seq_len=16,
                           v_num_grad_steps=4)  # fmt: skip
    n = unit_layout(model).n_layers
    shares = [0.5] * n
    shares[0], shares[-1] = 0.75, 0.25
    before = _snapshot(model)
    table = rome_inside_outside(model, REQUESTS[:1], _neuron_circuit(model, shares), hparams=fast)
    assert _unchanged(model, before)
    assert list(table.role) == ["inside", "outside"] and list(table.layer) == [0, n - 1]
    assert list(table.neuron_share) == pytest.approx([0.75, 0.25], abs=0.02)
    for column in ("pre_ES", "ES", "EM", "PS", "PM"):
        assert table[column].between(-100, 100).all()
    swapped = rome_inside_outside(model, REQUESTS[:1], _neuron_circuit(model, shares), layers=(n - 1, 0), hparams=fast)
    assert list(swapped.layer) == [n - 1, 0]
    assert list(swapped.ES) == list(table.ES[::-1])  # the same edit at the same layer, whatever its role
    with pytest.raises(ValueError, match="inside, outside"):
        rome_inside_outside(model, REQUESTS[:1], _neuron_circuit(model, shares), layers=(0,))


def _hierarchy(case_id: int, subject: str, true: str, new: str) -> dict:
    return {
        "case_id": case_id,
        "requested_rewrite": {"prompt": "{} is a kind of", "subject": subject, "target_true": {"str": true},
                              "target_new": {"str": new}},
        "paraphrase_prompts": [f"{subject} is a type of", f"{subject} falls under the category of"],
        "neighborhood_prompts": [],
    }  # fmt: skip


def test_smollm2_full_model_edit_takes_and_a_circuit_edit_moves_only_its_units(smollm2):
    """At the paper's settings (lr 5e-4, 10 steps, clamp 5e-4) the full model learns 'a beagle is a kind of cat'
    (measured: 6 of 6 such requests flip); a 5% random circuit's edit moves only that circuit's entries."""
    requests = [_hierarchy(0, "A beagle", "dog", "cat")]
    before = _snapshot(smollm2)
    full = edit_sweep(smollm2, requests, None, MaskedFTSettings(single_token=True))
    assert _unchanged(smollm2, before)
    for o in full:
        assert not o.pre_success and o.post_success and o.post_magnitude > o.pre_magnitude
        assert o.steps == 10 and 0 < o.max_change <= 5e-4 + 1e-6  # + float32 rounding of gains ~1
    circuit = random_circuit(unit_layout(smollm2), 0.05, seed=0)
    (inside,) = edit_sweep(smollm2, requests, parameter_masks(smollm2, circuit))
    assert _unchanged(smollm2, before)
    assert 0 < inside.moved <= circuit.n_params < full[0].moved
    assert inside.pre_magnitude == pytest.approx(full[0].pre_magnitude, abs=1e-9)
