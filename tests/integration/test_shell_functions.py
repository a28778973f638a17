"""The SDK's ShellFunction on every engine: stdout, stderr, a non-zero return code and a
walltime, and the whole ShellResult back at the client. The SDK's own class is pickled by
reference, so it runs where the SDK is installed: ours installs it, as the official does."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from globus_compute_sdk import ShellFunction
from globus_compute_sdk.serialize import ComputeSerializer

from tests.integration.test_engines import ENGINE_CONFIGS, GCE_CONFIG

pytestmark = pytest.mark.slow

SDK = ComputeSerializer()  # by reference, as the SDK sends a ShellFunction
SANDBOXED_GCE = GCE_CONFIG.format(retries=0).replace("engine:\n", "engine:\n  run_in_sandbox: true\n", 1)


def run_shell(endpoint, shell_function: ShellFunction, resource_specification: dict | None = None, **kwargs):
    code = SDK.pack_buffers([SDK.serialize(shell_function)])
    registered = requests.post(f"{endpoint.service.url}/v3/functions", headers=endpoint.headers, timeout=30,
                               json={"function_name": "shell", "function_code": code})
    function_id = registered.json()["function_uuid"]
    payload = SDK.pack_buffers([SDK.serialize(()), SDK.serialize(kwargs)])
    submitted = requests.post(f"{endpoint.service.url}/v3/endpoints/{endpoint.endpoint_id}/submit",
                              headers=endpoint.headers, json={"tasks": {function_id: [payload]},
                                    "resource_specification": resource_specification}, timeout=30)
    [task_id] = submitted.json()["tasks"][function_id]
    result = endpoint.results([task_id], timeout=120)[task_id]
    assert result["status"] == "success", result.get("exception")
    return SDK.deserialize(result["result"])


# GlobusComputeEngine in a sandbox: the engine, and the sandbox's directory told to the task.
CONFIGS = {**{k: v for k, v in ENGINE_CONFIGS.items() if k != "GlobusComputeEngine"},
           "GlobusComputeEngine in a sandbox": SANDBOXED_GCE}


@pytest.mark.parametrize("engine", list(CONFIGS))
def test_shell_functions_return_their_whole_result_on_every_engine(make_endpoint, engine):
    endpoint = make_endpoint(CONFIGS[engine])
    failed = run_shell(endpoint, ShellFunction("echo out; echo err >&2; exit 3"))
    assert (failed.returncode, failed.stdout, failed.exception_name) == (3, "out\n", "subprocess.CalledProcessError")
    assert failed.stderr.startswith("err\n")
    timed_out = run_shell(endpoint, ShellFunction("sleep 30", walltime=1))
    assert (timed_out.returncode, timed_out.exception_name) == (124, "subprocess.TimeoutExpired")
    formatted = run_shell(endpoint, ShellFunction("echo {greeting} && pwd"), greeting="hello")
    assert formatted.returncode == 0 and formatted.stdout.startswith("hello\n")
    if engine == "GlobusComputeEngine in a sandbox":  # told its directory, as the official tells it
        import uuid

        assert "Task sandboxing will not work" not in formatted.stderr
        where = Path(formatted.stdout.splitlines()[1])
        assert where.parent == endpoint.directory / "tasks_working_dir" and uuid.UUID(where.name)
