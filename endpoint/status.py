"""The four documented endpoint states, computed from the endpoint directory.

Initialized   never registered (no endpoint.json)
Running       the pid file names a live process on this host, and it is the same
              process that wrote it (its start time matches, so a pid reused after a
              reboot is not mistaken for ours)
Stopped       registered, and no pid file: the last stop was clean
Disconnected  a pid file is left but its process is gone or is another process; or the
              pid file names another host, where it may or may not run (we say which)
"""

from __future__ import annotations

import enum
import socket
import uuid

import attrs
import psutil

from .directory import EndpointDirectory, PidRecord

# psutil's create_time is boot time plus clock ticks: stable for one process, so a
# small tolerance only absorbs float rounding.
_START_TIME_TOLERANCE_S = 0.05


class EndpointState(enum.Enum):
    INITIALIZED = "Initialized"
    RUNNING = "Running"
    STOPPED = "Stopped"
    DISCONNECTED = "Disconnected"


@attrs.frozen
class EndpointStatus:
    name: str
    endpoint_id: uuid.UUID | None
    state: EndpointState
    pid: int | None = None
    other_host: str | None = None  # set when the pid file was written on another host

    @property
    def label(self) -> str:
        if self.other_host:
            return f"{self.state.value} (on host {self.other_host})"
        return self.state.value


def is_our_process(record: PidRecord) -> bool:
    """True when the record's pid is alive here and is the very process that wrote it."""
    if record.pid <= 0:
        return False
    try:
        process = psutil.Process(record.pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        if record.start_time is None:  # legacy pid file: alive is all we can check
            return True
        return abs(process.create_time() - record.start_time) < _START_TIME_TOLERANCE_S
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def endpoint_status(directory: EndpointDirectory, hostname: str | None = None) -> EndpointStatus:
    hostname = hostname or socket.gethostname()
    endpoint_id = directory.read_endpoint_id()
    record = directory.read_pid_record()
    if record is not None and record.hostname and record.hostname != hostname:
        return EndpointStatus(directory.name, endpoint_id, EndpointState.DISCONNECTED,
                              pid=record.pid, other_host=record.hostname)
    if record is not None:
        state = EndpointState.RUNNING if is_our_process(record) else EndpointState.DISCONNECTED
        return EndpointStatus(directory.name, endpoint_id, state, pid=record.pid)
    if endpoint_id is None:
        return EndpointStatus(directory.name, None, EndpointState.INITIALIZED)
    return EndpointStatus(directory.name, endpoint_id, EndpointState.STOPPED)


def stop_note(directory: EndpointDirectory) -> str | None:
    """Why a stopped endpoint stopped, when it stopped itself (idle, asked by the service, a
    failure); None when a person stopped it (a signal) or nothing is recorded."""
    import time

    record = directory.read_last_stop()
    if record is None or record["reason"].startswith("received SIG"):
        return None
    when = record.get("time")
    at = time.strftime(" at %Y-%m-%d %H:%M:%S", time.localtime(when)) if isinstance(when, (int, float)) else ""
    return f"stopped itself{at}: {record['reason']}"
