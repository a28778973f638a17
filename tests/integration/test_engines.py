"""Each engine through the real endpoint, with functions serialized by the official SDK."""

from __future__ import annotations

import time

import psutil
import pytest

from tests.endpoint_harness import SERIALIZER

pytestmark = pytest.mark.slow

GCE_CONFIG = """\
engine:
  type: GlobusComputeEngine
  max_workers_per_node: 2
  max_retries_on_system_failure: {retries}
  job_status_kwargs: {{strategy_period: 1, max_idletime: 5}}
  provider:
    type: LocalProvider
    init_blocks: 1
    min_blocks: 0
    max_blocks: 1
    worker_init: export MARKER=set-by-worker-init
"""

ENGINE_CONFIGS = {
    "ThreadPoolEngine": "engine:\n  type: ThreadPoolEngine\n  max_workers: 2\n",
    "ProcessPoolEngine": "engine:\n  type: ProcessPoolEngine\n  max_workers: 2\n",
    "GlobusComputeEngine": GCE_CONFIG.format(retries=0),
}


def add(a, b):
    return a + b


def raises(message):
    raise KeyError(message)


def big(n):
    return "x" * n


def own_task_id():
    import os

    return os.environ["GC_TASK_UUID"]


def marker():
    import os

    return os.environ.get("MARKER"), os.environ.get("WRAPPED_IN")


def square_after(x, seconds):
    import time

    time.sleep(seconds)
    return x * x


@pytest.mark.parametrize("engine", list(ENGINE_CONFIGS))
def test_engine_runs_sdk_functions_and_reports_errors(make_endpoint, engine):
    endpoint = make_endpoint(ENGINE_CONFIGS[engine])
    assert endpoint.run(add, [(i, 1) for i in range(20)]) == [i + 1 for i in range(20)]

    ids = endpoint.submit(own_task_id, [()] * 3)
    results = endpoint.results(ids)
    assert [SERIALIZER.deserialize(results[t]["result"]) for t in ids] == ids

    [failed] = endpoint.submit(raises, [("missing-key",)])
    failure = endpoint.results([failed])[failed]
    assert failure["status"] == "failed"
    assert "KeyError: 'missing-key'" in failure["exception"]

    within, over = endpoint.submit(big, [(1_000_000,), (11 * 1024 * 1024,)])
    sized = endpoint.results([within, over])
    assert SERIALIZER.deserialize(sized[within]["result"]) == "x" * 1_000_000
    assert sized[over]["status"] == "failed" and "exceeds the" in sized[over]["exception"]

    # Bodies and results over 64 KiB are kept in files (one by one, and in chunks of several).
    large = [(f"{i}" + "a" * 300_000, "b" * 100_000) for i in range(7)]
    assert endpoint.run(add, large) == [a + b for a, b in large]
    deadline = time.monotonic() + 10
    kept = [endpoint.directory / "task_bodies", endpoint.directory / "unacked_results"]
    while any(folder.is_dir() and any(folder.iterdir()) for folder in kept):
        assert time.monotonic() < deadline, "task bodies or results left after their tasks were acknowledged"
        time.sleep(0.1)


def test_globus_compute_engine_runs_worker_init_under_the_interchange(make_endpoint):
    endpoint = make_endpoint(GCE_CONFIG.format(retries=0))
    assert endpoint.run(marker, [()]) == [("set-by-worker-init", None)]
    engine = endpoint.children()["engine"]
    import psutil

    titles = [p.cmdline()[0] for p in psutil.Process(engine).children()]
    assert "parsl: HTEX interchange" in titles


def where_do_i_run():
    import os

    with open("left-behind.txt", "w") as f:
        f.write(os.environ["GC_TASK_UUID"])
    return os.getcwd()


@pytest.mark.parametrize("sandbox", [True, False])
def test_tasks_run_in_working_dir_and_with_run_in_sandbox_each_in_its_own(make_endpoint, sandbox):
    config = GCE_CONFIG.format(retries=0).replace(
        "  max_workers_per_node: 2\n", f"  max_workers_per_node: 2\n  run_in_sandbox: {str(sandbox).lower()}\n")
    endpoint = make_endpoint(config)
    ids = endpoint.submit(where_do_i_run, [()] * 4)
    results = endpoint.results(ids)
    directories = [SERIALIZER.deserialize(results[t]["result"]) for t in ids]
    working_dir = endpoint.directory / "tasks_working_dir"
    if sandbox:
        assert directories == [str(working_dir / t) for t in ids]
        assert [(working_dir / t / "left-behind.txt").read_text() for t in ids] == ids
    else:
        assert set(directories) == {str(working_dir)}
        assert (working_dir / "left-behind.txt").read_text() in ids


def test_custom_container_wraps_the_worker_launch(make_endpoint, tmp_path):
    wrapper = tmp_path / "wrapper.sh"
    wrapper.write_text('#!/bin/sh\nexport WRAPPED_IN="$1"\nshift\nexec "$@"\n')
    wrapper.chmod(0o755)
    config = GCE_CONFIG.format(retries=0).replace(
        "  max_workers_per_node: 2\n",
        f"  max_workers_per_node: 2\n  container_type: custom\n"
        f"  container_cmd_options: {wrapper} {{EXECUTOR_RUNDIR}} {{EXECUTOR_LAUNCH_CMD}}\n")
    endpoint = make_endpoint(config)
    [(marker_value, wrapped_in)] = endpoint.run(marker, [()])
    assert marker_value == "set-by-worker-init"
    assert wrapped_in == str(endpoint.directory / "engine")


@pytest.mark.parametrize("retries, expect_success", [(2, True), (0, False)])
def test_engine_killed_mid_run_retries_as_configured(make_endpoint, retries, expect_success):
    config = f"engine:\n  type: ProcessPoolEngine\n  max_workers: 4\n  max_retries_on_system_failure: {retries}\n"
    endpoint = make_endpoint(config)
    assert endpoint.run(square_after, [(0, 0)]) == [0]  # the pool's workers are up
    ids = endpoint.submit(square_after, [(i, 3) for i in range(8)])
    endpoint.wait_until_running(4)  # the first four run now (3 s each); the other four wait in the engine
    engine = psutil.Process(endpoint.children()["engine"])
    pool_workers = engine.children()
    assert pool_workers
    engine.kill()
    results = endpoint.results(ids, timeout=90)
    # The killed engine's pool workers die with it, not reparented and left behind.
    _, left = psutil.wait_procs(pool_workers, timeout=10)
    assert not left, [p.pid for p in left]
    statuses = [results[t]["status"] for t in ids]
    if expect_success:
        assert statuses == ["success"] * 8
        assert [SERIALIZER.deserialize(results[t]["result"]) for t in ids] == [i * i for i in range(8)]
    else:  # only the four that were running count a try; the queued four run on the new engine
        failed = [results[t] for t in ids if results[t]["status"] == "failed"]
        assert len(failed) == 4, statuses
        assert all("engine process died while running this task" in f["exception"] for f in failed)
    assert endpoint.status() == "Running"


@pytest.mark.parametrize("engine, reason", [
    ("ThreadPoolEngine", "ThreadPoolEngine does not support resource_specification (got {\"num_nodes\": 2}); use "
     "GlobusComputeEngine for per-task priority, GlobusMPIEngine for multi-node (MPI) tasks"),
    ("GlobusComputeEngine", "GlobusComputeEngine runs single-node tasks and takes only 'priority' in "
     "resource_specification (got {\"num_nodes\": 2}); multi-node (MPI) tasks need engine type GlobusMPIEngine"),
])
def test_engines_reject_resource_specifications_they_cannot_honour_clearly(make_endpoint, engine, reason):
    import requests

    endpoint = make_endpoint(ENGINE_CONFIGS[engine])
    # through the service, as the SDK sends it with Executor(resource_specification=...)
    function_id = endpoint.register_function(add)
    payload = SERIALIZER.pack_buffers([SERIALIZER.serialize((1, 2)), SERIALIZER.serialize({})])
    response = requests.post(f"{endpoint.service.url}/v3/endpoints/{endpoint.endpoint_id}/submit",
                             headers=endpoint.headers, timeout=30,
                             json={"tasks": {function_id: [payload]}, "resource_specification": {"num_nodes": 2}})
    [task_id] = response.json()["tasks"][function_id]
    result = endpoint.results([task_id])[task_id]
    assert result["status"] == "failed"
    assert reason in result["exception"]
