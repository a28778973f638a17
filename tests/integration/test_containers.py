"""The container types for real: `custom` through bubblewrap, `docker` through podman
behind a `docker` shim (the Docker engine does not run on these machines). Each runs the
HTEX workers inside the container, and a function proves where it ran."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ENGINE = """\
engine:
  type: GlobusComputeEngine
  max_workers_per_node: 1
  job_status_kwargs: {{strategy_period: 1}}
  container_type: {container_type}
{container_lines}  provider:
    type: LocalProvider
    init_blocks: 1
    min_blocks: 0
    max_blocks: 1
"""


def inside():
    import os
    import socket

    return socket.gethostname(), os.path.exists("/run/.containerenv"), os.getpid()


@pytest.mark.skipif(not shutil.which("bwrap"), reason="bubblewrap (bwrap) is not installed")
def test_custom_container_runs_the_workers_in_a_bubblewrap_sandbox(make_endpoint):
    # Read-only root, fresh /dev and /proc, own pid and uts namespaces; the run dir and
    # /tmp writable. The network stays shared: workers reach the interchange over TCP.
    template = ("bwrap --ro-bind / / --dev /dev --proc /proc --bind /tmp /tmp "
                "--bind {EXECUTOR_RUNDIR} {EXECUTOR_RUNDIR} --unshare-pid --unshare-uts "
                "--hostname bwrap-sandbox --die-with-parent {EXECUTOR_LAUNCH_CMD}")
    endpoint = make_endpoint(ENGINE.format(container_type="custom",
                                           container_lines=f"  container_cmd_options: '{template}'\n"))
    [(hostname, _, pid)] = endpoint.run(inside, [()], timeout=120)
    assert hostname == "bwrap-sandbox"
    assert pid < 100  # its own pid namespace: the worker pool is one of the first processes in it


def _docker_shim(directory: Path) -> Path:
    """`docker run ...` becomes `podman run --rm ...` with what podman needs on these machines."""
    shim = directory / "docker"
    shim.write_text('#!/bin/sh\n[ "$1" = run ] || exec podman "$@"\nshift\n'
                    'exec podman run --rm --runtime runc --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 "$@"\n')
    shim.chmod(0o755)
    return shim


@pytest.fixture
def podman_image(tmp_path):
    """An empty image: the container sees the host's system read-only through volumes."""
    if not (shutil.which("podman") and shutil.which("runc")):
        pytest.skip("podman and runc are not installed")
    empty = tmp_path / "empty.tar"
    subprocess.run(["tar", "-cf", str(empty), "-T", "/dev/null"], check=True)
    name = "localhost/compute-endpoint-test-empty:latest"
    imported = subprocess.run(["podman", "import", str(empty), name], capture_output=True, text=True)
    if imported.returncode:
        pytest.skip(f"podman cannot import an image here: {imported.stderr[-300:]}")
    return name


def test_docker_container_runs_the_workers_under_podman(make_endpoint, podman_image, tmp_path, monkeypatch):
    shim_dir = tmp_path / "shim"
    shim_dir.mkdir()
    _docker_shim(shim_dir)
    monkeypatch.setenv("PATH", f"{shim_dir}{os.pathsep}{os.environ['PATH']}")
    python_home = Path(os.path.realpath(sys.executable)).parents[1]  # the interpreter the venv points at
    import compute_endpoint.workers as workers  # installed editable: its source is outside the venv

    source = Path(workers.__file__).resolve().parents[1]
    mounts = ["/usr", "/lib", "/lib64", "/bin", "/etc", str(python_home), str(Path(sys.prefix)), str(source)]
    volumes = " ".join(f"-v {m}:{m}:ro" for m in dict.fromkeys(mounts) if Path(m).exists())
    # As an image with the worker installed would have it: the venv's bin first on PATH.
    options = f"--network host --hostname podman-box {volumes} -v /tmp:/tmp -e PATH={sys.prefix}/bin:/usr/bin:/bin"
    endpoint = make_endpoint(ENGINE.format(
        container_type="docker",
        container_lines=f"  container_uri: {podman_image}\n  container_cmd_options: '{options}'\n"))
    [(hostname, containerenv, _)] = endpoint.run(inside, [()], timeout=120)
    assert hostname == "podman-box"
    assert containerenv  # podman marks its containers with /run/.containerenv
