"""Every example is real: each config loads through the config model, and the client
script answers against a running service and endpoint."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from compute_endpoint.endpoint.config import GlobusComputeEngineConfig, load_config

EXAMPLES = Path(__file__).parents[1] / "examples"
CONFIGS = sorted((EXAMPLES / "configs").glob("*.yaml"))


def test_the_documented_cases_have_examples():
    names = {path.stem for path in CONFIGS}
    assert {"default-local", "thread-pool", "process-pool", "slurm", "conda-worker-init", "venv-worker-init",
            "docker", "apptainer", "custom-bubblewrap", "setup-teardown", "local-service", "mpi-slurm"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_example_config_loads(path):
    config = load_config(path)
    text = path.read_text()
    assert text.startswith("#"), "each example says what it is for"
    if "container_type" in text:
        assert isinstance(config.engine, GlobusComputeEngineConfig) and config.engine.container_type
    if "endpoint_setup" in text:
        assert config.endpoint_setup and config.endpoint_teardown


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["executor", "poll"])
def test_client_script_against_a_running_endpoint(mode, sdk_port, start_service, tmp_path):
    from tests.endpoint_harness import EndpointHarness

    service = start_service(port=sdk_port)
    endpoint = EndpointHarness(service, tmp_path / "gc", "ep", (EXAMPLES / "configs" / "thread-pool.yaml").read_text())
    endpoint.start()
    try:
        argv = [sys.executable, str(EXAMPLES / "submit_functions.py"), "--endpoint-id", endpoint.endpoint_id,
                "-n", "5", *(["--poll"] if mode == "poll" else [])]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=180,
                                env={"COMPUTE_SERVICE_TOKEN": endpoint.token, "PATH": "/usr/bin:/bin"})
        assert result.returncode == 0, result.stdout + result.stderr
        assert "squares: [0, 1, 4, 9, 16]" in result.stdout
    finally:
        endpoint.stop()


def test_client_script_without_a_token_says_how_to_give_one():
    result = subprocess.run([sys.executable, str(EXAMPLES / "submit_functions.py"), "--endpoint-id", "x"],
                            capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 2 and "--token or $COMPUTE_SERVICE_TOKEN" in result.stderr
