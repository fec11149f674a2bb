"""Benchmark: one learned circuit at one density on the real model (issue #24's speed target: <= 5 min on 2 cores).

The chapter's quick setting: ``--texts`` texts of the task (hierarchy: prompts of about 8 tokens read by the model's
own answer tokens; agreement and persona: statements read by a score head trained on the frozen model), then
:func:`locedit.circuits.masks.learn_circuit` with the default
:class:`~locedit.circuits.masks.MaskSettings` to ``--density`` (no cache). Reports the steps, seconds per step and
per circuit, whether the density was reached, and the paper's scores.

Floor: the matmul FLOPs the training cannot skip, divided by this CPU's matmul speed measured in the same run
([2048, d_model] @ [d_model, d_mlp], best of 20, before and after; as ``benchmarks/rome.py``). Each step runs every
decoder layer's weight matrices forward over the step's real tokens (padding excluded) and backward to the
activations only (the weights are frozen: no weight gradients), 2 + 2 FLOPs per multiply-accumulate; the
full-model targets and the three scoring passes (full, circuit, complement) add 4 forward passes over all texts.
The unembedding never runs (the head reads the final norm's output). ``share_of_peak`` is floor / measured time.

Usage::

    python benchmarks/circuit_masks.py [--density 0.05] [--texts 100] [--threads 2] [--dtype bfloat16]

Writes ``benchmarks/results/circuit_masks.json`` (or ``--out``) and prints it.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from bench_common import header, layer_macs, load_average, matmul_gflops, write_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--task", default="hierarchy", choices=["hierarchy", "agreement", "persona"])
    parser.add_argument("--texts", type=int, default=100, help="texts of the task (a balanced subset)")
    parser.add_argument("--density", type=float, default=0.05)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", default=None, help="MaskSettings.dtype (default: the model's float32)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "circuit_masks.json"))
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    from locedit import load_model
    from locedit.circuits.classifier import answer_head, encode_texts, train_head
    from locedit.circuits.masks import MaskSettings, learn_circuit
    from locedit.data.classification import TASKS

    model = load_model(args.model, device="cpu")
    spec = model.spec
    result = header(args.model)
    peak = {"float32": 0.0, "bfloat16": 0.0}

    def measure_peak() -> None:
        for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
            peak[name] = round(max(peak[name], matmul_gflops(2048, spec.d_model, spec.d_mlp, dtype, repeat=20)), 1)

    measure_peak()
    task = TASKS[args.task]().subset(args.texts)
    lengths = encode_texts(model, task.texts)["attention_mask"].sum(1)
    start = time.perf_counter()
    head = answer_head(model, task) if task.answers else train_head(model, task)
    head_s = time.perf_counter() - start
    settings = MaskSettings(dtype=args.dtype)
    start = time.perf_counter()
    learned = learn_circuit(model, task, head, args.density, settings, cache=False)
    circuit_s = time.perf_counter() - start
    measure_peak()

    seconds = [entry["seconds"] for entry in learned.log]
    per_step = [b - a for a, b in zip(seconds, seconds[1:], strict=False)]
    tokens = int(lengths.sum())
    step_tokens = tokens if settings.batch_size >= len(task.texts) else tokens * settings.batch_size / len(task.texts)
    flop_per_token = 2 * spec.n_layers * layer_macs(spec)  # one forward pass; the backward to activations as much
    gflop = (learned.steps * 2 * step_tokens + 4 * tokens) * flop_per_token / 1e9
    floor_s = gflop / peak["float32" if args.dtype is None else "bfloat16"]
    result.update(
        {
            "task": task.name,
            "texts": len(task.texts),
            "tokens": tokens,
            "mean_tokens_per_text": round(tokens / len(task.texts), 1),
            "settings": learned.settings,
            "target_density": args.density,
            "reached": learned.reached,
            "stop": learned.stop,
            "density": round(learned.circuit.density, 4),
            "unit_density": {k: round(learned.circuit.unit_density(k), 4) for k in ("neuron", "head", "norm")},
            "steps": learned.steps,
            "head_seconds": round(head_s, 1),
            "circuit_seconds": round(circuit_s, 1),
            "training_seconds": round(learned.seconds, 1),
            "seconds_per_step_median": round(statistics.median(per_step), 2) if per_step else None,
            "seconds_per_step_min": round(min(per_step), 2) if per_step else None,
            "scores": vars(learned.scores),
            "matmul_gflop_per_second": peak,
            "floor": {
                "what": "forward + backward-to-activations matmuls of every step over its real tokens, plus 4 "
                "forward passes over all texts (targets, scores), at the measured matmul peak",
                "gflop": round(gflop, 1),
                "seconds": round(floor_s, 1),
                "share_of_peak": round(floor_s / circuit_s, 2),
            },
            "load_average_1min_end": load_average(),
        }
    )
    write_result(args.out, result)


if __name__ == "__main__":
    main()
