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
# # 4. Circuit reuse: from IOI to Colored Objects
#
# **Question.** When a language model solves two different tasks, does it use the same attention heads for the
# parts the tasks share? And if a part is missing on one task, can we put it there by hand?
#
# Merullo, Eickhoff and Pavlick (ICLR 2024, *Circuit Component Reuse Across Tasks in Transformer Language
# Models*) {cite:p}`merullo2024reuse` answer yes for GPT-2 Medium. They take the circuit that Wang et al.
# {cite:p}`wang2022ioi` found for **Indirect Object Identification** (IOI: "Then, Mary and John went to the store.
# John gave a drink to" → " Mary") and find that the circuit of a different task, **Colored Objects** ("On the
# table, I see a blue pencil, a black necklace and a yellow lighter. What color is the pencil?" → " Blue"), shares
# 78% of its heads with it (25 of 32). The heads that *inhibit* the repeated name in IOI do not take part in Colored
# Objects, on which GPT-2 Medium is right only 49.6% of the time; forcing those heads (and a negative name mover) to
# attend to the *wrong* colours lifts it to 93.7%, with no new mistakes.
#
# This chapter repeats the analysis on SmolLM2-135M (30 layers × 9 heads = 270 heads) or, with
# `model_name="gemma3-270m"`, on Gemma 3 270M. The twist: both models do IOI well but are near chance on Colored
# Objects, so "does steering lift it above chance" is a sharper test than the paper's.
#
# Parameters: `quick=True` (CI) runs path patching on a handful of prompts and evaluates on few items; the
# published run uses more of each. `fraction` is the share of heads kept per path-patching stage (the paper's 2%).

# %% tags=["parameters"]
model_name = "smollm2-135m"
device = "auto"
quick = False
fraction = 0.02  # the paper's top 2% of heads per stage
seed = 0

# %%

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from IPython.display import HTML, Markdown, display

from locedit import load_model
from locedit.circuits import (
    IOI_TEMPLATES,
    accuracy,
    attention_patterns,
    attention_to,
    circuit,
    circuit_heads,
    colored_objects,
    head_intervention_effects,
    ioi,
    logit_diff,
    other_positions,
    overlap_test,
    path_patching,
    previous_token_score,
    spearman,
    stagewise_overlap_test,
    steered_logits,
    steering_outcome,
    top_heads,
)
from locedit.circuits.heads import binomial_tail, heads_per_stage
from locedit.results import ChapterResults, Claim, verdict
from locedit.scorecard import claims_html
from locedit.viz import (
    attention_matrices_figure,
    attention_rows_figure,
    layer_token_heatmap,
    overlap_figure,
    overlap_sweep_figure,
)
from locedit.widgets import head_browser

results = ChapterResults("04_circuit_reuse", model_name, quick)
timings, timed = results.timings, results.timed
torch.manual_seed(seed)
pd.set_option("display.precision", 3)

N_BASE = 20 if quick else 200  # prompts per baseline format
N_PATCH = 2 if quick else 40  # prompts per path-patching stage (each task)
N_SIGNATURE = 12 if quick else 64  # prompts for the attention signatures
N_EVAL = 48 if quick else 300  # held-apart Colored Objects items for the intervention
N_RANDOM = 2 if quick else 5  # random head sets of the same size (control)
N_CORR_HEADS = 6 if quick else 40  # heads whose intervention effect is correlated with their path-patching effect
N_CORR_ITEMS = 12 if quick else 60  # items for each head's intervention effect

with timed("load_model"):
    model = load_model(model_name, device=device)
spec = model.spec
n_total = spec.n_layers * spec.n_heads
k_stage = heads_per_stage(fraction, n_total)
print(
    f"{model_name}: {spec.n_layers} layers × {spec.n_heads} heads = {n_total} heads ({spec.n_kv_heads} KV heads per "
    f"layer); top {fraction:.0%} per stage = {k_stage} heads"
)

# %% [markdown]
# ## 1. The tasks and how well the model does them
#
# **IOI.** 15 templates in both orders (ABBA: IO first; BABA: S first), single-token names, places and objects
# (`locedit.circuits.ioi`). The metric is the logit difference at the last position,
# $\mathrm{LD} = \mathrm{logit}(\text{IO}) - \mathrm{logit}(\text{S})$, and the share of prompts with IO above S.
#
# **Colored Objects.** The paper's 1-shot format (an answered question, then the one to answer), 17 objects and 8
# colours filtered to single tokens (`locedit.circuits.colored_objects`). LD is the correct colour minus the colour
# of another listed object (what the corrupted prompt asks about). We report accuracy both over the whole
# vocabulary (top-1) and among the listed colours (chance: 1 / number of objects), for every format we tried: 0, 1
# and 3 answered questions, with 2 or 3 objects per question.

# %%
with timed("baselines"):
    d_base = ioi(model, n=N_BASE, seed=seed)
    logits = steered_logits(model, d_base)
    ioi_acc = accuracy(logits, d_base.answers, d_base.candidates)
    ioi_top1 = accuracy(logits, d_base.answers)
    ioi_ld = float(logit_diff(logits, d_base.answers).mean())
    rows = [{"task": "IOI (15 templates, ABBA + BABA)", "shots": "-", "objects": 2, "n": len(d_base),
             "accuracy among candidates": ioi_acc, "top-1 accuracy": ioi_top1, "mean LD": ioi_ld}]  # fmt: skip
    cobjs_formats = {}
    for n_obj in (2, 3):
        for shots in (0, 1, 3):
            c = colored_objects(model, n=N_BASE, seed=seed, n_objects=n_obj, shots=shots)
            lg = steered_logits(model, c)
            row = {"task": "Colored Objects", "shots": shots, "objects": n_obj, "n": len(c),
                   "accuracy among candidates": accuracy(lg, c.answers, c.candidates),
                   "top-1 accuracy": accuracy(lg, c.answers), "mean LD": float(logit_diff(lg, c.answers).mean())}  # fmt: skip
            rows.append(row)
            cobjs_formats[(shots, n_obj)] = row
baseline = pd.DataFrame(rows)
display(baseline)
cobjs_base = cobjs_formats[(1, 3)]
print(f"IOI: IO > S on {ioi_acc:.1%} of {len(d_base)} prompts, mean LD {ioi_ld:.2f}")
results.metrics.update(
    ioi_accuracy=round(ioi_acc, 4),
    ioi_logit_diff=round(ioi_ld, 3),
    **{
        f"cobjs_accuracy.{s}shot_{o}obj": round(r["accuracy among candidates"], 4)
        for (s, o), r in cobjs_formats.items()
    },
)

fig = go.Figure()
for shots in (0, 1, 3):
    fig.add_trace(go.Bar(name=f"{shots}-shot", x=["2 objects", "3 objects"],
                         y=[cobjs_formats[(shots, o)]["accuracy among candidates"] for o in (2, 3)]))  # fmt: skip
for o, chance in ((2, 1 / 2), (3, 1 / 3)):
    fig.add_shape(type="line", x0=o - 2.45, x1=o - 1.55, y0=chance, y1=chance, line={"dash": "dash", "color": "#555"})
fig.update_layout(title="Colored Objects accuracy among the listed colours (dashed: chance)", barmode="group",
                  yaxis={"range": [0, 1], "title": "accuracy"}, height=340)  # fmt: skip
fig.show()

# %% [markdown]
# The paper's released data set (1,000 items, seed 42) gave, measured once when the book was planned: SmolLM2
# 38.1% and Gemma 3 38.0% among the 3 listed colours in the 1-shot format, both near the 33% chance, with strong
# colour priors (SmolLM2 answers "red" 53% of the time). Readers with that file can load it with
# `locedit.circuits.load_colored_objects(model, "cobjs_data_42.json", "cobjs_mindiff_data_42.json")`.

# %%
c_acc, c_chance = cobjs_base["accuracy among candidates"], 1 / 3
display(
    Markdown(
        f"**Result.** {model_name} does IOI: IO beats S on {ioi_acc:.0%} of prompts (mean LD {ioi_ld:.2f}; GPT-2 "
        f"small in Wang et al.: 99.3%, LD 3.56). On Colored Objects in the paper's 1-shot, 3-object format it is "
        f"right on {c_acc:.0%} among the 3 listed colours (chance 33%; GPT-2 Medium: 49.6%); with 2 objects "
        f"{cobjs_formats[(1, 2)]['accuracy among candidates']:.0%} (chance 50%). The model finds the candidates "
        "(its answer is usually a listed colour) but does not pick the asked-about one."
    )
)

# %% [markdown]
# ## 2. Path patching, stage by stage
#
# Path patching {cite:p}`wang2022ioi` asks how much of a task's answer flows along one path. For a sender head
# $h$ and a clean prompt $x$ with a corrupted twin $x'$ (IOI: S2 replaced by the IO name, so the *other* name is
# repeated; Colored Objects: the same list, another object asked about):
#
# 1. run $x$ with $h$'s output $z_h$ at the last position taken from $x'$, and every other head's output at that
#    position frozen to its value on $x$ (MLPs recomputed), so only $h$'s direct paths carry the change;
# 2. read the change where the receiver is: the logits, or the query / key / value / output of receiver heads,
#    patched into a fresh clean run.
#
# The effect of $h$ is the share of the clean → corrupt change in LD it carries,
#
# $$e_h = \frac{\mathrm{LD}_{\text{patched}} - \mathrm{LD}_{\text{clean}}}{\mathrm{LD}_{\text{corrupt}} -
# \mathrm{LD}_{\text{clean}}},$$
#
# 0 when the path carries nothing, positive when corrupting it moves the answer toward the corrupted one, negative
# when the head works against the answer (a negative name mover). The stages go backwards from the output:
#
# | stage | receivers | component | head classes (IOI) |
# |---|---|---|---|
# | 1 | logits | residual stream | name movers (+), negative name movers (−) |
# | 2 | stage-1 movers | query | S-inhibition |
# | 3 | stage-2 inhibition heads | value | induction, duplicate-token |
# | 4 | stage-3 induction heads | key | previous-token |
#
# SmolLM2 uses grouped-query attention: 9 query heads share 3 key/value heads per layer, so a key or value receiver
# is a KV *group* of 3 query heads, not a single head. The column *used* below names each stage's receiver.


# %%
def stage_effects(clean, corrupt, receivers, component="z"):
    """Path-patching effects [n_layers, n_heads] to ``receivers``' ``component`` (or to the logits)."""
    if receivers == "logits":
        return path_patching(model, clean, corrupt), "logits"
    receivers = [r for r in receivers if r[0] > 0]  # a head of layer 0 has no sender below it
    if not receivers:
        return torch.full((spec.n_layers, spec.n_heads), float("nan")), "none (no receiver above layer 0)"
    return path_patching(model, clean, corrupt, receivers=receivers, component=component), component


def run_stages(clean, corrupt, classify_stage3):
    """The four stages of one task: {stage: effects}, the receivers used, the components used."""
    effects, used, recv = {}, {}, {}
    effects["movers"], used["movers"] = stage_effects(clean, corrupt, "logits")
    recv["inhibition"] = top_heads(effects["movers"], fraction, "positive") or top_heads(effects["movers"], fraction)
    effects["inhibition"], used["inhibition"] = stage_effects(clean, corrupt, recv["inhibition"], "q")
    recv["induction"] = top_heads(effects["inhibition"], fraction, "positive") or top_heads(
        effects["inhibition"], fraction
    )
    effects["induction"], used["induction"] = stage_effects(clean, corrupt, recv["induction"], "v")
    stage3 = top_heads(effects["induction"], fraction, "positive") or top_heads(effects["induction"], fraction)
    recv["previous"] = classify_stage3(stage3)
    effects["previous"], used["previous"] = stage_effects(clean, corrupt, recv["previous"], "k")
    return effects, used, recv


d_patch = ioi(model, n=N_PATCH, seed=seed + 1)
d_sig = ioi(model, n=N_SIGNATURE, seed=seed + 2, templates=[IOI_TEMPLATES[0]])  # one template: one length
with timed("ioi_signatures"):
    pats = attention_patterns(model, d_sig)  # [prompts, layers, heads, seq, seq]
    sig = {
        "name mover": attention_to(pats, d_sig.end_pos, d_sig.io_pos),
        "S-inhibition": attention_to(pats, d_sig.end_pos, d_sig.s2_pos),
        "induction": attention_to(pats, d_sig.s2_pos, d_sig.s1_pos + 1),
        "duplicate token": attention_to(pats, d_sig.s2_pos, d_sig.s1_pos),
        "previous token": previous_token_score(pats),
    }
    sig["negative mover"] = sig["name mover"]


def induction_receivers(heads):
    """Stage-3 heads that look like induction heads (S2 attends to the token after S1 more than to S1); all of
    them if none does."""
    chosen = [h for h in heads if sig["induction"][h] > sig["duplicate token"][h]]
    return chosen or heads


with timed("ioi_path_patching"):
    ioi_effects, ioi_used, ioi_recv = run_stages(d_patch, d_patch.corrupted("flipped"), induction_receivers)
print("components used:", ioi_used)

heads_x = [f"h{h}" for h in range(spec.n_heads)]
for stage, e in ioi_effects.items():
    if not torch.isfinite(e).any():
        print(f"stage '{stage}': not measured ({ioi_used[stage]})")
        continue
    lim = float(np.nanmax(np.abs(e.numpy()))) or 1.0
    layer_token_heatmap(
        e, heads_x, title=f"IOI, stage '{stage}': path-patching effect to {ioi_used[stage]} "
        f"({N_PATCH} prompts)", colorbar="effect", label_tokens=False, token_axis="head", colorscale="RdBu_r",
        zmid=0, zmin=-lim, zmax=lim, height=520,
    ).show()  # fmt: skip

# %% [markdown]
# ## 3. Head classes, checked by their attention
#
# Path patching says *where* the answer flows; the attention pattern says *what* a head reads. Each class has a
# signature (Wang et al.): name movers attend from the last token (END) to the IO name and copy it; S-inhibition
# heads attend from END to S2; duplicate-token heads attend from S2 to S1 (the earlier copy of the same token);
# induction heads from S2 to the token after S1; previous-token heads from every token to the one before it. A head
# counts as *confirmed* when its signature attention is at least 0.2 and in the top 10% of all heads.

# %%
stage1 = ioi_effects["movers"]
classes = {
    "name mover": top_heads(stage1, fraction, "positive"),
    "negative mover": [h for h in top_heads(stage1, fraction, "negative") if stage1[h] < -0.05],
    "S-inhibition": top_heads(ioi_effects["inhibition"], fraction, "positive"),
}
stage3 = top_heads(ioi_effects["induction"], fraction, "positive")
classes["induction"] = [h for h in stage3 if sig["induction"][h] > sig["duplicate token"][h]]
classes["duplicate token"] = [h for h in stage3 if h not in classes["induction"]]
classes["previous token"] = top_heads(ioi_effects["previous"], fraction, "positive")
stage_of = {"name mover": "movers", "negative mover": "movers", "S-inhibition": "inhibition", "induction": "induction",
            "duplicate token": "induction", "previous token": "previous"}  # fmt: skip

rows, confirmed = [], {}
for cls, heads in classes.items():
    s = sig[cls]
    cut = float(torch.quantile(s.flatten(), 0.9))
    ok = [h for h in heads if s[h] >= max(0.2, cut)]
    confirmed[cls] = ok
    best = tuple(int(i) for i in divmod(int(s.argmax()), spec.n_heads))
    rows.append({"class": cls, "heads (path patching)": ", ".join(f"{a}.{b}" for a, b in heads) or "none",
                 "effect": ", ".join(f"{float(ioi_effects[stage_of[cls]][h]):+.2f}" for h in heads),
                 "signature attention": ", ".join(f"{float(s[h]):.2f}" for h in heads),
                 "confirmed": len(ok), "top head by signature": f"{best[0]}.{best[1]} ({float(s.max()):.2f})"})  # fmt: skip
class_table = pd.DataFrame(rows)
display(class_table)
core = ["name mover", "S-inhibition", "induction", "duplicate token", "previous token"]
n_found = sum(bool(confirmed[c]) for c in core)
results.metrics.update(ioi_classes_confirmed=n_found, ioi_negative_movers=len(classes["negative mover"]))

# %% [markdown]
# One figure per class: the attention of its heads on one IOI prompt, from the query position of the signature
# (previous-token heads: the whole pattern).

# %%
tokens0 = model.str_tokens(d_sig.prompts[0])
roles0 = {int(d_sig.io_pos[0]): "IO", int(d_sig.s1_pos[0]): "S1", int(d_sig.s2_pos[0]): "S2",
          int(d_sig.end_pos[0]): "END"}  # fmt: skip
queries = {"name mover": ("END", d_sig.end_pos[0]), "negative mover": ("END", d_sig.end_pos[0]),
           "S-inhibition": ("END", d_sig.end_pos[0]), "induction": ("S2", d_sig.s2_pos[0]),
           "duplicate token": ("S2", d_sig.s2_pos[0])}  # fmt: skip
for cls, heads in classes.items():
    if not heads:
        print(f"{cls}: no head selected by path patching")
        continue
    shown = heads[:4]
    if cls == "previous token":
        attention_matrices_figure(
            torch.stack([pats[0, a, b] for a, b in shown[:3]]), tokens0, shown[:3],
            title="previous-token heads (IOI stage 4): whole patterns",
        ).show()  # fmt: skip
    else:
        name, q = queries[cls]
        attention_rows_figure(
            torch.stack([pats[0, a, b, int(q)] for a, b in shown]), tokens0, shown, query=name, marks=roles0,
            title=f"{cls} heads: attention from {name}",
        ).show()  # fmt: skip

display(
    Markdown(
        f"**Result.** Of the five classes of Wang et al.'s circuit, {n_found} have a head that path patching selects "
        "and whose attention shows the class's signature: "
        + "; ".join(f"{c}: {', '.join(f'{a}.{b}' for a, b in confirmed[c]) or 'none'}" for c in core)
        + f". Negative movers (stage-1 effect below −0.05): "
        f"{', '.join(f'{a}.{b}' for a, b in classes['negative mover']) or 'none'}."
    )
)

# %% [markdown]
# ## 4. The Colored Objects circuit and its overlap with IOI
#
# The same four stages on Colored Objects (clean: the question about one object; corrupted: about another object
# of the same list), the same top-k rule per stage, the circuit = the union of the stages' top heads by $|e_h|$.
# Is the overlap larger than chance? Under the null, the Colored Objects circuit is a random set of its size among
# all 270 heads; its overlap with the IOI circuit then follows a hypergeometric law,
# $P(X \ge k) = \sum_{j \ge k} \binom{a}{j}\binom{N-a}{b-j} / \binom{N}{b}$, which we also sample (a seeded
# permutation test).

# %%
c_patch = colored_objects(model, n=N_PATCH, seed=seed + 1)
c_sig = colored_objects(model, n=N_SIGNATURE, seed=seed + 2)


def cobjs_signature(data):
    """END → the asked-about colour, averaged over length groups."""
    total, n = 0, 0
    by_len = {}
    for i, t in enumerate(data.tokens):
        by_len.setdefault(len(t), []).append(i)
    for idx in by_len.values():
        p = attention_patterns(model, [data.tokens[i] for i in idx])
        right = data.color_pos[idx, torch.tensor([data.query[i] for i in idx])]
        total = total + attention_to(p, data.end_pos[idx], right) * len(idx)
        n += len(idx)
    return total / n


with timed("cobjs_path_patching"):
    cobjs_effects, cobjs_used, cobjs_recv = run_stages(c_patch, c_patch.corrupted(), lambda heads: heads)
    cobjs_mover_sig = cobjs_signature(c_sig)
layer_token_heatmap(
    cobjs_effects["movers"], heads_x, title="Colored Objects, stage 'movers': path-patching effect to the logits",
    colorbar="effect", label_tokens=False, token_axis="head", colorscale="RdBu_r", zmid=0, height=520,
).show()  # fmt: skip

ioi_circuit = circuit(ioi_effects, fraction)
cobjs_circuit = circuit(cobjs_effects, fraction)
A, B = circuit_heads(ioi_circuit), circuit_heads(cobjs_circuit)
test = overlap_test(A, B, n_total, n_permutations=10_000, seed=seed)
overlap_figure(
    test.null, test.observed, test.expected, observed_label="IOI ∩ Colored Objects",
    title=f"Overlap of the circuits (top {fraction:.0%} per stage) vs random sets of the same sizes",
).show()  # fmt: skip
# the stricter null: random Colored Objects circuits drawn stage by stage from the heads each stage could choose
eligible = [
    [(a, b) for a, b in zip(*torch.isfinite(e).nonzero(as_tuple=True), strict=True)] for e in cobjs_effects.values()
]
eligible = [[(int(a), int(b)) for a, b in pool] for pool in eligible]
strict = stagewise_overlap_test(
    A, eligible, [len(v) for v in cobjs_circuit.values()], B, n_permutations=4000, seed=seed
)
overlap_figure(
    strict.null, strict.observed, strict.expected, observed_label="IOI ∩ Colored Objects",
    title="The same overlap vs random circuits drawn stage by stage (each stage from the heads it could choose)",
).show()  # fmt: skip
shared = sorted(A & B)
print(f"IOI circuit {len(A)} heads, Colored Objects circuit {len(B)}, shared {test.observed}: "
      f"{', '.join(f'{a}.{b}' for a, b in shared)}")  # fmt: skip
print(f"uniform null: expected {test.expected:.2f}; permutation p = {test.p_permutation:.4f}, "
      f"hypergeometric p = {test.p_hypergeometric:.2e}")  # fmt: skip
print(f"stage-by-stage null: expected {strict.expected:.2f}; permutation p = {strict.p_permutation:.4f}")
cobjs_movers = top_heads(cobjs_effects["movers"], fraction, "positive")
print("Colored Objects movers and their attention END → asked-about colour:",
      ", ".join(f"{a}.{b} ({float(cobjs_mover_sig[a, b]):.2f})" for a, b in cobjs_movers))  # fmt: skip

fractions = [0.01, 0.02, 0.05, 0.1, 0.2]
sweep = []
for f in fractions:
    a, b = circuit_heads(circuit(ioi_effects, f)), circuit_heads(circuit(cobjs_effects, f))
    t = overlap_test(a, b, n_total, n_permutations=4000, seed=seed)
    sweep.append({"k": f, "IOI heads": len(a), "CObjs heads": len(b), "shared": t.observed,
                  "expected": t.expected, "p (hypergeometric)": t.p_hypergeometric,
                  "low": np.percentile(t.null, 2.5), "high": np.percentile(t.null, 97.5)})  # fmt: skip
sweep = pd.DataFrame(sweep)
display(sweep.drop(columns=["low", "high"]))
overlap_sweep_figure(
    fractions, sweep["shared"], sweep["expected"], sweep["low"], sweep["high"],
    title="Shared heads against k (the receivers of each stage stay those chosen at the 2% rule)",
).show()  # fmt: skip
results.metrics.update(
    ioi_circuit_size=len(A), cobjs_circuit_size=len(B), overlap=test.observed, overlap_share_of_ioi=test.share,
    overlap_expected=test.expected, overlap_p_permutation=test.p_permutation,
    overlap_p_hypergeometric=test.p_hypergeometric, overlap_expected_stagewise=strict.expected,
    overlap_p_stagewise=strict.p_permutation,
)  # fmt: skip

# %% [markdown]
# Two nulls. The paper compares with random head sets of the same size drawn from all heads (uniform: the
# hypergeometric law). But a stage can only choose heads below its receivers, so the later stages of *both*
# circuits pick from the lower layers and would share heads even if they had nothing to do with each other. The
# stricter null draws each random Colored Objects circuit stage by stage, each stage's heads uniformly from those
# the stage measured; the claim below uses it.
#
# The stages after the first depend on which heads were chosen as receivers; in the sweep the receivers stay those
# of the 2% rule and only the number of heads kept per stage changes (recomputing every stage per k would multiply
# the path-patching cost by the number of k values).

# %% [markdown]
# ## 5. Steering: the inhibition heads made to attend to the wrong colours
#
# In IOI, the S-inhibition heads attend to the repeated name S2 and tell the name movers *not* to copy it. On
# Colored Objects the analogue would be to attend to the colours that are **not** asked about. Merullo et al. force
# it: at the last position, the chosen heads' attention is replaced by a uniform distribution over the wrong
# colours' tokens, $z_h = \frac{1}{|W|}\sum_{j \in W} v_{h,j}$ (`locedit.circuits.force_attention`). Variants: the
# IOI inhibition heads alone, the negative name mover alone (if the model has one), both together, and random head
# sets of the same size (the control). Items are held apart: a seed not used for path patching.

# %%
c_eval = colored_objects(model, n=N_EVAL, seed=seed + 100)
wrong = other_positions(c_eval.color_pos, c_eval.query)  # [items, 2]: the wrong colours' positions
inhibition = classes["S-inhibition"][:3]  # the paper used its 3 inhibition heads
negative = classes["negative mover"][:1]
variants = {
    "inhibition heads": inhibition,
    "negative mover": negative,
    "inhibition + negative mover": inhibition + negative,
}
rng = np.random.default_rng(seed)
size = len(inhibition + negative)
with timed("intervention"):
    plain = steered_logits(model, c_eval)
    outcomes = {}
    for name, heads in variants.items():
        if heads:
            outcomes[name] = steering_outcome(plain, steered_logits(model, c_eval, heads, wrong), c_eval.answers,
                                              c_eval.candidates)  # fmt: skip
    pool = [
        (a, b) for a in range(spec.n_layers) for b in range(spec.n_heads) if (a, b) not in set(inhibition + negative)
    ]
    random_sets = [[pool[i] for i in rng.choice(len(pool), size, replace=False)] for _ in range(N_RANDOM)]
    for r, heads in enumerate(random_sets):
        outcomes[f"random {size} heads #{r + 1}"] = steering_outcome(
            plain, steered_logits(model, c_eval, heads, wrong), c_eval.answers, c_eval.candidates
        )
rows = []
for name, o in outcomes.items():
    hits = int(o.after.sum())
    rows.append({"variant": name, "heads": ", ".join(f"{a}.{b}" for a, b in variants.get(name, [])) or "random",
                 "accuracy before": o.accuracy_before, "accuracy after": o.accuracy_after, "fixed": o.fixed,
                 "new mistakes": o.new_mistakes, "mean LD before": float(o.ld_before.mean()),
                 "mean LD after": float(o.ld_after.mean()), "p vs chance": binomial_tail(hits, len(c_eval), 1 / 3)})  # fmt: skip
steer_table = pd.DataFrame(rows)
display(steer_table)

main = "inhibition + negative mover" if "inhibition + negative mover" in outcomes else "inhibition heads"
best = outcomes.get(main)
random_after = [o.accuracy_after for n_, o in outcomes.items() if n_.startswith("random")]
results.metrics.update(
    steer_accuracy_before=best.accuracy_before if best else None,
    steer_accuracy_after=best.accuracy_after if best else None,
    steer_new_mistakes=best.new_mistakes if best else None,
    steer_random_accuracy_after=float(np.mean(random_after)) if random_after else None,
    **{f"steer_after.{n_}": o.accuracy_after for n_, o in outcomes.items() if not n_.startswith("random")},
)

# %% [markdown]
# **Does a head's steering effect follow its path-patching effect?** The paper reports a Spearman correlation of
# 0.69 between the two. We force each of the heads with the largest Colored Objects effects (stage 1, |e|) alone,
# measure the mean change in LD, and rank-correlate it with the path-patching effect (Spearman's ρ with average
# ranks for ties; a permutation p-value over 2,000 shuffles). Two conventions matter. The paper plots path
# patching as $-100 \times e_h$ (its code's sign), so we correlate with $-e_h$: a head that carries the answer
# ($e_h > 0$) and loses LD when forced onto the wrong colours then counts as agreement. And which stage's effects
# the paper paired is not stated in the sources we read; we use the logits stage.

# %%
corr_heads = top_heads(cobjs_effects["movers"], k=N_CORR_HEADS)
c_corr = colored_objects(model, n=N_CORR_ITEMS, seed=seed + 200)
with timed("intervention_per_head"):
    head_effects = head_intervention_effects(
        model, c_corr, corr_heads, other_positions(c_corr.color_pos, c_corr.query), c_corr.answers
    )
pp = -torch.stack([cobjs_effects["movers"][h] for h in corr_heads])  # the paper's sign: -e
rho = spearman(head_effects, pp)
perm = np.random.default_rng(seed)
null_rho = np.array([spearman(perm.permutation(head_effects.numpy()), pp.numpy()) for _ in range(2000)])
rho_p = float((1 + (np.abs(null_rho) >= abs(rho)).sum()) / (1 + len(null_rho)))
fig = go.Figure(go.Scatter(x=pp.numpy(), y=head_effects.numpy(), mode="markers+text",
                           text=[f"{a}.{b}" for a, b in corr_heads], textposition="top center"))  # fmt: skip
fig.update_layout(title=f"Steering effect vs path-patching effect (Spearman ρ = {rho:.2f})", height=380,
                  xaxis_title="−(path-patching effect to the logits), the paper's sign", yaxis_title="ΔLD when forced alone")  # fmt: skip
fig.show()
print(f"Spearman rho = {rho:.3f} over {len(corr_heads)} heads, permutation p = {rho_p:.3f}")
results.metrics.update(spearman_rho=rho, spearman_p=rho_p)

# %%
if best is not None:
    lift = best.accuracy_after - best.accuracy_before
    display(
        Markdown(
            f"**Result.** Steering the {main} ({', '.join(f'{a}.{b}' for a, b in variants[main])}) moves Colored "
            f"Objects accuracy among the listed colours from {best.accuracy_before:.1%} to {best.accuracy_after:.1%} "
            f"on {len(c_eval)} held-apart items ({lift:+.1%}; {best.fixed} fixed, {best.new_mistakes} new "
            f"mistakes); random head sets of the same size give {np.mean(random_after):.1%} on average. Alone: "
            + "; ".join(f"{n_} {o.accuracy_after:.1%}" for n_, o in outcomes.items() if not n_.startswith("random"))
            + ". The paper (GPT-2 Medium): 49.6% → 93.7% with zero new mistakes; inhibition heads alone 81.5%, "
            f"negative mover alone 78.1%. Per-head steering effects and path-patching effects (paper's sign) "
            f"correlate with ρ = {rho:.2f} (paper: 0.69). Steering is judged against chance and against random heads "
            "steered the same way: forcing any head onto the wrong colours could in principle help, and the "
            "control says how much of the lift is specific to the heads that path patching picked."
        )
    )
else:
    print("no inhibition heads were found, so nothing was steered")

# %% [markdown]
# ## 6. Browse the heads
#
# Pick a layer and a head: its attention on an IOI prompt (from END, or the whole pattern) and its path-patching
# effect in each stage of both tasks. The first view is stored in the page; changing it needs a live kernel
# (`make lab`).

# %%
first = classes["name mover"][0] if classes["name mover"] else (0, 0)
effects_all = {f"IOI {k}": v for k, v in ioi_effects.items()} | {f"CObjs {k}": v for k, v in cobjs_effects.items()}
roles = {**{f"IOI {c}": h for c, h in classes.items()}, **{f"CObjs circuit ({s})": h for s, h in cobjs_circuit.items()}}
head_browser(pats[0], tokens0, effects_all, roles=roles, layer=first[0], head=first[1], marks=roles0)

# %% [markdown]
# ## 7. Scorecard
#
# Each verdict is computed from the numbers above, by the rule stated in its criterion.

# %%
size_note = "quick run: " if quick else ""
steer_ok = best is not None
claims = [
    Claim(
        claim="The IOI circuit's head classes are found by path patching and show their attention signatures",
        criterion="reproduced if each of the 5 classes (name mover, S-inhibition, induction, duplicate token, "
        "previous token) has a head selected by path patching whose signature attention is >= 0.2 and in the top "
        "10% of heads; partly if 3 or 4 classes do",
        paper="GPT-2 small (Wang et al.): all classes; GPT-2 Medium: movers, inhibition, induction, duplicate token",
        ours=f"{size_note}{n_found} of 5 classes confirmed ("
        + ", ".join(f"{c}: {len(confirmed[c])}" for c in core) + f"; {N_PATCH} prompts per stage; components "
        f"{', '.join(sorted(set(ioi_used.values())))})",
        verdict=verdict(n_found == 5, partly=n_found >= 3),
    ),
    Claim(
        claim="The IOI and Colored Objects circuits overlap far more than random head sets",
        criterion="reproduced if the circuits (top 2% per stage) share at least half of the IOI circuit's heads and "
        "the stage-by-stage permutation p < 0.01; partly if that p < 0.05",
        paper="GPT-2 Medium: 25 of 32 heads shared (78%)",
        ours=f"{size_note}{test.observed} of {len(A)} IOI heads shared ({test.share:.0%}; Colored Objects circuit "
        f"{len(B)}); random stage by stage: {strict.expected:.1f}, p = {strict.p_permutation:.4f}; uniform: "
        f"{test.expected:.1f}, hypergeometric p = {test.p_hypergeometric:.1e}",
        verdict=verdict(test.share >= 0.5 and strict.p_permutation < 0.01, partly=strict.p_permutation < 0.05),
    ),
    Claim(
        claim="The model does IOI but struggles with Colored Objects (the premise of the intervention)",
        criterion="reproduced if IOI accuracy (IO > S) >= 90% and Colored Objects (1-shot, 3 objects) accuracy among "
        "the listed colours is within 10 points of the paper's 49.6%; partly if IOI >= 90% and Colored Objects is "
        "below 70%",
        paper="GPT-2 Medium: Colored Objects 49.6%; GPT-2 small IOI 99.3% (Wang et al.)",
        ours=f"{size_note}IOI {ioi_acc:.1%} (LD {ioi_ld:.2f}); Colored Objects {c_acc:.1%} among 3 (chance 33%), "
        f"2 objects {cobjs_formats[(1, 2)]['accuracy among candidates']:.1%}",
        verdict=verdict(ioi_acc >= 0.9 and abs(c_acc - 0.496) <= 0.1, partly=ioi_acc >= 0.9 and c_acc < 0.7),
    ),
    Claim(
        claim="Making the inhibition heads (and negative mover) attend to the wrong colours lifts Colored Objects "
        "accuracy",
        criterion="reproduced if accuracy rises by >= 20 points, is above chance (binomial p < 0.01) and beats the "
        "random-head control by >= 10 points; partly if it rises by >= 5 points and beats the control",
        paper="GPT-2 Medium: 49.6% -> 93.7% (inhibition alone 81.5%, negative mover alone 78.1%)",
        ours=(f"{size_note}{best.accuracy_before:.1%} -> {best.accuracy_after:.1%} ({main}, {len(c_eval)} "
              f"held-apart items); random heads {np.mean(random_after):.1%}") if steer_ok else "no inhibition heads found",
        verdict=verdict(
            (best.accuracy_after - best.accuracy_before >= 0.2
             and binomial_tail(int(best.after.sum()), len(c_eval), 1 / 3) < 0.01
             and best.accuracy_after >= np.mean(random_after) + 0.1) if steer_ok else None,
            partly=steer_ok and best.accuracy_after - best.accuracy_before >= 0.05
            and best.accuracy_after > np.mean(random_after),
        ),
    ),
    Claim(
        claim="The steering adds no new mistakes",
        criterion="reproduced if at most 1% of the items answered right before are wrong after; partly if at most 5%",
        paper="GPT-2 Medium: zero new mistakes",
        ours=(f"{size_note}{best.new_mistakes} new mistakes among {int(best.before.sum())} items right before"
              if steer_ok else "no inhibition heads found"),
        verdict=verdict(
            best.new_mistakes <= 0.01 * max(1, int(best.before.sum())) if steer_ok else None,
            partly=steer_ok and best.new_mistakes <= 0.05 * max(1, int(best.before.sum())),
        ),
    ),
    Claim(
        claim="A head's steering effect correlates with its path-patching effect",
        criterion="reproduced if Spearman's rho >= 0.5 with permutation p < 0.05; partly if rho > 0.2",
        paper="Spearman 0.69 (path patching in the paper's sign, -100 e)",
        ours=f"{size_note}rho = {rho:.2f} with -e (the paper's sign) over {len(corr_heads)} heads (p = {rho_p:.3f}; "
        f"{N_CORR_ITEMS} items each; stage: logits)",
        verdict=verdict(bool(rho >= 0.5 and rho_p < 0.05), partly=bool(rho > 0.2)) if np.isfinite(rho) else verdict(None),
    ),
]  # fmt: skip
results.claims = claims
display(HTML(claims_html(claims, meta=f"{model_name}, {'quick' if quick else 'full'} size")))

# %% [markdown]
# ## What to try next
#
# * **More prompts per stage.** The quick run patches 2 prompts per stage; `quick=False` uses 40. Do the stage
#   maps and the overlap hold?
# * **Gemma 3.** `model_name="gemma3-270m"` (18 layers × 4 heads, one KV head per layer: every key/value receiver
#   is the whole layer).
# * **Other weightings.** The paper's exact weighting over the two wrong colours is not documented; try putting all
#   the attention on one of them, or forcing the Colored Objects movers to attend to the right colour.
# * **The released data.** `load_colored_objects` reads the authors' `cobjs_data_42.json`.
#
# Chapter 5 asks whether edits that stay inside a circuit behave better than edits that do not.

# %%
path = results.write()
print(f"wrote {path}")
print(pd.Series(results.metrics).to_string())
