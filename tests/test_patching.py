"""The patching engine: the incremental and cached runs agree with the plain full-forward reference, bf16 stays
within its stated tolerance, bad input fails clearly, and nothing is left behind by an exception."""

from __future__ import annotations

import pytest
import torch

from locedit.arch import LAYER_ADAPTERS, spec_for
from locedit.hooks import Intervention, Site
from locedit.models import Model
from locedit.patching import Patch, activation_patching_grid, as_dtype, record, sweep

CLEAN = "The Eiffel Tower is located in the city of"
CORRUPT = "The Colosseum is located in the city of"
TOL = 1e-5  # float32: incremental / cached vs full, on probabilities


def _probs(tokens):
    """A metric: next-token probabilities of a few tokens at the last read position, [rows, len(tokens)]."""
    return lambda logits: logits[:, -1].softmax(-1)[:, tokens]


def _metric(model: Model):
    ids = [model.token_id(" Paris"), model.token_id(" Rome"), model.token_id(" the")]
    return _probs(ids)


def _agree(model, base, patches, metric, methods=("incremental", "cached"), **kwargs) -> torch.Tensor:
    """Run the reference and ``methods``; assert they agree; return the reference."""
    full = sweep(model, base, patches, metric, method="full", **kwargs)
    for method in methods:
        got = sweep(model, base, patches, metric, method=method, **kwargs)
        assert got.shape == full.shape
        diff = (got - full).abs().max().item()
        assert diff <= TOL, f"{method} differs from the full reference by {diff:.2e}"
    return full


# --- the real models ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("site", ["resid_post", "attn_out", "mlp_out", "z"])
def test_incremental_matches_full_on_real_models(real_model, site):
    """Every kind of site, at the first, a middle and the last layer, at early, middle and last positions."""
    n = real_model.spec.n_layers
    layers, positions = [0, n // 2, n - 1], [4, 9]
    index = [0, real_model.spec.n_heads - 1] if site == "z" else None
    clean = record(real_model, CLEAN, [Site(site, layer) for layer in layers])
    patches = [
        Patch([Intervention(Site(site, layer), "replace", clean[f"{site}.{layer}"], positions=[p], index=index)])
        for layer in layers
        for p in positions
    ]
    methods = ("incremental", "cached") if site == "resid_post" else ("incremental",)
    out = _agree(real_model, CORRUPT, patches, _metric(real_model), methods)
    assert out.shape == (len(patches), 3)


def test_grid_matches_full(smollm2):
    metric = _metric(smollm2)
    kwargs = {"layers": [3, 29], "positions": [0, 3, 9]}
    full = activation_patching_grid(smollm2, CLEAN, CORRUPT, metric, method="full", **kwargs)
    fast = activation_patching_grid(smollm2, CLEAN, CORRUPT, metric, **kwargs)
    assert fast.shape == (2, 3, 3)
    assert (fast - full).abs().max() <= TOL
    # restoring the whole last-position state restores the clean prediction
    clean_p = smollm2.next_token_probs(CLEAN)[0, smollm2.token_id(" Paris")]
    assert torch.isclose(fast[1, 2, 0], clean_p, atol=1e-5)


def test_causal_trace_shape(smollm2):
    """Noise per base row, restore windows of layers, severed MLPs: one sweep, as chapter 1 will use it."""
    torch.manual_seed(0)
    inputs = smollm2.encode(CLEAN)
    subject = [1, 2, 3]
    n_samples, d = 2, smollm2.spec.d_model
    noise = Intervention("embed", "add", 0.1 * torch.randn(n_samples, len(subject), d), positions=subject)
    base = {"input_ids": inputs["input_ids"].expand(n_samples, -1)}
    sites = [Site("resid_post", layer) for layer in range(6)]
    clean = record(smollm2, inputs, sites)
    corrupted = record(smollm2, base, [Site("mlp_out", layer) for layer in range(6)], interventions=[noise])
    patches = []
    for row in range(n_samples):
        # a window of three layers at the last subject token
        patches.append(
            Patch(
                [
                    Intervention(f"resid_post.{layer}", "replace", clean[f"resid_post.{layer}"], positions=[3])
                    for layer in (1, 2, 3)
                ],
                row=row,
            )
        )
        # restore h at layer 1 and freeze the MLPs above at their corrupted values (severed)
        severed = [Intervention("resid_post.1", "replace", clean["resid_post.1"], positions=[3])]
        severed += [
            Intervention(f"mlp_out.{layer}", "replace", corrupted[f"mlp_out.{layer}"], positions=[3])
            for layer in range(2, 6)
        ]
        patches.append(Patch(severed, row=row))
        # restoring before the subject changes nothing: skipped, and equal to the base run
        patches.append(Patch([Intervention("resid_post.2", "replace", clean["resid_post.2"], positions=[0])], row=row))
    out = _agree(smollm2, base, patches, _metric(smollm2), ("incremental",), base_interventions=[noise])
    baseline = sweep(
        smollm2, base, [Patch([], row=r) for r in range(n_samples)], _metric(smollm2), base_interventions=[noise]
    )
    assert (out[2::3] - baseline).abs().max() <= TOL


def test_ops_padding_and_read_positions(smollm2):
    """add / scale / clamp / callable values, per-row base interventions, left-padded base rows, several read
    positions, and a metric that takes the base rows."""
    base = smollm2.encode([CLEAN, "Paris is the capital of"])
    seq = base["input_ids"].shape[1]
    direction = torch.randn(smollm2.spec.d_model)
    base_ivs = [Intervention("mlp_act.2", "scale", 0.5, rows=[1], positions=[-1], index=[5, 6])]
    patches = [
        Patch([Intervention("resid_pre.4", "add", direction, positions=[seq - 3])], row=0),
        Patch([Intervention("mlp_act.7", "scale", 0.0, positions=[seq - 2], index=[1, 2, 3])], row=1),
        Patch([Intervention("attn_out.3", "clamp", (-0.1, 0.1), positions=[seq - 4, seq - 1])], row=1),
        Patch([Intervention("mlp_out.5", "replace", lambda x: -x, positions=[seq - 2])], row=0),
        Patch([Intervention("z.6", "replace", 0.0, positions=[seq - 1], index=[0])], row=1),
    ]

    def metric(logits, rows):
        assert logits.shape[1:] == (2, smollm2.spec.vocab_size)
        return logits.softmax(-1)[:, :, 0] + rows[:, None]

    out = _agree(smollm2, base, patches, metric, base_interventions=base_ivs, read_positions=[-2, -1])
    assert out.shape == (5, 2)


def test_no_op_patches_are_skipped_exactly(smollm2):
    """Clean and corrupt share their first token: restoring it is a no-op, returned without running anything."""
    clean = record(smollm2, CLEAN, ["resid_post.5"])
    patch = Patch([Intervention("resid_post.5", "replace", clean["resid_post.5"], positions=[0])])
    metric = _metric(smollm2)
    skipped = sweep(smollm2, CORRUPT, [patch], metric)
    computed = sweep(smollm2, CORRUPT, [patch], metric, skip_noops=False)
    baseline = metric(smollm2.hf(**smollm2.encode(CORRUPT)).logits.detach())
    assert (skipped - computed).abs().max() <= TOL
    assert (skipped - baseline).abs().max() <= TOL


def test_a_defaulted_second_parameter_is_not_given_the_base_rows(smollm2):
    """The loop idiom ``lambda logits, t=tid: ...`` keeps its default: only a parameter without one gets the base
    rows (filled with them, the grid came back with an extra axis of ~1e-7 values and no error)."""
    paris = smollm2.token_id(" Paris")
    kwargs = {"layers": [3], "positions": [0, 9]}
    plain = activation_patching_grid(
        smollm2, CLEAN, CORRUPT, lambda logits: logits[:, -1].softmax(-1)[:, paris], **kwargs
    )
    looped = [
        activation_patching_grid(smollm2, CLEAN, CORRUPT, lambda logits, t=t: logits[:, -1].softmax(-1)[:, t], **kwargs)
        for t in [paris]
    ]
    assert plain.shape == looped[0].shape == (1, 2)
    assert torch.equal(looped[0], plain)


def test_metric_output_shape_is_checked(smollm2):
    """One value (or one tensor of a fixed shape) per row, whatever the batch: anything else is a clear error."""
    patches = [[Intervention("resid_post.3", "add", 1.0, positions=[p])] for p in (9, 9, 5)]  # batches of 2 and 1
    with pytest.raises(ValueError, match=r"one value .*per row.*shape \(\) for a batch of 1 rows"):
        sweep(smollm2, CORRUPT, patches, lambda logits: logits.mean())
    with pytest.raises(ValueError, match="per row"):
        sweep(smollm2, CORRUPT, patches, lambda logits: logits[0, -1, :3])
    with pytest.raises(ValueError, match=r"depends on the batch"):
        sweep(smollm2, CORRUPT, patches, lambda logits, rows: logits[:, -1, : len(rows)])


# --- bfloat16 ----------------------------------------------------------------------------------------------------

# Measured on SmolLM2 (p(" Paris"), full grids): the largest move is reported in the benchmark notes; these bounds
# leave a margin. bf16 is for locating (argmax layer/position, rough size), not for comparing small effects.
BF16_TOL = {"resid_post": 0.06, "mlp_out": 0.02}


@pytest.mark.parametrize("site", sorted(BF16_TOL))
def test_bf16_within_stated_tolerance(smollm2, site):
    metric = _probs([smollm2.token_id(" Paris")])
    kwargs = {"site": site, "layers": [4, 12], "positions": [3, 9]}
    fp32 = activation_patching_grid(smollm2, CLEAN, CORRUPT, metric, **kwargs)
    bf16 = activation_patching_grid(smollm2, CLEAN, CORRUPT, metric, dtype=torch.bfloat16, **kwargs)
    diff = (fp32 - bf16).abs().max().item()
    assert diff <= BF16_TOL[site], f"bf16 moved the {site} grid by {diff:.3f} (> {BF16_TOL[site]})"
    assert diff > 0  # it did run in bf16
    assert as_dtype(smollm2, torch.bfloat16).hf is as_dtype(smollm2, torch.bfloat16).hf  # the copy is kept


def test_bf16_copy_follows_weight_edits(smollm2):
    copy1 = as_dtype(smollm2, torch.bfloat16).hf
    weight = smollm2.spec.part(smollm2.hf, "mlp_down", 0).weight
    with torch.no_grad():
        weight[0, 0] += 1.0
    try:
        copy2 = as_dtype(smollm2, torch.bfloat16).hf
        assert copy2 is not copy1
    finally:
        with torch.no_grad():
            weight[0, 0] -= 1.0


# --- bad input, and nothing left behind --------------------------------------------------------------------------


def _hooks_left(model: Model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.hf.modules())


@pytest.mark.parametrize(
    ("patch", "error", "words"),
    [
        (Patch([Intervention("resid_post.30", "add", 1.0)]), IndexError, ["patch 0", "layer 30"]),
        (Patch([Intervention("resid_post.3", "add", 1.0, positions=[10])]), IndexError, ["patch 0", "positions"]),
        (Patch([Intervention("mlp_out.3", "add", torch.ones(3, 7))]), ValueError, ["patch 0", "(3, 7)"]),
        (Patch([Intervention("z.3", "add", 1.0, index=[9])]), IndexError, ["patch 0", "heads"]),
        (Patch([Intervention("resid_pre.1", "add", 1.0, rows=[0])]), ValueError, ["patch 0", "rows"]),
        (Patch([Intervention("resid_pre.1", "add", 1.0)], row=2), IndexError, ["patch 0", "base row 2"]),
    ],
)
def test_bad_input_names_the_offender(smollm2, patch, error, words):
    with pytest.raises(error) as info:
        sweep(smollm2, CORRUPT, [patch], _metric(smollm2))
    for word in words:
        assert word in str(info.value)


def test_bad_site_name_and_read_position(smollm2):
    with pytest.raises(ValueError, match="unknown site 'resid'"):
        Intervention("resid.3", "add", 1.0)
    with pytest.raises(IndexError, match="read position 12"):
        sweep(smollm2, CORRUPT, [[Intervention("resid_pre.1", "add", 1.0)]], read_positions=[12])
    with pytest.raises(ValueError, match="same number of tokens"):
        activation_patching_grid(smollm2, CLEAN, "The Louvre is in", _metric(smollm2))


@pytest.mark.parametrize("method", ["incremental", "cached", "full"])
def test_nothing_survives_an_exception(smollm2, method):
    inputs = smollm2.encode(CORRUPT)
    before = smollm2.hf(**inputs).logits.detach()
    # transformers itself leaves output-capturing hooks once output_hidden_states has been used: count ours only
    hooks_before = _hooks_left(smollm2)
    patches = [
        [Intervention("mlp_out.4", "replace", lambda x: x + 1, positions=[5])],
        [Intervention("z.2", "scale", 2.0, positions=[6], index=[1])],
    ]

    def broken(logits):
        raise RuntimeError("metric failed")

    with pytest.raises(RuntimeError, match="metric failed"):
        sweep(smollm2, CORRUPT, patches, broken, method=method)

    def broken_value(x):
        raise KeyError("value failed")

    with pytest.raises(KeyError):
        sweep(smollm2, CORRUPT, [[Intervention("mlp_out.4", "replace", broken_value, positions=[5])]], method=method)
    assert _hooks_left(smollm2) == hooks_before
    assert torch.equal(smollm2.hf(**inputs).logits.detach(), before)


# --- tiny random models: every adapter, and a family without one -------------------------------------------------


def _tiny(family: str) -> Model:
    from transformers import AutoModelForCausalLM, Gemma3TextConfig, GPT2Config, GPTNeoXConfig, LlamaConfig

    torch.manual_seed(0)
    common = {
        "vocab_size": 97,
        "hidden_size": 32,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "intermediate_size": 48,
    }
    if family == "llama":
        config = LlamaConfig(**common, num_key_value_heads=2)
    elif family == "gemma3_text":
        config = Gemma3TextConfig(
            **common,
            num_key_value_heads=1,
            head_dim=16,
            sliding_window=3,
            layer_types=["sliding_attention", "full_attention"] * 2,
        )
    elif family == "gpt2":
        config = GPT2Config(vocab_size=97, n_embd=32, n_layer=4, n_head=4, n_positions=64)
    else:
        config = GPTNeoXConfig(**common)
    hf = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa").eval()
    return Model(hf=hf, tokenizer=None, spec=spec_for(hf), name=f"tiny-{family}")


@pytest.mark.parametrize("family", ["llama", "gemma3_text", "gpt2", "gpt_neox"])
def test_tiny_models_every_site(family, monkeypatch):
    model = _tiny(family)
    assert family in LAYER_ADAPTERS
    if family == "gpt_neox":  # keep one family on the fallback for families without an adapter (position half only)
        monkeypatch.delitem(LAYER_ADAPTERS, family)
    torch.manual_seed(1)
    base = {"input_ids": torch.randint(0, 97, (2, 8))}
    values = record(
        model,
        {"input_ids": torch.randint(0, 97, (1, 8))},
        [
            Site(s, layer)
            for s in ("resid_pre", "resid_post", "attn_out", "z", "mlp_out", "mlp_act")
            for layer in range(4)
        ]
        + [Site("embed")],
    )
    patches = [Patch([Intervention("embed", "replace", values["embed"], positions=[2])], row=1)]
    for site in ("resid_pre", "resid_post", "attn_out", "z", "mlp_out", "mlp_act"):
        for layer, p in ((0, 0), (2, 5), (3, 7)):
            patches.append(
                Patch(
                    [Intervention(Site(site, layer), "replace", values[f"{site}.{layer}"], positions=[p])],
                    row=layer % 2,
                )
            )
    metric = _probs([0, 1, 2])
    _agree(model, base, patches, metric, read_positions=[-1, 4])
