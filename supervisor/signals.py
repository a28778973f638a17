"""Signals queued through a self-pipe: the handler only writes the signal number; the
supervisor loop reads and handles them in order, outside any handler."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable
from multiprocessing.connection import Pipe
from typing import Any


class SignalQueue:
    def __init__(self) -> None:
        self.reader, self._writer = Pipe(duplex=False)
        self._write_fd = self._writer.fileno()
        os.set_blocking(self._write_fd, False)
        self._previous: dict[int, Any] = {}

    def install(self, signums: Iterable[int]) -> None:
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
