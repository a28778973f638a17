"""Signals queued through a self-pipe: the handler only writes the signal number; the
supervisor loop reads and handles them in order, outside any handler."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable
from multiprocessing.connection import Connection, Pipe


class SignalQueue:
    def __init__(self) -> None:
        self.reader: Connection | None = None
        self._write_fd: int | None = None
        self._previous: dict[int, object] = {}

    def install(self, signums: Iterable[int]) -> None:
        reader, writer = Pipe(duplex=False)
        self.reader, self._writer = reader, writer
        self._write_fd = writer.fileno()
        os.set_blocking(self._write_fd, False)
        for signum in signums:
            self._previous[signum] = signal.signal(signum, self._enqueue)

    def _enqueue(self, signum: int, _frame: object) -> None:
        try:
            os.write(self._write_fd, bytes([signum]))
        except (BlockingIOError, OSError):
            pass  # the pipe is full of signals already; the loop will see them

    def drain(self) -> list[int]:
        """The signals queued so far, oldest first."""
        os.set_blocking(self.reader.fileno(), False)
        data = b""
        try:
            while chunk := os.read(self.reader.fileno(), 512):
                data += chunk
        except BlockingIOError:
            pass
        return list(data)

    def uninstall(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
