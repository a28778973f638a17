"""The supervisor's handle on one child process: its pipe, liveness and state."""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import signal
import threading
import time
from collections import deque
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnContext, SpawnProcess

from .control import Halt, Ping, Stop
from .liveness import Health
from .pipe import bootstrap
from .spec import ChildSpec
from .states import LIVE_STATES, TRANSITIONS, ChildState
from .status import ChildStatus

log = logging.getLogger(__name__)


class Child:
    """One child process as the supervisor sees it: its spec, its process and pipe, its
    state (every change through ``change_state``, checked against TRANSITIONS), and its
    health (liveness.py)."""

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
        self.health = Health()
        self.outbox: Outbox | None = None
        self.starts = 0  # processes started for this child: restarts are starts - 1
        self.retiring = False  # asked to stop for good (StopChild): not restarted
        self.halt: Halt | None = None  # what the child said before exiting, if restarting cannot help
        self.forgiven = ""  # why its last crash was the work's fault, not the child's (Forgive)
        self.restart_times: deque[float] = deque()  # an isolated child's own intensity window
        self.state_since = time.time()  # wall clock, for people reading the tree's status

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
        self.state_since = time.time()

    def start(self) -> None:
        parent_end, child_end = self.context.Pipe()
        self.process = self.context.Process(target=bootstrap, args=(self.spec, child_end, self.config),
                                            name=self.spec.name, daemon=False)
        self.process.start()
        child_end.close()
        self.conn = parent_end
        self.outbox = Outbox(parent_end, self.spec.name)
        self.started_at = time.monotonic()
        self.health = Health(self.process.pid, self.started_at)
        self.halt, self.forgiven = None, ""
        self.starts += 1
        self.change_state(ChildState.STARTING)

    def describe(self) -> ChildStatus:
        """The child as the tree's status shows it."""
        return ChildStatus(self.state, self.pid, self.state_since, max(0, self.starts - 1))

    def send(self, message: object) -> bool:
        """Queue for the child if it can take it; False when it is not there to take it."""
        if self.outbox is None or self.state not in LIVE_STATES:
            return False
        return self.outbox.put(message)

    def back_off(self, until: float, why: str, quick_crashes: int) -> None:
        """Exited; to be started again at until (monotonic), after quick_crashes crashes in a row
        that each came before it had lived long enough to count as healthy."""
        self.restart_at, self.quick_crashes = until, quick_crashes
        self.change_state(ChildState.BACKOFF, why)

    def retire(self, reason: str, now: float) -> None:
        """Stop for good (StopChild): not restarted after it exits."""
        self.retiring = True
        self.request_stop(reason, now)

    def ping(self, now: float, interval_s: float) -> None:
        seq = self.health.next_ping(now, interval_s)
        if seq is not None:
            self.send(Ping(seq))

    def request_stop(self, reason: str, now: float) -> None:
        if self.state in LIVE_STATES:
            self.send(Stop(reason))
            self.stop_deadline = now + self.spec.shutdown_timeout_s
            self.change_state(ChildState.STOPPING, reason)

    def abort(self, now: float, grace_s: float) -> None:
        """SIGABRT a hung child: faulthandler (enabled in every child) writes the stack of each
        of its threads to its stderr, so the log says where it hung. Killed grace_s later if it
        is still there (a stopped process, say, takes no signal but SIGKILL)."""
        if self.process is not None and self.process.exitcode is None and self.process.pid is not None:
            try:
                os.kill(self.process.pid, signal.SIGABRT)
            except ProcessLookupError:
                pass
        self.health.kill_at = now + grace_s

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
        if self.outbox is not None:
            self.outbox.close()
            self.outbox = None
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        return code if code is not None else -1


class Outbox:
    """Messages for one child, written by a thread of their own.

    The supervisor must never block on a child's pipe: a child that is itself blocked
    writing to the supervisor (a full pipe each way) would otherwise deadlock the tree.
    One writer per child keeps each child's messages in order."""

    _CLOSE = object()

    def __init__(self, conn: Connection, name: str):
        self.conn = conn
        self.pending: queue.SimpleQueue = queue.SimpleQueue()
        self.broken = False
        self.thread = threading.Thread(target=self._write, name=f"outbox-{name}", daemon=True)
        self.thread.start()

    def put(self, message: object) -> bool:
        if self.broken:
            return False
        self.pending.put(message)
        return True

    def _write(self) -> None:
        while (message := self.pending.get()) is not self._CLOSE:
            try:
                self.conn.send(message)
            except (BrokenPipeError, ConnectionResetError, OSError, ValueError):
                self.broken = True  # the child is gone; reaping it follows
                return

    def close(self) -> None:
        """After the child exited: whatever is still queued has nobody to read it."""
        self.broken = True
        self.pending.put(self._CLOSE)
        self.thread.join(timeout=1.0)


EXIT_HINTS: dict[int, str] = {
    signal.SIGKILL: ": perhaps out of memory?",
    signal.SIGSEGV: ": a segmentation fault, in a C extension perhaps",
    signal.SIGBUS: ": a bus error (a file mapped into memory shrank, perhaps)",
    signal.SIGABRT: " (its threads' stacks are in the log above)",
}


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = EXIT_HINTS.get(-code, "")
        return f"killed by {name}{hint}"
    return f"exited with status {code}"


def spawn_context() -> SpawnContext:
    return multiprocessing.get_context("spawn")
