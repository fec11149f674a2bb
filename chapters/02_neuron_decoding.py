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
# # 2. Reading neurons through the LM head
#
# **Question.** Does a transformer have single MLP neurons for single concepts — a "dog" neuron, a "California"
# neuron — and can we find all of them without running the model on any text?
#
# Davies (2025, *Flash Interpretability: Decoding Specialised Feature Neurons in Large Language Models with the
# LM-Head*, arXiv 2501.02688) {cite:p}`davies2025decoding` answers yes for Llama 3.1 8B. His method needs only the weights: read every neuron's
# input weights as if they were a hidden state and push them through the model's own output head. On Llama 3.1 8B
# he reports neurons whose top token is " dog" or " California"; clamping the dog neuron makes the Instruct model
# talk about dogs whenever it is asked for its favourite animal; and 75.4% of up-projection neurons keep their top
# token between the base and the Instruct model. The whole map of 458,752 neurons takes under 10 seconds.
#
# This chapter runs the same method on SmolLM2-135M-Instruct — 60 times fewer parameters — and checks each claim.
# The answer, in short: the method works and is fast, but a 135M model has few single-word neurons; it has
# *group* neurons (an animal neuron that reads cat, Cat, dog …) and many neurons for tokens that are not words.
#
# Parameters: `quick=True` (CI) decodes a random sample of neurons per layer for the whole-map statistics and
# uses fewer sentences and clamp values; the searches for concepts always cover all 46,080 neurons.

# %% tags=["parameters"]
model_name = "smollm2-135m"
device = "auto"
quick = False
base_model_name = None  # e.g. a local folder with SmolLM2-135M (base): then base vs instruct is compared too

# %%
import copy

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from IPython.display import HTML, Markdown, display

from locedit import load_model
from locedit.activations import cohens_d, record_sample
from locedit.clamping import clamp, generate_settings, group_prob_settings
from locedit.neurons import compare_checkpoints, decode_neurons, decode_rows, search_neurons, token_group
from locedit.results import ChapterResults, Claim, verdict
from locedit.scorecard import claims_html
from locedit.threads import loop_threads
from locedit.viz import specialisation_figure
from locedit.widgets import neuron_browser

results = ChapterResults("02_neuron_decoding", model_name, quick)
timings, timed = results.timings, results.timed  # `with timed("step"):` records seconds into the results file


# Short forward passes (a few sentences, one generated token at a time) are dominated by per-operation overhead; on
# a machine whose cores are busy with other work, two threads waiting on each other make them several times slower
# than one. `loop_threads()` runs such a block with the threads the machine can give it now (`locedit.threads`);
# the large decoding matmuls always use every thread.
torch.manual_seed(0)
pd.set_option("display.precision", 3)
pd.set_option("display.max_colwidth", 90)
SAMPLE = 32 if quick else None  # neurons per layer for the whole-map statistics (None: all 1,536)
SIDE_SAMPLE = 32 if quick else 256  # neurons per layer for the side comparisons (raw, gate, down, checkpoints)
CANDIDATES = 100 if quick else 300  # neurons per concept decoded exactly in the search

with timed("load_model"):
    model = load_model(model_name, device=device)
spec, tok = model.spec, model.tokenizer
n_neurons = spec.n_layers * spec.d_mlp
print(
    f"{model_name}: {spec.n_layers} layers × {spec.d_mlp} MLP neurons = {n_neurons:,} neurons; vocabulary {spec.vocab_size:,}"
)

# %% [markdown]
# ## 1. The method
#
# SmolLM2's MLP (Llama family) computes, for the normalised residual stream $x \in \mathbb{R}^d$ ($d = 576$),
#
# $$\mathrm{MLP}(x) = W_{down}\,\big(\mathrm{SiLU}(W_{gate}\,x) \odot W_{up}\,x\big), \qquad W_{up}, W_{gate} \in \mathbb{R}^{1536 \times d}.$$
#
# Neuron $i$'s up-projection output is $u_i = w_i \cdot x$, with $w_i$ the $i$-th row of $W_{up}$: the neuron
# *reads* the direction $w_i$. That direction lives in the same space the LM head reads at the top of the model,
# so Davies decodes it like a final hidden state:
#
# $$z_i = W_U\, f(w_i) \in \mathbb{R}^{V}, \qquad p_i = \mathrm{softmax}(z_i),$$
#
# with $W_U$ the unembedding ($V = 49{,}152$ tokens; tied to the input embeddings in SmolLM2) and $f$ one of
#
# * **raw**: $f(w) = w$;
# * **final norm**: the model's final RMSNorm applied to $w$ as if it were the last hidden state,
#   $f(w) = g \odot w\,\sqrt{d}/\lVert w\rVert$ ($g$ the norm's gain).
#
# The neuron's label is $\arg\max_t p_i(t)$. Two remarks decide how we read the numbers:
#
# * The **ranking** under "final norm" differs from "raw" only through the gain $g$ (softmax ignores the scale), so
#   the two variants can disagree about the top token (we measure how often).
# * The **probabilities** depend on the scale. A raw row is short ($\lVert w_i\rVert \approx 4$), so its softmax is
#   nearly flat; "final norm" puts it on the scale of a real final state, so $p_i$ is comparable to the model's own
#   output probabilities. We quote $p_1$ (the top-1 probability) under "final norm" only, and as a scale-free
#   **specialisation score** use the top logit's z-score over the vocabulary,
#   $z^{(1)}_i = (\max_t z_i(t) - \mathrm{mean}_t\, z_i)/\mathrm{std}_t\, z_i$ (how far the top token stands out).
#
# The same decoding applies to the gate rows (another read direction) and to the down-projection columns, which
# are what a neuron *writes* to the stream {cite:p}`geva2022promoting`; the MLP as a key–value memory is {cite:t}`geva2021ffn`. `locedit.neurons.decode_neurons` does it for every
# neuron in chunked matrix products: a chunk of 512 rows gives a [512 × 49,152] logit block, of which only the
# top-$k$ tokens, the log-normaliser and $z^{(1)}$ are kept, so the full 46,080 × 49,152 logit matrix (9 GB) never
# exists. Results are cached on disk by a hash of the weights.
#
# On hardware that multiplies bfloat16 natively (a GPU, or a CPU with AVX-512 BF16 or AMX) the logit block comes from
# a bf16 matmul, 2–3× faster, and serves only to *find* each neuron's best 16 candidates, whose logits are then
# recomputed in float32. Over all 46,080 SmolLM2 neurons this gives the same top-10 tokens as the float32 decode,
# with probabilities within 0.75 % (relative; the normaliser keeps the other tokens' bf16 rounding). A neuron with a
# near-tie at the cut is redone in float32. `dtype=None` forces the exact path; `up.dtype` says which one ran.

# %%
with timed("decode_up_norm"):
    up = decode_neurons(model, "up", norm=True, k=10, sample=SAMPLE)
n_decoded = up.top_ids.shape[0] * up.top_ids.shape[1]
print(
    f"decoded {n_decoded:,} up-projection neurons (final norm, top-10 each) in {timings['decode_up_norm']:.1f} s "
    f"(0 s means it came from the cache; the uncached compute took {up.seconds:.1f} s, {up.dtype} path)"
)
table = up.table(k=6)
display(table.sort_values("z1", ascending=False).head(12))

# %% [markdown]
# The most specialised neurons by $z^{(1)}$ read **one word in all its spellings** (" experience", "Experience",
# " experiences" …), a **small family of related words** (above / below, though / although / however), or format
# tokens (newlines, "=", full stops). The LM head groups the surface forms of a word, so a neuron that reads "any
# spelling of *experience*" is already a small concept.
#
# Below, the distribution of specialisation by layer (hover for values; the dropdown switches
# between up rows, gate rows and down columns, each decoded on a sample of neurons per layer).

# %%
with timed("decode_side"):
    up_raw = decode_neurons(model, "up", norm=False, k=10, sample=SIDE_SAMPLE)
    up_side = up.subset(up_raw.neuron_ids)  # the same neurons as the side decodings (a sample uses a fixed seed)
    gate = decode_neurons(model, "gate", norm=True, k=10, sample=SIDE_SAMPLE)
    down = decode_neurons(model, "down", norm=True, k=10, sample=SIDE_SAMPLE)
specialisation_figure([up, gate, down]).show()
raw_vs_norm, _ = up_side.agreement(up_raw)
summary = pd.DataFrame(
    {
        "variant": [d.variant for d in (up_side, up_raw, gate, down)],
        "median p1": [float(d.top_probs[..., 0].median()) for d in (up_side, up_raw, gate, down)],
        "share p1 > 0.5": [float((d.top_probs[..., 0] > 0.5).float().mean()) for d in (up_side, up_raw, gate, down)],
        "median z1": [float(d.z1.median()) for d in (up_side, up_raw, gate, down)],
    }
)
display(summary)
print(
    f"top-1 token identical with and without the final-norm gain: {raw_vs_norm:.1%} of {up_side.top_ids[..., 0].numel():,} sampled up neurons"
)
results.metrics.update(
    up_median_p1_norm=round(float(up_side.top_probs[..., 0].median()), 4),
    up_median_p1_raw=round(float(up_raw.top_probs[..., 0].median()), 4),
    up_top1_raw_vs_norm=round(raw_vs_norm, 4),
)

fig, ax = plt.subplots(figsize=(6, 2.8))
bins = np.logspace(-5, 0, 60)
ax.hist(up_raw.top_probs[..., 0].flatten(), bins=bins, alpha=0.6, label="raw row")
ax.hist(up_side.top_probs[..., 0].flatten(), bins=bins, alpha=0.6, label="through the final norm")
ax.set_xscale("log")
ax.set_xlabel("top-1 probability $p_1$")
ax.set_ylabel("neurons")
ax.set_title("Raw rows decode to flat distributions")
ax.legend()
plt.show()
median_raw, median_norm = float(up_raw.top_probs[..., 0].median()), float(up_side.top_probs[..., 0].median())
display(
    Markdown(
        f"**What it means.** Raw rows give nearly uniform distributions: their median top-1 probability is "
        f"{median_raw:.1e}, against {median_norm:.2f} through the final norm, over a vocabulary of "
        f"{spec.vocab_size:,} tokens (uniform: {1 / spec.vocab_size:.1e}). Quoting raw probabilities as "
        '"specialisation" would be misleading, which is why we rescale by the final norm or use the z-score. The '
        f"norm's gain matters: with and without it the top-1 token agrees for {raw_vs_norm:.0%} of the sampled "
        'neurons. Every figure below says which variant it uses; the default is "final norm", because that is what '
        "the head does to a real hidden state."
    )
)

# %% [markdown]
# ## 2. Searching for concepts
#
# Davies looks for neurons whose top token is " dog" or " California". In SmolLM2 a single token is too narrow a
# net, so we search for **groups** of tokens — every single-token surface form of a few related words (" dog",
# "dog", " Dog", " dogs", " puppy" …) — and rank neurons by the **best rank** any group token reaches in their
# decoded distribution (0 = top-1). The search covers all 46,080 neurons in two steps: the z-score of each group
# token is computed for every neuron (only a handful of logits per neuron), and the 300 best candidates are then
# decoded exactly (300 in the full run, 100 in `quick`).

# %%
concepts = {
    "dog": ["dog", "dogs", "puppy", "puppies", "canine"],
    "California": ["California", "Californian"],
    "Paris": ["Paris", "Parisian"],
    "water": ["water", "waters"],
}
groups = {name: token_group(model, words) for name, words in concepts.items()}
for name, ids in groups.items():
    print(f"{name:10s}: {' '.join(repr(tok.decode([i])) for i in ids)}")

with timed("search"):
    found = search_neurons(model, groups, kind="up", norm=True, candidates=CANDIDATES)
rows = []
for name, df in found.items():
    best = df.iloc[0]
    rows.append(
        {
            "concept": name,
            "neurons with a group token as top-1": int((df.best_rank == 0).sum()),
            "… in the top 10": int((df.best_rank < 10).sum()),
            "best neuron": f"L{best.layer}.N{best.neuron}",
            "its best rank": int(best.best_rank),
            "token": best.best_token,
            "its top tokens": best.top_tokens,
        }
    )
search_summary = pd.DataFrame(rows)
display(search_summary)
display(Markdown("The 8 best dog-group neurons (final norm):"))
display(
    found["dog"].head(8)[["layer", "neuron", "best_rank", "best_token", "group_p", "top1", "p1", "z1", "top_tokens"]]
)

# %% [markdown]
# The exact pass over every neuron would find any neuron the two-step search missed. In the full run it is
# checked here against the complete map (in `quick` mode the map is a sample, so the check is skipped):

# %%
if SAMPLE is None:
    for name, ids in groups.items():
        full_hits = up.find(ids)
        fast = set(
            zip(
                found[name].layer[found[name].best_rank < 10],
                found[name].neuron[found[name].best_rank < 10],
                strict=True,
            )
        )
        exact = set(zip(full_hits.layer, full_hits.neuron, strict=True))
        print(
            f"{name:10s}: top-10 neurons by the exact map {len(exact)}, by the two-step search {len(fast)}, missed {len(exact - fast)}"
        )
else:
    print("quick mode: the complete map is sampled; the cross-check runs with quick=False")

dog_top1 = int((found["dog"].best_rank == 0).sum())
cal_top1 = int((found["California"].best_rank == 0).sum())
dog_best, cal_best = int(found["dog"].best_rank.iloc[0]), int(found["California"].best_rank.iloc[0])
results.metrics.update(
    dog_neurons_top1=dog_top1,
    dog_neurons_top10=int((found["dog"].best_rank < 10).sum()),
    california_neurons_top1=cal_top1,
    california_neurons_top10=int((found["California"].best_rank < 10).sum()),
    dog_best_rank=dog_best,
    california_best_rank=cal_best,
)

# %%
animal = decode_rows(model, [(0, 350)], "up", True, k=6).iloc[0]  # the animal neuron the next sections use
water_top1 = int((found["water"].best_rank == 0).sum())


def how_many(n: int) -> str:
    return "no neuron" if n == 0 else f"{n} neuron{'s' if n > 1 else ''}"


display(
    Markdown(
        f"**What it means.** In this run {how_many(dog_top1)} of {model_name} decode{'s' if dog_top1 == 1 else ''} to "
        f"a dog word as the top token and {how_many(cal_top1)} to California (best ranks: {dog_best} for "
        f"{found['dog'].best_token.iloc[0]!r}, {cal_best} for {found['California'].best_token.iloc[0]!r}; the "
        "tables above). Read the best candidates' top tokens: where the group token is not first, it is a side lobe "
        f"of a neuron that reads other things. Neuron **L0.N350** decodes to {animal.top_tokens}: in our runs a "
        "layer-0 *animal* neuron rather than a dog neuron, which the next sections test. "
        f"{how_many(water_top1).capitalize()} decode{'s' if water_top1 == 1 else ''} to **water** at top-1: concepts "
        "the model sees constantly as one token fare better. Llama 3.1 8B has ten times as many up-projection "
        "neurons (458,752), each reading a 4,096-dimensional stream, and a 128k vocabulary; a 135M model spreads its "
        "concepts over fewer, more polysemantic neurons."
    )
)

# %% [markdown]
#
# ## 3. Do the decoded neurons fire on the concept?
#
# Decoding is a statement about weights; a feature neuron should also *fire* on text about its concept. We write
# sentences about dogs (and California) and control sentences about other things, take each neuron's largest
# up-projection output $u_i$ over the sentence's tokens (site `mlp_up`), and compare the two groups by Cohen's
# $d = (\bar a_{\text{concept}} - \bar a_{\text{control}})/s_{\text{pooled}}$ ($d \ge 0.8$ is conventionally "large").

# %%
dog_texts = [
    "The dog barked at the mailman all morning.",
    "My puppy loves to chew on old shoes.",
    "We walked the dog along the river.",
    "Dogs are loyal companions for many families.",
    "The puppy wagged its tail when we came home.",
    "A golden retriever fetched the ball from the lake.",
    "Her old dog sleeps on the couch all day.",
    "The dogs chased each other around the yard.",
    "He adopted a rescue dog from the shelter.",
    "The vet said the puppy needs its vaccines.",
    "Our neighbour's dog howls at night.",
    "She trained her dog to sit and stay.",
]
california_texts = [
    "California is the most populous state in the United States.",
    "We drove down the California coast to San Diego.",
    "Los Angeles and San Francisco are both in California.",
    "Wildfires are common in California during the summer.",
    "Silicon Valley is in northern California.",
    "Many vineyards grow grapes in California's Napa Valley.",
]
control_texts = [
    "The train left the station at noon.",
    "She paid the electricity bill online.",
    "The committee approved the new budget.",
    "Rain is expected later this week.",
    "He fixed the leaking kitchen tap.",
    "The museum opens at nine in the morning.",
    "Interest rates rose again in March.",
    "The printer ran out of paper.",
    "They painted the fence a pale blue.",
    "The meeting was moved to Thursday.",
    "He read the report twice before signing it.",
    "The bridge was closed for repairs.",
]
if quick:
    dog_texts, california_texts, control_texts = dog_texts[:8], california_texts[:4], control_texts[:8]

candidates = {
    name: [
        (int(layer), int(n))
        for layer, n in zip(found[name].layer.head(n_top), found[name].neuron.head(n_top), strict=True)
    ]
    for name, n_top in [("dog", 6), ("California", 4)]
}
if (0, 350) not in candidates["dog"]:
    candidates["dog"].append((0, 350))  # the animal neuron, for comparison
water_texts = [
    "She drank a glass of cold water.",
    "The river water was clear and cold.",
    "Water boils at one hundred degrees.",
]
texts = dog_texts + california_texts + control_texts + water_texts  # the water sentences only serve the clamp scale
with timed("activation_sample"), loop_threads():
    sample = record_sample(model, texts, site="mlp_up")  # u at every layer and token of every sentence
per_text = sample.per_text()  # [texts, layers, d_mlp]: each neuron's largest u in each sentence
n_dog, n_cal = len(dog_texts), len(california_texts)
concept_rows = {"dog": slice(0, n_dog), "California": slice(n_dog, n_dog + n_cal)}
control = per_text[n_dog + n_cal : n_dog + n_cal + len(control_texts)]
validation = []
for name, neurons in candidates.items():
    on = per_text[concept_rows[name]]
    for neuron in neurons:
        decoded = found[name].set_index(["layer", "neuron"])
        rank = int(decoded.loc[neuron, "best_rank"]) if neuron in decoded.index else None
        validation.append(
            {
                "concept": name,
                "neuron": f"L{neuron[0]}.N{neuron[1]}",
                "best rank of a group token": rank,
                "max u on concept (mean)": float(on[:, neuron[0], neuron[1]].mean()),
                "max u on control (mean)": float(control[:, neuron[0], neuron[1]].mean()),
                "Cohen's d": cohens_d(on[:, neuron[0], neuron[1]], control[:, neuron[0], neuron[1]]),
            }
        )
validation = pd.DataFrame(validation)
display(validation)

dog_d = validation.query("concept == 'dog'").set_index("neuron")["Cohen's d"]
large = ", ".join(f"{neuron} (d = {d:.1f})" for neuron, d in dog_d[dog_d >= 0.8].items())
display(
    Markdown(
        f"Decoding and firing agree only in part: {int((dog_d < 0).sum())} of the {len(dog_d)} dog candidates fire "
        "*less* on dog sentences than on controls (negative d: the decoded dog token is a side lobe of an unrelated "
        "neuron), while "
        + (
            f"{large} separate dog sentences from controls with a large d (≥ 0.8)."
            if large
            else "none separates them with a large d (≥ 0.8)."
        )
    )
)

# %% [markdown]
# The reverse question is cheap too: which neurons separate dog sentences from controls best, and what do *they*
# decode to?

# %%
a, b = per_text[:n_dog], per_text[n_dog + n_cal :]
pooled = (((len(a) - 1) * a.var(0) + (len(b) - 1) * b.var(0)) / (len(a) + len(b) - 2)).sqrt()
d_all = (a.mean(0) - b.mean(0)) / pooled.clamp_min(1e-6)  # Cohen's d of every neuron
top_d = d_all.flatten().topk(8)
best_by_act = [divmod(int(i), spec.d_mlp) for i in top_d.indices]
by_act = decode_rows(model, best_by_act, "up", True, k=8, rank_ids=groups["dog"])
by_act.insert(2, "Cohen's d", top_d.values.numpy())
display(by_act[["layer", "neuron", "Cohen's d", "best_rank", "best_token", "top_tokens"]])
dog_rank_of_act = int(by_act.best_rank.min())
results.metrics.update(
    dog_d_best_decoded=round(float(validation.query("concept == 'dog'")["Cohen's d"].max()), 3),
    dog_best_d_any_neuron=round(float(top_d.values[0]), 3),
    dog_best_rank_among_activation_neurons=dog_rank_of_act,
)

# %% [markdown]
# The neurons that separate dog sentences best (with this few sentences, $d$ is noisy) mostly do *not* decode to
# dog words: many read tokens of the sentences' syntax or the model's internal features that the head cannot name.
# Decoding finds neurons that read a *token direction*; most features a small model computes are not token
# directions.
#
# ## 4. Clamping
#
# To test a neuron causally, Davies clamps it: during the forward pass its **up-projection output** $u_i$
# (site `mlp_up`, before the product with $\mathrm{SiLU}(W_{gate}x)$) is overwritten with a constant $c$ at every
# position, so the neuron writes $\mathrm{SiLU}(g_i)\,c\,W_{down}[:, i]$. We clamp there because $u_i = w_i \cdot x$ is
# exactly the quantity the decoded row computes (clamping the post-gate product `mlp_act` would also remove the
# gate's say; it is the alternative site). We sweep $c$ over multiples of the neuron's largest $u_i$ seen on our
# sentences and measure (a) the probability mass of the dog group as the next token after neutral prompts and
# (b) the greedy reply to *"What is your favourite animal?"* through the chat template. Clamps (`locedit.clamping`)
# live inside `locedit.hooks.patch` and are removed when the block exits; every setting runs as its own batch row.

# %%
dog_neuron = candidates["dog"][int(np.argmax(validation.query("concept == 'dog'")["Cohen's d"].to_numpy()))]
top_dog = candidates["dog"][:5]
water_neuron = (int(found["water"].layer.iloc[0]), int(found["water"].neuron.iloc[0]))  # decodes to water at top-1
multiples = [0, 2, 5, 20] if quick else [0, 1, 2, 5, 10, 20, 50]
neutral = [
    "My favourite animal is the",
    "I went to the park and saw a",
    "The best pet for a family is a",
    "At the farm we fed the",
    "She opened the box and found",
]


def settings_for(neurons):
    peaks = [max(sample.max_activation(layer, n), 1e-3) for layer, n in neurons]
    return [clamp(neurons, [m * p for p in peaks]) for m in multiples]


def name(neuron):
    return f"L{neuron[0]}.N{neuron[1]}"


sweeps = [  # (label, neurons clamped, concept whose probability we read)
    (f"{len(top_dog)} top dog-rank neurons", top_dog, "dog"),
    (f"{name(dog_neuron)} (dog, best d)", [dog_neuron], "dog"),
    ("L0.N350 (animal)", [(0, 350)], "dog"),
    (f"{name(water_neuron)} (water)", [water_neuron], "water"),
]
with timed("clamp_probs"), loop_threads():
    p_base = {c: group_prob_settings(model, neutral, groups[c], [[]])[0] for c in ("dog", "water")}
    p_rows = []
    for label, neurons, concept in sweeps:
        probs = group_prob_settings(model, neutral, groups[concept], settings_for(neurons))  # [multiples, prompts]
        for m, row in zip(multiples, probs, strict=True):
            p_rows.append({"clamped": label, "concept": concept, "multiple of max u": m, "p(concept group)": row.mean(),
                           "ratio to no clamp": row.mean() / p_base[concept].mean()})  # fmt: skip
clamp_table = pd.DataFrame(p_rows)
for c, p in p_base.items():
    print(
        f"no clamp: p({c} group) after the neutral prompts = {p.mean():.4f} (per prompt: {', '.join(f'{x:.4f}' for x in p)})"
    )
display(clamp_table.pivot(index="multiple of max u", columns="clamped", values="ratio to no clamp"))

fig = go.Figure()
for label, df in clamp_table.groupby("clamped", sort=False):
    fig.add_trace(go.Scatter(x=[str(m) for m in df["multiple of max u"]], y=df["ratio to no clamp"], mode="lines+markers", name=label,
                             hovertext=[f"p = {p:.4f}" for p in df["p(concept group)"]]))  # fmt: skip
fig.add_hline(y=1.0, line_dash="dot", annotation_text="no clamp")
clamped_neurons = list(dict.fromkeys(top_dog + [dog_neuron, (0, 350), water_neuron]))
writes = decode_rows(model, clamped_neurons, kind="down", norm=True, k=6)  # what each clamped neuron writes

fig.update_layout(title="p(concept group) after neutral prompts, relative to no clamp", xaxis_title="clamp value / largest observed u",
                  yaxis_title="ratio to no clamp", yaxis_type="log", xaxis_type="category", height=380)  # fmt: skip
fig.show()
display(
    Markdown(
        "What the clamped neurons *write* (down-projection columns, final norm; a positive $u_i$ times a positive gate adds this direction):"
    )
)
display(writes[["layer", "neuron", "top_tokens", "p1"]])

# %%
question = "What is your favourite animal?"
gen_multiples = [10] if quick else [2, 5, 10, 20, 50]
n_new = 20 if quick else 30
gen_settings, gen_labels = [[]], ["no clamp"]
for label, neurons, _ in sweeps:
    peaks = [max(sample.max_activation(layer, n), 1e-3) for layer, n in neurons]
    for m in gen_multiples:
        gen_settings.append(clamp(neurons, [m * p for p in peaks]))
        gen_labels.append(f"{label} × {m}")
with timed("generate"), loop_threads():
    replies = generate_settings(model, question, gen_settings, max_new_tokens=n_new)
gen_table = pd.DataFrame({"clamp": gen_labels, "reply (greedy)": [r.replace("\n", " ") for r in replies]})
for word, pattern in [
    ("dog", r"\b(?:dogs?|pupp(?:y|ies)|canine)\b"),
    ("cat", r"\b(?:cats?|kittens?)\b"),
    ("water", r"\bwater"),
]:
    gen_table[f"mentions {word}"] = gen_table["reply (greedy)"].str.contains(pattern, case=False)
with pd.option_context("display.max_colwidth", 200):
    display(gen_table)

dog_clamps = clamp_table[(clamp_table.concept == "dog") & (clamp_table["multiple of max u"] > 0)]
best_row = dog_clamps.loc[dog_clamps["ratio to no clamp"].idxmax()]
ratio_dog_best = float(best_row["ratio to no clamp"])
water_clamps = clamp_table[(clamp_table.concept == "water") & (clamp_table["multiple of max u"] > 0)]
water_best = water_clamps.loc[water_clamps["ratio to no clamp"].idxmax()]
p_max = float(best_row["p(concept group)"])
dog_rows = gen_table.clamp.str.contains("dog")
dog_talk = gen_table[dog_rows]["mentions dog"]
animal_cats = bool(gen_table[gen_table.clamp.str.startswith("L0.N350")]["mentions cat"].any())
results.metrics.update(
    p_dog_no_clamp=round(float(p_base["dog"].mean()), 5),
    p_dog_best_clamp=round(p_max, 5),
    p_dog_best_clamp_ratio=round(float(best_row["ratio to no clamp"]), 3),
    p_water_no_clamp=round(float(p_base["water"].mean()), 5),
    p_water_best_clamp_ratio=round(float(water_best["ratio to no clamp"]), 3),
    animal_neuron_reply_mentions_cats=int(animal_cats),
    clamped_replies_mentioning_dog=int(dog_talk.sum()),
    clamped_replies=int(len(dog_talk)),
)

# %%
top5 = clamp_table[clamp_table.clamped == sweeps[0][0]].set_index("multiple of max u")["ratio to no clamp"]
water_ratios = clamp_table[clamp_table.clamped == sweeps[3][0]].set_index("multiple of max u")["ratio to no clamp"]
cat_replies = gen_table[gen_table.clamp.str.startswith("L0.N350") & gen_table["mentions cat"]]
cat_quote = (
    f' (at {cat_replies.clamp.iloc[0].split(" × ")[-1]}× its largest activation: "{cat_replies["reply (greedy)"].iloc[0][:60]}…")'
    if len(cat_replies)
    else ""
)
display(
    Markdown(
        f"**What it means.** Clamping the dog candidates moves p(dog group) at best ×{ratio_dog_best:.2f} "
        f"({best_row['clamped']}, {best_row['multiple of max u']}× its largest activation); clamping the top five "
        f"together at {top5.index.max()}× gives ×{top5.iloc[-1]:.2f}. {int(dog_talk.sum())} of the {len(dog_talk)} "
        f"replies under a dog clamp mention dogs. The water neuron {name(water_neuron)}, which decodes to water at "
        f"top-1, gives p(water) ×{water_ratios.min():.2f} at worst and ×{water_ratios.max():.2f} at best "
        f"({water_ratios.idxmax()}× its largest activation). The reason is in the MLP equation: the up row says what a "
        "neuron *detects*; what it *writes* is SiLU(g)·c times its down-projection column, whose direction depends on "
        "the down column and on the sign of the gate — decoded just above, the write directions of these neurons are "
        "mostly not the concept. Clamping the animal neuron L0.N350 "
        + (
            f"turns the reply to cats{cat_quote}, the neuron's top tokens: Davies' result in miniature, for a concept "
            "SmolLM2 has a neuron for, at layer 0 where the neuron's write feeds the whole stack above it."
            if animal_cats
            else "does not turn the reply to cats in this run."
        )
    )
)

# %% [markdown]
# ## 5. Do neurons keep their labels across checkpoints?
#
# Davies decodes the base and the Instruct model and finds that **75.4%** of up-projection neurons keep their top
# token: instruction tuning leaves most neuron labels in place. SmolLM2-135M *base* is not available offline here
# (only the Instruct GGUF ships), so we run the comparison the chapter *can* run on the same architecture: the
# model against a copy fine-tuned for a few dozen SGD steps on a handful of sentences. Pass `base_model_name` (a
# local folder with the base checkpoint) to run the paper's comparison too.

# %%
ft_texts = dog_texts[:4]
steps, lr = (4, 1e-2) if quick else (24, 1e-2)


def fine_tune_copy(model, texts, steps, lr):
    """A deepcopy of ``model`` after ``steps`` plain SGD steps of next-token loss on ``texts``, training the
    up-projections only (the neurons we decode); the original is untouched."""
    tuned = copy.copy(model)
    tuned.hf = copy.deepcopy(model.hf)
    trained = [tuned.spec.part(tuned.hf, "mlp_up", layer).weight for layer in range(tuned.spec.n_layers)]
    for p in tuned.hf.parameters():
        p.requires_grad_(False)
    for p in trained:
        p.requires_grad_(True)
    tuned.hf.train()
    opt = torch.optim.SGD(trained, lr=lr)
    batch = tuned.encode(texts, padding_side="right")
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    losses = []
    for _ in range(steps):
        loss = tuned.hf(**batch, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    tuned.hf.eval()
    return tuned, losses


with timed("fine_tune"), loop_threads():
    tuned, losses = fine_tune_copy(model, ft_texts, steps, lr)
with torch.no_grad():
    w0 = torch.cat([spec.part(model.hf, "mlp_up", layer).weight.flatten() for layer in range(spec.n_layers)])
    w1 = torch.cat([spec.part(tuned.hf, "mlp_up", layer).weight.flatten() for layer in range(spec.n_layers)])
    rel_change = float((w1 - w0).norm() / w0.norm())
with timed("decode_tuned"):
    up_tuned = decode_neurons(tuned, "up", norm=True, k=10, sample=SIDE_SAMPLE)
same_ft, same_ft_layer = up_side.agreement(up_tuned)
print(
    f"fine-tune: {steps} SGD steps, lr {lr}, loss {losses[0]:.2f} → {losses[-1]:.2f}; ‖ΔW_up‖/‖W_up‖ = {rel_change:.2e}"
)
print(
    f"same top-1 token after the fine-tune: {same_ft:.1%} (final norm) of {up_side.top_ids[..., 0].numel():,} sampled neurons"
)
del tuned

same_base = None
if base_model_name:
    base = load_model(base_model_name, device=device)
    with timed("decode_base"):
        same_base, same_base_layer = compare_checkpoints(base, model, sample=SIDE_SAMPLE)
    print(f"base vs instruct: same top-1 token for {same_base:.1%} of sampled neurons")
else:
    print(
        "base vs instruct: no base checkpoint given (SmolLM2-135M base is not available offline); set base_model_name to run it"
    )
fig = go.Figure(go.Bar(x=same_ft_layer.index, y=same_ft_layer.values, name="fine-tuned copy"))
if same_base is not None:
    fig.add_trace(go.Bar(x=same_base_layer.index, y=same_base_layer.values, name="base vs instruct"))
fig.add_hline(y=0.754, line_dash="dot", annotation_text="Davies: base vs Instruct, Llama 3.1 8B (75.4%)")
fig.update_layout(
    title="Share of neurons with the same top-1 token, by layer",
    xaxis_title="layer",
    yaxis_title="share",
    yaxis_range=[0, 1.05],
    height=340,
)
fig.show()
results.metrics.update(top1_same_after_finetune=round(same_ft, 4), finetune_rel_weight_change=rel_change)
if same_base is not None:
    results.metrics["top1_same_base_vs_instruct"] = round(same_base, 4)

# %%
display(
    Markdown(
        f"A short fine-tune of the up-projections alone ({steps} SGD steps) moves them by "
        f"{rel_change:.1e} of their norm and leaves {same_ft:.1%} of the sampled labels in place. This is a sanity "
        "check of the measurement, not the paper's result: instruction tuning is millions of steps away from ours, "
        + (
            f"and the base-vs-Instruct comparison above gives {same_base:.1%}."
            if same_base is not None
            else "and the 75.4% figure for Llama is untested here (no base checkpoint: the scorecard says *not tested*)."
        )
    )
)

# %% [markdown]
# ## 6. Explore
#
# The browser below searches the decoded map by token (comma-separated; leading spaces count: `" dog, dog"`) and
# layer, and shows each hit's top tokens and the sentences (from this chapter) on which it fires most. It needs a
# live kernel to change the query; the static page shows its initial state. (In `quick` mode the map is a sample
# of each layer.)

# %%
neuron_browser(up, sample, query=" cat, cat, Cat, dog, dogs")

# %% [markdown]
# ## 7. Scorecard
#
# Each verdict is computed from the numbers above, by the rule written under each claim; the book's
# [scorecard page](../scorecard) gathers every chapter's.

# %%
# The map's speed, timed on one whole middle layer, uncached: a small sample's time is mostly fixed costs, and the
# full map above may have come from the cache.
with timed("decode_one_layer"):
    one_layer = decode_neurons(model, "up", norm=True, k=10, layers=[spec.n_layers // 2], cache=False)
map_seconds_per_neuron = one_layer.seconds / spec.d_mlp
any_top1 = {c: int((df.best_rank == 0).sum()) for c, df in found.items()}
ratio_dog, ratio_water = float(best_row["ratio to no clamp"]), float(water_best["ratio to no clamp"])
t_all = map_seconds_per_neuron * n_neurons
claims = [
    Claim(
        claim="Specialised single-concept neurons exist: some up-projection neuron's top-1 token is ' dog', and some is ' California'",
        criterion="reproduced if some neuron's top-1 token is in the dog group and some in the California group; "
        f"partly if only one of them, or another group we searched ({', '.join(c for c in found if c not in ('dog', 'California'))}), "
        "has one; not reproduced otherwise",
        paper="Llama 3.1 8B: 'dog' and 'California' neurons found by their top token",
        ours=f"dog group: {dog_top1} neurons at top-1 (best rank {dog_best}); California: {cal_top1} (best rank {cal_best}); "
        + ", ".join(f"{c}: {n}" for c, n in any_top1.items() if c not in ("dog", "California")),
        verdict=verdict(dog_top1 > 0 and cal_top1 > 0, partly=any(v > 0 for v in any_top1.values())),
    ),
    Claim(
        claim="Clamping a decoded concept neuron raises p(concept) as the next token",
        criterion="reproduced if clamping the dog candidates or the water neuron at least doubles p(concept group) "
        "after the neutral prompts; partly if it raises it by more than 10%; not reproduced otherwise",
        paper="clamping raises the concept's probability (Llama 3.1 8B)",
        ours=f"dog: at best ×{ratio_dog:.2f} ({best_row['clamped']}, {best_row['multiple of max u']}× max u); "
        f"water neuron {name(water_neuron)}: ×{ratio_water:.2f} ({water_best['multiple of max u']}× max u)",
        verdict=verdict(max(ratio_dog, ratio_water) >= 2, partly=max(ratio_dog, ratio_water) > 1.1),
    ),
    Claim(
        claim="A clamped dog neuron makes the Instruct model talk about dogs when asked its favourite animal",
        criterion="reproduced if at least half the greedy replies under a dog-candidate clamp mention dogs; partly if "
        "any does, or clamping the animal neuron L0.N350 turns the reply to cats; not reproduced otherwise",
        paper="always discusses dogs (Llama 3.1 8B Instruct)",
        ours=f"{int(dog_talk.sum())} of {len(dog_talk)} replies with a dog-candidate clamp mention dogs; clamping the animal "
        f"neuron L0.N350 {'makes it talk about cats' if animal_cats else 'does not steer it to cats'}",
        verdict=verdict(bool(dog_talk.mean() >= 0.5), partly=bool(dog_talk.any()) or animal_cats),
    ),
    Claim(
        claim="Most up-projection neurons keep their top-1 token across two checkpoints of one architecture (>75%)",
        criterion="base vs Instruct checkpoints: reproduced if more than 75% of the sampled neurons keep their top-1 "
        "token; partly if more than 50%; not reproduced otherwise; not tested without a base checkpoint (the short "
        "fine-tune is a sanity check and does not count)",
        paper="75.4% base vs Instruct, Llama 3.1 8B",
        ours=(
            f"base vs instruct {same_base:.1%}; "
            if same_base is not None
            else "base vs instruct not run (no SmolLM2 base checkpoint offline); "
        )
        + f"a {steps}-step fine-tune of the up-projections keeps {same_ft:.1%} (a sanity check, not this claim)",
        verdict=verdict(same_base > 0.75 if same_base is not None else None, partly=same_base is not None and same_base > 0.5),
    ),
    Claim(
        claim="The whole up-projection map is computed in seconds",
        criterion="reproduced if every up-projection neuron is decoded in under 10 s on this machine; partly if in "
        "under a minute; not reproduced otherwise",
        paper="all 458,752 neurons of Llama 3.1 8B in < 10 s (v2; < 15 min in v1)",
        ours=f"{t_all:.0f} s for all {n_neurons:,} neurons on this machine ({torch.get_num_threads()} torch threads, "
        f"{one_layer.dtype} path; extrapolated from one uncached layer of {spec.d_mlp:,}); see benchmarks/neurons.py",
        verdict=verdict(t_all < 10, partly=t_all < 60),
    ),
]  # fmt: skip
results.claims = claims
display(HTML(claims_html(claims, meta=f"{model_name}, {'quick' if quick else 'full'} size")))

# %% [markdown]
# ## What to try next
#
# * **Other concepts.** Add a group to `concepts` (colours, numbers, a country and its adjective) and see which are
#   represented by single neurons. Single-token, frequent concepts fare best.
# * **Write directions.** Run the search with `kind="down"`: which neurons *write* dog words, and do they fire on
#   dog sentences? Compare with the read directions (`"up"`, `"gate"`).
# * **Another site.** Clamp `mlp_act` (after the gate) instead of `mlp_up` by building the `Intervention` yourself.
# * **A larger model.** `model_name="gemma3-270m"` (18 layers, a 262k vocabulary with more whole-word tokens), or
#   a Llama 3.1 8B folder if you have the weights: the paper's "dog" neuron should appear there.
#
# Chapter 3 turns from single neurons to concept directions spread over many neurons.

# %%
results.metrics["seconds_per_1000_neurons"] = round(1000 * map_seconds_per_neuron, 3)
path = results.write()
print(f"wrote {path}")
print(pd.Series(results.metrics).to_string())
