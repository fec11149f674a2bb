"""Benchmark: path patching of every head to the logits on IOI (issue #22), our engine against the plain reference.

- Task: ``--prompts`` IOI prompts (``locedit.circuits.ioi``, mixed ABBA / BABA, seed 0, from the first
  ``--templates`` of the 15 templates) and their flipped twins (S2 → IO), float32, ``--threads`` CPU threads.
- Ours: ``path_patching_logit_diffs`` (the patching engine: each prompt × sender row starts at the sender's layer and
  computes the last position only, with the clean run's keys and values of the earlier positions).
- Reference: ``path_patching_reference``, the straightforward batched version: one ordinary full forward pass per
  sender, all prompts of a length as batch rows, every other head frozen at every layer. Both must give the same
  logit differences to 1e-4 (``max_abs_diff``), else the times do not count.
- Floor: the matmul GFLOP our run cannot avoid (the plain clean and corrupted runs, the engine's base run, and each
  row's layers from its sender's up at one position plus its unembedding), divided by this CPU's matmul speed at the
  model's shapes measured in the same run (``[2048, d_model] @ [d_model, d_mlp]``, best of 20, before and after).
  The unembedding is computed over the whole vocabulary because the engine's metric sees full logits; a metric that
  read only the two answer rows of W_U would drop that part of the floor.

Usage::

    python benchmarks/path_patching.py [--prompts 100] [--templates 15] [--threads 2] [--no-reference]

Writes ``benchmarks/results/path_patching.json`` (or ``--out``) and prints it. The machine's load average at the
start and the end is recorded: on a shared machine the times are only indicative.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
from bench_common import layer_macs, machine, matmul_gflops, write_result


def floor_gflop(spec, lengths: list[int], senders: list[tuple[int, int]]) -> float:
    """Matmul GFLOP of our run: three plain passes over every prompt (clean, corrupted, the engine's base run; their
    unembedding at one position), then one row per prompt × sender through the layers from the sender's up at one
    position, and its unembedding."""
    n, per_token, unembed = spec.n_layers, layer_macs(spec), spec.d_model * spec.vocab_size
    macs = 3 * sum(t * n * per_token + unembed for t in lengths)
    macs += len(lengths) * sum((n - layer) * per_token + unembed for layer, _ in senders)
    return 2 * macs / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--prompts", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--templates", type=int, default=15, help="use the first N IOI templates (fewer prompt lengths: fewer groups)"
    )
    parser.add_argument("--batch-size", type=int, default=None, help="rows per engine call (default: the engine's)")
    parser.add_argument("--no-reference", action="store_true", help="skip the (slow) full-forward reference")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "path_patching.json"))
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    from locedit import load_model
    from locedit.circuits import IOI_TEMPLATES, ioi, path_patching_logit_diffs, path_patching_reference

    model = load_model(args.model, device="cpu", dtype=torch.float32)
    spec = model.spec
    data = ioi(model, n=args.prompts, seed=args.seed, templates=IOI_TEMPLATES[: args.templates])
    flipped = data.corrupted("flipped")
    lengths = [len(t) for t in data.tokens]
    senders = [(layer, h) for layer in range(spec.n_layers) for h in range(spec.n_heads)]
    result: dict = {
        "what": f"path patching, all {len(senders)} heads -> logits, {args.prompts} IOI prompts (flipped S2 -> IO) "
        f"from {args.templates} template(s)",
        "model": args.model,
        "dtype": "float32",
        "threads": torch.get_num_threads(),
        "machine": machine(),
        "torch": torch.__version__,
        "load_average_1min_start": round(os.getloadavg()[0], 2),
        "prompt_lengths": sorted(set(lengths)),
        "patched_rows": args.prompts * len(senders),
    }
    peak = [matmul_gflops(2048, spec.d_model, spec.d_mlp, torch.float32, repeat=20)]

    path_patching_logit_diffs(model, data, flipped, senders=[(0, 0)])  # warm-up
    start = time.perf_counter()
    ours = path_patching_logit_diffs(model, data, flipped, batch_size=args.batch_size)
    result["engine_s"] = round(time.perf_counter() - start, 2)
    peak.append(matmul_gflops(2048, spec.d_model, spec.d_mlp, torch.float32, repeat=20))
    effects = ours.effects()
    flat = effects.flatten()
    top = flat.abs().argsort(descending=True)[:8]
    result.update(
        ld_clean_mean=round(float(ours.clean.mean()), 3),
        ld_corrupt_mean=round(float(ours.corrupt.mean()), 3),
        top_heads_by_abs_effect=[
            {"head": f"{int(i) // spec.n_heads}.{int(i) % spec.n_heads}", "effect": round(float(flat[i]), 4)}
            for i in top
        ],
    )
    print(f"engine: {result['engine_s']} s", flush=True)

    if not args.no_reference:
        start = time.perf_counter()
        ref = path_patching_reference(model, data, flipped)
        result["reference_s"] = round(time.perf_counter() - start, 2)
        result["speedup"] = round(result["reference_s"] / result["engine_s"], 1)
        result["max_abs_diff_logit_diff"] = float((ours.patched - ref.patched).abs().max())
        result["max_abs_diff_effect"] = float((effects - ref.effects()).abs().max())
        result["agree_to_1e-4"] = result["max_abs_diff_logit_diff"] <= 1e-4
        peak.append(matmul_gflops(2048, spec.d_model, spec.d_mlp, torch.float32, repeat=20))

    gflop = floor_gflop(spec, lengths, senders)
    best = max(peak)
    result["floor"] = {
        "gflop": round(gflop, 1),
        "matmul_gflop_per_second": round(best, 1),
        "float32_s": round(gflop / best, 2),
        "share_of_peak": round(gflop / best / result["engine_s"], 2),
    }
    result["load_average_1min_end"] = round(os.getloadavg()[0], 2)
    write_result(args.out, result)


if __name__ == "__main__":
    main()
