"""Benchmark: one full causal trace, one ROME edit, one MEMIT batch (issue #3's speed targets).

- Causal trace: hidden + MLP + attention restorations, every layer × every token, ``--samples`` noise draws (the
  paper: 10), of "The Eiffel Tower is located in the city of" (10 tokens). Target ≤ 10 s on 2 CPU cores. The
  trace runs on the patching engine (``method="incremental"``); ``--reference`` also times the plain full-forward
  sweep and checks both agree.
- ROME: one edit with the default hyper-parameters (20 prefixes, key statistics from 20,000 tokens), statistics
  already cached (a first, uncached edit is run as the warm-up). Target ≤ 5 s. Then the time per fact of
  ``rome_each`` over ``--each`` facts (how chapter 1 makes its 100 edits).
- MEMIT: ``--memit`` edits at once over the default layer range, statistics cached. Report.

Usage::

    python benchmarks/rome.py [--samples 10] [--threads 2] [--memit 100] [--repeat 3] [--reference]

Writes ``benchmarks/results/rome.json`` (or ``--out``) and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch
from bench_common import machine, write_result

PROMPT, SUBJECT, TARGET = "The Eiffel Tower is located in the city of", "Eiffel Tower", "Paris"


def _median_time(fn, repeat: int) -> tuple[float, list[float], object]:
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--memit", type=int, default=100, help="facts in the MEMIT batch (0: skip)")
    parser.add_argument("--each", type=int, default=10, help="facts for the rome_each time per fact (0: skip)")
    parser.add_argument("--reference", action="store_true", help="also time the full-forward trace and compare")
    parser.add_argument("--bf16", action="store_true", help="also time the trace in bfloat16 and compare with float32")
    parser.add_argument("--skip", nargs="*", default=[], choices=["trace", "rome"])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "rome.json"))
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    from locedit import load_model
    from locedit.data import load_facts
    from locedit.editing import memit, rome, rome_each
    from locedit.tracing import causal_trace

    model = load_model(args.model, device="cpu")
    result: dict = {
        "model": args.model,
        "threads": torch.get_num_threads(),
        "machine": machine(),
        "torch": torch.__version__,
        "load_average_1min_start": round(os.getloadavg()[0], 2),
    }
    kinds = ("hidden", "mlp", "attn")

    if "trace" not in args.skip:

        def trace(method: str = "incremental", dtype: torch.dtype | None = None):
            return causal_trace(
                model, PROMPT, SUBJECT, TARGET, kinds=kinds, samples=args.samples, method=method, dtype=dtype
            )

        causal_trace(model, PROMPT, SUBJECT, TARGET, kinds=("hidden",), samples=1, layers=[0])  # warm-up
        median, times, tr = _median_time(trace, args.repeat)
        n_rows = len(kinds) * model.spec.n_layers * (len(tr.tokens) - tr.subject_range[0]) * args.samples
        result["trace"] = {
            "what": f"causal_trace(kinds={kinds}, samples={args.samples}), all layers × tokens",
            "tokens": len(tr.tokens),
            "patched_rows": n_rows,
            "seconds_median": round(median, 2),
            "seconds": [round(t, 2) for t in times],
            "ms_per_row": round(1000 * median / n_rows, 2),
            "target_s": 10,
            "p_clean": round(tr.p_clean, 4),
            "p_corrupt": round(tr.p_corrupt, 4),
        }
        if args.reference:
            ref_median, ref_times, ref = _median_time(lambda: trace("full"), 1)
            diff = max(float((ref.scores[k] - tr.scores[k]).abs().max()) for k in kinds)
            result["trace"].update(full_reference_s=round(ref_median, 2), max_abs_diff_vs_full=diff)
        if args.bf16:
            bf_median, _, bf = _median_time(lambda: trace(dtype=torch.bfloat16), args.repeat)
            diff = max(float((bf.scores[k] - tr.scores[k]).abs().max()) for k in kinds)
            result["trace"].update(bfloat16_s=round(bf_median, 2), bfloat16_max_abs_diff_vs_float32=round(diff, 4))
        print(json.dumps(result["trace"], indent=2), flush=True)

    facts = load_facts()
    if "rome" not in args.skip:
        start = time.perf_counter()
        rome(model, facts[0])  # warm-up: builds (or loads) the key statistics and the prefixes
        cold = time.perf_counter() - start
        median, times, _ = _median_time(lambda: rome(model, facts[1]), args.repeat)
        result["rome"] = {
            "what": "rome(model, fact) with ROMEHyperParams() defaults, key statistics cached",
            "seconds_median": round(median, 2),
            "seconds": [round(t, 2) for t in times],
            "first_edit_seconds_including_statistics": round(cold, 2),
            "target_s": 5,
        }
        if args.each:
            start = time.perf_counter()
            rome_each(model, facts[2 : 2 + args.each])
            result["rome"]["rome_each"] = {
                "what": f"rome_each(model, {args.each} facts): values optimised two facts at a time, by length",
                "seconds_per_fact": round((time.perf_counter() - start) / args.each, 2),
            }
        print(json.dumps(result["rome"], indent=2), flush=True)

    if args.memit:
        batch = facts[: args.memit]
        memit(model, batch[:2])  # warm-up: statistics of every layer in the range
        start = time.perf_counter()
        edit = memit(model, batch)
        result["memit"] = {
            "what": f"memit(model, {len(batch)} facts) with MEMITHyperParams() defaults, statistics cached",
            "facts": len(batch),
            "seconds": round(time.perf_counter() - start, 2),
            "seconds_z": edit.info["seconds_z"],
        }
        print(json.dumps(result["memit"], indent=2), flush=True)

    result["load_average_1min_end"] = round(os.getloadavg()[0], 2)
    write_result(args.out, result)


if __name__ == "__main__":
    main()
