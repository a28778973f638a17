"""Endpoint states computed from endpoint.json and daemon.pid, against real processes."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid

import psutil
import pytest

from compute_endpoint.endpoint.config import default_config_text
from compute_endpoint.endpoint.directory import EndpointDirectory, PidRecord
from compute_endpoint.endpoint.status import EndpointState, endpoint_status

HOST = socket.gethostname()


@pytest.fixture
def directory(tmp_path) -> EndpointDirectory:
    d = EndpointDirectory(tmp_path, "ep")
    d.create(default_config_text())
    return d


@pytest.fixture
def live_process():
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process
    process.kill()
    process.wait()


def record_for(pid: int, hostname: str = HOST) -> PidRecord:
    return PidRecord(pid=pid, hostname=hostname, start_time=psutil.Process(pid).create_time())


def test_never_registered_is_initialized(directory):
    status = endpoint_status(directory)
    assert status.state is EndpointState.INITIALIZED
    assert (status.endpoint_id, status.label) == (None, "Initialized")


def test_registered_without_pid_file_is_stopped(directory):
    endpoint_id = uuid.uuid4()
    directory.write_endpoint_id(endpoint_id)
    status = endpoint_status(directory)
    assert (status.state, status.endpoint_id) == (EndpointState.STOPPED, endpoint_id)


def test_live_process_that_wrote_the_pid_file_is_running(directory, live_process):
    directory.write_endpoint_id(uuid.uuid4())
    directory.write_pid_record(record_for(live_process.pid))
    status = endpoint_status(directory)
    assert (status.state, status.pid) == (EndpointState.RUNNING, live_process.pid)


def test_pid_file_of_a_dead_process_is_disconnected(directory):
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    record = record_for(process.pid)
    process.wait()
    directory.write_endpoint_id(uuid.uuid4())
    directory.write_pid_record(record)
    assert endpoint_status(directory).state is EndpointState.DISCONNECTED


def test_pid_reused_after_reboot_is_disconnected(directory, live_process):
    """A live pid whose start time differs is another process, not our endpoint."""
    directory.write_endpoint_id(uuid.uuid4())
    real = record_for(live_process.pid)
    directory.write_pid_record(PidRecord(real.pid, HOST, real.start_time - 3600))
    assert endpoint_status(directory).state is EndpointState.DISCONNECTED


def test_pid_file_from_another_host_is_disconnected_and_names_the_host(directory, live_process):
    directory.write_endpoint_id(uuid.uuid4())
    directory.write_pid_record(record_for(live_process.pid, hostname="login02.cluster"))
    status = endpoint_status(directory)
    assert status.state is EndpointState.DISCONNECTED
    assert status.other_host == "login02.cluster"
    assert status.label == "Disconnected (on host login02.cluster)"


def test_legacy_plain_pid_file_of_a_live_process_is_running(directory, live_process):
    directory.write_endpoint_id(uuid.uuid4())
    directory.pid_file.write_text(f"{live_process.pid}\n")
    assert endpoint_status(directory).state is EndpointState.RUNNING


def test_garbled_pid_file_is_disconnected_not_an_error(directory):
    directory.write_endpoint_id(uuid.uuid4())
    directory.pid_file.write_text("{not json")
    assert endpoint_status(directory).state is EndpointState.DISCONNECTED


def test_zombie_is_not_running(directory):
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    record = record_for(process.pid)
    deadline = time.monotonic() + 10  # not reaped yet, so it stays a zombie once it exits
    while psutil.Process(process.pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "child never exited"
        time.sleep(0.02)
    directory.write_endpoint_id(uuid.uuid4())
    directory.write_pid_record(record)
    assert endpoint_status(directory).state is EndpointState.DISCONNECTED
    process.wait()
