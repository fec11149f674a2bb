"""Benchmark: one full causal trace, one ROME edit, one MEMIT batch (issue #3's speed targets).

- Causal trace: hidden + MLP + attention restorations, every layer × every token, ``--samples`` noise draws (the
  paper: 10), of "The Eiffel Tower is located in the city of" (10 tokens). Target ≤ 10 s on 2 CPU cores. The
  trace runs on the patching engine (``method="incremental"``); ``--reference`` also times the plain full-forward
  sweep and checks both agree.
- ROME: one edit with the default hyper-parameters (20 prefixes, key statistics from 20,000 tokens), statistics
  already cached (a first, uncached edit is run as the warm-up). Target ≤ 5 s. Then the time per fact of
  ``rome_each`` over ``--each`` facts (how chapter 1 makes its 100 edits).
- MEMIT: ``--memit`` edits at once over the default layer range, statistics cached. Report.
- Floors: the matmul FLOPs the trace and one ROME value optimisation cannot avoid (counting only what the library
  computes: layers from the first one a restoration or δ changes, positions from the first it changes, the
  unembedding where read), divided by this CPU's matmul speed at the model's shapes, measured in the same run
  (``matmul_gflop_per_second``: [2048, d_model] @ [d_model, d_mlp], best of 20, before and after each task).
  No implementation on this machine can beat the floor without skipping more
  work; ``share_of_peak`` is floor / measured time.

Usage::

    python benchmarks/rome.py [--samples 10] [--threads 2] [--memit 100] [--repeat 3] [--reference]

Writes ``benchmarks/results/rome.json`` (or ``--out``) and prints it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from bench_common import header, layer_macs, load_average, matmul_gflops, write_result

PROMPT, SUBJECT, TARGET = "The Eiffel Tower is located in the city of", "Eiffel Tower", "Paris"


def trace_gflop(spec, tokens: int, first: int, kinds, window: int, samples: int) -> float:
    """Matmul GFLOP the trace cannot avoid: every restored row runs the layers from its first restored one up, over
    the positions from its own on (what the patching engine computes), plus the unembedding at the last position;
    restorations before the subject (``first``) change nothing and are not run; the corrupted base run is included."""
    n, per_token = spec.n_layers, layer_macs(spec)
    token_layers = samples * tokens * n  # the corrupted base run
    for kind in kinds:
        for layer in range(n):
            lowest = layer + 1 if kind == "hidden" else max(0, layer - window // 2)
            token_layers += samples * (n - lowest) * sum(tokens - t for t in range(first, tokens))
    rows = samples * len(kinds) * n * (tokens - first)
    return 2 * (token_layers * per_token + rows * spec.d_model * spec.vocab_size) / 1e9


def rome_gflop(model, fact, hp, steps: int) -> float:
    """Matmul GFLOP of one ROME value optimisation as the library runs it, without padding: each step runs each
    prompt's tokens from the fact token on through the layers from the edited one up and the unembedding at the
    positions the loss reads; each step but the last also runs the backward pass down to the edited layer (input
    gradients only: about the forward's cost)."""
    from locedit.editing.common import as_request, context_templates, target_ids, token_index

    spec, tok = model.spec, model.tokenizer
    request = as_request(fact)
    target = target_ids(model, request.target_new)
    tokens, reads = 0, 0
    for t in context_templates(model, hp.context_template_length_params, starts=hp.context_starts, seed=hp.seed):
        prompt = t.format(request.prompt)
        row = len(tok(prompt.format(request.subject))["input_ids"]) + len(target) - 1
        tokens += row - token_index(model, prompt, request.subject, hp.fact_token)
        reads += len(target)
    kl = "{} is a"
    tokens += len(tok(kl.format(request.subject))["input_ids"]) - token_index(model, kl, request.subject, hp.fact_token)
    reads += 1
    n = spec.n_layers
    forward = tokens * (n - hp.layer) * layer_macs(spec) + reads * spec.d_model * spec.vocab_size
    backward = tokens * (n - 1 - hp.layer) * layer_macs(spec) + reads * spec.d_model * spec.vocab_size
    return 2 * (steps * forward + (steps - 1) * backward) / 1e9


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
    from locedit.editing import ROMEHyperParams, memit, rome, rome_each
    from locedit.tracing import causal_trace

    model = load_model(args.model, device="cpu")
    result = header(args.model)
    kinds = ("hidden", "mlp", "attn")
    spec = model.spec
    # this CPU's matmul speed at the model's MLP shapes, to turn the FLOPs a task cannot avoid into a time floor; the
    # VM's speed drifts by tens of percent, so it is measured again after each task and the best is kept
    peak = {"float32": 0.0, "bfloat16": 0.0}
    result["matmul_gflop_per_second"] = peak

    def measure_peak() -> None:
        for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
            best = matmul_gflops(2048, spec.d_model, spec.d_mlp, dtype, repeat=20)
            peak[name] = round(max(peak[name], best), 1)

    measure_peak()

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
        measure_peak()
        gflop = trace_gflop(spec, len(tr.tokens), tr.subject_range[0], kinds, tr.window, args.samples)
        result["trace"]["floor"] = {
            "gflop": round(gflop, 1),
            "float32_s": round(gflop / peak["float32"], 1),
            "bfloat16_s": round(gflop / peak["bfloat16"], 1),
            "float32_share_of_peak": round(gflop / peak["float32"] / median, 2),
        }
        if args.reference:
            ref_median, ref_times, ref = _median_time(lambda: trace("full"), 1)
            diff = max(float((ref.scores[k] - tr.scores[k]).abs().max()) for k in kinds)
            result["trace"].update(full_reference_s=round(ref_median, 2), max_abs_diff_vs_full=diff)
        if args.bf16:
            bf_median, _, bf = _median_time(lambda: trace(dtype=torch.bfloat16), args.repeat)
            diff = max(float((bf.scores[k] - tr.scores[k]).abs().max()) for k in kinds)
            result["trace"].update(bfloat16_s=round(bf_median, 2), bfloat16_max_abs_diff_vs_float32=round(diff, 4))
            result["trace"]["floor"]["bfloat16_share_of_peak"] = round(gflop / peak["bfloat16"] / bf_median, 2)
        print(json.dumps(result["trace"], indent=2), flush=True)

    facts = load_facts()
    if "rome" not in args.skip:
        start = time.perf_counter()
        rome(model, facts[0])  # warm-up: builds (or loads) the key statistics and the prefixes
        cold = time.perf_counter() - start
        median, times, edit = _median_time(lambda: rome(model, facts[1]), args.repeat)
        measure_peak()
        hp = ROMEHyperParams().for_model(model)
        gflop = rome_gflop(model, facts[1], hp, len(edit.info["steps"]))
        result["rome"] = {
            "what": "rome(model, fact) with ROMEHyperParams() defaults, key statistics cached",
            "seconds_median": round(median, 2),
            "seconds": [round(t, 2) for t in times],
            "first_edit_seconds_including_statistics": round(cold, 2),
            "target_s": 5,
            "floor": {
                "what": "the value optimisation's matmuls alone at the float32 peak (keys and update not counted)",
                "steps": len(edit.info["steps"]),
                "gflop": round(gflop, 1),
                "float32_s": round(gflop / peak["float32"], 1),
                "float32_share_of_peak": round(gflop / peak["float32"] / median, 2),
            },
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

    result["load_average_1min_end"] = load_average()
    write_result(args.out, result)


if __name__ == "__main__":
    main()
