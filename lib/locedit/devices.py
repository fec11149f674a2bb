"""Which device to run on (:func:`resolve_device`) and whether it multiplies bfloat16 natively (:func:`native_bf16`).

Both are re-exported by :mod:`locedit.models`.
"""

from __future__ import annotations

from pathlib import Path

import torch


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA, then Apple MPS, then the CPU; any other device must exist here, or a ValueError says
    what this machine has and to use ``"auto"`` or ``"cpu"``."""
    if isinstance(device, str) and device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if not isinstance(device, str | torch.device):
        raise TypeError(f"device must be a string such as 'auto', 'cpu' or 'cuda:0', not a {type(device).__name__}")
    fix = "use device='auto' (the best device present) or 'cpu'"
    try:
        resolved = torch.device(device)
    except (RuntimeError, ValueError) as err:
        raise ValueError(f"{device!r} is not a device name ({err}); {fix}") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {str(device)!r} is not available: this torch ({torch.__version__}) sees no CUDA GPU; {fix}"
            )
        count = torch.cuda.device_count()
        if resolved.index is not None and resolved.index >= count:
            raise ValueError(
                f"device {str(device)!r} does not exist: this machine has {count} CUDA device(s), "
                f"cuda:0..cuda:{count - 1}; {fix}"
            )
    elif resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {str(device)!r} is not available: Apple MPS exists only on Apple-silicon Macs; {fix}")
    elif resolved.type not in ("cpu", "meta"):
        backend = getattr(torch, resolved.type, None)
        available = getattr(backend, "is_available", None)
        if callable(available) and not available():
            raise ValueError(f"device {str(device)!r} is not available here; {fix}")
    return resolved


def native_bf16(device: str | torch.device) -> bool:
    """Whether ``device`` multiplies bfloat16 matrices natively, so a bf16 matmul beats float32: a CUDA GPU, or a
    CPU with AVX-512 BF16 or AMX (about 3× float32 on an AVX-512 BF16 EPYC). Elsewhere torch emulates bf16 and it is
    slower than float32 (5× on an AVX2 EPYC)."""
    device = torch.device(device)
    if device.type == "cuda":
        return True
    if device.type != "cpu":
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no way to tell cheaply, keep float32
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags
