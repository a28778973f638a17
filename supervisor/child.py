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

import psutil

from .control import Halt, Ping, Stop
from .pipe import bootstrap
from .spec import ChildSpec
from .states import LIVE_STATES, TRANSITIONS, ChildState

log = logging.getLogger(__name__)


class Child:
    """One child process as the supervisor sees it: its spec, its process and pipe, its
    state (every change through ``change_state``, checked against TRANSITIONS), and what
    judging its health needs (last answer, CPU used since, when to kill it if hung)."""

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
        # Silence is judged over windows: the CPU time the process had used when one began.
        self.window_start = 0.0
        self.window_cpu = 0.0
        self.window_wait = 0.0
        self.outbox: Outbox | None = None
        self.kill_at = float("inf")  # when a child asked for its stack (hung) is killed
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
        self.answered(time.monotonic())
        self.started_at = self.last_pong
        self.kill_at = float("inf")
        self.halt, self.forgiven = None, ""
        self.starts += 1
        self.change_state(ChildState.STARTING)

    def describe(self) -> dict:
        """The child as the tree's status shows it."""
        return {"state": self.state.value, "pid": self.pid, "since": self.state_since,
                "restarts": max(0, self.starts - 1)}

    def send(self, message: object) -> bool:
        """Queue for the child if it can take it; False when it is not there to take it."""
        if self.outbox is None or self.state not in LIVE_STATES:
            return False
        return self.outbox.put(message)

    def answered(self, now: float) -> None:
        self.last_pong = self.window_start = now
        self.window_cpu, self.window_wait = self.cpu_seconds(), self.run_queue_seconds()

    def cpu_seconds(self) -> float:
        """CPU time the process has used, all its threads together (0 when it cannot be read)."""
        try:
            times = psutil.Process(self.pid).cpu_times() if self.pid else None
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return 0.0
        return times.user + times.system if times else 0.0

    def run_queue_seconds(self) -> float:
        """Time the process's threads have spent runnable but waiting for a CPU (Linux's
        schedstat; 0 where it cannot be read): on a loaded host a child that makes slow
        progress spends most of its time there, while a stuck one sleeps."""
        total = 0
        try:
            for thread in os.listdir(f"/proc/{self.pid}/task"):
                with open(f"/proc/{self.pid}/task/{thread}/schedstat") as stats:
                    total += int(stats.read().split()[1])
        except (OSError, ValueError, IndexError):
            pass  # gone, or a thread ended while we read: what was read is a lower bound
        return total / 1e9

    def silence(self, now: float, window_s: float, busy_share: float) -> tuple[str, float, float]:
        """After window_s without an answer: "busy" if the process ran, or waited to run, at
        least busy_share of a core meanwhile (a long computation holding the interpreter, or a
        start crawling on a loaded host), else "hung"; "answering" before that. With the CPU
        and run-queue seconds of the window just judged. A busy child starts a new window: it is hung
        only once a whole window passes without progress."""
        if now - self.window_start <= window_s:
            return "answering", 0.0, 0.0
        used = self.cpu_seconds() - self.window_cpu
        waited = self.run_queue_seconds() - self.window_wait
        if used + waited >= busy_share * (now - self.window_start):
            self.window_start = now
            self.window_cpu, self.window_wait = self.window_cpu + used, self.window_wait + waited
            return "busy", used, waited
        return "hung", used, waited

    def ping(self, now: float) -> None:
        self.ping_seq += 1
        self.last_ping_sent = now
        self.send(Ping(self.ping_seq))

    def request_stop(self, reason: str, now: float) -> None:
        if self.state in LIVE_STATES:
            self.send(Stop(reason))
            self.stop_deadline = now + self.spec.shutdown_timeout_s
            self.change_state(ChildState.STOPPING, reason)

    def abort(self, now: float, grace_s: float) -> None:
        """SIGABRT a hung child: faulthandler (enabled in every child) writes the stack of each
        of its threads to its stderr, so the log says where it hung. Killed at kill_at if it
        is still there (a stopped process, say, takes no signal but SIGKILL)."""
        if self.process is not None and self.process.exitcode is None and self.process.pid is not None:
            try:
                os.kill(self.process.pid, signal.SIGABRT)
            except ProcessLookupError:
                pass
        self.kill_at = now + grace_s

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
