"""Benchmark: decode all MLP up-projection neurons of a model through the unembedding (top-k each).

Target (issue #4): all 46,080 up-projection neurons of SmolLM2-135M, top-10 each, on 2 CPU cores in ≤ 10 s with
peak memory ≤ 2 GB above the loaded model. Memory is measured as the growth of the process's peak resident set
(``resource.getrusage(...).ru_maxrss``) over the decode, since ``tracemalloc`` does not see torch's allocations.
The decode runs uncached (``cache=False``). The floor is measured too: the unembedding matmul alone
(``torch.mm`` into a reused buffer, as the decode runs it, in the decode's dtype) on one layer's rows in chunks; the
load average is recorded before and after, since a busy machine slows everything down.

``--dtype auto`` (the library's default) decodes with bfloat16 candidates where the CPU multiplies bf16 natively;
the exact float32 decode then runs too, and the result records how the two agree (ids, top-k sets, probabilities)
and both times.

On a GPU (issue #4 asks for Llama 3.1 8B's time there; the paper: < 15 min, then < 10 s), ``--device cuda
--random-shape llama-3.1-8b`` decodes a randomly initialised model of that shape in bfloat16 (the time depends on
the shapes, not on the weights; no weights are downloaded). Memory is then CUDA's peak allocation.

Usage::

    python benchmarks/neurons.py [--model smollm2-135m] [--k 10] [--chunk N] [--threads 2] [--norm] [--repeat 1]
                                 [--dtype auto|float32|bfloat16] [--device cpu|cuda] [--random-shape NAME]

Writes ``benchmarks/results/neurons.json`` (or ``--out``) and prints the same numbers.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import torch
from bench_common import header, load_average, write_result

#: Shapes for ``--random-shape``: Hugging Face config fields of models we time without their weights.
RANDOM_SHAPES = {
    "llama-3.1-8b": {
        "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
        "num_key_value_heads": 8, "vocab_size": 128256, "tie_word_embeddings": False,
    },
}  # fmt: skip


def random_model(shape: dict, device: str):
    """A Llama-family model of ``shape`` with random bfloat16 weights, built on ``device`` (no tokenizer)."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    from locedit.arch import spec_for
    from locedit.models import Model

    with torch.device(device):
        hf = AutoModelForCausalLM.from_config(LlamaConfig(**shape), dtype=torch.bfloat16).eval()
    return Model(hf=hf, tokenizer=None, spec=spec_for(hf), name=f"random-{shape['num_hidden_layers']}-layer-llama")


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def matmul_floor(model, chunk: int, low: bool, repeat: int = 3) -> float:
    """GFLOP/s of the unembedding matmul alone (bf16 if ``low``) on one layer's rows in ``chunk``-row pieces (best
    of ``repeat``)."""
    from locedit.lens import Bf16Readout, Readout
    from locedit.neurons import neuron_weights

    ro = (Bf16Readout if low else Readout)(model, norm=True)
    rows = ro.f(neuron_weights(model, "up", 0).to(ro.W.dtype))
    matmul = ro.unembedder(chunk)
    gflop = 2 * rows.shape[0] * rows.shape[1] * ro.W.shape[0] / 1e9
    wait = torch.cuda.synchronize if rows.is_cuda else (lambda: None)  # GPU kernels run asynchronously
    with torch.inference_mode():
        matmul(rows[:chunk])  # warm
        times = []
        for _ in range(repeat):
            wait()
            start = time.perf_counter()
            for s in range(0, rows.shape[0], chunk):
                matmul(rows[s : s + chunk])
            wait()
            times.append(time.perf_counter() - start)
    return round(gflop / min(times), 1)


def agreement(fast, exact) -> dict:
    """How a bfloat16 decode agrees with the exact one, over every neuron."""
    same_ids = (fast.top_ids == exact.top_ids).all(-1)
    same_sets = (fast.top_ids.sort(-1).values == exact.top_ids.sort(-1).values).all(-1)
    rel = (fast.top_probs - exact.top_probs).abs() / exact.top_probs
    flips = ((fast.top_probs[..., 0] > 0.5) != (exact.top_probs[..., 0] > 0.5)).sum()
    return {
        "top_k_ids_in_the_same_order": round(same_ids.float().mean().item(), 6),
        "top_k_sets_equal": round(same_sets.float().mean().item(), 6),
        "top1_equal": round((fast.top_ids[..., 0] == exact.top_ids[..., 0]).float().mean().item(), 6),
        "max_relative_probability_difference": round(rel.max().item(), 5),
        "max_abs_probability_difference": round((fast.top_probs - exact.top_probs).abs().max().item(), 5),
        "max_abs_z1_difference": round((fast.z1 - exact.z1).abs().max().item(), 6),
        "neurons_across_p1_0.5_either_way": int(flips),
        "rows_redone_in_float32": fast.redone,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--chunk", type=int, default=None, help="rows per matmul (default: the library's)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--norm", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--kind", default="up")
    parser.add_argument("--layers", type=int, default=None, help="decode only the first N layers (and extrapolate)")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--random-shape", choices=sorted(RANDOM_SHAPES), default=None)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "neurons.json"))
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    from locedit import load_model
    from locedit.neurons import decode_neurons

    if args.random_shape:
        args.model = f"{args.random_shape} shape, random weights"
        model = random_model(RANDOM_SHAPES[args.random_shape], args.device)
    else:
        model = load_model(args.model, device=args.device)
    cuda = model.device.type == "cuda"
    spec = model.spec
    layers = list(range(spec.n_layers if args.layers is None else args.layers))
    dtype = {"auto": "auto", "float32": None, "bfloat16": torch.bfloat16}[args.dtype]

    def decode(dtype):
        return decode_neurons(model, args.kind, args.norm, args.k, layers=layers, chunk=args.chunk, cache=False,
                              dtype=dtype)  # fmt: skip

    decode_neurons(model, args.kind, args.norm, args.k, layers=[0], chunk=args.chunk, sample=64, cache=False)  # warm
    rss_model = peak_rss_mb()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        gpu_model = torch.cuda.memory_allocated()
    head = header(args.model, load="before")  # the load average just before the timed runs
    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        dec = decode(dtype)  # its results are copied to the CPU, which waits for the GPU
        times.append(time.perf_counter() - start)
    rss_peak = peak_rss_mb()
    memory = {
        "peak_rss_mb_after_load": round(rss_model),
        "peak_rss_mb_growth_during_decode": round(rss_peak - rss_model),
    }
    if cuda:
        growth = torch.cuda.max_memory_allocated() - gpu_model
        memory = {
            "gpu": torch.cuda.get_device_name(),
            "gpu_mb_model": round(gpu_model / 2**20),
            "gpu_mb_peak_growth_during_decode": round(growth / 2**20),
        }
    load_after = load_average()
    low = dec.dtype == "bfloat16"
    compared = {}
    if low:
        start = time.perf_counter()
        exact = decode(None)
        compared = {"exact_float32_seconds": round(time.perf_counter() - start, 2), **agreement(dec, exact)}
    floor = matmul_floor(model, args.chunk or (2048 if low else 512), low)
    n = len(layers) * spec.d_mlp
    best = min(times)
    gflop = 2 * n * spec.d_model * spec.vocab_size / 1e9
    result = {
        "what": f"decode_neurons(kind={args.kind!r}, norm={args.norm}, k={args.k}, chunk={args.chunk}, "
        f"dtype={args.dtype!r}), uncached",
        "decode_dtype": dec.dtype,
        **head,
        "neurons": n,
        "neurons_in_model": spec.n_layers * spec.d_mlp,
        "vocab": spec.vocab_size,
        "seconds": [round(t, 2) for t in times],
        "seconds_best": round(best, 2),
        "seconds_all_neurons_extrapolated": round(best * spec.n_layers / len(layers), 2),
        "neurons_per_second": round(n / best),
        "gflop": round(gflop, 1),
        "gflop_per_second": round(gflop / best, 1),
        "matmul_alone_gflop_per_second": floor,
        "matmul_alone_seconds": round(gflop / floor, 2),
        "share_of_time_in_matmul": round(gflop / floor / best, 2),
        **compared,
        **memory,
        "load_average_1min_after": load_after,
        "target": "≤ 10 s, ≤ 2 GB above the model (all 46,080 SmolLM2 up neurons, 2 cores)",
        "top1_example": dec.top(0, 0, 3),
    }
    write_result(args.out, result)


if __name__ == "__main__":
    main()
