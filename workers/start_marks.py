"""Start marks: how Parsl workers (on any node: the endpoint directory is shared) tell the
engine that a task started, so that a task that was running when its engine died counts a try
and one still queued does not.

Each worker process appends one line per task (the task id) to a file of its own, and starts a
new file every LINES_PER_FILE lines; the engine reads what each file gained since it last
looked and removes a file once its writer has moved on to the next. A line appended to an open
file costs a write; a file created per task cost a file system's create (0.7 ms on this
project's test machine, more on a cluster's shared file system), most of a no-op task's time
in the worker.
"""

from __future__ import annotations

import functools
import os
import secrets
import socket

LINES_PER_FILE = 4096


class StartMarkWriter:
    """A worker process's marks: <host>.<pid>.<random>.<sequence> files in the marks directory
    (random: two nodes may have the same name and pid, in containers or namespaces)."""

    def __init__(self, directory: str, writer: str):
        self.directory, self.writer = directory, writer
        self.sequence = 0
        self.lines = 0
        self.fd: int | None = None

    def mark(self, task_id: str) -> None:
        if self.fd is None or self.lines >= LINES_PER_FILE:
            self._next_file()
        assert self.fd is not None
        os.write(self.fd, f"{task_id}\n".encode())
        self.lines += 1

    def _next_file(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.sequence += 1
        path = os.path.join(self.directory, f"{self.writer}.{self.sequence:06d}")
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self.lines = 0


@functools.lru_cache(maxsize=4)
def writer_for(directory: str, pid: int) -> StartMarkWriter:
    """This process's writer (pid in the key: a forked child writes files of its own)."""
    return StartMarkWriter(directory, f"{socket.gethostname()}.{pid}.{secrets.token_hex(4)}")


def mark_started(directory: str, task_id: str) -> None:
    """On a worker node: record that this task started, for the engine to read."""
    try:
        writer_for(directory, os.getpid()).mark(task_id)
    except OSError:
        pass  # the task runs all the same; it would count as unstarted if its engine died


class StartMarkReader:
    """The engine's side: the task ids marked since the last read, each once."""

    def __init__(self, directory: str):
        self.directory = directory
        self.offsets: dict[str, int] = {}  # file name: bytes read (up to a whole line)

    def read(self) -> list[str]:
        # A file is opened only when it grew: a cluster's hundreds of workers each keep one, and
        # this runs five times a second.
        sizes = {entry.name: entry.stat().st_size for entry in os.scandir(self.directory) if entry.is_file()}
        names = sorted(sizes)
        latest: dict[str, str] = {}  # writer: its newest file
        for name in names:  # sorted: the sequence numbers are zero-padded
            latest[name.rpartition(".")[0]] = name
        started: list[str] = []
        for name in names:
            finished = latest[name.rpartition(".")[0]] != name  # its writer moved on: nothing more comes
            # A finished file is read to its end whatever its size said: its last lines may have
            # come after the size was taken, before its writer's next file was listed.
            if finished or sizes[name] > self.offsets.get(name, 0):
                started.extend(self._new_lines(name))
            if finished:
                os.unlink(os.path.join(self.directory, name))
                self.offsets.pop(name, None)
        return started

    def _new_lines(self, name: str) -> list[str]:
        offset = self.offsets.get(name, 0)
        with open(os.path.join(self.directory, name), "rb") as marks:
            marks.seek(offset)
            data = marks.read()
        whole = data.rfind(b"\n") + 1  # a line still being written waits for the next read
        self.offsets[name] = offset + whole
        return [line.decode() for line in data[:whole].splitlines() if line]
