"""Fixtures of the integration tests."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from tests.clusters import TWO_NODES, squeue, start_cluster
from tests.endpoint_harness import EndpointHarness

# An endpoint on the two-node cluster: its pools run as batch jobs on the compute nodes.
CLUSTER_CONFIG = """\
engine:
  type: GlobusComputeEngine
  max_workers_per_node: {workers}
  max_retries_on_system_failure: 2
  heartbeat_period: 2
  heartbeat_threshold: 6
  job_status_kwargs: {{strategy_period: 1, max_idletime: 30}}
{extra}  provider:
    type: SlurmProvider
    partition: cluster
    nodes_per_block: {nodes}
    init_blocks: 0
    min_blocks: 0
    max_blocks: 1
    walltime: "00:10:00"
    exclusive: false
    launcher: {{type: SrunLauncher}}
    worker_init: source {venv}/bin/activate
"""


def _endpoints(service, base_dir: Path):
    """Start real endpoints (CLI, daemon, tree) against service(); each is stopped, and
    anything left killed, at the end of the test."""
    harnesses = []

    def make(config_text: str) -> EndpointHarness:
        harness = EndpointHarness(service(), base_dir / f"gc{len(harnesses)}", "ep", config_text)
        harnesses.append(harness)
        harness.start()
        return harness

    yield make
    stop_all(harnesses)


def stop_all(harnesses: list[EndpointHarness]) -> None:
    for harness in harnesses:
        harness.cli("stop", harness.name, "--timeout", "20")
        harness.kill_everything()


@pytest.fixture
def make_endpoint(start_service, tmp_path):
    """Endpoints, each with a service of its own on a free port."""
    yield from _endpoints(start_service, tmp_path)


@pytest.fixture
def sdk_endpoint(start_service, tmp_path):
    """Endpoints behind one service of their own, for the official SDK's Client and Executor
    (the harness's `executor()`, aimed at that service)."""
    service = None

    def shared_service():
        nonlocal service
        service = service or start_service()
        return service

    yield from _endpoints(shared_service, tmp_path)


@pytest.fixture(scope="module")
def cluster_conf() -> str:
    return start_cluster(TWO_NODES, needs=("ip", "nsenter", "unshare"))


@pytest.fixture
def cluster_endpoint(cluster_conf, start_service, tmp_path, monkeypatch):
    """Start an endpoint with a cluster config; stopped and killed at the end."""
    monkeypatch.setenv("SLURM_CONF", cluster_conf)  # sbatch, squeue and scancel, run by the engine
    service = start_service()
    started = []

    def start(nodes: int = 1, workers: int = 1, extra: str = "", expect_start: bool = True,
              config: str | None = None):
        venv = Path(sys.executable).parent.parent
        config = config or CLUSTER_CONFIG.format(nodes=nodes, workers=workers, extra=extra, venv=venv)
        endpoint = EndpointHarness(service, tmp_path / f"gc{len(started)}", f"cluster{len(started)}", config)
        started.append(endpoint)
        if expect_start:
            endpoint.start()
        return endpoint

    yield start
    stop_all(started)
    deadline = time.monotonic() + 30
    while squeue(cluster_conf) and time.monotonic() < deadline:
        time.sleep(0.5)  # the next test starts with free nodes
