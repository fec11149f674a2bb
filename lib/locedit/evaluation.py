"""CounterFact metrics (Meng et al. 2022, §3.2–3.3), on records in CounterFact's JSON format.

- P(x): the probability of a target string after a prompt, exp(−mean per-token NLL) of ``" " + target``,
  teacher-forced (ROME's ``eval_utils_counterfact.py``).
- ES / EM (efficacy), on the rewrite prompt: P[o*] > P[o^c], and the mean of P[o*] − P[o^c].
- PS / PM (generalisation), the same over the paraphrase prompts (averaged within a record first).
- NS / NM (specificity), over the neighbourhood prompts, where success is P[o^c] > P[o*].
- S, the harmonic mean of ES, PS and NS.
- GE (fluency): weighted bi- and tri-gram entropy of generated text (weights 2/3 and 4/3, arithmetic mean).
- RS (consistency): TF-IDF cosine between the generated text and the reference text about (relation, o*).

Every value is ×100, as in the paper's tables. Differences from the paper's code: words are split with a regular
expression (nltk's punkt data is not available offline), and the reference text is the book's
(:func:`locedit.data.reference_texts`), not Wikipedia.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import pandas as pd
import torch

from locedit.models import Model

_WORD = re.compile(r"\w+(?:[-']\w+)*|[^\w\s]")
_TFIDF_TOKEN = re.compile(r"(?u)\b\w\w+\b")


# --- probabilities of target strings --------------------------------------------------------------------------------


@torch.no_grad()
def target_nll(model: Model, prompts: Sequence[str], targets: Sequence[str], batch_size: int = 32) -> torch.Tensor:
    """Mean per-token NLL of ``" " + target`` after each prompt (teacher forcing): a float64 tensor [n].

    Prompt and target are tokenised separately and joined as token ids, so the target's tokens are exactly those
    of ``" " + target``; rows are right-padded and run in batches.
    """
    if len(prompts) != len(targets):
        raise ValueError(f"{len(prompts)} prompts but {len(targets)} targets")
    tok = model.tokenizer
    out = torch.empty(len(prompts), dtype=torch.float64)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    for start in range(0, len(prompts), batch_size):
        rows = []
        for prompt, target in zip(
            prompts[start : start + batch_size], targets[start : start + batch_size], strict=True
        ):
            if not target or not target.strip():
                raise ValueError(f"empty target for prompt {prompt!r}")
            p_ids = tok(prompt)["input_ids"]
            t_ids = tok(" " + target.strip(), add_special_tokens=False)["input_ids"]
            rows.append((p_ids, t_ids))
        width = max(len(p) + len(t) for p, t in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, (p, t) in enumerate(rows):
            ids[i, : len(p) + len(t)] = torch.tensor(p + t)
            mask[i, : len(p) + len(t)] = 1
        logits = model.hf(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits
        for i, (p, t) in enumerate(rows):
            positions = torch.arange(len(p) - 1, len(p) + len(t) - 1, device=logits.device)
            logprobs = logits[i, positions].double().log_softmax(-1).cpu()
            out[start + i] = -logprobs[torch.arange(len(t)), torch.tensor(t)].mean()
    return out


def target_prob(model: Model, prompts: Sequence[str], targets: Sequence[str], batch_size: int = 32) -> torch.Tensor:
    """P(target | prompt) = exp(−mean per-token NLL of ``" " + target``): float64 tensor [n]."""
    return torch.exp(-target_nll(model, prompts, targets, batch_size))


# --- fluency and consistency ----------------------------------------------------------------------------------------


def words(text: str) -> list[str]:
    """Split text into words and punctuation (a stand-in for nltk's ``word_tokenize``)."""
    return _WORD.findall(text)


def ngram_entropy(text: str, ns: Sequence[int] = (2, 3), weights: Sequence[float] = (2 / 3, 4 / 3)) -> float:
    """ROME's n-gram entropy of one text: the arithmetic mean over n of weight_n · (−Σ f log₂ f) of its n-grams."""
    tokens = words(text)
    values = []
    for n, weight in zip(ns, weights, strict=True):
        grams = Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
        total = sum(grams.values())
        entropy = -sum(c / total * math.log2(c / total) for c in grams.values()) if total else 0.0
        values.append(weight * entropy)
    return sum(values) / len(values)


class TfIdf:
    """A TF-IDF vectoriser fitted on a list of documents (scikit-learn's defaults: smooth idf, l2 norm)."""

    def __init__(self, documents: Sequence[str]):
        df: Counter[str] = Counter()
        for doc in documents:
            df.update(set(_TFIDF_TOKEN.findall(doc.lower())))
        n = len(documents)
        self.idf = {w: math.log((1 + n) / (1 + c)) + 1 for w, c in df.items()}

    def vector(self, text: str) -> dict[str, float]:
        counts = Counter(w for w in _TFIDF_TOKEN.findall(text.lower()) if w in self.idf)
        vec = {w: c * self.idf[w] for w, c in counts.items()}
        norm = math.sqrt(sum(v * v for v in vec.values())) or 1.0
        return {w: v / norm for w, v in vec.items()}

    def similarity(self, a: str, b: str) -> float:
        va, vb = self.vector(a), self.vector(b)
        return sum(v * vb.get(w, 0.0) for w, v in va.items())


@torch.no_grad()
def generate(
    model: Model, prompts: Sequence[str], max_length: int = 100, top_k: int = 5, seed: int = 0, batch_size: int = 32
) -> list[str]:
    """Sample one continuation per prompt (top-k, ``max_length`` tokens in all, prompt included), decoded whole."""
    texts = []
    for start in range(0, len(prompts), batch_size):
        torch.manual_seed(seed + start)
        inputs = model.encode(list(prompts[start : start + batch_size]))
        out = model.hf.generate(
            **inputs,
            do_sample=True,
            top_k=top_k,
            max_length=max_length,
            pad_token_id=model.tokenizer.pad_token_id,
        )
        texts += model.tokenizer.batch_decode(out, skip_special_tokens=True)
    return texts


# --- the CounterFact table ------------------------------------------------------------------------------------------


def _rewrite(record: dict) -> tuple[str, str, str]:
    rw = record["requested_rewrite"]
    if rw.get("target_new") is None:
        raise ValueError(f"record {record.get('case_id')} has no target_new (a known_1000 record?)")
    return rw["prompt"].format(rw["subject"]), rw["target_true"]["str"], rw["target_new"]["str"]


def evaluate(
    model: Model,
    records: Sequence[dict],
    generation: bool = False,
    references: dict[tuple[str, str], str] | None = None,
    batch_size: int = 32,
    seed: int = 0,
) -> pd.DataFrame:
    """CounterFact metrics of ``model`` on ``records``: one row per record, values ×100.

    Columns: ``case_id``, ``ES``, ``EM``, ``PS``, ``PM``, ``NS``, ``NM``, plus ``GE`` and ``RS`` when
    ``generation`` is true (slower: one sampled 100-token text per generation prompt). The means and the score S
    are in ``df.attrs["summary"]`` (a dict; see :func:`summarize`). All prompts of all records go through the model in
    batches together.
    """
    if not records:
        raise ValueError("no records to evaluate: pass a non-empty list (e.g. locedit.data.load_facts())")
    prompts, trues, news, owner, kind = [], [], [], [], []
    for i, record in enumerate(records):
        prompt, true, new = _rewrite(record)
        groups = (
            ("rewrite", [prompt]),
            ("paraphrase", record.get("paraphrase_prompts", [])),
            ("neighborhood", record.get("neighborhood_prompts", [])),
        )
        for name, group in groups:
            for p in group:
                prompts.append(p)
                trues.append(true)
                news.append(new)
                owner.append(i)
                kind.append(name)
    p_true = target_prob(model, prompts + prompts, trues + news, batch_size)
    p_true, p_new = p_true[: len(prompts)], p_true[len(prompts) :]
    long = pd.DataFrame({"record": owner, "kind": kind, "p_true": p_true.numpy(), "p_new": p_new.numpy()})
    long["new_wins"] = (long.p_new > long.p_true).astype(float)
    long["diff"] = long.p_new - long.p_true
    grouped = long.groupby(["record", "kind"])[["new_wins", "diff"]].mean().unstack("kind")
    df = pd.DataFrame({"case_id": [r.get("case_id") for r in records]})
    cols = {
        ("ES", "EM", "rewrite", 1),
        ("PS", "PM", "paraphrase", 1),
        ("NS", "NM", "neighborhood", -1),
    }
    for success, magnitude, name, sign in sorted(cols):
        if ("new_wins", name) in grouped:
            wins = grouped["new_wins", name].reindex(range(len(records)))
            diff = grouped["diff", name].reindex(range(len(records)))
            df[success] = 100 * (wins if sign > 0 else 1 - wins)
            df[magnitude] = 100 * sign * diff
    df = df[["case_id"] + [c for c in ("ES", "EM", "PS", "PM", "NS", "NM") if c in df]]
    if generation:
        df = df.join(_generation_metrics(model, records, references, seed, batch_size))
    df.attrs["summary"] = summarize(df).to_dict()  # a dict, so frames still concatenate
    return df


def _generation_metrics(model, records, references, seed, batch_size) -> pd.DataFrame:
    if references is None:
        from locedit.data import reference_texts

        references = reference_texts()
    vectoriser = TfIdf(list(references.values()))
    prompts, owner = [], []
    for i, record in enumerate(records):
        for p in record.get("generation_prompts", []):
            prompts.append(p)
            owner.append(i)
    texts = generate(model, prompts, seed=seed, batch_size=batch_size)
    ge, rs = [], []
    for i, record in enumerate(records):
        mine = [t for t, o in zip(texts, owner, strict=True) if o == i]
        rw = record["requested_rewrite"]
        reference = references.get((rw["relation_id"], rw["target_new"]["str"]), "")
        ge.append(100 * sum(ngram_entropy(t) for t in mine) / len(mine) if mine else float("nan"))
        rs.append(100 * vectoriser.similarity(" ".join(mine), reference) if mine and reference else float("nan"))
    return pd.DataFrame({"GE": ge, "RS": rs})


def summarize(df: pd.DataFrame) -> pd.Series:
    """Means of the per-record metrics, plus S = harmonic mean of ES, PS and NS (all ×100)."""
    means = df.drop(columns=["case_id"], errors="ignore").mean(numeric_only=True)
    parts = [means.get(k) for k in ("ES", "PS", "NS")]
    if all(p is not None and not math.isnan(p) for p in parts):
        s = 0.0 if min(parts) <= 0 else len(parts) / sum(1 / p for p in parts)
        means = pd.concat([pd.Series({"S": s}), means])
    return means
