"""Real Slurm clusters for the tests, started by the scripts in .ci/: a single node, and two
compute nodes in network namespaces of their own (the host is the login node).

Where a cluster cannot start, its tests skip with the reason; under CI (CI=true) they fail
instead, so a cluster that silently stopped working cannot hide behind a green run."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

CI_DIR = Path(__file__).parents[1] / ".ci"
SINGLE_NODE = CI_DIR / "start-slurm"
TWO_NODES = CI_DIR / "start-slurm-cluster"
# The two-node cluster's addresses (on the bridge the script makes).
LOGIN_ADDRESS = "10.231.7.1"
NODE_ADDRESSES = {"node1": "10.231.7.11", "node2": "10.231.7.12"}
BRIDGE = "gcbr0"


def cannot_start(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (under CI a cluster test fails rather than skips)")
    pytest.skip(reason)


def start_cluster(script: Path, needs: tuple[str, ...] = ()) -> str:
    """Start (or reuse a healthy) cluster; the path of its slurm.conf."""
    missing = [tool for tool in ("slurmctld", "munged", *needs) if not shutil.which(tool)]
    if os.geteuid() != 0 or missing:
        cannot_start(f"Slurm cannot be started here: {script.name} needs root and "
                     f"{', '.join(missing) or 'Debian Slurm'} (run {script} to install them)")
    started = subprocess.run([str(script)], capture_output=True, text=True, timeout=180)
    if started.returncode:
        cannot_start(f"{script.name} did not start the cluster: {started.stderr[-800:]}")
    return started.stdout.strip().splitlines()[-1]


def squeue(conf: str) -> list[str]:
    out = subprocess.run(["squeue", "-h", "-o", "%i %j %T %N"], env=dict(os.environ, SLURM_CONF=conf),
                         capture_output=True, text=True, check=True).stdout
    return out.splitlines()
