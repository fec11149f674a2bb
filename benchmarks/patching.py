"""Residual-stream activation patching, every layer × every position: locedit against its peers.

Run: ``python benchmarks/patching.py`` (``make bench``). Peers come from an optional extra, never needed by the book
or the tests: ``pip install nnsight==0.8.1 transformer-lens==4.3.0`` (a peer that is missing or fails offline is
recorded with its reason instead of a time).

One process, ``torch.set_num_threads(2)``, the model loaded once and handed to every peer. For each prompt length
(≈10, 20, 40 tokens: the clean prompt "The Eiffel Tower is located in the city of" and a corrupted prompt of the
same length, lengthened by one shared prefix) and dtype, every method first runs once (warm-up) and its grid
(p(" Paris") at the last position for each patched (layer, position)) is compared with ours; then the methods are
timed round-robin, ``--repeats`` times each, and the median is kept. Writes ``benchmarks/results.json`` and
prints a table.

Two conditions (``--conditions``): ``quiet`` (whatever else the machine runs; its load average is recorded) and
``busy``: one other process spinning on a core (``python -c "while True: pass"``, started by this script for the
row and killed on every exit, Ctrl-C included; it also ends by itself if this script dies), at the ``--busy-tokens``
lengths, with every batched peer under the same condition. The peers run with the process's thread count; ours
chooses its own (:mod:`locedit.threads`: the CPUs idle now), and ``ours_incremental_all_threads`` is ours forced to
the process's thread count, so the policy's effect is visible in the same row.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
from bench_common import header, load_average

import locedit
from locedit.patching import activation_patching_grid, as_dtype
from locedit.threads import loop_threads

CLEAN = "The Eiffel Tower is located in the city of"
CORRUPT = "The Colosseum is located in the city of"
PREFIX = (
    " Travel notes, day three: we took the early train, walked along the river, ate lunch in a small square and"
    " wrote down a few facts about the famous places we saw that week, one per line, for the children to learn."
)
TOLERANCE = {"float32": 1e-4, "bfloat16": 0.1}  # grids must agree to this before a time counts


# --- prompts -----------------------------------------------------------------------------------------------------


def prompts(model: locedit.Model, tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Clean and corrupted input ids [1, tokens]: the two prompts behind one shared prefix (after any BOS)."""
    tok = model.tokenizer
    clean = tok(CLEAN)["input_ids"]
    corrupt = tok(CORRUPT)["input_ids"]
    assert len(clean) == len(corrupt), "clean and corrupted prompts must have the same length"
    n_special = len(tok("")["input_ids"])  # BOS, if the tokenizer adds one
    need = tokens - len(clean)
    prefix = tok(PREFIX.strip(), add_special_tokens=False)["input_ids"][: max(need, 0)]
    clean = clean[:n_special] + prefix + clean[n_special:]
    corrupt = corrupt[:n_special] + prefix + corrupt[n_special:]
    return torch.tensor([clean]), torch.tensor([corrupt])


# --- the methods: each returns the grid [n_layers, seq] ------------------------------------------------------------


#: the torch thread counts each of our methods ran with (its metric looks), per method name
OURS_THREADS: dict[str, set[int]] = {}


def ours(variant: str):
    name = f"ours_{variant}"

    def run(model, clean, corrupt, target):
        def metric(logits):
            OURS_THREADS.setdefault(name, set()).add(torch.get_num_threads())
            return logits[:, -1].softmax(-1)[:, target]

        kwargs = {"method": "full", "batch_size": 1 << 30} if variant == "full" else {}
        if variant == "incremental_noskip":
            kwargs["skip_noops"] = False
        # the policy's choice, or (all_threads) the process's thread count, as before the policy
        with loop_threads(torch.get_num_threads()) if variant == "incremental_all_threads" else nullcontext():
            return activation_patching_grid(
                model, {"input_ids": clean}, {"input_ids": corrupt}, metric, site="resid_post", **kwargs
            )

    return run


def plain_batched_hooks(model, clean, corrupt, target):
    """The obvious batched version: one row per patch, forward hooks on the decoder layers, full logits."""
    hf, spec = model.hf, model.spec
    n, seq = spec.n_layers, clean.shape[1]
    blocks = spec.blocks(hf)
    with torch.no_grad():
        states = {}
        handles = [b.register_forward_hook(lambda m, a, o, i=i: states.__setitem__(i, o)) for i, b in enumerate(blocks)]
        try:
            hf(input_ids=clean)
        finally:
            for h in handles:
                h.remove()

        def patcher(layer):
            def hook(_m, _a, out):
                out = out.clone()
                for p in range(seq):
                    out[layer * seq + p, p] = states[layer][0, p]
                return out

            return hook

        handles = [b.register_forward_hook(patcher(i)) for i, b in enumerate(blocks)]
        try:
            logits = hf(input_ids=corrupt.expand(n * seq, -1)).logits
        finally:
            for h in handles:
                h.remove()
    return logits[:, -1].softmax(-1)[:, target].view(n, seq)


def nnsight_batched(model, clean, corrupt, target):
    from nnsight import LanguageModel

    lm = _nnsight_model(model)
    n, seq = model.spec.n_layers, clean.shape[1]
    layers = lm.model.layers
    with torch.no_grad():
        with lm.trace(clean):
            states = torch.stack([layers[i].output[0] for i in range(n)]).save()  # [n, seq, d]
        outs = []
        with lm.trace() as tracer:
            for i in range(n):
                for p in range(seq):
                    with tracer.invoke(corrupt):
                        layers[i].output[:, p] = states[i, p]
                        outs.append(lm.lm_head.output[:, -1].save())
    assert isinstance(lm, LanguageModel)
    return torch.cat(outs).softmax(-1)[:, target].view(n, seq)


def nnsight_per_patch(model, clean, corrupt, target):
    lm = _nnsight_model(model)
    n, seq = model.spec.n_layers, clean.shape[1]
    layers = lm.model.layers
    out = torch.empty(n, seq)
    with torch.no_grad():
        with lm.trace(clean):
            states = torch.stack([layers[i].output[0] for i in range(n)]).save()  # [n, seq, d]
        for i in range(n):
            for p in range(seq):
                with lm.trace(corrupt):
                    layers[i].output[:, p] = states[i, p]
                    logits = lm.lm_head.output[:, -1].save()
                out[i, p] = logits.softmax(-1)[0, target]
    return out


_NNSIGHT: dict[int, object] = {}


def _nnsight_model(model):
    from nnsight import LanguageModel

    key = id(model.hf)
    if key not in _NNSIGHT:
        _NNSIGHT[key] = LanguageModel(model.hf, tokenizer=model.tokenizer)
    return _NNSIGHT[key]


_BRIDGES: dict[int, object] = {}


def transformer_lens(model, clean, corrupt, target):
    from transformer_lens import patching

    bridge = _bridge(model)
    metric = lambda logits: logits[0, -1].softmax(-1)[target]  # noqa: E731
    with torch.no_grad():
        _, cache = bridge.run_with_cache(clean)
        grid = patching.generic_activation_patch(
            bridge,
            corrupt,
            cache,
            metric,
            patching.layer_pos_patch_setter,
            "resid_post",
            index_axis_names=("layer", "pos"),
        )
    return grid


def _bridge(model):
    from transformer_lens.model_bridge import TransformerBridge

    key = id(model.hf)
    if key not in _BRIDGES:
        # The bridge rewires the modules it is given (the shared model would stop filling a key/value cache),
        # so it gets its own copy of the same weights.
        hf = copy.deepcopy(model.hf)
        _BRIDGES[key] = TransformerBridge.boot_transformers(
            hf.config._name_or_path or model.name,
            hf_model=hf,
            tokenizer=model.tokenizer,
            device="cpu",
            dtype=model.dtype,
        )
    return _BRIDGES[key]


# "fast": one batched forward (or our engine); "slow": one forward per patch
METHODS: dict[str, tuple[str, Callable]] = {
    "ours_incremental": ("fast", ours("incremental")),
    "ours_incremental_noskip": ("fast", ours("incremental_noskip")),
    "ours_incremental_all_threads": ("fast", ours("incremental_all_threads")),
    "ours_full_batched": ("fast", ours("full")),
    "plain_batched_hooks": ("fast", plain_batched_hooks),
    "nnsight_batched": ("fast", nnsight_batched),
    "nnsight_per_patch": ("slow", nnsight_per_patch),
    "transformer_lens": ("slow", transformer_lens),
}
OURS = "ours_incremental"
CONDITIONS = {"quiet": "quiet", "busy": "one busy process"}


@contextmanager
def busy_process() -> Iterator[subprocess.Popen]:
    """One other process spinning on one core for the block: killed on every exit of the block (an exception or
    Ctrl-C included), and ending by itself when this process dies (it checks its parent every ~10 ms)."""
    spin = "import os\np = os.getppid()\nwhile os.getppid() == p:\n    for _ in range(200_000): pass"
    proc = subprocess.Popen([sys.executable, "-c", spin])
    try:
        time.sleep(0.5)  # let it start spinning
        yield proc
    finally:
        proc.kill()
        proc.wait()


# --- the run -----------------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--tokens", type=int, nargs="+", default=[10, 20, 40])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--conditions", nargs="+", default=list(CONDITIONS), choices=list(CONDITIONS))
    parser.add_argument(
        "--busy-tokens", type=int, nargs="+", default=[10], help="the prompt lengths the busy condition runs at"
    )
    parser.add_argument(
        "--slow-max-tokens",
        type=int,
        default=10,
        help="run the one-forward-per-patch peers only up to this prompt length",
    )
    parser.add_argument("--out", default=str(Path(__file__).with_name("results.json")))
    parser.add_argument(
        "--profile",
        type=int,
        default=10,
        help="profile ours once at this prompt length in float32 (0: no profile) and record where the time goes",
    )
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the rows of --out that this run does not measure (same tokens and dtype are replaced)",
    )
    parser.add_argument("--markdown", action="store_true", help="print --out as the README's table and exit")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown_table(json.loads(Path(args.out).read_text())))
        return 0

    torch.set_num_threads(2)
    model = locedit.load_model(args.model, device="cpu")
    target = model.token_id(" Paris")
    rows: list[dict] = []
    results = {**header(args.model), "rows": rows}
    kept = _kept(Path(args.out), args) if args.merge else {"rows": []}
    for dtype_name in args.dtypes:
        run_model = as_dtype(model, getattr(torch, dtype_name))
        for tokens in args.tokens:
            for condition in args.conditions:
                if condition == "busy" and tokens not in args.busy_tokens:
                    continue
                with busy_process() if condition == "busy" else nullcontext():
                    row = measure_row(run_model, model, tokens, dtype_name, condition, target, args)
                row["machine"] = results["machine"]
                rows.append(row)
                print_row(row)
                _write(args.out, results, kept)
    if args.profile:
        clean, corrupt = prompts(model, args.profile)
        results["profile"] = profile(model, clean, corrupt, target)
    results["load_average_at_end"] = load_average()
    _write(args.out, results, kept)
    print_table(json.loads(Path(args.out).read_text()))
    return 0


def measure_row(run_model, model, tokens: int, dtype_name: str, condition: str, target: int, args) -> dict:
    """One row of the table: every method's grid checked against ours, then timed round-robin (medians)."""
    clean, corrupt = prompts(model, tokens)
    row = {
        "task": "resid_post patching, every layer × position",
        "condition": CONDITIONS[condition],
        "tokens": clean.shape[1],
        "requested_tokens": tokens,
        "dtype": dtype_name,
        "patches": model.spec.n_layers * clean.shape[1],
        "load_average_at_start": load_average(),
        "torch_threads": torch.get_num_threads(),
    }
    grids, skipped = {}, {}
    for name in args.methods:
        kind, fn = METHODS[name]
        if kind == "slow" and (tokens > args.slow_max_tokens or condition == "busy"):
            why = "the busy condition runs the batched methods only" if condition == "busy" else (
                f"one forward per patch, only up to {args.slow_max_tokens} tokens")  # fmt: skip
            skipped[name] = f"not run: {why}"
            continue
        try:
            grids[name] = fn(run_model, clean, corrupt, target).float().cpu()  # warm-up + check
        except Exception as err:  # noqa: BLE001 - a peer that fails is recorded, not fatal
            skipped[name] = f"failed: {type(err).__name__}: {str(err).splitlines()[0][:300]}"
            traceback.print_exc(file=sys.stderr)
    reference = grids.get(OURS)
    diffs = {}
    for name, grid in grids.items():
        diff = float((grid - reference).abs().max()) if reference is not None else float("nan")
        diffs[name] = diff
        if not diff <= TOLERANCE[dtype_name]:
            skipped[name] = f"disagrees with ours by {diff:.3g} (> {TOLERANCE[dtype_name]})"
    timed = [n for n in grids if n not in skipped]
    times: dict[str, list[float]] = {n: [] for n in timed}
    OURS_THREADS.clear()
    for _ in range(args.repeats):
        for name in timed:
            started = time.perf_counter()
            METHODS[name][1](run_model, clean, corrupt, target)
            times[name].append(time.perf_counter() - started)
    medians = {n: statistics.median(t) for n, t in times.items()}
    row["ours_s"] = medians.get(OURS)
    row["peers_s"] = {n: medians.get(n, skipped.get(n)) for n in args.methods if n != OURS}
    for name, value in row["peers_s"].items():
        if isinstance(value, float) and row["ours_s"] is not None:
            row[f"ratio_vs_{name}"] = row["ours_s"] / value
    row["max_abs_diff"] = {n: d for n, d in diffs.items() if n != OURS}
    row["all_times_s"] = times
    row["ours_threads"] = {n: sorted(t) for n, t in OURS_THREADS.items()}  # what the thread policy chose
    return row


def profile(model, clean, corrupt, target, top: int = 12) -> dict:
    """Where ours spends its time: the operators with the most self CPU time (torch.profiler), as shares."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    METHODS[OURS][1](model, clean, corrupt, target)  # warm-up
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        started = time.perf_counter()
        METHODS[OURS][1](model, clean, corrupt, target)
        seconds = time.perf_counter() - started
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    ranked = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    return {
        "method": OURS,
        "tokens": clean.shape[1],
        "seconds_profiled": seconds,
        "self_cpu_share": {e.key: round(e.self_cpu_time_total / total, 4) for e in ranked},
        "calls": {e.key: e.count for e in ranked},
    }


def _kept(path: Path, args) -> dict:
    """What an earlier results file holds that this run does not measure again: its other rows and profile."""
    if not path.exists():
        return {"rows": []}
    measured = {(t, d, CONDITIONS[c]) for t in args.tokens for d in args.dtypes for c in args.conditions}
    old = json.loads(path.read_text())
    rows = [r for r in old.get("rows", []) if _key(r) not in measured]
    return {**({"profile": old["profile"]} if "profile" in old and args.profile == 0 else {}), "rows": rows}


def _key(row: dict) -> tuple[int, str, str]:
    """(requested tokens, dtype, condition) of a row; rows written before the conditions were quiet."""
    return row.get("requested_tokens", row["tokens"]), row["dtype"], row.get("condition", CONDITIONS["quiet"])


def _write(out: str, results: dict, kept: dict) -> None:
    """Write the results, with the kept rows, sorted by dtype, prompt length and condition (quiet first)."""
    rows = sorted(
        kept["rows"] + results["rows"],
        key=lambda r: (r["dtype"] != "float32", r["dtype"], r["tokens"], _key(r)[2] != CONDITIONS["quiet"]),
    )
    Path(out).write_text(json.dumps({**kept, **results, "rows": rows}, indent=1))


def markdown_table(results: dict) -> str:
    """The results as a Markdown table: seconds per method, and ours ÷ each peer in parentheses."""
    order = ["ours_incremental_all_threads", "ours_incremental_noskip", "ours_full_batched", "plain_batched_hooks",
             "nnsight_batched", "nnsight_per_patch", "transformer_lens"]  # fmt: skip
    names = [n for n in order if any(isinstance(r["peers_s"].get(n), float) for r in results["rows"])]
    lines = [
        "| dtype | tokens | condition | patches | **ours** | " + " | ".join(names) + " | max abs diff |",
        "|---|---|---|---|---|" + "---|" * len(names) + "---|",
    ]
    for r in results["rows"]:
        cells = []
        for n in names:
            v = r["peers_s"].get(n)
            cells.append(f"{v:.2f} ({r['ours_s'] / v:.2f}×)" if isinstance(v, float) else "—")
        diff = max((d for d in r["max_abs_diff"].values() if d == d), default=float("nan"))
        lines.append(
            f"| {r['dtype']} | {r['tokens']} | {_key(r)[2]} | {r['patches']} | **{r['ours_s']:.2f}** | "
            + " | ".join(cells)
            + f" | {diff:.1g} |"
        )
    return "\n".join(lines)


def print_row(row: dict) -> None:
    print(
        f"# {row['dtype']} {row['tokens']} tokens, {row['condition']}: ours {row['ours_s']} "
        f"(threads {row['ours_threads'].get(OURS)})",
        file=sys.stderr,
        flush=True,
    )


def print_table(results: dict) -> None:
    print(f"machine: {results['machine']}; torch {results['torch']}; model {results['model']}")
    names = sorted({n for r in results["rows"] for n in r["peers_s"]})
    header = f"{'dtype':9} {'tokens':>6} {'condition':>16} {'ours (s)':>9} " + " ".join(f"{n[:22]:>22}" for n in names)
    print(header)
    for r in results["rows"]:
        cells = []
        for n in names:
            v = r["peers_s"].get(n)
            cells.append(f"{v:9.3f} ({r['ours_s'] / v:5.2f}×)" if isinstance(v, float) else f"{'—':>18}")
        ours_s = f"{r['ours_s']:9.3f}" if r["ours_s"] is not None else f"{'—':>9}"
        print(f"{r['dtype']:9} {r['tokens']:>6} {_key(r)[2]:>16} {ours_s} " + " ".join(f"{c:>22}" for c in cells))
    print("(×: ours / peer; below 1 means ours is faster)")


if __name__ == "__main__":
    raise SystemExit(main())
