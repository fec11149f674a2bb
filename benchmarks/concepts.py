"""Benchmark: one concept trace (chapter 3) beside one fact trace (chapter 1), same settings, same run.

- Concept: the dog's GCIDE gloss in the 3-shot dictionary format, only the queried definition corrupted; hidden +
  MLP + attention restorations at every layer × every token from the definition on, ``--samples`` noise draws.
- Fact: "The Eiffel Tower is located in the city of" → " Paris", the same kinds and samples (chapter 1's trace).
- Floors: the matmul FLOPs each trace cannot avoid (``rome.trace_gflop``: layers from the first restored one, tokens
  from the restored one on, the unembedding where read) over this CPU's matmul speed measured in the same run.

Usage::

    python benchmarks/concepts.py [--samples 10] [--threads 2] [--repeat 3]

Writes ``benchmarks/results/concepts.json`` (or ``--out``) and prints it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from bench_common import header, load_average, matmul_gflops, write_result
from rome import PROMPT, SUBJECT, TARGET, trace_gflop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "concepts.json"))
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    from locedit import load_model
    from locedit.concepts import SHOT_WORDS, build_prompts, load_concepts, lookup, trace_concept
    from locedit.tracing import causal_trace

    model = load_model(args.model, device="cpu")
    spec = model.spec
    kinds = ("hidden", "mlp", "attn")
    started = time.perf_counter()
    concepts, _ = load_concepts()
    shots = [lookup(concepts, w) for w in SHOT_WORDS]
    (item,), _ = build_prompts(model, [lookup(concepts, "dog")], "3-shot dictionary", shots)
    load_s = time.perf_counter() - started
    result = header(args.model, concepts_load_and_prompt_s=round(load_s, 2))
    peak = max(matmul_gflops(2048, spec.d_model, spec.d_mlp, torch.float32, repeat=20) for _ in range(2))
    runs = {
        "concept": lambda: trace_concept(model, item, kinds=kinds, samples=args.samples),
        "fact": lambda: causal_trace(model, PROMPT, SUBJECT, TARGET, kinds=kinds, samples=args.samples),
    }
    for name, run in runs.items():
        times, tr = [], None
        for _ in range(args.repeat):
            start = time.perf_counter()
            tr = run()
            times.append(time.perf_counter() - start)
        median = sorted(times)[len(times) // 2]
        gflop = trace_gflop(spec, len(tr.tokens), tr.subject_range[0], kinds, tr.window, args.samples)
        result[name] = {
            "what": f"{tr.prompt[-60:]!r} → {tr.target!r}: kinds {kinds}, samples {args.samples}, every layer × token",
            "tokens": len(tr.tokens),
            "first_corrupted_token": tr.subject_range[0],
            "seconds_median": round(median, 2),
            "seconds": [round(t, 2) for t in times],
            "floor": {
                "gflop": round(gflop, 1),
                "float32_s": round(gflop / peak, 1),
                "float32_share_of_peak": round(gflop / peak / median, 2),
            },  # fmt: skip
        }
    result["matmul_gflop_per_second_float32"] = round(peak, 1)
    result["load_average_1min_end"] = load_average()
    write_result(args.out, result)


if __name__ == "__main__":
    main()
