"""The engine process: takes RunTasks from the supervisor, runs them, sends ResultsDone."""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import time
from multiprocessing.connection import wait
from pathlib import Path

from ..protocol.serialize import parse_allowlist
from ..supervisor.control import Stop
from ..supervisor.pipe import ParentPipe
from ..supervisor.spec import ExitCode
from .engines.base import build_engine
from .execution import serializer_refusal
from .logs import capture_output
from .payloads import UNACKED_RESULTS, PayloadStore
from .pipe_messages import (
    EngineStatus,
    ResultsDone,
    RunTasks,
    TaskDelivery,
    TaskLost,
    TaskResult,
    TasksLost,
    TasksStarted,
)
from .settings import WorkerSettings
from .startup import begin_child

log = logging.getLogger(__name__)

STATUS_EVERY_S = 5.0
RESULT_BATCH = 512


def main(parent: ParentPipe, settings: WorkerSettings) -> int:
    begin_child(settings, "engine")
    capture_output()  # what tasks print (here and in the workers this process starts) is logged, bounded
    allowlist = settings.engine.get("allowed_serializers")
    process = EngineProcess(parent, PayloadStore(Path(settings.run_dir) / UNACKED_RESULTS),
                            parse_allowlist(allowlist) if allowlist else None, settings.endpoint_id)
    signal.signal(signal.SIGTERM, lambda *_: process.stop("SIGTERM"))
    # A ThreadPoolEngine runs tasks in this very process: a task that kills it must have been
    # reported started before it ran, or the dispatcher could not tell it from the tasks that
    # had not started (which go to the next engine untouched, without counting a try).
    on_start = process.report_start_now if settings.engine["type"] == "ThreadPoolEngine" else process.on_start
    try:
        engine = build_engine(settings.engine, settings.endpoint_id, settings.run_dir, on_start)
    except Exception as exc:
        log.error("cannot build the %s engine: %s", settings.engine.get("type"), exc)
        return parent.halt(ExitCode.CONFIG_ERROR, f"cannot build the {settings.engine.get('type')} engine: {exc}")
    threading.Thread(target=_watch_for_failure, args=(engine, process.wake_write), name="engine-watchdog",
                     daemon=True).start()
    parent.ready()
    log.info("%s ready with capacity %d", settings.engine["type"], engine.capacity)
    return process.run(engine)


class EngineProcess:
    """The engine process's loop: one wait over the supervisor's pipe and a wake-up pipe that
    tasks starting and finishing (in any thread) poke; then pass on what they reported."""

    def __init__(self, parent: ParentPipe, results: PayloadStore, allowed_serializers: frozenset[str] | None = None,
                 endpoint_id: str | None = None):
        self.parent = parent
        self.results = results
        self.allowed_serializers, self.endpoint_id = allowed_serializers, endpoint_id
        self.wake_read, self.wake_write = os.pipe()
        os.set_blocking(self.wake_write, False)
        self.stopping: list[str] = []
        self.finished: queue.SimpleQueue[TaskResult | TaskLost] = queue.SimpleQueue()
        self.started: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.awake = threading.Event()  # set: a wake-up is on its way; finishing tasks need not send another

    def stop(self, reason: str) -> None:
        self.stopping.append(reason)
        _poke(self.wake_write)

    def wake(self) -> None:
        if not self.awake.is_set():
            self.awake.set()
            _poke(self.wake_write)

    def done(self, result: TaskResult | TaskLost) -> None:
        # A large result is written once, here, in the thread that has it: the supervisor and
        # the result link hold a reference to its file, not a copy each.
        if isinstance(result, TaskResult) and isinstance(result.packed, bytes):
            kept = self.results.keep(result.task_id, result.packed)
            if kept is not result.packed:
                result = TaskResult(result.task_id, kept)
        self.finished.put(result)
        self.wake()

    def admitted(self, tasks: tuple[TaskDelivery, ...]) -> tuple[TaskDelivery, ...]:
        """The tasks whose payloads allowed_serializers lets through; the others are answered
        with an error at once, nothing of theirs deserialized."""
        if self.allowed_serializers is None:
            return tasks
        admitted = []
        for task in tasks:
            refusal = serializer_refusal(task.task_id, task.body, self.allowed_serializers, self.endpoint_id)
            if refusal is None:
                admitted.append(task)
            else:
                self.done(TaskResult(task.task_id, refusal))
        return tuple(admitted)

    def on_start(self, task_id: str) -> None:
        self.started.put(task_id)
        self.wake()

    def report_start_now(self, task_id: str) -> None:
        """Tell the supervisor before the task runs, from the task's own thread."""
        self.parent.send(TasksStarted((task_id,)))

    def run(self, engine) -> int:
        self.parent.send(EngineStatus(engine.status()))
        next_status = time.monotonic() + STATUS_EVERY_S
        while not self.stopping:
            ready = wait([self.parent.conn, self.wake_read], timeout=1.0)
            if self.wake_read in ready:
                os.read(self.wake_read, 65536)
                self.awake.clear()  # after emptying the pipe, before draining: a result put after this pokes again
            for message in self.parent.receive(0):
                if isinstance(message, RunTasks):
                    engine.submit_many(self.admitted(message.tasks), self.done)
                elif isinstance(message, Stop):
                    self.stopping.append(message.reason)
            _send_started(self.parent, self.started)
            _send_finished(self.parent, self.finished)
            problem = engine.failure()
            if problem:
                # Exit abnormally: the supervisor starts a new engine and hands it this one's tasks.
                log.error("the engine cannot run tasks any more: %s; exiting so that it is replaced", problem)
                engine.abandon()
                return ExitCode.DEPENDENCY_FAILED
            if time.monotonic() >= next_status:
                self.parent.send(EngineStatus(engine.status()))
                next_status = time.monotonic() + STATUS_EVERY_S
        log.info("stopping (%s): finishing running tasks", self.stopping[0])
        engine.shutdown(cancel_pending=True)
        _send_finished(self.parent, self.finished)
        return 0


def _send_started(parent: ParentPipe, started: queue.SimpleQueue) -> None:
    task_ids = []
    while not started.empty():
        task_ids.append(started.get())
    if task_ids:
        parent.send(TasksStarted(tuple(task_ids)))


def _send_finished(parent: ParentPipe, finished: queue.SimpleQueue) -> None:
    batch, lost = [], []
    while not finished.empty():
        outcome = finished.get()
        if isinstance(outcome, TaskLost):
            lost.append(outcome)
            continue
        batch.append(outcome)
        if len(batch) >= RESULT_BATCH:
            parent.send(ResultsDone(tuple(batch)))
            batch = []
    if batch:
        parent.send(ResultsDone(tuple(batch)))
    if lost:
        for item in lost:
            log.warning("task %s lost: %s", item.task_id, item.why)
        parent.send(TasksLost(tuple(lost)))


WATCH_EVERY_S = 0.5
FAILURE_GRACE_S = 3.0


def _watch_for_failure(engine, wake_write: int) -> None:
    """Wake the main loop when the engine fails (for example its interchange dies), and if
    the loop is stuck in a call into the failed engine, exit for it: the supervisor then
    starts a new engine at once instead of waiting for the hung-child timeout."""
    while not engine.failure():
        time.sleep(WATCH_EVERY_S)
    _poke(wake_write)
    time.sleep(FAILURE_GRACE_S)
    log.error("the engine cannot run tasks any more: %s; its main loop is stuck in a call to it, "
              "exiting so that it is replaced", engine.failure())
    engine.abandon()
    logging.shutdown()
    os._exit(ExitCode.DEPENDENCY_FAILED)


def _poke(fd: int) -> None:
    try:
        os.write(fd, b"!")
    except BlockingIOError:
        pass  # already awake
