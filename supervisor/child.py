"""The supervisor's handle on one child process: its pipe, liveness and state."""

from __future__ import annotations

import logging
import multiprocessing
import signal
import time
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnContext, SpawnProcess

from .channel import bootstrap
from .messages import Ping, Stop
from .spec import ChildSpec
from .states import TRANSITIONS, ChildState

log = logging.getLogger(__name__)


class Child:
    def __init__(self, spec: ChildSpec, context: SpawnContext, config: object):
        self.spec = spec
        self.context = context
        self.config = config
        self.state = ChildState.STOPPED
        self.process: SpawnProcess | None = None
        self.conn: Connection | None = None
        self.started_at = 0.0
        self.quick_crashes = 0
        self.restart_at = 0.0  # monotonic time a BACKOFF child is due to start
        self.stop_deadline = 0.0
        self.ping_seq = 0
        self.last_ping_sent = 0.0
        self.last_pong = 0.0

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def change_state(self, new: ChildState, why: str = "") -> None:
        """The one place a child's state changes; every edge is logged."""
        if new not in TRANSITIONS[self.state]:
            raise RuntimeError(f"{self.name}: illegal state change {self.state.value} -> {new.value}")
        level = logging.INFO if new in (ChildState.RUNNING, ChildState.BACKOFF) else logging.DEBUG
        log.log(level, "%s (pid %s): %s -> %s%s", self.name, self.pid, self.state.value, new.value,
                f" ({why})" if why else "")
        self.state = new

    def start(self) -> None:
        parent_end, child_end = self.context.Pipe()
        self.process = self.context.Process(target=bootstrap, args=(self.spec, child_end, self.config),
                                            name=self.spec.name, daemon=False)
        self.process.start()
        child_end.close()
        self.conn = parent_end
        self.started_at = self.last_pong = time.monotonic()
        self.change_state(ChildState.STARTING)

    def send(self, message: object) -> bool:
        """Send if the child can take it; False when it is not there to take it."""
        if self.conn is None or self.state not in (ChildState.STARTING, ChildState.RUNNING):
            return False
        try:
            self.conn.send(message)
            return True
        except (BrokenPipeError, ConnectionResetError, OSError):
            return False

    def ping(self, now: float) -> None:
        self.ping_seq += 1
        self.last_ping_sent = now
        self.send(Ping(self.ping_seq))

    def request_stop(self, reason: str, now: float) -> None:
        if self.state in (ChildState.STARTING, ChildState.RUNNING):
            self.send(Stop(reason))
            self.stop_deadline = now + self.spec.shutdown_timeout_s
            self.change_state(ChildState.STOPPING, reason)

    def kill(self) -> None:
        if self.process is not None and self.process.exitcode is None:
            try:
                self.process.kill()
            except ProcessLookupError:
                pass

    def reap(self) -> int:
        """Collect the exit status of a process that has ended; close its pipe."""
        assert self.process is not None
        self.process.join()
        code = self.process.exitcode
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        return code if code is not None else -1


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = ": perhaps out of memory, or killed by hand" if -code == signal.SIGKILL else ""
        return f"killed by {name}{hint}"
    return f"exited with status {code}"


def spawn_context() -> SpawnContext:
    return multiprocessing.get_context("spawn")
