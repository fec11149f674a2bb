"""What the benchmark scripts share: a description of the machine they ran on, and writing their result."""

from __future__ import annotations

import json
import os
import platform
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
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{cpu}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
        f"native bf16: {native_bf16('cpu')}, load average at start {load:.1f}"
    )


def write_result(path: str | Path, result: dict) -> None:
    """Write ``result`` as indented JSON to ``path`` (creating its folder) and print it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=2)
    path.write_text(text)
    print(text)
