"""Logging for every process of the tree into one endpoint.log, each line naming its role.

Every process rotates: before each write it takes a lock shared by the tree, reopens the file
if another process rotated it, and rotates it itself when this write would take it past the
limit. The size is the file's real size, so whatever reaches the file counts. What a task
prints (the engine's and its workers' stdout and stderr) is read from a pipe and logged in
bounded lines as ``task output``, so it counts too and cannot fill a disk.
"""

from __future__ import annotations

import fcntl
import logging
import logging.handlers
import os
import sys
import threading

MAX_BYTES = 10 * 1024 * 1024
BACKUPS = 5
# A longer line of task output is cut (the rest is counted, not kept): one print of a
# large object must not turn the log into a copy of it.
MAX_OUTPUT_LINE = 16 * 1024


class SharedRotatingFileHandler(logging.Handler):
    """A size-rotated log file that several processes write at once."""

    def __init__(self, path: str, max_bytes: int = MAX_BYTES, backups: int = BACKUPS):
        super().__init__()
        self.path, self.max_bytes, self.backups = path, max_bytes, backups
        self._lock_fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        self._fd = self._open()

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = (self.format(record) + "\n").encode("utf-8", "replace")
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                self._write(data)
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        except Exception:
            self.handleError(record)

    def _write(self, data: bytes) -> None:
        try:
            current = os.stat(self.path)
        except FileNotFoundError:
            current = None
        if current is None or current.st_ino != os.fstat(self._fd).st_ino:  # another process rotated it
            os.close(self._fd)
            self._fd = self._open()
            current = os.fstat(self._fd)
        if current.st_size and current.st_size + len(data) > self.max_bytes:
            self._rotate()
        os.write(self._fd, data)

    def _rotate(self) -> None:
        for index in range(self.backups - 1, 0, -1):
            source = f"{self.path}.{index}"
            if os.path.exists(source):
                os.replace(source, f"{self.path}.{index + 1}")
        os.replace(self.path, f"{self.path}.1")
        os.close(self._fd)
        self._fd = self._open()

    def close(self) -> None:
        for fd in (self._fd, self._lock_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        super().close()


def setup_logging(log_file: str, role: str, debug: bool = False, to_console: bool = False) -> logging.Handler:
    handler = SharedRotatingFileHandler(log_file)
    os.chmod(log_file, 0o600)
    formatter = logging.Formatter(f"%(asctime)s %(levelname)s {role} %(process)d %(name)s: %(message)s")
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    if to_console:
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(formatter)
        root.addHandler(console)
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    for noisy in ("amqp", "kombu", "urllib3", "parsl"):
        logging.getLogger(noisy).setLevel(logging.INFO if debug else logging.WARNING)
    return handler


def capture_output() -> None:
    """Send this process's stdout and stderr (file descriptors 1 and 2, which the processes it
    starts inherit) through a pipe into the log as ``task output`` lines."""
    read_fd, write_fd = os.pipe()
    os.dup2(write_fd, 1)
    os.dup2(write_fd, 2)
    os.close(write_fd)
    threading.Thread(target=_log_output, args=(read_fd,), name="task-output", daemon=True).start()


def _log_output(read_fd: int) -> None:
    output = logging.getLogger("task output")
    pending, skipping = b"", 0  # skipping: bytes of an over-long line not kept
    while chunk := os.read(read_fd, 65536):
        pending += chunk
        while (end := pending.find(b"\n")) >= 0:
            line, pending = pending[:end], pending[end + 1:]
            if skipping:
                output.info("[... that line went on for %d more bytes: cut]", skipping + len(line))
                skipping = 0
            else:
                _log_line(output, line)
        if len(pending) > MAX_OUTPUT_LINE:  # a line with no end in sight: keep its start only
            if not skipping:
                output.info("%s [... cut]", pending[:MAX_OUTPUT_LINE].decode("utf-8", "replace"))
            skipping += len(pending) - (0 if skipping else MAX_OUTPUT_LINE)
            pending = b""
    if pending:
        _log_line(output, pending)


def _log_line(output: logging.Logger, line: bytes) -> None:
    text = line[:MAX_OUTPUT_LINE].decode("utf-8", "replace")
    extra = len(line) - MAX_OUTPUT_LINE
    output.info("%s%s", text, f" [... {extra} bytes cut]" if extra > 0 else "")
