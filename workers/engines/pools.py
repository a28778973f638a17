"""ThreadPoolEngine and ProcessPoolEngine, and build_engine, which makes any engine from the
config (GlobusComputeEngine is in htex.py; what all engines share is in submission.py).

A task that kills the process running it costs only itself. In a ProcessPoolEngine that
process is a pool worker: pebble's ProcessPool replaces a worker that dies and fails only
the task it was running (the standard library's pool breaks whole at one death, failing every
task in flight), and kills a worker whose task runs over its time limit. In a
ThreadPoolEngine the task runs in the engine process itself, so it takes the engine with it:
then the dispatcher sends the tasks that had not started to the next engine, untouched, which
is why this engine reports each start before the task runs.
"""

from __future__ import annotations

import concurrent.futures
import functools
import logging
import multiprocessing
import os
import threading
import time

from ...supervisor.pipe import die_with_parent, keep_descriptors_to_ourselves
from ..execution import UNKNOWN_TASK_FAILURE, error_result, notice_start, run_task, run_tasks, send_start_notices_to
from ..pipe_messages import TaskDelivery, TaskLost, TaskResult
from .base import Done, ResourceSpecificationError, Started, check_no_resource_specification, ignore_start
from .chunks import ChunkedSubmission, ChunkProgress, over_time_limit, report_outcome

log = logging.getLogger(__name__)


def _refuse_resource_specification(engine: str, task: TaskDelivery, done: Done, endpoint_id: str) -> bool:
    try:
        check_no_resource_specification(engine, task)
    except ResourceSpecificationError as exc:
        done(TaskResult(task.task_id, error_result(task.task_id, UNKNOWN_TASK_FAILURE, str(exc),
                                                   endpoint_id=endpoint_id)))
        return True
    return False


def _pool_status(name: str, workers: int, outstanding: int) -> dict:
    return {"engine_type": name, "total_workers": workers, "outstanding_tasks": outstanding,
            "pending_tasks": max(0, outstanding - workers), "scaling_enabled": False,
            "total_cores": os.cpu_count()}


class ThreadTimeLimit:
    """task_timeout_s for tasks in threads, which cannot be stopped: at the limit the task gets
    its error result, and whatever it returns later is dropped while its thread runs on."""

    CHECK_EVERY_S = 0.05

    def __init__(self, limit_s: float, endpoint_id: str):
        self.limit_s = limit_s
        self.endpoint_id = endpoint_id
        self.lock = threading.Lock()
        self.running: dict[str, tuple[float, Done]] = {}  # task id: (deadline, where its outcome goes)
        self.overdue: set[str] = set()
        self.watching = True
        threading.Thread(target=self._watch, name="task-time-limit", daemon=True).start()

    def started(self, task_id: str, done: Done) -> None:
        with self.lock:
            self.running[task_id] = (time.monotonic() + self.limit_s, done)

    def finished(self, outcome: TaskResult | TaskLost, done: Done) -> None:
        with self.lock:
            self.running.pop(outcome.task_id, None)
            if outcome.task_id in self.overdue:
                self.overdue.discard(outcome.task_id)
                log.info("task %s ended after its time limit; its late result is dropped", outcome.task_id)
                return
        done(outcome)

    def _watch(self) -> None:
        while self.watching:
            time.sleep(self.CHECK_EVERY_S)
            now = time.monotonic()
            with self.lock:
                late = [(task_id, done) for task_id, (deadline, done) in self.running.items() if now >= deadline]
                for task_id, _ in late:
                    del self.running[task_id]
                    self.overdue.add(task_id)
            for task_id, done in late:
                done(TaskResult(task_id, over_time_limit(
                    task_id, self.limit_s, self.endpoint_id,
                    "ThreadPoolEngine cannot stop a thread, so it runs on, and what it returns is dropped")))


class ThreadPoolEngine(ChunkedSubmission):
    name = "ThreadPoolEngine"

    def __init__(self, endpoint_id: str, *, max_workers: int | None, on_start: Started = ignore_start,
                 thread_name_prefix: str = "task", task_timeout_s: float | None = None):
        self.workers = max_workers or min(32, (os.cpu_count() or 1) + 4)
        self.executor = concurrent.futures.ThreadPoolExecutor(self.workers, thread_name_prefix=thread_name_prefix)
        self.endpoint_id = endpoint_id
        self.on_start = on_start
        self.outstanding = 0
        self.time_limit = ThreadTimeLimit(task_timeout_s, endpoint_id) if task_timeout_s else None

    @property
    def capacity(self) -> int:
        return self.workers

    def submit(self, task: TaskDelivery, done: Done) -> None:
        if _refuse_resource_specification(self.name, task, done, self.endpoint_id):
            return
        self.outstanding += 1
        # The time limit's own error goes straight to done; the task's result passes the limit,
        # which drops it when the error went first.
        future = self.executor.submit(run_task, task.task_id, task.body, task.headers.get("result_serializers"),
                                      self.endpoint_id, on_start=functools.partial(self._started, done=done))
        future.add_done_callback(functools.partial(self._finished, task.task_id, done=self._limited(done)))

    def _submit_chunk(self, progress: ChunkProgress, done: Done) -> concurrent.futures.Future:
        limited = self._limited(done)

        def started(task_id: str) -> None:
            progress.started.add(task_id)
            self._started(task_id, done)

        def ended(task_id: str, packed: bytes) -> None:
            progress.report(limited, TaskResult(task_id, packed))

        arguments = [(t.task_id, t.body, t.headers.get("result_serializers")) for t in progress.tasks]
        return self.executor.submit(run_tasks, arguments, self.endpoint_id, started, ended)

    def _limited(self, done: Done) -> Done:
        if self.time_limit is None:
            return done
        return functools.partial(self.time_limit.finished, done=done)

    def _started(self, task_id: str, done: Done) -> None:
        if self.time_limit is not None:
            self.time_limit.started(task_id, done)
        self.on_start(task_id)

    def _finished(self, task_id: str, future: concurrent.futures.Future, done: Done) -> None:
        self.outstanding -= 1
        report_outcome(task_id, future, done, self.endpoint_id)

    def status(self) -> dict:
        return _pool_status(self.name, self.workers, self.outstanding)

    def failure(self) -> str | None:
        return None

    def abandon(self) -> None:
        pass

    def shutdown(self, cancel_pending: bool) -> None:
        if self.time_limit is not None:
            self.time_limit.watching = False
        self.executor.shutdown(wait=True, cancel_futures=cancel_pending)


def _pool_worker_setup(parent_pid: int | None, start_notices) -> None:
    keep_descriptors_to_ourselves()  # or a task's leftover command would hide the worker's death from the pool
    die_with_parent(parent_pid)
    send_start_notices_to(start_notices)


class ProcessPoolEngine:
    """Tasks one by one on pebble's ProcessPool: a dead worker is replaced and fails only its
    own task (TaskLost: the dispatcher retries it or fails it saying how the worker died); a
    task over its time limit has its worker killed and replaced. One call per task, no chunks:
    each result leaves as its task ends, and pebble's per-task cost is below the standard
    library pool's chunked one."""

    name = "ProcessPoolEngine"

    def __init__(self, endpoint_id: str, *, max_workers: int | None, on_start: Started = ignore_start,
                 mp_context: str = "spawn", max_tasks_per_child: int | None = None,
                 task_timeout_s: float | None = None):
        import pebble  # only this engine needs it

        self.workers = max_workers or os.cpu_count() or 1
        self.endpoint_id = endpoint_id
        self.time_limit_s = task_timeout_s
        self.futures: dict[str, concurrent.futures.Future] = {}  # task id: its call, until it ends
        # spawn by default: the engine process has threads, and forking a threaded process is
        # unsafe. Workers die with the engine: an engine killed by SIGKILL must not leave them
        # behind. A worker tells the engine through start_notices when it starts a task.
        self.context = multiprocessing.get_context(mp_context)
        self.start_notices = self.context.SimpleQueue()
        # A forkserver's workers are its children, not the engine's; it dies with the engine.
        parent = None if mp_context == "forkserver" else os.getpid()
        self.pool = pebble.ProcessPool(self.workers, max_tasks=max_tasks_per_child or 0,
                                       initializer=_pool_worker_setup, initargs=(parent, self.start_notices),
                                       context=self.context)
        threading.Thread(target=self._forward_start_notices, args=(on_start,), name="start-notices",
                         daemon=True).start()

    @property
    def capacity(self) -> int:
        return self.workers

    def submit_many(self, tasks: tuple[TaskDelivery, ...], done: Done) -> None:
        for task in tasks:
            self.submit(task, done)

    def submit(self, task: TaskDelivery, done: Done) -> None:
        if _refuse_resource_specification(self.name, task, done, self.endpoint_id):
            return
        future = self.pool.submit(run_task, self.time_limit_s, task.task_id, task.body,
                                  task.headers.get("result_serializers"), self.endpoint_id, on_start=notice_start)
        self.futures[task.task_id] = future
        future.add_done_callback(functools.partial(self._finished, task.task_id, done=done))

    @property
    def outstanding(self) -> int:
        return len(self.futures)

    def _finished(self, task_id: str, future: concurrent.futures.Future, done: Done) -> None:
        self.futures.pop(task_id, None)
        report_outcome(task_id, future, done, self.endpoint_id, self.time_limit_s)

    def _forward_start_notices(self, on_start: Started) -> None:
        while (task_id := self.start_notices.get()) is not None:
            on_start(task_id)

    def status(self) -> dict:
        return _pool_status(self.name, self.workers, self.outstanding)

    def failure(self) -> str | None:
        if not self.pool.active:
            return "the process pool stopped"
        return None

    def abandon(self) -> None:
        self.pool.stop()

    def shutdown(self, cancel_pending: bool) -> None:
        if cancel_pending:  # running tasks finish; the dispatcher still holds the others
            for future in list(self.futures.values()):
                if not future.running():
                    future.cancel()
        self.pool.close()
        self.pool.join()
        self.start_notices.put(None)


ENGINES: dict[str, type] = {"ThreadPoolEngine": ThreadPoolEngine, "ProcessPoolEngine": ProcessPoolEngine}
