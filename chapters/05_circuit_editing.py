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
# # 5. Circuits meet knowledge editing
#
# **Question.** Chapter 4 found a *circuit*: the few heads that carry a task. Chapter 1 *edited* a fact by changing
# weights at one layer. Do the two meet? If we find the smallest part of the network that still does a task, is the
# knowledge the task uses stored there, and is it easier or harder to change there than elsewhere?
#
# Ge, Rudzicz and Zhu (2024, *What Do the Circuits Mean? A Knowledge Edit View*) {cite:p}`ge2024circuits` learn a
# differentiable mask over every weight of GPT-2 that keeps a task's predictions with as few weights as possible,
# then fine-tune the circuit, and separately its complement, on new facts. Their findings:
#
# 1. circuits hold the task's entity knowledge but **resist new knowledge** (edits inside them succeed less often
#    than edits in the complement, a "confirmation bias");
# 2. the ideal circuit holds **more than 5% but less than 50%** of the parameters;
# 3. **up to 60%** of a circuit is **layer normalisation** rather than attention or MLP weights;
# 4. circuits of different tasks overlap **moderately**.
#
# This chapter repeats the study on SmolLM2-135M-Instruct (or Gemma 3 270M, `model_name="gemma3-270m"`), with one
# deliberate change, forced by two CPU cores: the mask is over *structured units* (MLP neurons and attention heads;
# norm gains in a separate run), not over each of the 106 million weights. Section 2 says exactly what that changes.
#
# Parameters: `quick=True` (CI) learns the same masks but skips the 5% circuit, compares the tasks at 35% instead of
# 15%, and edits 4 facts at one density instead of 12 at four; every number printed says which setting produced it.
# Learned masks are cached by content hash, so a second run is fast.

# %% tags=["parameters"]
model_name = "smollm2-135m"
device = "auto"
quick = False
seed = 0

# %%
from dataclasses import replace

import numpy as np
import pandas as pd
import torch
from IPython.display import HTML, display

from locedit import load_model
from locedit.circuits.circuit_editing import edit_sweep, rome_inside_outside, summarize
from locedit.circuits.classifier import accuracy as head_accuracy
from locedit.circuits.classifier import answer_head, train_head
from locedit.circuits.composition import composition, overlap_matrix
from locedit.circuits.masks import MaskSettings, circuit_scores, learn_circuit
from locedit.circuits.units import UNIT_KINDS, parameter_masks, random_circuit, unit_layout
from locedit.data.classification import TASKS, hierarchy_edits, hierarchy_task
from locedit.editing.rome import ROMEHyperParams
from locedit.evaluation import target_nll
from locedit.results import ChapterResults, Claim, verdict
from locedit.scorecard import claims_html
from locedit.viz import composition_figure, density_sweep_figure, jaccard_heatmap, mask_training_figure

results = ChapterResults("05_circuit_editing", model_name, quick)
timings, timed = results.timings, results.timed
torch.manual_seed(seed)
pd.set_option("display.precision", 3)

# the paper's 5%, 15%, 35% runs and one near 50% (quick: from 15%, the 5% run alone takes twice as many steps)
DENSITIES = (0.15, 0.35, 0.5) if quick else (0.05, 0.15, 0.35, 0.5)
EDIT_DENSITIES = (0.35,) if quick else DENSITIES  # circuits whose edits are compared
ROME_DENSITY = 0.15  # the circuit ROME is placed by
OVERLAP_DENSITY = 0.35 if quick else 0.15  # the density the three tasks' circuits are compared at
NORM_DENSITIES = (0.35, 0.5) if quick else (0.15, 0.35, 0.5)  # the run that may drop norm gains too
# edit requests per set (circuit, complement, random), network and density: 25 sweeps at full size, ~3.5 s an edit
N_EDITS = 4 if quick else 12
N_ROME = 4 if quick else 12  # ROME edits per layer (inside vs outside)
N_DRAWS = 200 if quick else 1000  # random circuit pairs per overlap test

with timed("load_model"):
    model = load_model(model_name, device=device)
layout = unit_layout(model)
print(
    f"{model_name}: {layout.n_layers} layers; units: {layout.n_layers * layout.d_mlp:,} MLP neurons, "
    f"{layout.n_layers * layout.n_heads} heads, {layout.n_layers * layout.n_norms * layout.d_model:,} norm gains; "
    f"{layout.total_params:,} block parameters"
)

# %% [markdown]
# ## 1. Three tasks, and how the model is read
#
# The paper's tasks are binary classifications: **hierarchy** statements ("A British Shorthair is a kind of cat."
# true, "... of dog." false), **determiner–noun agreement** from BLiMP ("Craig explored that grocery store" vs
# "... those grocery store") and **persona** statements from Anthropic's model-written evaluations (would a given
# persona agree?). We wrote equivalents for this book (`locedit.data.classification`): 289 hyponym–hypernym pairs
# in 38 categories, each with a false hypernym from the same domain; agreement sentences from templates (regular and
# irregular plurals, with and without an adjective); and agree / disagree statements of one persona (extraversion).
#
# **How the classifier reads the model.** The paper freezes GPT-2 and trains only a two-way *score head*: a linear
# map from the final-norm hidden state at the text's last token, $\hat y = \arg\max_c\, (W h_{\text{last}})_c$, with
# $W \in \mathbb{R}^{2 \times d}$ (the bias-free `score` layer of `GPT2ForSequenceClassification`), trained on 80% of
# the statements and tested on the other 20%. We do the same for agreement and persona.
#
# For hierarchy we read the model's **own answer** instead. A score head trained on our true / false hierarchy
# statements generalises poorly (the last row of the table below), while the language model itself, asked
# "A beagle is a kind of", prefers the true hypernym to the false one on most pairs. So each hierarchy item is that
# prompt with two candidate next tokens, and the class is the one the model's unembedding scores higher:
#
# $$\hat y = \arg\max_{c \in \{0, 1\}}\; W_U[a_c] \cdot h_{\text{last}},$$
#
# where $a_0, a_1$ are the two hypernyms (their order alternates, so the labels are balanced). Nothing is trained, and
# a circuit that keeps this reading keeps what the model itself would say. Either way the head only *reads*: what the
# task needs must already be computed by the network underneath, which is what the mask will search.

# %%
READING = {"answer": "the model's own answer tokens", "score": "a score head trained on 80%"}
with timed("tasks"):
    tasks = {name: make() for name, make in TASKS.items()}
    splits = {name: task.split(0.2, seed=seed) for name, task in tasks.items()}
    heads = {name: answer_head(model, task) if task.answers else train_head(model, splits[name][0], seed=seed)
             for name, task in tasks.items()}  # fmt: skip
    statements = hierarchy_task(seed)  # the same pairs as true / false statements, read by a score head
    statement_split = statements.split(0.2, seed=seed)
    statement_head = train_head(model, statement_split[0], seed=seed)


def _task_row(name: str, task, head, split) -> dict:
    example = task.texts[0] + (f" → {' / '.join(task.answers[0])}" if task.answers else "")
    return {"task": name, "read by": READING[head.kind], "texts": len(task.texts), "example": example,
            "train accuracy": head_accuracy(model, head, split[0]), "test accuracy": head_accuracy(model, head, split[1])}  # fmt: skip


task_rows = [_task_row(name, tasks[name], heads[name], splits[name]) for name in tasks]
task_rows.append(_task_row("hierarchy as statements", statements, statement_head, statement_split))
task_table = pd.DataFrame(task_rows).set_index("task")
display(task_table)
results.metrics.update({f"test_accuracy.{r['task']}": round(r["test accuracy"], 4) for r in task_rows})

# %% [markdown]
# ## 2. Learning a circuit with a differentiable mask
#
# Give every unit $u$ a logit $\alpha_u$. Each training step samples a *hard-concrete* gate
# {cite:p}`ge2024circuits`
#
# $$m_u = \sigma\!\left(\frac{\alpha_u + \log \frac{s}{1-s}}{\tau}\right),\quad s \sim \mathcal U(0, 1),$$
#
# and the forward pass uses the hard value $\mathbb 1[m_u > 0.5]$ while the backward pass uses $m_u$
# (straight-through). The loss keeps the full model's predictions and pays for every unit kept:
#
# $$\mathcal L = \underbrace{\mathrm{CE}\big(f_{m}(x),\ \arg\max f(x)\big)}_{\text{faithfulness}} \;+\;
# \lambda_t\, \underbrace{\frac{\sum_u n_u\, \sigma(\alpha_u)}{\sum_u n_u}}_{\text{expected density}},$$
#
# where $f$ is the full model read by its task's head (score head or answer tokens), $f_m$ the masked one, $n_u$ the
# number of parameters of unit $u$
# and $\lambda_t$ rises step by step. Training stops the first time the circuit's parameter density falls to the
# target. The circuit is the set of units with $\mathbb 1[\alpha_u > 0]$, evaluated as a stand-alone pruned network:
# every parameter outside it set to zero (the paper's *circuit model*); the *complement* zeroes the circuit instead.
#
# **Deviation: units, not weights.** The paper masks each parameter: 124M logits for GPT-2, thousands of epochs on a
# GPU. Here the units are the pieces a weight mask would have to zero together to remove a computation:
#
# | unit | count (SmolLM2) | parameters per unit | masking it = |
# |---|---|---|---|
# | MLP neuron $i$ of layer $l$ | 30 × 1,536 | gate row, up row, down column: $3 \times 576$ | zeroing its activation |
# | attention head $h$ of layer $l$ | 30 × 9 | query rows and output columns, $2 \times 64 \times 576$, plus its KV group's key and value rows | zeroing its output $z_h$ |
# | norm gain element | 30 × 2 × 576 | 1 | zeroing that element of the pre-attention or pre-MLP RMSNorm |
#
# Two consequences. A structured circuit cannot keep *half* a neuron, so at the same density it is coarser than the
# paper's. And the "layer-norm share" changes meaning: SmolLM2's RMSNorm has a gain and no bias, 34,560 parameters
# in all, 0.03% of the blocks, so by *parameters* norms can never be a large share of any circuit here, while by
# *units* they are 43% of all units. We report both, and compare each with random circuits of the same density.
#
# **What is masked, and the schedule.** The main circuits mask MLP neurons and attention heads; norm gains stay whole
# (in our first trials, masking them as well left every circuit at chance on held-out texts). Section 4 runs the
# mask once more with norm gains included, for the paper's layer-norm claim. The paper trains for up to 10,000
# epochs with $\lambda$ rising by 1 an epoch; two cores allow a few dozen steps, so $\lambda$ starts at the
# paper's 10 and rises by 4 a step, the logits start near 5 and AdamW moves them at learning rate 0.5, each step on
# 32 training texts, with temperature $\tau = 0.5$ instead of 0.01 (a much less noisy straight-through gradient).
# These are the settings that kept held-out faithfulness highest among the few we tried on this task
# (`locedit.circuits.masks` lists them); the paper's slow schedule may find better circuits.

# %% [markdown]
# ### Circuits of the hierarchy task at four densities
#
# We learn the hierarchy circuit at the paper's densities (5%, 15%, 35%) and one near 50%, on the training
# prompts, and score it on the held-out ones. One run serves all four: the density falls step by step, and the
# circuit for a target is the first step's at or below it. *Faithfulness* is the share of held-out prompts on which the
# pruned circuit predicts what the full model predicts; *circuit accuracy* and *complement accuracy* are the pruned
# networks' accuracies against the true labels. A random circuit of the same parameter density is the control.

# %%
train, test = splits["hierarchy"]
settings = MaskSettings()
learned, circuit_rows = {}, []
with timed("masks.hierarchy"):
    for target in sorted(DENSITIES):  # the sparsest first: its run passes the others on the way (cached steps)
        lc = learn_circuit(model, train, heads["hierarchy"], target, settings)
        learned[target] = lc
        rand = random_circuit(layout, lc.circuit.density, seed=seed, kinds=settings.kinds)
        s = circuit_scores(model, test, heads["hierarchy"], lc.circuit)
        r = circuit_scores(model, test, heads["hierarchy"], rand)
        circuit_rows.append({"target density": target, "density reached": lc.circuit.density, "reached": lc.reached,
                             "steps": lc.steps, "seconds": lc.seconds, "faithfulness": s.faithfulness,
                             "circuit accuracy": s.circuit_accuracy, "complement accuracy": s.complement_accuracy,
                             "random circuit accuracy": r.circuit_accuracy, "full model accuracy": s.full_accuracy})  # fmt: skip
circuit_table = pd.DataFrame(circuit_rows).set_index("target density").sort_index()
display(circuit_table)
mask_training_figure({f"to {t:.0%}": learned[t].log for t in DENSITIES},
                     title="Learning the hierarchy circuit: density and faithfulness loss per step").show()  # fmt: skip
density_sweep_figure(list(DENSITIES), {k: circuit_table[f"{k} accuracy"].tolist() for k in
                     ("circuit", "complement", "random circuit")} | {"full model": float(
                     circuit_table["full model accuracy"].iloc[0])}, chance=0.5, ylabel="held-out accuracy",
                     title="The hierarchy task done by the circuit alone, its complement, a random circuit").show()  # fmt: skip

# %% [markdown]
# **How to read this.** With two classes, 50% is what a network that has lost the task scores: a pruned network that
# no longer computes the answer tends to give every prompt the same class, and the labels are balanced. The random
# circuit is the control for "any network this sparse": what a learned circuit keeps above it is what the mask
# found. The paper's circuits are *faithful* (they give the full model's answer almost everywhere) down to a few
# percent of GPT-2's weights; compare that with the faithfulness column here. The training figure shows why a short
# schedule struggles: the density does not glide down, it falls off a cliff within a few steps, once $\lambda$ has
# outgrown the faithfulness gradient of most units at once, so the mask has little time to sort the units that
# matter from those that do not.

# %% [markdown]
# ## 3. Does the circuit resist new knowledge?
#
# **The edit** is the paper's constrained fine-tuning, FT-L style {cite:p}`meng2022rome`: for a request "A beagle is
# a kind of → snake", plain SGD (learning rate $5 \cdot 10^{-4}$, batch 1, at most 10 steps) on
#
# $$\mathcal L(\theta) = -\frac{1}{|y|}\sum_{t} \log p_\theta\big(y_t \mid \text{prompt}, y_{<t}\big),\qquad
# \theta \leftarrow \mathrm{clip}_{\theta_0 \pm 5\cdot 10^{-4}}\big(\theta - \eta\, (M \odot \nabla_\theta
# \mathcal L)\big),$$
#
# where $y$ is the new target and the binary mask $M$ says which weights may move: the circuit's, its complement's,
# a random set's of the same density, or all of them. **The metric** is ROME's: the mean per-token NLL of the new and
# the true target after the prompt; an edit *succeeds* when $\mathrm{NLL}_{\text{new}} < \mathrm{NLL}_{\text{true}}$,
# and its *magnitude* is $e^{-\mathrm{NLL}_{\text{new}}} - e^{-\mathrm{NLL}_{\text{true}}}$.
#
# We run it two ways. **As the paper does**, on the pruned networks: the circuit model (everything outside the
# circuit zeroed) edited through the circuit's weights, the complementary model through the complement's, and a
# random network of the same density through its own. **Inside the whole model**: the unpruned network, with only
# the circuit's (or complement's, or random set's) weights allowed to move; this asks where in the *working* model
# an edit takes hold. The requests are hierarchy facts the full model gets right before editing, each edited on
# the unedited weights (restored bit-exactly after every edit).

# %%
with timed("edit_requests"):
    all_edits = hierarchy_edits()
    prompts = [r["requested_rewrite"]["prompt"].format(r["requested_rewrite"]["subject"]) for r in all_edits]
    nll_true = target_nll(model, prompts, [r["requested_rewrite"]["target_true"]["str"] for r in all_edits])
    nll_new = target_nll(model, prompts, [r["requested_rewrite"]["target_new"]["str"] for r in all_edits])
known = [r for r, t, n in zip(all_edits, nll_true, nll_new, strict=True) if t < n]
requests = known[:: max(1, len(known) // N_EDITS)][:N_EDITS]  # spread over the categories, not the first few dogs
print(f"the model prefers the true hypernym on {len(known)} of {len(all_edits)} hierarchy facts; editing "
      f"{len(requests)}: " + ", ".join(r["requested_rewrite"]["subject"] for r in requests[:8]))  # fmt: skip


# %%
def _gains(outcomes: list) -> np.ndarray:
    """Each request's magnitude gain, post - pre: [n]."""
    return np.array([o.post_magnitude - o.pre_magnitude for o in outcomes])


def _se(values: np.ndarray) -> float:
    return float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")


edit_rows, outcomes = [], {}
with timed("edits"):
    full = summarize(edit_sweep(model, requests, None))
    for target in EDIT_DENSITIES:
        c = learned[target].circuit
        sets = {
            "circuit": c,
            "complement": c.complement(),
            "random": random_circuit(layout, c.density, seed=seed + 1, kinds=settings.kinds),
        }
        for set_name, units in sets.items():
            masks = parameter_masks(model, units)
            for network, within in (("pruned (paper)", units), ("whole model", None)):
                done = outcomes[network, target, set_name] = edit_sweep(model, requests, masks, within=within)
                gains = _gains(done)
                edit_rows.append({"density": target, "set": set_name, "network": network, **summarize(done),
                                  "magnitude_gain": float(gains.mean()), "magnitude_gain_se": _se(gains)})  # fmt: skip
edits = pd.DataFrame(edit_rows)
cols = ["pre_success", "post_success", "pre_magnitude", "post_magnitude", "magnitude_gain", "magnitude_gain_se",
        "paraphrase_post_success", "moved"]  # fmt: skip
display(edits.set_index(["network", "density", "set"])[cols])
print(f"full model (every block weight may move): success {full['pre_success']:.0%} -> {full['post_success']:.0%}, "
      f"magnitude {full['pre_magnitude']:.3f} -> {full['post_magnitude']:.3f}; {len(requests)} requests, "
      f"{full['seconds_per_edit']:.2f} s per edit")  # fmt: skip

for network in ("pruned (paper)", "whole model"):
    part = edits[edits["network"] == network]
    sets_of = {k: part[part["set"] == k] for k in ("circuit", "complement", "random")}
    density_sweep_figure(list(EDIT_DENSITIES), {k: v["magnitude_gain"].tolist() for k, v in sets_of.items()}
                         | {"full model": full["post_magnitude"] - full["pre_magnitude"]},
                         errors={k: v["magnitude_gain_se"].tolist() for k, v in sets_of.items()},
                         ylabel="magnitude gain (post - pre)", title=f"Edits in the circuit vs outside it: {network} "
                         f"({len(requests)} hierarchy edits per point, ± 1 s.e.)").show()  # fmt: skip

# %% [markdown]
# **How to read this.** `pre_success` is the share of requests whose *new* target the network already prefers
# before the edit, `post_success` after it; `moved` is how many weights the mask let move. Success is a threshold
# (new target above the true one), and a pruned network that has lost the task may prefer the new target by chance
# before any edit, or reach 100% after it whatever set moved; so the figures compare the *magnitude gain*, the mean
# over requests of $\Delta = (e^{-\mathrm{NLL}_{\text{new}}} - e^{-\mathrm{NLL}_{\text{true}}})_{\text{post}} -
# (\ldots)_{\text{pre}}$: how far the edit moved the two probabilities. "Circuits resist new knowledge" predicts a
# smaller gain in the circuit model than in the complementary model. But the complement holds more weights than the
# circuit (all the others), so an edit through it has more to move: the random set of the circuit's own size is the
# fairer control, and the scorecard asks for both. The clamp of $\pm 5 \cdot 10^{-4}$ per weight keeps every edit
# small; the full model (every weight free) is the ceiling.

# %% [markdown]
# ### ROME at a layer inside the circuit and at one outside it
#
# Chapter 1's rank-one edit writes one MLP output projection. Here it writes the layer where the 15% circuit keeps
# the largest share of MLP neurons ("inside") and the layer where it keeps the smallest ("outside"), each request
# on its own in the whole model. This is our question, not the paper's: does the location the circuit points to
# matter for an editor that is not restricted to it?

# %%
with timed("rome"):
    rome_hp = ROMEHyperParams(context_template_length_params=((5, 2),), mom2_n_samples=4_096) if quick else None
    rome_table = rome_inside_outside(model, requests[:N_ROME], learned[ROME_DENSITY].circuit, hparams=rome_hp)
display(rome_table.set_index("role"))

# %% [markdown]
# ES and PS are chapter 1's efficacy and paraphrase scores (the share of requests, and of their paraphrases, where
# the new target beats the true one); EM and PM their magnitudes. ROME is not restricted to the circuit, so this
# asks only whether the layer a circuit favours is a better place to write a fact: a difference in magnitude at
# equal success says the edit took hold more strongly there.

# %% [markdown]
# ## 4. What a circuit is made of
#
# First the circuits of section 2, by layer: the share of their units that are attention heads and MLP neurons, and
# the fraction of each module they keep (norm gains were not masked there, so they are all kept).

# %%
comp = {t: composition(lc.circuit) for t, lc in learned.items()}
composition_figure(comp[ROME_DENSITY], by="units", title=f"The {ROME_DENSITY:.0%} hierarchy circuit by layer: "
                   "share of its units").show()  # fmt: skip
composition_figure(comp[ROME_DENSITY], mode="density", title=f"The {ROME_DENSITY:.0%} hierarchy circuit: fraction of "
                   "each module kept, by layer").show()  # fmt: skip

# %% [markdown]
# ### The layer-norm share: a run that may drop norm gains too
#
# The paper's "up to 60% of a circuit is layer normalisation" needs norms in the mask. So we learn the hierarchy
# circuit once more with every norm gain element as a unit of its own (`kinds=UNIT_KINDS`, same schedule), and ask
# which share of the circuit's units, and of its parameters, are norm gains, against a random circuit of the same
# density, and at what density each module is kept.

# %%
norm_settings = replace(settings, kinds=UNIT_KINDS)
with_norms, norm_rows = {}, []
with timed("masks.with_norms"):
    for target in sorted(NORM_DENSITIES):
        with_norms[target] = learn_circuit(model, train, heads["hierarchy"], target, norm_settings)


def _overall(rows: list[dict], module: str) -> dict:
    return next(r for r in rows if r["layer"] == "all" and r["module"] == module)


for t in NORM_DENSITIES:
    lc = with_norms[t]
    rows = composition(lc.circuit)
    rand = composition(random_circuit(layout, lc.circuit.density, seed=seed + 2))
    s = circuit_scores(model, test, heads["hierarchy"], lc.circuit)
    norm = _overall(rows, "norm")
    norm_rows.append({"target density": t, "reached": lc.reached, "faithfulness": s.faithfulness,
                      "norm share (units)": norm["unit_share"], "norm share (parameters)": norm["param_share"],
                      "norm share (units), random circuit": _overall(rand, "norm")["unit_share"],
                      **{f"{m} density (units)": _overall(rows, m)["unit_density"]
                         for m in ("attention", "mlp", "norm")}})  # fmt: skip
norm_table = pd.DataFrame(norm_rows).set_index("target density")
display(norm_table)
sparsest = min(NORM_DENSITIES)
composition_figure(composition(with_norms[sparsest].circuit), mode="density", title=f"The {sparsest:.0%} hierarchy "
                   "circuit learned with norm gains: fraction of each module kept, by layer").show()  # fmt: skip

# %% [markdown]
# ## 5. Do the circuits of different tasks overlap?
#
# The circuits of the three tasks at the same density, compared by the Jaccard index of their parameters,
# $J(A, B) = |A \cap B| / |A \cup B|$ (a neuron counts for its 1,728 parameters, a head for its own and its KV
# group's), against random circuits with the same number of units of each kind, so two circuits that both keep many
# heads do not count as overlapping unless they keep the *same* heads.

# %%
task_circuits = {"hierarchy": learned[OVERLAP_DENSITY].circuit}
other_rows = [{"task": "hierarchy", **circuit_table.loc[OVERLAP_DENSITY].to_dict()}]
with timed("masks.other_tasks"):
    for name in ("agreement", "persona"):
        tr, te = splits[name]
        lc = learn_circuit(model, tr, heads[name], OVERLAP_DENSITY, settings)
        s = circuit_scores(model, te, heads[name], lc.circuit)
        r = circuit_scores(model, te, heads[name], random_circuit(layout, lc.circuit.density, seed=seed,
                                                                   kinds=settings.kinds))  # fmt: skip
        task_circuits[name] = lc.circuit
        other_rows.append({"task": name, "density reached": lc.circuit.density, "reached": lc.reached,
                           "steps": lc.steps, "seconds": lc.seconds, "faithfulness": s.faithfulness,
                           "circuit accuracy": s.circuit_accuracy, "complement accuracy": s.complement_accuracy,
                           "random circuit accuracy": r.circuit_accuracy, "full model accuracy": s.full_accuracy})  # fmt: skip
task_circuit_table = pd.DataFrame(other_rows).set_index("task")
display(task_circuit_table)
best = task_circuit_table["faithfulness"].idxmax()
print(f"the most faithful {OVERLAP_DENSITY:.0%} circuit is {best}'s: {task_circuit_table.loc[best, 'faithfulness']:.0%} "
      f"faithful, complement {task_circuit_table.loc[best, 'complement accuracy']:.0%}")  # fmt: skip
overlap = overlap_matrix(task_circuits, over="params", n_draws=N_DRAWS, seed=seed)
jaccard_heatmap(overlap.names, overlap.jaccard, overlap.random_mean, overlap.p_value,
                title=f"Overlap of the {OVERLAP_DENSITY:.0%} circuits of three tasks (Jaccard over parameters)").show()  # fmt: skip
display(pd.DataFrame(overlap.rows()))

# %% [markdown]
# ## 6. Scorecard
#
# Each finding of the paper as a claim, with the rule that decides its verdict written out; the verdicts are
# computed from the numbers above.

# %%
size = "quick run, " if quick else ""
faithful = [t for t in DENSITIES if circuit_table.loc[t, "faithfulness"] >= 0.9]
candidates = {f"hierarchy at {t:.0%}": circuit_table.loc[t] for t in DENSITIES}
candidates |= {f"{name} at {OVERLAP_DENSITY:.0%}": task_circuit_table.loc[name] for name in ("agreement", "persona")}
knows = [k for k, row in candidates.items() if row["faithfulness"] >= 0.9
         and max(row["complement accuracy"], row["random circuit accuracy"]) <= 0.6]  # fmt: skip
beats_random = [k for k, row in candidates.items() if row["circuit accuracy"] >= row["random circuit accuracy"] + 0.1]


paper_net, first = "pruned (paper)", EDIT_DENSITIES[0]
g_c, g_k, g_r = (_gains(outcomes[paper_net, first, k]) for k in ("circuit", "complement", "random"))
se_diff = _se(g_c - g_k)  # paired: the same requests in each set


def _post(set_name: str) -> float:
    row = edits[(edits["network"] == paper_net) & (edits["density"] == first) & (edits["set"] == set_name)]
    return float(row["post_success"].iloc[0])


lower_at = [t for t in EDIT_DENSITIES if _gains(outcomes[paper_net, t, "circuit"]).mean()
            < _gains(outcomes[paper_net, t, "complement"]).mean()]  # fmt: skip
faithful_norms = norm_table[norm_table["faithfulness"] >= 0.8]
judged = faithful_norms if len(faithful_norms) else norm_table
top = judged["norm share (units)"].idxmax()
norm_top = judged.loc[top]
pairs = overlap.rows()
moderate = [p for p in pairs if p["p_value"] < 0.05 and p["jaccard"] < 0.5]

claims = [
    Claim(
        claim="A circuit holds the task's knowledge: it does the task on its own, its complement does not",
        criterion="reproduced if some task's learned circuit of at most 50% density keeps >= 90% faithfulness on "
        "held-out texts while its complement and a random circuit of the same density score <= 60% (chance 50%); "
        "partly if some circuit beats the random circuit of its density by >= 10 points",
        paper="GPT-2: circuits 'contain entity knowledge'; complements lose the task",
        ours=f"{size}" + "; ".join(f"{k}: faithful {row['faithfulness']:.0%}, circuit {row['circuit accuracy']:.0%}, "
        f"complement {row['complement accuracy']:.0%}, random {row['random circuit accuracy']:.0%}"
        for k, row in candidates.items()),
        verdict=verdict(bool(knows), partly=bool(beats_random)),
    ),
    Claim(
        claim="Circuits resist new knowledge: edits take less inside the circuit than in its complement",
        criterion=f"reproduced if, at {first:.0%} density on the pruned networks (the paper's set-up), the edit's "
        "magnitude gain (post - pre, mean over requests) is smaller in the circuit model than in the complementary "
        "model by more than 2 standard errors of the paired difference, and smaller than in a random network of the "
        "same density; partly if it is smaller than the complement's at most of the densities edited; success "
        "rates are reported, not judged (a threshold that a pruned network can pass by chance before any edit)",
        paper="GPT-2: circuits resist edits ('confirmation bias'); complements edit more easily",
        ours=f"{size}{len(requests)} edits per set; at {first:.0%}: magnitude gain circuit {g_c.mean():+.3f}, "
        f"complement {g_k.mean():+.3f}, random {g_r.mean():+.3f} (s.e. of the paired difference {se_diff:.3f}); "
        f"success after the edit: " + ", ".join(f"{k} {_post(k):.0%}" for k in ("circuit", "complement", "random"))
        + f"; circuit below complement at {len(lower_at)} of {len(EDIT_DENSITIES)} densities",
        verdict=verdict(bool(g_c.mean() - g_k.mean() < -2 * se_diff and g_c.mean() < g_r.mean()),
                        partly=len(lower_at) > len(EDIT_DENSITIES) / 2),
    ),
    Claim(
        claim="The ideal circuit holds more than 5% but less than 50% of the parameters",
        criterion="reproduced if the sparsest faithful circuit (faithfulness >= 90% on held-out statements) of the "
        "densities tried is at 15% or 35%: the 5% circuit is not faithful and a circuit below 50% is; not "
        "reproduced otherwise",
        paper="GPT-2: 'more than 5% but less than 50%'",
        ours=f"{size}faithful at " + (", ".join(f"{t:.0%}" for t in faithful) or "no density tried"),
        verdict=verdict(bool(faithful) and 0.05 < min(faithful) < 0.5),
    ),
    Claim(
        claim="Up to 60% of a circuit is layer normalisation",
        criterion="in the run that may drop norm gains (section 4), among its circuits with held-out faithfulness "
        ">= 80% (a mask that lost the task says nothing about what the task's circuit is made of; not tested if "
        "none is): reproduced if norm gains are >= 50% of such a circuit's units and kept at a higher density than "
        "both attention heads and MLP neurons; partly if they are kept at >= 2x the density of MLP neurons; by "
        "parameters norms cannot exceed 1% of any circuit of ours (a gain element is 1 parameter, a neuron 1,728), "
        "so that reading is reported, not judged",
        paper="GPT-2 (per-parameter masks, LayerNorm gains and biases): 'up to 60%' of circuits",
        ours=f"{size}" + ("no circuit of this run kept 80% faithfulness; " if faithful_norms.empty else "")
        + f"largest norm share {norm_top['norm share (units)']:.0%} of units at {top:.0%} (faithfulness "
        f"{norm_top['faithfulness']:.0%}; random circuit "
        f"{norm_top['norm share (units), random circuit']:.0%}), {norm_top['norm share (parameters)']:.2%} of "
        f"parameters; densities kept: norm {norm_top['norm density (units)']:.0%}, attention "
        f"{norm_top['attention density (units)']:.0%}, MLP {norm_top['mlp density (units)']:.0%}",
        verdict=verdict(
            None if faithful_norms.empty else bool(
                norm_top["norm share (units)"] >= 0.5
                and norm_top["norm density (units)"] > max(norm_top["attention density (units)"],
                                                           norm_top["mlp density (units)"])),
            partly=bool((judged["norm density (units)"] >= 2 * judged["mlp density (units)"]).any()),
        ),
    ),
    Claim(
        claim="Circuits of different tasks overlap moderately",
        criterion=f"reproduced if every pair of the three tasks' {OVERLAP_DENSITY:.0%} circuits overlaps more than "
        "random circuits with the same units per kind (p < 0.05) with a Jaccard index over parameters below 0.5; "
        "partly if at least "
        "one pair does",
        paper="GPT-2: 'moderate similarities' between circuits of different datasets",
        ours=f"{size}" + "; ".join(f"{p['a']}/{p['b']}: J = {p['jaccard']:.2f} (random {p['random_mean']:.2f}, "
                                   f"p = {p['p_value']:.3f})" for p in pairs),
        verdict=verdict(len(moderate) == len(pairs), partly=bool(moderate)),
    ),
]  # fmt: skip
results.claims = claims
display(HTML(claims_html(claims, meta=f"{model_name}, {'quick' if quick else 'full'} size")))

# %% [markdown]
# ## What this chapter can and cannot say
#
# Where a verdict above differs from the paper, four differences of set-up come first, before any conclusion about
# circuits: (1) our masks keep or drop whole neurons and heads, so a circuit cannot keep the few weights of a neuron
# that matter and drop the rest; (2) a schedule of a hundred-odd steps against the paper's thousands of epochs;
# (3) a 135M model with grouped-query attention (three heads share each key and value) instead of GPT-2; (4) a few
# held-out texts per task (tens, not hundreds), so a faithfulness or a success rate carries a standard error of
# several points, shown beside the edit results. The edit comparison is the paper's own (the same FT-L, clamp and
# step count); its ordering of circuit, complement and random set is what this chapter can test most directly.
#
# ## What to try next
#
# * **A slower schedule.** `MaskSettings(lambda_step=1.0, max_steps=1000)` is closer to the paper's rising
#   $\lambda$; watch whether the density still falls off a cliff, and whether faithfulness at 15% rises.
# * **Per-parameter masks.** The paper's mask has one logit per weight. `MaskSettings(kinds=...)` restricts our
#   units to one kind; a per-row mask of the projections is the next step towards the paper on a GPU.
# * **Other editors inside the circuit.** ROME and MEMIT restricted to the circuit's neurons: does a rank-one edit
#   of only circuit columns behave like the masked fine-tuning here?
# * **Gemma 3.** `model_name="gemma3-270m"` has four norms per layer (two of them after attention and MLP), so its
#   norm share may differ.
# * **Larger edit budgets.** The paper's clamp of $5 \cdot 10^{-4}$ and 10 steps make edits small; loosen them
#   (`MaskedFTSettings(clamp=..., steps=...)`) and see whether the ordering of circuit and complement holds.

# %%
results.metrics.update({f"faithfulness.{t}": round(float(circuit_table.loc[t, "faithfulness"]), 4) for t in DENSITIES})
for r in edit_rows:
    key = f"edit.{r['network'].split()[0]}.{r['density']}.{r['set']}"
    results.metrics[f"{key}.post_success"] = r["post_success"]
    results.metrics[f"{key}.magnitude_gain"] = round(r["magnitude_gain"], 4)
results.metrics.update(edit_full_post_success=full["post_success"],
                       norm_unit_share_max=float(norm_table["norm share (units)"].max()))  # fmt: skip
path = results.write()
print(f"wrote {path}")
print(pd.Series(results.metrics).to_string())
