"""The default worker count follows the instance's CPU quota (app/server/cpus.py), not the
host's CPU count: cgroup v2's cpu.max and v1's cfs quota, read from files laid out in tmp_path
as the kernel lays them out."""
import os

import pytest

from mlapi.config import Settings
from mlapi.server import cpus, launch, limits
from scratch_dirs import scratch_dirs_in_tmp_path  # noqa: F401  (autouse: no directories left in /tmp)


def cgroup(tmp_path, files: dict[str, str], own: str = "0::/\n"):
    for name, text in files.items():
        path = tmp_path / "fs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (tmp_path / "self-cgroup").write_text(own)
    return tmp_path / "fs", tmp_path / "self-cgroup"


@pytest.mark.parametrize("files, own, quota", [
    ({"cpu.max": "200000 100000\n"}, "0::/\n", 2.0),                        # v2, a container's own root
    ({"cpu.max": "50000 100000\n"}, "0::/\n", 0.5),                         # half a CPU
    ({"cpu.max": "max 100000\n"}, "0::/\n", None),                          # v2, no limit
    ({"system.slice/app.service/cpu.max": "300000 100000\n", "cpu.max": "max 100000\n"},
     "0::/system.slice/app.service\n", 3.0),                                 # v2, the process's own cgroup first
    ({"cpu/cpu.cfs_quota_us": "150000\n", "cpu/cpu.cfs_period_us": "100000\n"},
     "4:cpu,cpuacct:/\n0::/\n", 1.5),                                        # v1
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, "4:cpu,cpuacct:/\n", None),
    ({"cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "100000\n", "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "50000\n"},
     "4:cpu,cpuacct:/docker/abc\n", 2.0),                                    # v1, nested, the other mount name
    ({}, "", None),                                                          # no cgroup files at all
    ({"cpu.max": "garbage\n"}, "0::/\n", None),                              # unreadable: no limit
])
def test_the_quota_is_read_from_either_cgroup_version(tmp_path, files, own, quota):
    root, own_file = cgroup(tmp_path, files, own)
    assert cpus.cpu_quota(root, own_file) == quota


def test_the_cpu_count_is_the_quota_rounded_up_within_the_schedulable_cpus(tmp_path):
    schedulable = len(os.sched_getaffinity(0))
    root, own = cgroup(tmp_path, {"cpu.max": "50000 100000\n"})
    assert cpus.available_cpus(root, own) == 1  # half a CPU still runs one worker
    root, own = cgroup(tmp_path / "big", {"cpu.max": f"{(schedulable + 8) * 100000} 100000\n"})
    assert cpus.available_cpus(root, own) == schedulable  # a quota above the CPUs there are
    root, own = cgroup(tmp_path / "none", {"cpu.max": "max 100000\n"})
    assert cpus.available_cpus(root, own) == schedulable


def test_every_server_gets_the_same_default_worker_count(tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "available_cpus", lambda: 3)
    settings = Settings.from_env({"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})
    gunicorn = launch.server_command("gunicorn", 9000, None, settings)
    assert gunicorn[gunicorn.index("--workers") + 1] == "3"
    assert launch.granian_arguments(9000, settings)[2] == "3"
    assert launch.prepare(settings, 9000, "uwsgi", {})[1]["MLAPI_WORKERS"] == "3"
    chosen = Settings.from_env({"WEB_CONCURRENCY": "5", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})
    assert launch.prepare(chosen, 9000, "uwsgi", {})[1]["MLAPI_WORKERS"] == "5"
