"""locedit.arch: the family tables resolve to real modules whose shapes agree with the sizes read from the config."""

from __future__ import annotations

from dataclasses import fields
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from conftest import TINY_FAMILIES, tiny_config, tiny_inputs, tiny_model
from locedit.arch import (
    FAMILIES,
    LAYER_ADAPTERS,
    SITES,
    FamilyTable,
    SiteKind,
    UnsupportedArchitectureError,
    layer_adapter,
    output_head,
    spec_for,
)
from locedit.models import Model
from locedit.patching import activation_patching_grid

BLOCK_RELATIVE = (
    "attn", "attn_out", "attn_o_proj", "mlp", "mlp_out", "mlp_up", "mlp_gate", "mlp_down", "mlp_act_fn", "attn_norm",
    "mlp_norm",
)  # fmt: skip
ROOT = ("blocks", "embed", "final_norm", "unembed")


def _weight_in_out(module: nn.Module, transposed: bool) -> tuple[int, int]:
    """(input size, output size) of a linear layer, whatever its storage layout."""
    weight = module.weight
    return (weight.shape[0], weight.shape[1]) if transposed else (weight.shape[1], weight.shape[0])


def test_smollm2_sizes(smollm2):
    spec = smollm2.spec
    assert spec.family == "llama"
    assert (spec.n_layers, spec.d_model, spec.d_mlp) == (30, 576, 1536)
    assert (spec.n_heads, spec.n_kv_heads, spec.head_dim, spec.vocab_size) == (9, 3, 64, 49152)
    assert spec.gated_mlp
    assert len(spec.blocks(smollm2.hf)) == 30


def test_gemma3_sizes_match_config_and_weights(gemma3):
    spec, hf, config = gemma3.spec, gemma3.hf, gemma3.hf.config
    assert spec.family == "gemma3_text"
    assert (spec.n_layers, spec.d_model, spec.d_mlp) == (
        config.num_hidden_layers,
        config.hidden_size,
        config.intermediate_size,
    )
    assert (spec.n_heads, spec.n_kv_heads, spec.head_dim, spec.vocab_size) == (
        config.num_attention_heads,
        config.num_key_value_heads,
        config.head_dim,
        config.vocab_size,
    )
    assert spec.n_layers == 18 and spec.vocab_size == 262144
    # Gemma 3's head_dim is not d_model / n_heads: the spec must read it from the config
    assert spec.head_dim * spec.n_heads != spec.d_model
    _check_shapes(gemma3.spec, hf)


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_every_path_resolves_on_every_layer(family):
    model = tiny_model(family)
    spec, hf = model.spec, model.hf
    assert spec.family == family
    assert spec.n_layers == 2 and spec.d_model == 64 and spec.n_heads == 4
    assert len(spec.blocks(hf)) == spec.n_layers
    for name in ROOT:
        assert isinstance(spec.part(hf, name), nn.Module)
    for layer in range(spec.n_layers):
        assert spec.block(hf, layer) is spec.blocks(hf)[layer]
        for name in BLOCK_RELATIVE:
            if getattr(spec.table, name) is None:
                assert name == "mlp_gate" and not spec.gated_mlp
                with pytest.raises(ValueError, match="no part"):
                    spec.part(hf, name, layer)
                continue
            module = spec.part(hf, name, layer)
            assert isinstance(module, nn.Module)
            assert module is spec.block(hf, layer).get_submodule(getattr(spec.table, name))
    # distinct layers give distinct modules
    assert spec.part(hf, "mlp_down", 0) is not spec.part(hf, "mlp_down", 1)


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_shapes_agree_with_config(family):
    model = tiny_model(family)
    _check_shapes(model.spec, model.hf)


def _check_shapes(spec, hf):
    transposed = spec.table.weights_transposed
    for layer in (0, spec.n_layers - 1):
        assert _weight_in_out(spec.part(hf, "mlp_down", layer), transposed) == (spec.d_mlp, spec.d_model)
        assert _weight_in_out(spec.part(hf, "mlp_up", layer), transposed) == (spec.d_model, spec.d_mlp)
        if spec.gated_mlp:
            assert _weight_in_out(spec.part(hf, "mlp_gate", layer), transposed) == (spec.d_model, spec.d_mlp)
        assert _weight_in_out(spec.part(hf, "attn_o_proj", layer), transposed) == (
            spec.n_heads * spec.head_dim,
            spec.d_model,
        )
    assert spec.unembedding(hf).shape == (spec.vocab_size, spec.d_model)
    assert spec.part(hf, "embed").weight.shape == (spec.vocab_size, spec.d_model)
    # the final norm acts on d_model vectors
    x = torch.randn(3, spec.d_model, dtype=spec.unembedding(hf).dtype)
    with torch.no_grad():
        assert spec.part(hf, "final_norm")(x).shape == x.shape


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_norm_fields_are_the_norms_feeding_attention_and_mlp(family):
    """attn_norm / mlp_norm are d_model norms of each block whose outputs are exactly what attention and the MLP
    read (pre-norm blocks); GPT-J's one norm feeds both."""
    model = tiny_model(family)
    spec, hf = model.spec, model.hf
    seen: dict[str, torch.Tensor] = {}

    def reader(name: str):
        def hook(_module, args, kwargs):
            seen[name] = args[0] if args else kwargs["hidden_states"]

        return hook

    def writer(name: str):
        def hook(_module, _args, output):
            seen[name] = output

        return hook

    hooks = [
        spec.part(hf, "attn", 0).register_forward_pre_hook(reader("attn"), with_kwargs=True),
        spec.part(hf, "mlp", 0).register_forward_pre_hook(reader("mlp"), with_kwargs=True),
        spec.part(hf, "attn_norm", 0).register_forward_hook(writer("attn_norm")),
        spec.part(hf, "mlp_norm", 0).register_forward_hook(writer("mlp_norm")),
    ]
    try:
        with torch.no_grad():
            hf(**tiny_inputs(batch=1, seq=5))
    finally:
        for hook in hooks:
            hook.remove()
    for name in ("attn_norm", "mlp_norm"):
        assert spec.part(hf, name, 0).weight.shape == (spec.d_model,)
    assert torch.equal(seen["attn_norm"], seen["attn"])
    assert torch.equal(seen["mlp_norm"], seen["mlp"])
    assert (spec.table.mlp_norm == spec.table.attn_norm) == (family == "gptj")
    assert spec.table.norm_gain_offset == (1.0 if family == "gemma3_text" else 0.0)


def test_kv_heads_read_from_config():
    spec = tiny_model("llama").spec
    assert (spec.n_heads, spec.n_kv_heads) == (4, 2)
    assert tiny_model("gpt2").spec.n_kv_heads == 4  # no grouped-query attention: as many KV heads as heads


def test_family_flags():
    assert FAMILIES["gpt2"].weights_transposed
    assert FAMILIES["gptj"].parallel_attn_mlp and FAMILIES["gpt_neox"].parallel_attn_mlp
    assert not FAMILIES["llama"].parallel_attn_mlp
    for table in FAMILIES.values():
        assert isinstance(table, FamilyTable)
        for field in fields(FamilyTable):
            value = getattr(table, field.name)
            assert value is None or isinstance(value, (str, bool, float)), field.name


def _assert_unsupported(err: pytest.ExceptionInfo, family: str) -> None:
    message = str(err.value)
    assert repr(family) in message
    for name in FAMILIES:
        assert name in message
    assert "lib/locedit/arch.py" in message


def test_unsupported_family_bert():
    from transformers import BertConfig, BertForMaskedLM

    bert = BertForMaskedLM(
        BertConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=2, intermediate_size=64, vocab_size=64)
    )
    with pytest.raises(UnsupportedArchitectureError) as err:
        spec_for(bert)
    _assert_unsupported(err, "bert")
    assert isinstance(err.value, ValueError)


def test_unsupported_family_fake_mamba():
    fake = SimpleNamespace(config=SimpleNamespace(model_type="mamba", hidden_size=8, num_hidden_layers=1))
    with pytest.raises(UnsupportedArchitectureError) as err:
        spec_for(fake)
    _assert_unsupported(err, "mamba")


@pytest.mark.parametrize("layer", [-1, 2, 100, np.int64(2), torch.tensor(-1)])
def test_layer_out_of_range(layer):
    model = tiny_model("llama")
    with pytest.raises(IndexError, match=r"0\.\.1"):
        model.spec.block(model.hf, layer)
    with pytest.raises(IndexError):
        model.spec.part(model.hf, "mlp_down", layer)


@pytest.mark.parametrize("layer", [1, np.int64(1), np.int32(1), np.uint8(1), torch.tensor(1), torch.tensor([1])])
def test_layer_any_integer(layer):
    """NumPy and torch integers (e.g. from argmax or a numpy range) name layers like Python ints."""
    model = tiny_model("llama")
    assert model.spec.check_layer(layer) == 1 and type(model.spec.check_layer(layer)) is int
    assert model.spec.block(model.hf, layer) is model.spec.blocks(model.hf)[1]


@pytest.mark.parametrize(
    "layer", [True, False, 1.0, np.float64(1), "1", None, torch.tensor(1.0), torch.tensor(True), torch.tensor([0, 1])]
)
def test_layer_not_a_whole_number(layer):
    model = tiny_model("llama")
    with pytest.raises(TypeError, match=r"not a whole number: give an int in 0\.\.1"):
        model.spec.check_layer(layer)
    with pytest.raises(TypeError):
        model.spec.block(model.hf, layer)


def test_part_errors():
    model = tiny_model("llama")
    with pytest.raises(ValueError, match="no part"):
        model.spec.part(model.hf, "nonexistent", 0)
    with pytest.raises(ValueError, match="needs a layer"):
        model.spec.part(model.hf, "mlp_down")


def test_site_table():
    """SITES is the one table of what a site is; iterating it gives the names, in the forward pass's order."""
    spec = tiny_model("gemma3_text").spec  # head_dim * n_heads != d_model
    assert ", ".join(SITES) == "embed, resid_pre, resid_post, attn_out, q, k, v, z, mlp_out, mlp_act, mlp_up"
    assert "mlp_act" in SITES and "mlp" not in SITES
    assert all(isinstance(kind, SiteKind) for kind in SITES.values())
    assert {name for name, kind in SITES.items() if kind.indexable} == {"q", "k", "v", "z", "mlp_act", "mlp_up"}
    assert [name for name, kind in SITES.items() if not kind.layered] == ["embed"]
    assert SITES["z"].feature_shape(spec) == (spec.n_heads, spec.head_dim)
    assert SITES["k"].feature_shape(spec) == SITES["v"].feature_shape(spec) == (1, 32)  # one KV head
    assert SITES["q"].feature_shape(spec) == (4, 32)
    assert SITES["mlp_up"].feature_shape(spec) == (spec.d_mlp,)
    assert SITES["attn_out"].feature_shape(spec) == (spec.d_model,)
    fields_ = {f.name for f in fields(FamilyTable)}
    assert all(kind.part in fields_ | {"block"} for kind in SITES.values())
    # stream point j (the input of block j) is 2j; the inside of block l is 2l + 1
    stages = {name: kind.stage(None if name == "embed" else 3) for name, kind in SITES.items()}
    assert stages == {"embed": 0, "resid_pre": 6, "resid_post": 8, "attn_out": 7, "q": 7, "k": 7, "v": 7, "z": 7,
                      "mlp_out": 7, "mlp_act": 7, "mlp_up": 7}  # fmt: skip


def test_gpt2_default_mlp_width():
    # GPT-2 and GPT-J leave n_inner unset: the MLP is 4 * d_model wide
    assert tiny_config("gpt2").n_inner is None
    assert tiny_model("gpt2").spec.d_mlp == 256
    assert tiny_model("gptj").spec.d_mlp == 256


# --- layer adapters: the incremental patching engine agrees with the full forward on every family ------------------

SLIDING_VOCAB, SLIDING_WINDOW, PROMPT = 101, 3, 8  # the window is shorter than the prompt


def _adapted_model(family: str) -> Model:
    """A tiny random-weight model of ``family``: Mistral (every layer sliding) and Qwen2 (layer 0 full, layers 1-2
    sliding) with a 3-token window; GPT-J and GPT-NeoX from :func:`conftest.tiny_model` (partial rotary)."""
    from transformers import AutoModelForCausalLM, MistralConfig, Qwen2Config

    common = {
        "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 3, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": SLIDING_VOCAB, "sliding_window": SLIDING_WINDOW,
    }  # fmt: skip
    if family == "mistral":
        config = MistralConfig(**common)
    elif family == "qwen2":
        config = Qwen2Config(**common, use_sliding_window=True, max_window_layers=1)
    else:
        return tiny_model(family)
    torch.manual_seed(0)
    hf = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa").eval()
    return Model(hf=hf, tokenizer=None, spec=spec_for(hf), name=f"tiny-{family}")


NEW_ADAPTERS = ("mistral", "qwen2", "gptj", "gpt_neox")


def test_every_family_has_a_layer_adapter():
    assert set(LAYER_ADAPTERS) == set(FAMILIES)
    for family in NEW_ADAPTERS:
        assert layer_adapter(_adapted_model(family).spec) is not None


@pytest.mark.parametrize("family", ["mistral", "qwen2"])
def test_sliding_layers_get_a_window(family):
    """Layers marked sliding see only the last 3 positions; Qwen2's full layer 0 sees them all."""
    model = _adapted_model(family)
    like = torch.empty(1, PROMPT, model.spec.d_model)
    kwargs = layer_adapter(model.spec).layer_kwargs(model.hf, like, None, None, torch.arange(PROMPT)[None])
    expected = ["sliding_attention"] * 3 if family == "mistral" else ["full_attention"] + ["sliding_attention"] * 2
    window = [True] * SLIDING_WINDOW
    for kind, kw in zip(expected, kwargs, strict=True):
        mask = kw["attention_mask"]
        if kind == "sliding_attention":
            assert mask[0, 0, PROMPT - 1].tolist() == [False] * (PROMPT - SLIDING_WINDOW) + window
        else:
            assert mask is None or bool(mask[0, 0, PROMPT - 1].all())


@pytest.mark.parametrize("site", ["resid_post", "attn_out", "mlp_out", "z"])
@pytest.mark.parametrize("family", NEW_ADAPTERS)
def test_incremental_grid_matches_full(family, site):
    """Every layer x position (x head for z), logits read at the last position and at one before most patches."""
    model = _adapted_model(family)
    vocab = model.spec.vocab_size
    generator = torch.Generator().manual_seed(1)
    clean, corrupt = ({"input_ids": torch.randint(2, vocab, (1, PROMPT), generator=generator)} for _ in range(2))
    kwargs = {"site": site, "read_positions": [-1, 4]}
    full = activation_patching_grid(model, clean, corrupt, method="full", **kwargs)
    fast = activation_patching_grid(model, clean, corrupt, method="incremental", **kwargs)
    heads = (model.spec.n_heads,) if site == "z" else ()
    assert full.shape == (model.spec.n_layers, PROMPT, *heads, 2, vocab)
    assert (fast - full).abs().max().item() <= 1e-5
    rows = full.flatten(0, -3)  # [patches, reads, vocab]
    assert (rows - rows[0]).abs().max() > 1e-3  # the patches change the logits: the comparison is not vacuous


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_output_head_on_the_base_model_reproduces_the_logits(family):
    """ROME's value optimisation runs the base model and applies the output head only where its loss reads; for
    every family that must equal the full model's logits (GPT-J's unembedding has a bias, Gemma soft-caps)."""
    model = tiny_model(family)
    inputs = tiny_inputs(batch=2, seq=6)
    with torch.no_grad():
        full = model.hf(**inputs).logits
        hidden = model.hf.base_model(**inputs).last_hidden_state
        rows, cols = torch.tensor([0, 1, 1]), torch.tensor([5, 2, 0])
        picked = output_head(model.hf, model.spec, hidden[rows, cols])
    assert torch.allclose(picked, full[rows, cols], atol=1e-5)


def test_output_head_soft_caps(monkeypatch):
    model = tiny_model("gemma3_text")
    monkeypatch.setattr(model.hf.config, "final_logit_softcapping", 2.0)
    with torch.no_grad():
        full = model.hf(**tiny_inputs(batch=1, seq=4)).logits
        hidden = model.hf.base_model(**tiny_inputs(batch=1, seq=4)).last_hidden_state
        assert full.abs().max() <= 2.0
        assert torch.allclose(output_head(model.hf, model.spec, hidden), full, atol=1e-5)
