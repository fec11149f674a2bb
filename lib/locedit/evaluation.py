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
from contextlib import nullcontext

import pandas as pd
import torch

from locedit._checks import integer, string
from locedit.editing.edit import Edit, applied_per_row
from locedit.models import Model
from locedit.progress import progress
from locedit.tokens import pad_id, pad_rows, target_ids

_WORD = re.compile(r"\w+(?:[-']\w+)*|[^\w\s]")
_TFIDF_TOKEN = re.compile(r"(?u)\b\w\w+\b")


# --- probabilities of target strings --------------------------------------------------------------------------------


@torch.no_grad()
def target_nll(model: Model, prompts: Sequence[str], targets: Sequence[str], batch_size: int = 32) -> torch.Tensor:
    """Mean per-token NLL of ``" " + target`` after each prompt (teacher forcing): a float64 tensor [n].

    Prompt and target are tokenised separately and joined as token ids, so the target's tokens are exactly those
    of ``" " + target``. Each distinct prompt runs once (``batch_size`` prompts at a time, left-padded into a
    key/value cache): its last position scores the first token of every target asked after it, and only the
    targets' further tokens run on top of the cache. Equal, to float rounding, to one teacher-forced pass per
    (prompt, target), at about half the cost when every prompt is scored against two objects (CounterFact's
    P[o*] and P[o^c]).
    """
    if len(prompts) != len(targets):
        raise ValueError(f"{len(prompts)} prompts but {len(targets)} targets")
    tok = model.tokenizer
    for prompt, target in zip(prompts, targets, strict=True):
        if not target or not target.strip():
            raise ValueError(f"empty target for prompt {prompt!r}")
    t_ids = [target_ids(model, t) for t in targets]
    unique = list(dict.fromkeys(prompts))
    where = {p: i for i, p in enumerate(unique)}
    pairs_of: list[list[int]] = [[] for _ in unique]
    for j, prompt in enumerate(prompts):
        pairs_of[where[prompt]].append(j)
    out = torch.empty(len(prompts), dtype=torch.float64)
    starts = range(0, len(unique), batch_size)
    for start in progress(starts, "target probabilities", total=len(starts), unit="batch"):
        batch = unique[start : start + batch_size]
        pairs = [j for b in range(len(batch)) for j in pairs_of[start + b]]
        owner = [b for b in range(len(batch)) for _ in pairs_of[start + b]]
        prefix = _left_padded(model, [tok(p)["input_ids"] for p in batch])
        run = model.hf(**prefix, use_cache=True, logits_to_keep=1)
        first = run.logits[:, -1].double().log_softmax(-1).cpu()  # [prompts, vocab]: each target's first token
        nll = -first[owner, [t_ids[j][0] for j in pairs]]  # [pairs], float64
        later = [(k, j) for k, j in enumerate(pairs) if len(t_ids[j]) > 1]
        if later:
            nll += _later_tokens_nll(model, run.cache, prefix, [owner[k] for k, _ in later],
                                     [t_ids[j] for _, j in later], len(pairs), [k for k, _ in later])  # fmt: skip
        out[pairs] = nll / torch.tensor([len(t_ids[j]) for j in pairs], dtype=torch.float64)
    return out


def _left_padded(model: Model, rows: list[list[int]]) -> dict[str, torch.Tensor]:
    """Left-padded ``input_ids``, ``attention_mask`` and ``position_ids`` [batch, width] of token-id rows."""
    batch = pad_rows(rows, pad_id(model), "left", model.device)
    return {**batch, "position_ids": (batch["attention_mask"].cumsum(1) - 1).clamp(min=0)}


def _later_tokens_nll(
    model: Model, cache, prefix: dict[str, torch.Tensor], rows: list[int], targets: list[list[int]], n: int,
    slots: list[int],
) -> torch.Tensor:  # fmt: skip
    """Summed NLL of ``targets[i][1:]`` after prompt row ``rows[i]`` of the cached ``prefix`` run (its first token
    fed as well): a tensor [n] holding each sum at ``slots[i]``, zero elsewhere."""
    device = model.device
    index = torch.tensor(rows, device=device)
    cache.reorder_cache(index)  # one cache row per target (rows repeat when a prompt has several targets)
    later = pad_rows([t[:-1] for t in targets], pad_id(model), "right", device)
    width = later["input_ids"].shape[1]
    prompt_len = prefix["attention_mask"].sum(1).index_select(0, index).cpu()
    logits = model.hf(
        input_ids=later["input_ids"],
        attention_mask=torch.cat([prefix["attention_mask"].index_select(0, index), later["attention_mask"]], 1),
        position_ids=(prompt_len[:, None] + torch.arange(width)[None]).to(device),
        cache=cache,
        use_cache=True,
    ).logits
    logp = logits.double().log_softmax(-1).cpu()
    out = torch.zeros(n, dtype=torch.float64)
    for i, t in enumerate(targets):
        out[slots[i]] = -logp[i, torch.arange(len(t) - 1), torch.tensor(t[1:])].sum()
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
    model: Model,
    prompts: Sequence[str],
    max_length: int = 100,
    top_k: int = 5,
    seed: int = 0,
    batch_size: int = 32,
    edits: Sequence[Edit | None] | None = None,
) -> list[str]:
    """Sample one continuation per prompt (top-k, ``max_length`` tokens in all, prompt included), decoded whole.

    ``edits``: one :class:`~locedit.editing.Edit` (or ``None``) per prompt, each used for its own prompt only
    (:func:`~locedit.editing.applied_per_row`), so that prompts needing different edits still share one batch.
    """
    if edits is not None and len(edits) != len(prompts):
        raise ValueError(f"{len(edits)} edits for {len(prompts)} prompts: give one edit (or None) per prompt")
    texts = []
    starts = range(0, len(prompts), batch_size)
    for start in progress(starts, "generating", total=len(starts), unit="batch"):
        torch.manual_seed(seed + start)
        inputs = model.encode(list(prompts[start : start + batch_size]))
        rows = applied_per_row(model, edits[start : start + batch_size]) if edits is not None else nullcontext()
        with rows:
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
    case = record.get("case_id")
    if rw.get("target_new") is None:
        raise ValueError(f"record {case} has no target_new (a known_1000 record?)")
    for key, example in (("prompt", "The capital of {} is"), ("subject", "France")):
        string(rw.get(key), f"record {case}'s requested_rewrite {key}", example)
    true, new = rw["target_true"]["str"], rw["target_new"]["str"]
    string(true, f"record {case}'s target_true['str']", "Paris")
    string(new, f"record {case}'s target_new['str']", "Rome")
    for key in ("paraphrase_prompts", "neighborhood_prompts", "generation_prompts"):
        if not all(isinstance(p, str) for p in record.get(key, [])):
            raise TypeError(f"record {case}'s {key} must be strings (prompts with the subject written out)")
    return rw["prompt"].format(rw["subject"]), true, new


def _check_records(records, edits) -> None:
    if isinstance(records, (dict, str)) or not isinstance(records, Sequence):
        raise TypeError(
            f"records must be a list of CounterFact records, got {type(records).__name__}; for one record pass [record]"
        )
    for i, record in enumerate(records):
        if not isinstance(record, dict) or not isinstance(record.get("requested_rewrite"), dict):
            raise TypeError(
                f"records[{i}] must be a CounterFact record (a dict with 'requested_rewrite'), got "
                f"{type(record).__name__}: load them with locedit.data.load_facts()"
            )
    if edits is not None and (isinstance(edits, Edit) or not isinstance(edits, Sequence)):
        raise TypeError("edits must be a list with one Edit (or None) per record")


def evaluate(
    model: Model,
    records: Sequence[dict],
    generation: bool = False,
    references: dict[tuple[str, str], str] | None = None,
    batch_size: int = 32,
    seed: int = 0,
    edits: Sequence[Edit | None] | None = None,
) -> pd.DataFrame:
    """CounterFact metrics of ``model`` on ``records``: one row per record, values ×100.

    Columns: ``case_id``, ``ES``, ``EM``, ``PS``, ``PM``, ``NS``, ``NM``, plus ``GE`` and ``RS`` when
    ``generation`` is true (slower: one sampled 100-token text per generation prompt). The means and the score S
    are in ``df.attrs["summary"]`` (a dict; see :func:`summarize`). All prompts of all records go through the model in
    batches together.

    ``edits``: one edit (or ``None``) per record, for editors that make one edit per record (ROME's and FT-L's
    evaluation in the paper). Each record's probabilities are read with its own edit applied (one record at a
    time, exact weights); its generations are sampled together with every other record's, each batch row with its
    own edit added by a hook (:func:`~locedit.editing.applied_per_row`; the same model to float rounding), which is
    about 10× faster than a ``generate`` call per record on a CPU.
    """
    _check_records(records, edits)
    if not records:
        raise ValueError("no records to evaluate: pass a non-empty list (e.g. locedit.data.load_facts())")
    batch_size = integer(batch_size, "batch_size", 1, "prompts per forward pass, e.g. 32")
    seed = integer(seed, "seed", fix="e.g. seed=0")
    if edits is not None:
        if len(edits) != len(records):
            raise ValueError(f"{len(edits)} edits for {len(records)} records: give one edit (or None) per record")
        frames = []
        for record, e in progress(zip(records, edits, strict=True), "evaluating edits", len(records), "record"):
            with e.applied(model) if e is not None else nullcontext():
                frames.append(evaluate(model, [record], batch_size=batch_size))
        df = pd.concat(frames, ignore_index=True)
        if generation:
            df = df.join(_generation_metrics(model, records, references, seed, batch_size, edits))
        df.attrs["summary"] = summarize(df).to_dict()
        return df
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


def _generation_metrics(model: Model, records, references, seed, batch_size, edits=None) -> pd.DataFrame:
    if references is None:
        from locedit.data import reference_texts

        references = reference_texts()
    vectoriser = TfIdf(list(references.values()))
    prompts, owner = [], []
    for i, record in enumerate(records):
        for p in record.get("generation_prompts", []):
            prompts.append(p)
            owner.append(i)
    row_edits = [edits[i] for i in owner] if edits is not None else None
    texts = generate(model, prompts, seed=seed, batch_size=batch_size, edits=row_edits)
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
