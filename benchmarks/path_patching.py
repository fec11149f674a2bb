"""Benchmark: path patching of every head to the logits on IOI (issue #22): ours, nnsight's straightforward batched
version, and our plain reference.

- Task: ``--prompts`` IOI prompts (``locedit.circuits.ioi``, mixed ABBA / BABA, seed 0, from the first
  ``--templates`` of the 15 templates) and their flipped twins (S2 → IO), float32, ``--threads`` CPU threads.
- Ours: ``path_patching_logit_diffs`` (``locedit.circuits.frozen_run``): two plain runs (clean, corrupted), then each
  prompt × sender row from its sender's layer up at the last position only, as MLP-only layers (every other head is
  frozen, so attention there is the clean constant), and the two answer rows of the unembedding. Also in bfloat16
  (``--bf16``), with its largest error against float32.
- nnsight (0.8.1): the straightforward batched implementation, one ordinary full forward pass per sender with all
  prompts of a length as batch rows, every head's z (the input of ``o_proj``) at the last position set through
  nnsight's API (the sender's to the corrupted run's, every other head's to the clean run's). Timed on
  ``--peer-senders`` senders spread over the layers and extrapolated linearly to all heads (each sender is one
  identical full forward pass); its logit differences are compared with ours on those senders (to 1e-4).
- Reference: ``path_patching_logit_diffs(..., method="reference")`` (the same method with plain hooks), on
  ``--reference-senders`` senders, extrapolated and compared likewise.
- Floor: the matmul GFLOP the method cannot skip (the two plain passes over every prompt; per row, the sender
  layer's ``o_proj`` and the MLP of every layer from the sender's up; the two answer rows), divided by this CPU's
  matmul speed at the model's shapes measured in the same run (``[2048, d_model] @ [d_model, d_mlp]``, best of 20,
  before and after); ``share_of_floor`` is floor time / our time.

Usage::

    python benchmarks/path_patching.py [--prompts 100] [--templates 15] [--threads 2] [--peer-senders 4]

Writes ``benchmarks/results/path_patching.json`` (or ``--out``) and prints it. The machine's load average at the
start and the end is recorded: on a shared machine the times are only indicative.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from bench_common import header, layer_macs, load_average, matmul_gflops, write_result


def floor_gflop(spec, lengths: list[int], senders: list[tuple[int, int]]) -> float:
    """Matmul GFLOP the method cannot skip: two plain passes over every prompt (clean, corrupted; their
    unembedding at one position), then per prompt × sender the sender layer's ``o_proj`` and the MLPs of the layers
    from the sender's up at one position (the two answer rows of the unembedding are negligible)."""
    n, d = spec.n_layers, spec.d_model
    mlp = (3 if spec.gated_mlp else 2) * d * spec.d_mlp
    o_proj = spec.n_heads * spec.head_dim * d
    macs = 2 * sum(t * n * layer_macs(spec) + d * spec.vocab_size for t in lengths)
    macs += len(lengths) * sum(o_proj + (n - layer) * mlp for layer, _ in senders)
    return 2 * macs / 1e9


def nnsight_logit_diffs(lm, model, clean, corrupt, answers, senders) -> tuple[torch.Tensor, float]:
    """nnsight's straightforward batched path patching: per length group and sender, one full forward pass of the
    clean prompts with every head's z at the last position set (sender: corrupted, others: clean). Returns the
    [prompts, senders] logit differences and the seconds spent in the clean and corrupted runs (done once)."""
    from locedit.circuits.inputs import prompt_pairs

    spec = model.spec
    hd, n = spec.head_dim, spec.n_layers
    o_proj = [_envoy(lm, f"{spec.table.blocks}.{i}.{spec.table.attn_o_proj}") for i in range(n)]
    n_prompts, groups = prompt_pairs(model, clean, corrupt, answers, 256)
    out = torch.empty(n_prompts, len(senders))
    once = 0.0
    with torch.no_grad():
        for g in groups:
            start = time.perf_counter()
            clean_z, corrupt_z = [], []
            with lm.trace(g.clean):
                for i in range(n):
                    clean_z.append(o_proj[i].input[:, -1].save())
            with lm.trace(g.corrupt):
                for i in range(n):
                    corrupt_z.append(o_proj[i].input[:, -1].save())
            once += time.perf_counter() - start
            rows = torch.arange(len(g.index))
            for j, (layer, head) in enumerate(senders):
                z = [t.clone() for t in clean_z]
                z[layer][:, head * hd : (head + 1) * hd] = corrupt_z[layer][:, head * hd : (head + 1) * hd]
                with lm.trace(g.clean):
                    for i in range(n):
                        o_proj[i].input[:, -1] = z[i]
                    logits = lm.lm_head.output[:, -1].save()
                picked = logits.float()[rows[:, None], g.answers]
                out[g.index, j] = picked[:, 0] - picked[:, 1]
    return out, once


def _envoy(lm, path: str):
    """nnsight's proxy of the module at a dotted path (``model.layers.3.self_attn.o_proj``)."""
    for part in path.split("."):
        lm = lm[int(part)] if part.isdigit() else getattr(lm, part)
    return lm


def spread(senders: list[tuple[int, int]], k: int) -> list[tuple[int, int]]:
    """``k`` senders evenly spread over the list (so over the layers: the work per sender differs by layer for us,
    not for full forward passes)."""
    step = max(1, len(senders) // k)
    return senders[::step][:k]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--prompts", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--templates", type=int, default=15, help="use the first N IOI templates")
    parser.add_argument("--peer-senders", type=int, default=4, help="senders timed with nnsight (0: skip)")
    parser.add_argument("--reference-senders", type=int, default=2, help="senders timed with our reference")
    parser.add_argument("--no-bf16", action="store_true", help="skip the bfloat16 run")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "path_patching.json"))
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    from locedit import load_model
    from locedit.circuits import IOI_TEMPLATES, ioi, path_patching_logit_diffs

    model = load_model(args.model, device="cpu", dtype=torch.float32)
    spec = model.spec
    data = ioi(model, n=args.prompts, seed=args.seed, templates=IOI_TEMPLATES[: args.templates])
    flipped = data.corrupted("flipped")
    lengths = [len(t) for t in data.tokens]
    senders = [(layer, h) for layer in range(spec.n_layers) for h in range(spec.n_heads)]
    result: dict = {
        "what": f"path patching, all {len(senders)} heads -> logits, {args.prompts} IOI prompts (flipped S2 -> IO) "
        f"from {args.templates} template(s)",
        **header(args.model, dtype="float32"),
        "prompt_lengths": sorted(set(lengths)),
        "patched_rows": args.prompts * len(senders),
    }
    peak = [matmul_gflops(2048, spec.d_model, spec.d_mlp, torch.float32, repeat=20)]

    path_patching_logit_diffs(model, data, flipped, senders=[(0, 0)])  # warm-up
    start = time.perf_counter()
    ours = path_patching_logit_diffs(model, data, flipped)
    result["ours_s"] = round(time.perf_counter() - start, 2)
    peak.append(matmul_gflops(2048, spec.d_model, spec.d_mlp, torch.float32, repeat=20))
    print(f"ours: {result['ours_s']} s", flush=True)
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

    if not args.no_bf16:
        start = time.perf_counter()
        bf = path_patching_logit_diffs(model, data, flipped, dtype=torch.bfloat16)
        result["ours_bfloat16"] = {
            "seconds": round(time.perf_counter() - start, 2),
            "max_abs_diff_logit_diff_vs_float32": round(float((bf.patched - ours.patched).abs().max()), 4),
            "max_abs_diff_effect_vs_float32": round(float((bf.effects() - effects).nan_to_num().abs().max()), 4),
            "ld_clean_range": [round(float(ours.clean.min()), 2), round(float(ours.clean.max()), 2)],
        }
        print(f"ours bf16: {result['ours_bfloat16']}", flush=True)

    def peer(name: str, k: int, fn) -> None:
        subset = spread(senders, k)
        columns = [senders.index(s) for s in subset]
        start = time.perf_counter()
        theirs, once = fn(subset)
        seconds = time.perf_counter() - start
        diff = float((theirs - ours.patched[:, columns]).abs().max())
        result[name] = {
            "senders_timed": [f"{layer}.{h}" for layer, h in subset],
            "seconds_for_those": round(seconds, 2),
            "seconds_clean_and_corrupted_runs": round(once, 2),
            "seconds_extrapolated_to_all": round(once + (seconds - once) * len(senders) / len(subset), 1),
            "extrapolated": f"linearly from {len(subset)} to {len(senders)} senders (one full forward pass each), "
            "plus the clean and corrupted runs once"
            + ("" if once else " (not timed apart here: counted per sender, which overestimates by them)"),
            "max_abs_diff_logit_diff_vs_ours": diff,
            "agree_to_1e-4": diff <= 1e-4,
        }
        result[name]["ours_share"] = round(result["ours_s"] / result[name]["seconds_extrapolated_to_all"], 4)
        peak.append(matmul_gflops(2048, spec.d_model, spec.d_mlp, torch.float32, repeat=20))
        print(f"{name}: {result[name]}", flush=True)

    if args.peer_senders:
        from nnsight import LanguageModel

        lm = LanguageModel(model.hf, tokenizer=model.tokenizer)
        nnsight_logit_diffs(
            lm, model, data.tokens[:2], flipped.tokens[:2], data.answers[:2], [(0, 0)]
        )  # warm-up (nnsight's first trace)
        peer("nnsight_batched", args.peer_senders, lambda s: nnsight_logit_diffs(lm, model, data, flipped, None, s))
    if args.reference_senders:
        peer(
            "reference",
            args.reference_senders,
            lambda s: (path_patching_logit_diffs(model, data, flipped, senders=s, method="reference").patched, 0.0),
        )

    gflop = floor_gflop(spec, lengths, senders)
    best = max(peak)
    result["floor"] = {
        "gflop": round(gflop, 1),
        "matmul_gflop_per_second": round(best, 1),
        "float32_s": round(gflop / best, 2),
        "share_of_floor": round(gflop / best / result["ours_s"], 2),
    }
    result["load_average_1min_end"] = load_average()
    write_result(args.out, result)


if __name__ == "__main__":
    main()
