"""enable-on-boot / disable-on-boot, checked with systemd's own verifier, and the
foreground mode the unit runs."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.endpoint_harness import THREAD_POOL_CONFIG, EndpointHarness

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                reason="systemd-analyze is not installed (Debian package: systemd)")


def verify(unit) -> str:
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    return (result.stdout + result.stderr).strip() + ("" if result.returncode == 0 else f" (exit {result.returncode})")


@pytest.mark.parametrize("user", [False, True])
def test_enable_on_boot_writes_a_unit_systemd_accepts(cli, user_dir, tmp_path, user):
    cli("configure", "ep")
    unit_dir = tmp_path / "units"
    unit_dir.mkdir()
    result = cli("enable-on-boot", "ep", "--unit-dir", str(unit_dir), *(["--user"] if user else []))
    assert result.exit_code == 0, result.output
    unit = unit_dir / "globus-compute-endpoint-ep.service"
    assert verify(unit) == ""  # any warning is a failure: unknown keys only warn
    text = unit.read_text()
    assert text.count("\nExecStart=") == 1 and " start ep\n" in text  # the official's unit's command
    assert "Type=notify" in text and f"Environment=GLOBUS_COMPUTE_USER_DIR={user_dir}" in text
    assert "Restart=always" in text
    if user:
        assert "systemctl --user enable globus-compute-endpoint-ep.service --now" in result.output
        assert "loginctl enable-linger" in result.output
        assert "User=" not in text and "WantedBy=default.target" in text
    else:
        assert result.output.splitlines() == [
            "Systemd service installed. Run",
            "   sudo systemctl enable globus-compute-endpoint-ep.service --now",
            "to enable the service and start the endpoint.",
        ]


def test_enable_on_boot_refuses_an_existing_unit_and_a_system_without_systemd(cli, tmp_path):
    cli("configure", "ep")
    unit_dir = tmp_path / "units"
    unit_dir.mkdir()
    assert cli("enable-on-boot", "ep", "--unit-dir", str(unit_dir)).exit_code == 0
    again = cli("enable-on-boot", "ep", "--unit-dir", str(unit_dir))
    assert again.exit_code == 1 and "exists already" in again.output
    missing = cli("enable-on-boot", "ep", "--unit-dir", str(tmp_path / "no" / "systemd" / "system"))
    assert missing.exit_code == 1 and "is systemd its init system?" in missing.output


def test_disable_on_boot_prints_the_documented_commands(cli):
    cli("configure", "my-endpoint")
    result = cli("disable-on-boot", "my-endpoint")
    assert result.exit_code == 0
    assert result.output.splitlines() == [
        "Run the following to disable on-boot-persistence:",
        "   systemctl stop globus-compute-endpoint-my-endpoint",
        "   systemctl disable globus-compute-endpoint-my-endpoint",
        "   rm /etc/systemd/system/globus-compute-endpoint-my-endpoint.service",
    ]


@pytest.mark.slow
def test_foreground_start_runs_until_sigterm_as_under_systemd(start_service, tmp_path):
    endpoint = EndpointHarness(start_service(), tmp_path / "gc", "ep", THREAD_POOL_CONFIG)
    unit_dir = tmp_path / "units"
    unit_dir.mkdir()
    refused_while_running = None
    process = subprocess.Popen([str(endpoint_bin()), "start", "ep", "--foreground"], env=endpoint.env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while endpoint.status() != "Running":
            assert process.poll() is None and time.monotonic() < deadline, process.stdout.read()
            time.sleep(0.2)
        assert endpoint.supervisor().pid == process.pid  # no daemon: systemd supervises this process
        assert endpoint.run(power, [(2, 5)]) == [32]
        refused_while_running = endpoint.cli("enable-on-boot", "ep", "--unit-dir", str(unit_dir))
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
        endpoint.kill_everything()
    assert refused_while_running.returncode == 1 and "is running" in refused_while_running.stderr
    assert endpoint.status() == "Stopped"
    assert endpoint.tree_processes() == []


def power(base, exponent):
    return base**exponent


def endpoint_bin():
    from tests.conftest import BIN_DIR

    return BIN_DIR / "globus-compute-endpoint"


@pytest.mark.slow
def test_under_systemd_start_stays_in_the_foreground_and_says_ready_then_stopping(start_service, tmp_path):
    """As systemd runs the unit: NOTIFY_SOCKET set, plain `start NAME`. READY=1 comes once every
    child is ready, STOPPING=1 on SIGTERM; no child inherits the socket."""
    import socket

    endpoint = EndpointHarness(start_service(), tmp_path / "gc", "ep", THREAD_POOL_CONFIG)
    address = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(address)
    listener.settimeout(60)
    process = subprocess.Popen([str(endpoint_bin()), "start", "ep"], env={**endpoint.env, "NOTIFY_SOCKET": address},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
    try:
        ready = listener.recv(4096).decode()
        assert ready.startswith("READY=1\nSTATUS=Endpoint ep is running"), ready
        assert process.poll() is None and endpoint.supervisor().pid == process.pid  # no daemon
        assert endpoint.status() == "Running"
        for child in endpoint.supervisor().children(recursive=True):
            assert b"NOTIFY_SOCKET=" not in open(f"/proc/{child.pid}/environ", "rb").read(), child.cmdline()
        assert endpoint.run(power, [(2, 5)]) == [32]
        process.send_signal(signal.SIGTERM)
        assert listener.recv(4096).decode() == "STOPPING=1"
        assert process.wait(timeout=30) == 0
    finally:
        listener.close()
        if process.poll() is None:
            process.kill()
        endpoint.kill_everything()
    assert endpoint.status() == "Stopped" and endpoint.tree_processes() == []


@pytest.mark.slow
def test_die_with_parent_stops_the_endpoint_when_the_program_that_ran_it_ends(start_service, tmp_path):
    endpoint = EndpointHarness(start_service(), tmp_path / "gc", "ep", THREAD_POOL_CONFIG)
    runner = subprocess.Popen([sys.executable, "-c", (
        "import subprocess, sys, time\n"
        f"subprocess.Popen([{str(endpoint_bin())!r}, 'start', 'ep', '--die-with-parent'], stdin=subprocess.DEVNULL)\n"
        "time.sleep(3600)\n")], env=endpoint.env)
    try:
        deadline = time.monotonic() + 60
        while endpoint.status() != "Running":
            assert time.monotonic() < deadline, endpoint.log()
            time.sleep(0.2)
        assert endpoint.supervisor().ppid() == runner.pid  # in the foreground, its child
        runner.kill()  # the parent goes, by SIGKILL even
        runner.wait()
        deadline = time.monotonic() + 30
        while endpoint.tree_processes():
            assert time.monotonic() < deadline, "the endpoint outlived its parent"
            time.sleep(0.2)
        assert endpoint.status() == "Stopped" and "received SIGTERM" in endpoint.log()
    finally:
        runner.kill()
        endpoint.kill_everything()
    import os

    leader, terminal = os.openpty()  # typed at a terminal: refused, as the official refuses it
    try:
        manual = subprocess.run([str(endpoint_bin()), "start", "ep", "--die-with-parent"], env=endpoint.env,
                                stdin=terminal, capture_output=True, text=True, timeout=60)
    finally:
        os.close(terminal)
        os.close(leader)
    assert manual.returncode == 1 and "not meant for manual use" in manual.stderr
