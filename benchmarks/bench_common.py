"""What the benchmark scripts share: a description of the machine they ran on, the header of their result, and
writing it."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import torch

from locedit.models import native_bf16


def machine() -> str:
    """CPU model, CPU count, torch threads, whether bf16 is native here, and the load average now (one line)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = load_average()
    return (
        f"{cpu}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
        f"native bf16: {native_bf16('cpu')}, load average at start {float('nan') if load is None else load:.1f}"
    )


def load_average() -> float | None:
    """The 1-minute load average now, to two decimals (None where the system has none)."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def header(model: str, load: str = "start", **extra) -> dict:
    """What a benchmark's result starts with: the model, torch threads, :func:`machine`, the torch version and the
    load average now (key ``load_average_1min_<load>``), then ``extra``."""
    return {
        "model": model,
        "threads": torch.get_num_threads(),
        "machine": machine(),
        "torch": torch.__version__,
        f"load_average_1min_{load}": load_average(),
        **extra,
    }


def write_result(path: str | Path, result: dict) -> None:
    """Write ``result`` as indented JSON to ``path`` (creating its folder) and print it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=2)
    path.write_text(text)
    print(text)


def layer_macs(spec) -> int:
    """Multiply-accumulates of one decoder layer's weight matrices for one token (q, k, v, o and the MLP; the
    attention scores themselves, a few thousand for a short prompt, are left out)."""
    d, heads, kv, hd = spec.d_model, spec.n_heads, spec.n_kv_heads, spec.head_dim
    attention = d * heads * hd * 2 + d * kv * hd * 2
    return attention + (3 if spec.gated_mlp else 2) * d * spec.d_mlp


def matmul_gflops(rows: int, inner: int, cols: int, dtype: torch.dtype, repeat: int = 5) -> float:
    """Best GFLOP/s of one ``[rows, inner] @ [inner, cols]`` product in ``dtype`` here (a model-shaped floor)."""
    a, b = torch.randn(rows, inner, dtype=dtype), torch.randn(inner, cols, dtype=dtype)
    out = torch.empty(rows, cols, dtype=dtype)
    torch.mm(a, b, out=out)  # warm
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        times.append(time.perf_counter() - start)
    return 2 * rows * inner * cols / min(times) / 1e9
