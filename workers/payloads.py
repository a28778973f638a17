"""Large task bodies and results, kept once, in a file, while the tree works on them.

A task body or a result travels between the processes of the tree (task link, supervisor,
engine, result link) and is held until the broker has the result. Small ones travel as
bytes: copying them costs less than a file. One larger than INLINE_MAX is written once to
a file named by its task id, in a 0700 folder of the endpoint's, and only a ``Stored``
reference travels and is held; the process that needs the bytes reads them when it
needs them (the worker as the task starts, the result link as it publishes) and lets
them go. The file is page cache the kernel can write out and drop, not a Python heap
that grows with the backlog and keeps its size after it.
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

import attrs

from ..protocol.files import write_private_file

log = logging.getLogger(__name__)

INLINE_MAX = 64 * 1024
# The folders (in the endpoint's) of what is kept in files.
TASK_BODIES = "task_bodies"  # written by the task link, removed as each task is acknowledged
UNACKED_RESULTS = "unacked_results"  # written by the engine, removed as each result is confirmed


@attrs.frozen
class Stored:
    """A body kept in a file; what travels and is held instead of its bytes."""

    path: str
    size: int

    def read(self) -> bytes:
        with open(self.path, "rb") as f:
            return f.read()


Payload = bytes | Stored


def size_of(payload: Payload) -> int:
    return payload.size if isinstance(payload, Stored) else len(payload)


def load(payload: Payload) -> bytes:
    """The bytes of a payload; FileNotFoundError if a Stored one was discarded."""
    return payload.read() if isinstance(payload, Stored) else payload


class PayloadStore:
    """A 0700 folder of payloads, one file per task id."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def path_of(self, task_id: str) -> Path:
        return self.directory / task_id

    def keep(self, task_id: str, data: bytes) -> Payload:
        """data as it is when it is small; otherwise written here, and a reference to it. If it
        cannot be written (a full disk, say), data as it is all the same: held in memory, the
        work goes on."""
        if len(data) <= INLINE_MAX:
            return data
        try:
            return self.write(task_id, data)
        except OSError as exc:
            log.warning("cannot keep %d bytes of task %s in %s (%s); holding them in memory",
                        len(data), task_id, self.directory, exc)
            return data

    def write(self, task_id: str, data: bytes) -> Stored:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.path_of(str(uuid.UUID(task_id)))  # a task id never names a path elsewhere
        write_private_file(path, data)
        return Stored(str(path), len(data))

    def discard(self, task_id: str) -> None:
        try:
            self.path_of(task_id).unlink()
        except FileNotFoundError:
            pass

    def stored(self) -> list[tuple[str, Stored]]:
        """(task id, reference) of every payload in the folder; other files are left alone."""
        found: list[tuple[str, Stored]] = []
        if not self.directory.is_dir():
            return found
        for entry in os.scandir(self.directory):
            try:
                task_id = str(uuid.UUID(entry.name))
                found.append((task_id, Stored(entry.path, entry.stat().st_size)))
            except (ValueError, OSError):
                continue  # not ours (a temporary file, say), or gone meanwhile
        return found

    def clear(self) -> int:
        """Remove every payload (what no process holds any more); how many there were."""
        gone = self.stored()
        for task_id, _ in gone:
            self.discard(task_id)
        return len(gone)
