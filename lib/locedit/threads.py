"""How many torch threads a hot loop runs with: as many as the machine can give it now.

The patching engine, causal tracing and the value optimisation of ROME and MEMIT are made of small matrices (a few
hundred rows of 576 on SmolLM2): every operation ends at a barrier where each torch thread waits for the others. A
thread whose core another process is using holds every other thread at each barrier, so on a 2-core machine with one
other busy process a 2-thread patching sweep ran 9.6× slower than on the quiet machine, and a 1-thread one 1.8×
(issue #25, a 2-core Xeon). Where a core is free the second thread still pays: 1.24 s with two threads on the
quiet machine against 2.25 s with one beside the busy process. So the rule is not "small matrices run
single-threaded" but "use the cores that are idle":

    threads = min(torch's thread count, CPUs this process may use, CPUs idle now), at least 1

- *CPUs this process may use*: its affinity (``os.sched_getaffinity``), capped by a cgroup CPU quota if one is set
  (containers, batch schedulers): :func:`allowed_cpus`.
- *CPUs idle now*: those CPUs minus the CPU time *other* processes used on them lately (``/proc/stat``, with this
  process's own CPU time taken out, so a loop never counts itself as load; :func:`busy_elsewhere`). A CPU counts
  as idle when at least 70% of it is free. The time window is the one since the previous decision when that was
  between 0.05 and 10 s ago (no waiting), else a fresh 0.1 s sample. Without ``/proc/stat`` (macOS, Windows), the
  1-minute load average less this process's own thread stands in for it.
- *torch's thread count*: the most the caller allowed (``torch.set_num_threads``); the policy never raises it.

The override: ``LOCEDIT_THREADS=N`` in the environment (read at each decision, so ``os.environ`` works in a notebook)
makes every hot loop use exactly N threads; ``LOCEDIT_THREADS=auto`` (or unset) is the policy. In code,
``with loop_threads(n):`` runs one block with n threads, and the hot loops inside it keep n (the block wins over the
environment).

The hot entry points (:func:`locedit.patching.engine.run_sweep`, :func:`locedit.tracing.causal_trace`,
:func:`locedit.editing.values.optimise_value`) run under ``loop_threads()``, which restores torch's thread count on
every exit path; nested entry points (a trace's sweep) keep the count the outer one chose.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

ENV = "LOCEDIT_THREADS"
#: a CPU counts as idle when at least this share of it is free
IDLE_SHARE = 0.7
#: the shortest and longest window since the previous decision that is used without waiting; else a fresh sample
MIN_WINDOW_S, MAX_WINDOW_S, SAMPLE_S = 0.05, 10.0, 0.1

_state = threading.local()  # .depth: how many loop_threads blocks the current thread is in
_lock = threading.Lock()
_last: tuple[float, float, float] | None = None  # (monotonic time, busy CPU-seconds of the allowed CPUs, own CPU s)


def allowed_cpus() -> int:
    """CPUs this process may run on: its affinity (all CPUs where the OS has no affinity call), capped by a cgroup
    CPU quota (:func:`cgroup_cpu_limit`, rounded down, at least 1)."""
    n = len(_affinity()) or os.cpu_count() or 1
    quota = cgroup_cpu_limit()
    if quota is not None:
        n = min(n, max(1, math.floor(quota)))
    return n


def _affinity() -> set[int]:
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set()


def cgroup_cpu_limit(
    root: Path = Path("/sys/fs/cgroup"), proc_cgroup: Path = Path("/proc/self/cgroup")
) -> float | None:
    """CPUs' worth of time a cgroup quota gives this process (quota ÷ period), or ``None`` without a quota.

    cgroup v2: ``cpu.max`` ("200000 100000", or "max 100000" for none) in this process's group (from
    ``proc_cgroup``) or at ``root``; cgroup v1: ``cpu/cpu.cfs_quota_us`` ÷ ``cpu/cpu.cfs_period_us`` (-1: none)."""
    candidates = []
    try:
        for line in proc_cgroup.read_text().splitlines():
            if line.startswith("0::"):
                candidates.append(root / line[3:].strip("/") / "cpu.max")
    except OSError:
        pass
    candidates.append(root / "cpu.max")
    for path in candidates:
        try:
            quota, period = path.read_text().split()[:2]
        except (OSError, ValueError):
            continue
        return None if quota == "max" else int(quota) / int(period)
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota <= 0 or period <= 0 else quota / period


def _busy_seconds(cpus: set[int], stat: Path = Path("/proc/stat")) -> float | None:
    """CPU-seconds the CPUs ``cpus`` (all, if empty) have spent busy since boot: user, nice, system, irq, softirq
    and steal time (steal: a hypervisor gave the CPU to another machine); ``None`` without ``/proc/stat``."""
    try:
        lines = stat.read_text().splitlines()
    except OSError:
        return None
    ticks = 0
    for line in lines:
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu" or (cpus and int(name[3:]) not in cpus):
            continue
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
        ticks += user + nice + system + irq + softirq + steal
    return ticks / os.sysconf("SC_CLK_TCK")


def busy_elsewhere() -> float:
    """CPUs' worth of work that *other* processes are doing on this process's CPUs now: their busy time over a
    recent window minus this process's own CPU time in it (all its threads), e.g. ≈ 1.0 with one other busy
    process. The window: since the previous call when that was 0.05–10 s ago (no waiting), else a fresh 0.1 s.
    Without ``/proc/stat``: the 1-minute load average less one (this process's thread), a rough stand-in."""
    global _last
    cpus = _affinity()
    with _lock:
        now, busy, own = time.monotonic(), _busy_seconds(cpus), time.process_time()
        if busy is None:
            return max(0.0, os.getloadavg()[0] - 1.0) if hasattr(os, "getloadavg") else 0.0
        if _last is None or not MIN_WINDOW_S <= now - _last[0] <= MAX_WINDOW_S:
            _last = (now, busy, own)
            time.sleep(SAMPLE_S)
            now, busy, own = time.monotonic(), _busy_seconds(cpus) or 0.0, time.process_time()
        then, busy_then, own_then = _last
        _last = (now, busy, own)
    others = (busy - busy_then) - (own - own_then)
    return max(0.0, others / (now - then))


def policy_threads() -> int:
    """The threads the machine can give a hot loop now (the module docstring's rule, without the override):
    between 1 and :func:`allowed_cpus`, and never more than ``torch.get_num_threads()``."""
    allowed = allowed_cpus()
    idle = math.floor(allowed - busy_elsewhere() + (1 - IDLE_SHARE))
    return max(1, min(idle, allowed, torch.get_num_threads()))


def override_threads() -> int | None:
    """The thread count ``LOCEDIT_THREADS`` asks for, or ``None`` when it is unset or ``auto``."""
    value = os.environ.get(ENV, "").strip()
    if value.lower() in ("", "auto"):
        return None
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"{ENV}={value!r} is not a thread count: set it to a whole number ≥ 1, or to 'auto'")
    return n


def choose_threads() -> int:
    """The threads a hot loop starting now uses: ``LOCEDIT_THREADS`` if set, else :func:`policy_threads`."""
    n = override_threads()
    return policy_threads() if n is None else n


@contextmanager
def loop_threads(n: int | None = None) -> Iterator[int]:
    """Run the block with ``n`` torch threads (``None``: :func:`choose_threads`, or, inside another
    ``loop_threads`` block, the count that block set); torch's count is restored on every exit path. Yields the
    count. Works as a decorator too (``@loop_threads()``)."""
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"loop_threads takes a thread count ≥ 1 (or None for the policy), not {n!r}")
    depth = getattr(_state, "depth", 0)
    before = torch.get_num_threads()
    if n is None:
        n = before if depth else choose_threads()
    _state.depth = depth + 1
    try:
        if n != before:
            torch.set_num_threads(n)
        yield n
    finally:
        _state.depth = depth
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
