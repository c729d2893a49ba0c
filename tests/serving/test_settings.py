"""Serving's decode concurrency follows the CPUs the process may really use, not the node's cores."""

import os

import pytest
from serving.settings import available_cpus


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [
        ("100000 100000\n", 1),  # a pod limited to 1 CPU on a node with many
        ("150000 100000\n", 2),  # 1.5 CPUs: two threads, never none
        ("max 100000\n", None),  # no quota: the affinity
        (None, None),  # no cgroup v2 file
        ("garbage", None),
    ],
)
def test_available_cpus_is_the_affinity_capped_by_the_cgroup_quota(tmp_path, cpu_max, expected):
    path = tmp_path / "cpu.max"
    if cpu_max is not None:
        path.write_text(cpu_max)
    affinity = len(os.sched_getaffinity(0))
    assert available_cpus(path) == min(affinity, expected or affinity)


def test_available_cpus_counts_the_affinity_not_the_cores(tmp_path):
    """Pinned to one core (taskset, a cpuset), the process has one CPU, whatever os.cpu_count() says."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(before)})
    try:
        assert available_cpus(tmp_path / "none") == 1
    finally:
        os.sched_setaffinity(0, before)
