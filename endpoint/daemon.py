"""Turning the start command into a daemon, and telling the user how start-up went.

The foreground process forks twice (the second child, in its own session, is the
daemon) and reads progress lines from a pipe until the daemon says it runs or the
pipe closes because it died.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable

import psutil

from .directory import PidRecord

RUNNING_MARK = "\x00running\n"


class Progress:
    """The daemon's end: write progress lines for the waiting foreground process."""

    def __init__(self, fd: int | None, echo: Callable[[str], None] | None = None,
                 notify: Callable[[str], object] | None = None):
        self.fd = fd
        self.echo = echo
        self.notify = notify  # systemd's (systemd.py), when it started this process

    def say(self, line: str) -> None:
        if self.echo is not None:
            self.echo(line)
        elif self.fd is not None:
            try:
                os.write(self.fd, (line + "\n").encode())
            except OSError:
                self.fd = None  # the foreground process is gone; keep running

    def running(self, line: str) -> None:
        self.say(line)
        if self.notify is not None:
            self.notify(f"READY=1\nSTATUS={line}")
        if self.fd is not None:
            try:
                os.write(self.fd, RUNNING_MARK.encode())
                os.close(self.fd)
            except OSError:
                pass
            self.fd = None


    def stopping(self) -> None:
        if self.notify is not None:
            self.notify("STOPPING=1")


def daemonize(log_path: str) -> tuple[bool, int]:
    """Fork the daemon. Returns (True, read_fd) in the foreground process and
    (False, write_fd) in the daemon."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid:
        os.close(write_fd)
        os.waitpid(pid, 0)  # the middle child exits at once
        return True, read_fd
    os.close(read_fd)
    os.setsid()
    if os.fork():
        os._exit(0)
    os.umask(0o077)
    os.chdir("/")
    devnull = os.open(os.devnull, os.O_RDONLY)
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.dup2(devnull, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(devnull)
    os.close(log)
    sys.stdout = os.fdopen(1, "w", buffering=1)
    sys.stderr = os.fdopen(2, "w", buffering=1)
    return False, write_fd


def read_progress(fd: int, echo: Callable[[str], None], timeout_s: float) -> bool:
    """Echo the daemon's progress; True once it says it runs, False if it died first."""
    import select

    buffer = b""
    with os.fdopen(fd, "rb", buffering=0) as pipe:
        while True:
            ready, _, _ = select.select([pipe], [], [], timeout_s)
            if not ready:
                echo(f"The endpoint is still starting after {timeout_s:.0f} s; see its log.")
                return True
            chunk = pipe.read(4096)
            if not chunk:
                return False
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if line == RUNNING_MARK.strip("\n").encode():
                    return True
                echo(line.decode(errors="replace"))


def own_pid_record() -> PidRecord:
    return PidRecord(pid=os.getpid(), hostname=socket.gethostname(),
                     start_time=psutil.Process().create_time())
