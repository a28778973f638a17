"""Regression tests for the security review's endpoint-side findings, each named after it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import psutil
import pytest

from compute_endpoint.endpoint.exit_codes import Exit
from tests.conftest import BIN_DIR
from tests.waiting import wait_for

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
        wait_for(lambda: endpoint.status() == "Disconnected", 20, "the killed endpoint listed as Disconnected")
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


# ------------------------------------------------------------------ shared or planted directories

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give files to another user")


def give_to_nobody(*paths) -> None:
    import pwd

    nobody = pwd.getpwnam("nobody")
    for path in paths:
        os.chown(path, nobody.pw_uid, nobody.pw_gid)


@needs_root
def test_start_refuses_a_directory_or_config_another_user_owns_before_running_anything(start_service, tmp_path):
    """Finding: `-c DIR` at a directory another user could write only warned "readable by group
    or others", then ran that user's endpoint_setup as the victim."""
    from tests.endpoint_harness import THREAD_POOL_CONFIG, EndpointHarness

    endpoint = EndpointHarness(start_service(), tmp_path / "gc", "ep", THREAD_POOL_CONFIG)
    marker = tmp_path / "setup-ran"
    config = endpoint.directory / "config.yaml"
    config.write_text(THREAD_POOL_CONFIG + f"endpoint_setup: touch {marker}\n")
    give_to_nobody(config)
    refused = endpoint.cli("start", endpoint.name)
    assert refused.returncode == Exit.CONFIG and f"{config} is owned by nobody" in refused.stderr, refused.stderr
    assert not marker.exists(), "another user's endpoint_setup ran"

    os.chown(config, 0, 0)
    config.chmod(0o666)
    refused = endpoint.cli("start", endpoint.name)
    assert refused.returncode == Exit.CONFIG and "is writable by group or others (mode 0666)" in refused.stderr
    assert not marker.exists()

    # A symlink to another user's world-writable file is judged by where it points.
    config.chmod(0o600)
    planted = tmp_path / "planted.yaml"
    planted.write_text(THREAD_POOL_CONFIG + f"endpoint_setup: touch {marker}\n")
    planted.chmod(0o666)
    give_to_nobody(planted)
    config.unlink()
    config.symlink_to(planted)
    refused = endpoint.cli("start", endpoint.name)
    assert refused.returncode == Exit.CONFIG and f"(a symlink to {planted}) is owned by nobody" in refused.stderr
    assert not marker.exists()


@needs_root
def test_login_refuses_a_planted_credentials_file(start_service, tmp_path):
    """Finding: with a planted 0666 storage.db, login wrote the victim's token into it."""
    service = start_service()
    base = tmp_path / "gc"
    base.mkdir(mode=0o700)
    planted = base / "storage.db"
    planted.write_bytes(b"")
    planted.chmod(0o666)
    give_to_nobody(planted)
    token = service.token("victim")
    result = subprocess.run([str(BIN_DIR / "globus-compute-endpoint"), "login", "--service", service.url,
                             "--token", "-"], input=token + "\n", capture_output=True, text=True, timeout=60,
                            env=dict(os.environ, GLOBUS_COMPUTE_USER_DIR=str(base)))
    assert result.returncode != 0 and f"{planted} is owned by nobody" in result.stderr, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert planted.read_bytes() == b"", "the token was written into another user's file"


@needs_root
def test_sighup_refuses_a_config_that_became_a_link_to_another_users_file(make_endpoint, tmp_path):
    """Finding: SIGHUP reload followed a symlink to another user's 0666 file and ran its worker_init."""
    from tests.waiting import wait_for

    endpoint = make_endpoint("engine:\n  type: ThreadPoolEngine\n  max_workers: 1\n")
    config = endpoint.directory / "config.yaml"
    planted = tmp_path / "planted.yaml"
    planted.write_text("engine:\n  type: ThreadPoolEngine\n  max_workers: 3\n")
    planted.chmod(0o666)
    give_to_nobody(planted)
    config.unlink()
    config.symlink_to(planted)
    os.kill(endpoint.supervisor().pid, signal.SIGHUP)
    wait_for(lambda: "is owned by nobody" in endpoint.log(), 20, "the reload refused")
    assert "SIGHUP: reloaded" not in endpoint.log()
    assert endpoint.status() == "Running"


def test_a_huge_config_on_sighup_is_refused_without_stalling_the_supervisor(make_endpoint):
    """Finding: a 24.6 MB config.yaml on SIGHUP stalled the supervisor loop for 30 s."""
    from tests.waiting import wait_for

    endpoint = make_endpoint("engine:\n  type: ThreadPoolEngine\n  max_workers: 1\n")
    config = endpoint.directory / "config.yaml"
    config.write_text("engine:\n  type: ThreadPoolEngine\n  max_workers: 1\n" + "# padding\n" * 2_600_000)
    sent = time.monotonic()
    os.kill(endpoint.supervisor().pid, signal.SIGHUP)
    wait_for(lambda: "a config may be" in endpoint.log(), 20, "the reload refused")
    assert time.monotonic() - sent < 10
    assert "is 26,000,0" in endpoint.log() or "bytes, over the 1,048,576" in endpoint.log()
    assert endpoint.status() == "Running"


def test_login_with_an_empty_or_garbled_credentials_file_says_what_to_do(start_service, tmp_path):
    """Finding: an empty storage.db gave login a raw traceback (sqlite: no such table)."""
    service = start_service()
    base = tmp_path / "gc"
    base.mkdir(mode=0o700)
    store = base / "storage.db"

    def login():
        return subprocess.run([str(BIN_DIR / "globus-compute-endpoint"), "login", "--service", service.url,
                               "--token", "-"], input=service.token("someone") + "\n", capture_output=True,
                              text=True, timeout=60, env=dict(os.environ, GLOBUS_COMPUTE_USER_DIR=str(base)))

    store.write_bytes(b"")
    store.chmod(0o600)
    empty = login()
    assert empty.returncode == 0 and "as someone" in empty.stdout, empty.stdout + empty.stderr
    store.write_bytes(b"this is not an SQLite database, padded out well past its header " * 4)
    garbled = login()
    assert garbled.returncode != 0 and "Traceback" not in garbled.stderr
    assert f"{store} is not a token store" in garbled.stderr and "move it away" in garbled.stderr
