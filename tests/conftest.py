"""Fixtures shared by every test: an isolated endpoint base directory and CLI runners."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

BIN_DIR = Path(sys.executable).parent


@pytest.fixture
def user_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty GLOBUS_COMPUTE_USER_DIR, so no test touches ~/.globus_compute."""
    base = tmp_path / "gc"
    monkeypatch.setenv("GLOBUS_COMPUTE_USER_DIR", str(base))
    return base


@pytest.fixture
def cli(user_dir: Path):
    """Invoke the CLI in-process through click's runner."""
    from compute_endpoint.endpoint.cli import app

    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):
        return runner.invoke(app, list(args), input=input, catch_exceptions=False)

    return invoke


@pytest.fixture
def cli_process(user_dir: Path):
    """Run the installed console script as a real subprocess."""
    script = shutil.which("globus-compute-endpoint", path=str(BIN_DIR)) or shutil.which(
        "globus-compute-endpoint"
    )
    assert script, "globus-compute-endpoint is not installed next to this Python"

    def run(*args: str, input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        env = dict(os.environ, GLOBUS_COMPUTE_USER_DIR=str(user_dir))
        return subprocess.run([script, *args], input=input, capture_output=True, text=True,
                              timeout=timeout, env=env)

    return run
