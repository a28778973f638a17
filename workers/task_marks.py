"""Task marks: how Parsl workers (on any node: the endpoint directory is shared) tell the engine
what happens to each task as it happens, beside the result Parsl returns at the end of a call:

- a task **started** (so a task running when its engine died counts a try, and one still
  queued does not);
- a task of a chunk **finished**, with its packed Result (so its result leaves at once, never
  held until its chunk-mates are done, and is not lost if a later task kills the worker);
- a task ran **over its time limit** (the worker then kills itself, and Parsl replaces it).

Each worker process appends records to a file of its own, and starts a new file every
RECORDS_PER_FILE records or BYTES_PER_FILE bytes; the engine reads what each file gained since
it last looked and removes a file once its writer has moved on to the next. A record appended
to an open file costs a write; a file created per task cost a file system's create (0.7 ms on
this project's test machine, more on a cluster's shared file system).

Records: ``<task id>\\n`` (started), ``!<task id>\\n`` (over its time limit), and
``=<task id> <length>\\n`` followed by that many bytes of packed Result (finished).
"""

from __future__ import annotations

import functools
import os
import secrets
import socket

import attrs

RECORDS_PER_FILE = 4096
BYTES_PER_FILE = 64 * 1024 * 1024


@attrs.frozen
class Mark:
    kind: str  # "started", "finished" or "overdue"
    task_id: str
    packed: bytes = b""  # a finished task's Result


class TaskMarkWriter:
    """A worker process's marks: <host>.<pid>.<random>.<sequence> files in the marks directory
    (random: two nodes may have the same name and pid, in containers or namespaces)."""

    def __init__(self, directory: str, writer: str):
        self.directory, self.writer = directory, writer
        self.sequence = 0
        self.records = 0
        self.size = 0
        self.fd: int | None = None

    def write(self, record: bytes) -> None:
        if self.fd is None or self.records >= RECORDS_PER_FILE or self.size >= BYTES_PER_FILE:
            self._next_file()
        assert self.fd is not None
        view = memoryview(record)
        while view:  # one record, whole: a short write goes on where it stopped
            written = os.write(self.fd, view)
            view = view[written:]
        self.records += 1
        self.size += len(record)

    def _next_file(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.sequence += 1
        path = os.path.join(self.directory, f"{self.writer}.{self.sequence:06d}")
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self.records = self.size = 0


@functools.lru_cache(maxsize=4)
def writer_for(directory: str, pid: int) -> TaskMarkWriter:
    """This process's writer (pid in the key: a forked child writes files of its own)."""
    return TaskMarkWriter(directory, f"{socket.gethostname()}.{pid}.{secrets.token_hex(4)}")


def _write(directory: str, record: bytes) -> bool:
    try:
        writer_for(directory, os.getpid()).write(record)
    except OSError:
        return False
    return True


def mark_started(directory: str, task_id: str) -> None:
    """On a worker node: record that this task started, for the engine to read. (Should it
    fail, the task runs all the same; it would count as unstarted if its engine died.)"""
    _write(directory, f"{task_id}\n".encode())


def mark_finished(directory: str, task_id: str, packed: bytes) -> bool:
    """Record a finished task's Result; False if it could not be (then return it with the call)."""
    return _write(directory, f"={task_id} {len(packed)}\n".encode() + packed)


def mark_overdue(directory: str, task_id: str) -> None:
    _write(directory, f"!{task_id}\n".encode())


class TaskMarkReader:
    """The engine's side: the marks recorded since the last read, each once, in each writer's order."""

    def __init__(self, directory: str):
        self.directory = directory
        self.offsets: dict[str, int] = {}  # file name: bytes read (up to a whole record)

    def read(self) -> list[Mark]:
        # A file is opened only when it grew: a cluster's hundreds of workers each keep one, and
        # this runs many times a second.
        sizes = {entry.name: entry.stat().st_size for entry in os.scandir(self.directory) if entry.is_file()}
        names = sorted(sizes)
        latest: dict[str, str] = {}  # writer: its newest file
        for name in names:  # sorted: the sequence numbers are zero-padded
            latest[name.rpartition(".")[0]] = name
        marks: list[Mark] = []
        for name in names:
            finished = latest[name.rpartition(".")[0]] != name  # its writer moved on: nothing more comes
            # A finished file is read to its end whatever its size said: its last records may have
            # come after the size was taken, before its writer's next file was listed.
            if finished or sizes[name] > self.offsets.get(name, 0):
                marks.extend(self._new_marks(name))
            if finished:
                os.unlink(os.path.join(self.directory, name))
                self.offsets.pop(name, None)
        return marks

    def _new_marks(self, name: str) -> list[Mark]:
        offset = self.offsets.get(name, 0)
        with open(os.path.join(self.directory, name), "rb") as file:
            file.seek(offset)
            data = file.read()
        marks, used = parse_marks(data)  # a record still being written waits for the next read
        self.offsets[name] = offset + used
        return marks


def parse_marks(data: bytes) -> tuple[list[Mark], int]:
    """The whole records at the start of data, and how many bytes they take."""
    marks: list[Mark] = []
    position = 0
    while (end := data.find(b"\n", position)) >= 0:
        line = data[position:end].decode()
        if line.startswith("="):
            task_id, _, length = line[1:].partition(" ")
            body_end = end + 1 + int(length)
            if body_end > len(data):
                break
            marks.append(Mark("finished", task_id, data[end + 1:body_end]))
            position = body_end
            continue
        if line.startswith("!"):
            marks.append(Mark("overdue", line[1:]))
        elif line:
            marks.append(Mark("started", line))
        position = end + 1
    return marks, position
