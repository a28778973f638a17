"""The distribution installs one import root, compute_endpoint, and nothing else."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_pip_install_puts_one_import_root_in_site_packages(tmp_path):
    target = tmp_path / "site-packages"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(PROJECT)],
        check=True, capture_output=True, timeout=300, cwd=tmp_path,
    )
    top_level = {p.name for p in target.iterdir() if not p.name.endswith((".dist-info", ".egg-info"))}
    assert top_level == {"compute_endpoint", "bin"}
    packages = {p.name for p in (target / "compute_endpoint").iterdir()}
    assert {"endpoint", "supervisor", "workers", "protocol", "service"} <= packages

    env = dict(os.environ, PYTHONPATH=str(target))
    probe = subprocess.run(
        [sys.executable, "-c",
         "import compute_endpoint.endpoint.cli as m, compute_endpoint.supervisor as s; "
         "print(m.__file__); print(s.__file__)"],
        check=True, capture_output=True, text=True, env=env, cwd=tmp_path,
    )
    for path in probe.stdout.split():
        assert Path(path).is_relative_to(target), path

    script = subprocess.run([str(target / "bin" / "globus-compute-endpoint"), "version"],
                            capture_output=True, text=True, env=env, cwd=tmp_path)
    assert script.returncode == 0 and "Globus Compute endpoint version:" in script.stdout
