"""One real ROME edit of SmolLM2-135M: the edited fact flips, a neighbour stays, revert is bit-exact."""

from __future__ import annotations

import torch

from locedit.data import load_facts
from locedit.editing import Edit, ROMEHyperParams, rome
from locedit.evaluation import target_prob

# Smaller than the paper's settings so the test stays quick on a CPU: 3 prefixes instead of 20, and key statistics
# from 4,096 sampled tokens instead of 20,000 (the book's default).
QUICK = ROMEHyperParams(layer=6, context_template_length_params=((5, 3),), mom2_n_samples=4096)


def _eiffel() -> dict:
    return next(
        f
        for f in load_facts()
        if f["requested_rewrite"]["subject"] == "the Eiffel Tower" and f["requested_rewrite"]["relation_id"] == "P131"
    )


def test_rome_edit_smollm2(smollm2, tmp_path):
    record = _eiffel()
    rw = record["requested_rewrite"]
    prompt = rw["prompt"].format(rw["subject"])
    true, new = rw["target_true"]["str"], rw["target_new"]["str"]
    neighbour = record["neighborhood_prompts"][0]
    weights = {n: p.detach().clone() for n, p in smollm2.hf.named_parameters()}

    edit = rome(smollm2, record, QUICK)
    with edit.applied(smollm2):
        p = target_prob(smollm2, [prompt, prompt, neighbour, neighbour], [true, new, true, new])
        top = smollm2.top_tokens(prompt, k=1)[0][0]
    assert p[1] > p[0], f"the edit did not flip the fact: P(true) {p[0]:.3f}, P(new) {p[1]:.3f}"
    assert top.strip() == new.split()[0]
    assert p[2] > p[3], "the neighbour prompt changed its answer"
    assert all(torch.equal(p, weights[n]) for n, p in smollm2.hf.named_parameters())  # bit-exact revert

    edit.save(tmp_path / "edit.pt")
    loaded = Edit.load(tmp_path / "edit.pt")
    with loaded.applied(smollm2):
        assert smollm2.top_tokens(prompt, k=1)[0][0] == top
    assert all(torch.equal(p, weights[n]) for n, p in smollm2.hf.named_parameters())


def test_edit_layer_table_is_what_the_rule_measures(smollm2):
    """EDIT_LAYERS["smollm2-135m"] is :func:`edit_layer` on chapter 1's full-size trace settings (50 facts, one noise
    draw, bf16 where the hardware has it), restored at the last subject token only (the only bucket the rule reads)
    and at the layers whose windows the rule keeps (those holding layer 0 are left out either way)."""
    from locedit.data import balanced
    from locedit.editing import EDIT_LAYERS, edit_layer
    from locedit.models import native_bf16
    from locedit.tracing import causal_trace, default_window, embedding_std, subject_range

    n_layers = smollm2.spec.n_layers
    layers = list(range(default_window(n_layers) // 2 + 1, n_layers))
    dtype = torch.bfloat16 if native_bf16(smollm2.device) else None
    facts = load_facts()
    noise = 3 * embedding_std(smollm2, sorted({f["requested_rewrite"]["subject"] for f in facts}))
    traces = []
    for f in balanced(facts, 50, seed=0):
        r = f["requested_rewrite"]
        text = r["prompt"].format(r["subject"])
        _, end = subject_range(smollm2, text, r["subject"])
        traces.append(causal_trace(smollm2, text, r["subject"], r["target_true"]["str"], kinds=("mlp",), noise=noise,
                                   samples=1, positions=[end - 1], layers=layers, dtype=dtype))  # fmt: skip
    assert edit_layer(traces) == EDIT_LAYERS["smollm2-135m"]
