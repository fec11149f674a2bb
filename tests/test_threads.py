"""The thread policy: the override wins, the count stays within what the process may use, torch's count comes back
after any exit, cgroup quotas are read, and a patching sweep gives the same values with 1 thread as with 2."""

from __future__ import annotations

import os

import pytest
import torch

from locedit import threads
from locedit.patching import activation_patching_grid
from locedit.threads import ENV, allowed_cpus, cgroup_cpu_limit, choose_threads, loop_threads, policy_threads

CLEAN = "The Eiffel Tower is located in the city of"
CORRUPT = "The Colosseum is located in the city of"
TOL = 1e-5  # float32 probabilities, as in tests/test_patching.py


@pytest.fixture
def two_torch_threads():
    """torch at 2 threads for the test, restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_the_environment_override_wins(monkeypatch, two_torch_threads):
    monkeypatch.setattr(threads, "busy_elsewhere", lambda: 0.0)  # an idle machine: the policy alone would say more
    monkeypatch.setenv(ENV, "1")
    assert choose_threads() == 1
    with loop_threads() as n:
        assert n == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    monkeypatch.setenv(ENV, "3")  # more than the policy would ever give: the override still wins
    with loop_threads():
        assert torch.get_num_threads() == 3
    monkeypatch.setenv(ENV, "auto")
    assert choose_threads() == policy_threads()


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_a_bad_override_names_the_variable_and_the_fix(monkeypatch, value):
    monkeypatch.setenv(ENV, value)
    with pytest.raises(ValueError, match=f"{ENV}.*whole number"):
        choose_threads()


def test_a_block_wins_over_the_environment_and_inner_loops_keep_it(monkeypatch, two_torch_threads):
    monkeypatch.setenv(ENV, "2")
    with loop_threads(1):
        with loop_threads() as inner:  # what a hot entry point inside the block does
            assert inner == 1 and torch.get_num_threads() == 1
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_loop_threads_rejects_a_bad_count(bad):
    with pytest.raises(ValueError, match="thread count"), loop_threads(bad):
        pass


def test_the_count_is_restored_after_an_exception(two_torch_threads):
    with pytest.raises(RuntimeError, match="inside"), loop_threads(1):
        assert torch.get_num_threads() == 1
        raise RuntimeError("inside")
    assert torch.get_num_threads() == 2

    @loop_threads(1)
    def fails():
        raise KeyError("decorated")

    with pytest.raises(KeyError):
        fails()
    assert torch.get_num_threads() == 2


def test_the_count_is_restored_after_a_sweep_fails(smollm2, monkeypatch, two_torch_threads):
    monkeypatch.setenv(ENV, "1")
    seen = []

    def metric(logits):
        seen.append(torch.get_num_threads())
        raise ArithmeticError("metric failed")

    with pytest.raises(ArithmeticError):
        activation_patching_grid(smollm2, CLEAN, CORRUPT, metric, layers=[0], positions=[9])
    assert seen == [1]  # the engine ran under the override
    assert torch.get_num_threads() == 2


def test_the_policy_stays_within_the_cpus_this_process_may_use(two_torch_threads):
    n = policy_threads()
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert 1 <= n <= allowed_cpus() <= affinity
    assert 0.0 <= threads.busy_elsewhere() <= (os.cpu_count() or 1) + 0.5  # a share of the CPUs, not garbage


@pytest.mark.parametrize(("cpus", "busy", "torch_threads", "want"), [
    (2, 0.05, 2, 2),  # quiet: every core
    (2, 1.0, 2, 1),  # one other busy process: the free core
    (2, 0.5, 2, 1),  # a core half taken counts as taken
    (2, 0.25, 2, 2),  # a little background work does not
    (2, 3.0, 2, 1),  # overloaded: still one
    (8, 2.0, 8, 6),
    (8, 0.0, 4, 4),  # never more than torch's own count
])  # fmt: skip
def test_the_rule(monkeypatch, cpus, busy, torch_threads, want):
    monkeypatch.setattr(threads, "allowed_cpus", lambda: cpus)
    monkeypatch.setattr(threads, "busy_elsewhere", lambda: busy)
    monkeypatch.setattr(torch, "get_num_threads", lambda: torch_threads)
    assert policy_threads() == want


def test_cgroup_quota(tmp_path):
    proc = tmp_path / "cgroup"
    proc.write_text("0::/job\n")
    (tmp_path / "job").mkdir()
    (tmp_path / "job" / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_limit(tmp_path, proc) == pytest.approx(1.5)
    (tmp_path / "job" / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_limit(tmp_path, proc) is None
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("300000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_limit(v1, tmp_path / "missing") == pytest.approx(3.0)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_limit(v1, tmp_path / "missing") is None
    assert cgroup_cpu_limit(tmp_path / "nothing", tmp_path / "missing") is None


def test_a_quota_caps_the_allowed_cpus(monkeypatch):
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda: 1.5)
    assert allowed_cpus() == 1
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda: 0.2)
    assert allowed_cpus() == 1
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda: None)
    assert allowed_cpus() == (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())


def test_a_sweep_gives_the_same_values_with_one_thread_as_with_two(smollm2, two_torch_threads):
    paris = smollm2.token_id(" Paris")
    kwargs = {"layers": [0, 7, 15, 29], "positions": [0, 4, 9]}
    grids, seen = {}, {1: set(), 2: set()}
    for n in (1, 2):

        def metric(logits, n=n):
            seen[n].add(torch.get_num_threads())  # the count the engine runs with
            return logits[:, -1].softmax(-1)[:, paris]

        with loop_threads(n):
            grids[n] = activation_patching_grid(smollm2, CLEAN, CORRUPT, metric, **kwargs)
    assert seen == {1: {1}, 2: {2}}
    assert grids[1].shape == (4, 3)
    assert (grids[1] - grids[2]).abs().max() <= TOL
    assert grids[1].max() > 0.1  # the grid holds real effects (the last layer × last position restores Paris)
