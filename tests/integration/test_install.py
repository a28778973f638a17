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
    # sub-packages too (a wheel once lacked the service's routes)
    assert (target / "compute_endpoint" / "service" / "routes" / "tasks.py").exists()
    assert (target / "compute_endpoint" / "endpoint" / "config" / "loading.py").exists()

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


@pytest.mark.slow
def test_a_stock_pip_in_a_fresh_venv_builds_and_installs_it(tmp_path):
    """As the documentation installs endpoints: a venv made by the system's Python, with the
    pip and setuptools it bundles (no upgrade), installing from the source tree (PEP 517)."""
    interpreter = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
    venv = tmp_path / "venv"
    made = subprocess.run([interpreter, "-m", "venv", str(venv)], capture_output=True, text=True, timeout=120)
    if made.returncode:
        pytest.skip(f"{interpreter} cannot make a venv here: {made.stderr[-300:]}")
    wheels = tmp_path / "wheels"
    built = subprocess.run([str(venv / "bin" / "pip"), "wheel", "--quiet", "--no-deps", "-w", str(wheels),
                            str(PROJECT)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert built.returncode == 0, built.stderr[-2000:]
    [wheel] = wheels.glob("compute_endpoint-*.whl")
    installed = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", str(wheel)],
                               capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr[-2000:]
    env = dict(os.environ, GLOBUS_COMPUTE_USER_DIR=str(tmp_path / "gc"))
    for command, expected in ((["version"], "Globus Compute endpoint version:"),
                              (["configure", "first"], "Created profile for endpoint named <first>"),
                              (["list"], "| None        | Initialized | first")):
        ran = subprocess.run([str(venv / "bin" / "globus-compute-endpoint"), *command], capture_output=True,
                             text=True, env=env, cwd=tmp_path, timeout=60)
        assert ran.returncode == 0 and expected in ran.stdout, ran.stdout + ran.stderr
    service = subprocess.run([str(venv / "bin" / "compute-service"), "--help"], capture_output=True, text=True)
    assert service.returncode == 0 and "serve" in service.stdout
    # The serialization stack the official SDK 4.19 expects of its endpoint: no "Environment
    # differences" warning for a user whose Python matches.
    versions = "import importlib.metadata as m; print(m.version('dill'), m.version('globus-compute-sdk'))"
    stack = subprocess.run([str(venv / "bin" / "python"), "-c", versions], capture_output=True, text=True)
    assert stack.stdout.split() == [_sdk_pin("dill"), "4.19.0"], stack.stdout + stack.stderr
    routes = subprocess.run([str(venv / "bin" / "python"), "-c", "import compute_endpoint.service.app"],
                            capture_output=True, text=True)
    assert routes.returncode == 0, routes.stderr[-2000:]


def _sdk_pin(distribution: str) -> str:
    """The version the official SDK 4.19 pins for a dependency."""
    import importlib.metadata

    pins = [r for r in importlib.metadata.requires("globus-compute-sdk") or () if r.startswith(f"{distribution}==")]
    return pins[0].split("==")[1].split(";")[0].strip()
