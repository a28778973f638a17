"""Regression tests for the security review's endpoint-side findings, each named after it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import psutil
import pytest

from tests.conftest import BIN_DIR

pytestmark = pytest.mark.slow


def test_login_token_does_not_show_in_ps(user_dir):
    """Finding: `login --token T` showed the token in every user's ps."""
    silent = socket.socket()  # a service that accepts and never answers: login waits on it
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    secret = "do-not-show-this-token-0123456789"
    login = subprocess.Popen([str(BIN_DIR / "globus-compute-endpoint"), "login", "--service",
                              f"http://127.0.0.1:{silent.getsockname()[1]}", "--token", secret],
                             env=dict(os.environ, GLOBUS_COMPUTE_USER_DIR=str(user_dir)),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        shown = ""
        while time.monotonic() < deadline:
            shown = " ".join(psutil.Process(login.pid).cmdline())
            if "login" in shown and "***" in shown:
                break
            time.sleep(0.05)
        assert "--token ***" in shown and secret not in shown, shown
        with open(f"/proc/{login.pid}/cmdline", "rb") as f:
            assert secret.encode() not in f.read()
    finally:
        login.kill()
        login.wait()
        silent.close()


def test_token_from_standard_input(user_dir, start_service):
    service = start_service()
    token = service.token("stdin-user")
    result = subprocess.run([str(BIN_DIR / "globus-compute-endpoint"), "login", "--service", service.url,
                             "--token", "-"], input=token + "\n", capture_output=True, text=True, timeout=60,
                            env=dict(os.environ, GLOBUS_COMPUTE_USER_DIR=str(user_dir)))
    assert result.returncode == 0 and "as stdin-user" in result.stdout, result.stdout + result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a process as another user")
def test_cleanup_after_an_unclean_stop_spares_another_users_process_with_a_forged_title(make_endpoint):
    """Finding: the cleanup of leftover processes matched any user's process by its title."""
    endpoint = make_endpoint("engine:\n  type: ThreadPoolEngine\n  max_workers: 1\n")
    forged_title = f"{endpoint.title()} engine"
    # setpriv execs (runuser would fork): the pid is the forged process itself.
    forged = subprocess.Popen(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "bash", "-c",
                               f'exec -a "{forged_title}" sleep 60'])
    try:
        deadline = time.monotonic() + 5
        while not (psutil.Process(forged.pid).cmdline() or [""])[0].startswith(endpoint.title()):  # until exec
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(endpoint.supervisor().pid, signal.SIGKILL)
        time.sleep(1)
        assert endpoint.status() == "Disconnected"
        endpoint.start()  # cleans up this user's leftovers only
        assert forged.poll() is None, "another user's process was killed for its title"
        assert endpoint.status() == "Running"
    finally:
        forged.kill()
        forged.wait()


def test_enable_on_boot_under_sudo_says_the_unit_runs_as_root(cli, monkeypatch, tmp_path):
    """Finding: `sudo enable-on-boot` wrote User=root without a word."""
    if os.geteuid() != 0:
        pytest.skip("sudo means root")
    monkeypatch.setenv("SUDO_USER", "alice")
    cli("configure", "ep")
    (tmp_path / "units").mkdir()
    result = cli("enable-on-boot", "ep", "--unit-dir", str(tmp_path / "units"))
    assert result.exit_code == 0
    assert "Warning: running under sudo, so the unit runs the endpoint as root (User=root)" in result.output
    assert "run this command as alice" in result.output
