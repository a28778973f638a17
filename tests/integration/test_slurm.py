"""GlobusComputeEngine + Parsl's SlurmProvider against a real single-node Slurm cluster
(slurmctld, slurmd and munge from Debian, started by .ci/start-slurm), with functions
submitted through the official SDK's Executor."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.clusters import SINGLE_NODE, squeue, start_cluster
from tests.endpoint_harness import EndpointHarness
from tests.sdk import sdk_client

pytestmark = pytest.mark.slow

SLURM_CONFIG = """\
engine:
  type: GlobusComputeEngine
  max_workers_per_node: 2
  job_status_kwargs: {{strategy_period: 1, max_idletime: 2}}
  provider:
    type: SlurmProvider
    partition: debug
    nodes_per_block: 1
    init_blocks: 0
    min_blocks: 0
    max_blocks: 1
    walltime: "00:10:00"
    exclusive: false
    worker_init: source {venv}/bin/activate
"""


def where_am_i():
    import os
    import socket

    return os.environ.get("SLURM_JOB_ID"), socket.gethostname(), os.environ.get("GC_TASK_UUID")


def square(x):
    return x * x


@pytest.fixture(scope="module")
def slurm_conf() -> str:
    return start_cluster(SINGLE_NODE)


def test_functions_run_inside_a_slurm_job_and_idle_blocks_are_released(slurm_conf, start_service,
                                                                       tmp_path, monkeypatch):
    from globus_compute_sdk import Executor
    from globus_compute_sdk.serialize import PureSourceDill

    monkeypatch.setenv("SLURM_CONF", slurm_conf)  # sbatch and squeue, run by the engine, need it
    venv = Path(sys.executable).parent.parent
    service = start_service()
    endpoint = EndpointHarness(service, tmp_path / "gc", "slurm", SLURM_CONFIG.format(venv=venv))
    endpoint.start()
    try:
        client = sdk_client(service.url, endpoint.token, code_serialization_strategy=PureSourceDill())
        started = time.monotonic()
        with Executor(endpoint_id=endpoint.endpoint_id, client=client, task_group_id=uuid.uuid4()) as executor:
            first = executor.submit(where_am_i)
            job_id, host, task_id = first.result(timeout=120)
            first_result_s = time.monotonic() - started
            squares = [executor.submit(square, i) for i in range(20)]
            assert [f.result(timeout=60) for f in squares] == [i * i for i in range(20)]
        print(f"\nSlurm: time from submit to first result {first_result_s:.2f} s (job {job_id})")
        assert job_id and job_id.isdigit(), "the function did not run inside a Slurm job"
        assert task_id == first.task_id
        jobs = subprocess.run(["scontrol", "show", "job", job_id], env=dict(os.environ, SLURM_CONF=slurm_conf),
                              capture_output=True, text=True).stdout
        assert "parsl" in jobs.lower()  # Parsl submitted it
        # Idle for max_idletime: the engine cancels its block.
        deadline = time.monotonic() + 60
        while any(line.startswith(f"{job_id} ") and "RUNNING" in line for line in squeue(slurm_conf)):
            assert time.monotonic() < deadline, f"block {job_id} still running: {squeue(slurm_conf)}"
            time.sleep(0.5)
    finally:
        endpoint.cli("stop", endpoint.name, "--timeout", "20")
        endpoint.kill_everything()
    assert not [line for line in squeue(slurm_conf) if line.startswith(f"{job_id} ")]
