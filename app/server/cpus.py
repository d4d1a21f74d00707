"""How many CPUs this process may really use: the default number of workers.

os.cpu_count() (and uWSGI's %k) count the host's CPUs. A container is given a share of them as
a CFS quota (Cloud Run's `--cpu`, docker's `--cpus`, Kubernetes' limits): on a 32-core host a
1-CPU instance would start 32 workers, each with its own copy of what a request allocates, all
throttled to one CPU's worth of time. So the count is the smallest of the CPUs the process may
be scheduled on (sched_getaffinity: cpusets, taskset) and the quota, rounded up (half a CPU
still runs one worker).
"""
from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def available_cpus(root: Path = CGROUP_ROOT, own_cgroup: Path = Path("/proc/self/cgroup")) -> int:
    try:
        schedulable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        schedulable = os.cpu_count() or 1
    quota = cpu_quota(root, own_cgroup)
    return max(1, min(schedulable, math.ceil(quota))) if quota else max(1, schedulable)


def cpu_quota(root: Path = CGROUP_ROOT, own_cgroup: Path = Path("/proc/self/cgroup")) -> float | None:
    """CPUs' worth of time per period the cgroup grants, or None when it sets no limit (or
    there is no cgroup file to read). cgroup v2: `cpu.max` holds "QUOTA PERIOD" or "max PERIOD";
    v1: `cpu.cfs_quota_us` (-1: none) over `cpu.cfs_period_us`. The process's own cgroup is
    looked up first (a host without a cgroup namespace), then the mount's root (a container,
    where the namespace makes its own cgroup the root)."""
    v2_dir, v1_dir = _own_directories(own_cgroup)
    for directory in (root / v2_dir, root):
        text = _read(directory / "cpu.max")
        if text is not None:
            quota, _, period = text.partition(" ")
            return None if quota == "max" else _ratio(quota, period)
    for cpu in (root / "cpu", root / "cpu,cpuacct"):
        for directory in (cpu / v1_dir, cpu):
            quota = _read(directory / "cpu.cfs_quota_us")
            if quota is not None:
                return None if quota.startswith("-") else _ratio(quota, _read(directory / "cpu.cfs_period_us"))
    return None


def _own_directories(own_cgroup: Path) -> tuple[str, str]:
    """This process's cgroup path for v2 ("0::/path") and for v1's cpu controller
    ("N:cpu,cpuacct:/path"), relative, "" where /proc/self/cgroup does not say."""
    v2 = v1 = ""
    for line in (_read(own_cgroup) or "").splitlines():
        _, controllers, path = line.split(":", 2) if line.count(":") >= 2 else ("", "", "")
        if controllers == "":
            v2 = path.lstrip("/")
        elif "cpu" in controllers.split(","):
            v1 = path.lstrip("/")
    return v2, v1


def _ratio(quota: str, period: str | None) -> float | None:
    try:
        value = int(quota) / int(period or "100000")
    except (ValueError, ZeroDivisionError):
        return None  # unreadable: as if there were no limit, rather than refusing to start
    return value if value > 0 else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None
