"""The standard library's pools as engines (ThreadPoolEngine, ProcessPoolEngine), and
build_engine, which makes any engine from the config (GlobusComputeEngine is in htex.py;
what all engines share is in submission.py)."""

from __future__ import annotations

import concurrent.futures
import logging
import multiprocessing
import os
import threading
from collections.abc import Mapping
from typing import Any

from ..supervisor.pipe import die_with_parent, keep_descriptors_to_ourselves
from .execution import UNKNOWN_TASK_FAILURE, error_result, notice_start, run_task, run_tasks, send_start_notices_to
from .pipe_messages import TaskDelivery, TaskResult
from .submission import (
    ChunkedSubmission,
    Done,
    Engine,
    ResourceSpecificationError,
    Started,
    check_no_resource_specification,
    ignore_start,
    report_outcome,
)

log = logging.getLogger(__name__)


class _PoolEngine(ChunkedSubmission):
    """ThreadPoolEngine and ProcessPoolEngine: the standard library executors."""

    name = "PoolEngine"

    def __init__(self, executor: concurrent.futures.Executor, capacity: int, endpoint_id: str,
                 on_start: Started):
        self.executor = executor
        self.workers = capacity
        self.endpoint_id = endpoint_id
        self.on_start = on_start  # what the workers call as each task starts (picklable for processes)
        self.outstanding = 0

    @property
    def capacity(self) -> int:
        return self.workers

    def submit(self, task: TaskDelivery, done: Done) -> None:
        try:
            check_no_resource_specification(self.name, task)
        except ResourceSpecificationError as exc:
            done(TaskResult(task.task_id, error_result(task.task_id, UNKNOWN_TASK_FAILURE, str(exc),
                                                       endpoint_id=self.endpoint_id)))
            return
        self.outstanding += 1
        future = self.executor.submit(run_task, task.task_id, task.body, task.headers.get("result_serializers"),
                                      self.endpoint_id, on_start=self.on_start)
        future.add_done_callback(lambda f: self._finished(task.task_id, f, done))

    def _submit_chunk(self, arguments) -> concurrent.futures.Future:
        return self.executor.submit(run_tasks, arguments, self.endpoint_id, self.on_start)

    def _finished(self, task_id: str, future: concurrent.futures.Future, done: Done) -> None:
        self.outstanding -= 1
        report_outcome([task_id], future, done, self.endpoint_id)

    def status(self) -> dict:
        return {"engine_type": self.name, "total_workers": self.capacity,
                "outstanding_tasks": self.outstanding, "pending_tasks": max(0, self.outstanding - self.capacity),
                "scaling_enabled": False, "total_cores": os.cpu_count()}

    def failure(self) -> str | None:
        return None  # a pool replaces its own dead workers (their tasks get error results)

    def abandon(self) -> None:
        pass

    def shutdown(self, cancel_pending: bool) -> None:
        self.executor.shutdown(wait=True, cancel_futures=cancel_pending)


class ThreadPoolEngine(_PoolEngine):
    name = "ThreadPoolEngine"

    def __init__(self, endpoint_id: str, *, max_workers: int | None, on_start: Started = ignore_start,
                 thread_name_prefix: str = "task"):
        workers = max_workers or min(32, (os.cpu_count() or 1) + 4)
        super().__init__(concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix=thread_name_prefix),
                         workers, endpoint_id, on_start)


def _pool_worker_setup(parent_pid: int | None, start_notices) -> None:
    keep_descriptors_to_ourselves()  # or a task's leftover command would hide the worker's death from the pool
    die_with_parent(parent_pid)
    send_start_notices_to(start_notices)


class ProcessPoolEngine(_PoolEngine):
    name = "ProcessPoolEngine"

    def __init__(self, endpoint_id: str, *, max_workers: int | None, on_start: Started = ignore_start,
                 mp_context: str = "spawn", max_tasks_per_child: int | None = None):
        workers = max_workers or os.cpu_count() or 1
        # spawn by default: the engine process has threads, and forking a threaded process is
        # unsafe. Workers die with the engine: an engine killed by SIGKILL must not leave them
        # behind. A worker tells the engine through start_notices when it starts a task (the
        # pool's own "running" state also covers the tasks it has only queued for its workers).
        context = multiprocessing.get_context(mp_context)
        self.start_notices = context.SimpleQueue()
        recycling = {"max_tasks_per_child": max_tasks_per_child} if max_tasks_per_child else {}
        # A forkserver's workers are its children, not the engine's; it dies with the engine.
        parent = None if mp_context == "forkserver" else os.getpid()
        executor = concurrent.futures.ProcessPoolExecutor(workers, mp_context=context,
                                                          initializer=_pool_worker_setup,
                                                          initargs=(parent, self.start_notices), **recycling)
        super().__init__(executor, workers, endpoint_id, notice_start)
        threading.Thread(target=self._forward_start_notices, args=(on_start,), name="start-notices",
                         daemon=True).start()

    def _forward_start_notices(self, on_start: Started) -> None:
        while (task_id := self.start_notices.get()) is not None:
            on_start(task_id)

    def shutdown(self, cancel_pending: bool) -> None:
        super().shutdown(cancel_pending)
        self.start_notices.put(None)


ENGINES: dict[str, type] = {"ThreadPoolEngine": ThreadPoolEngine, "ProcessPoolEngine": ProcessPoolEngine}


def build_engine(engine_config: Mapping[str, Any], endpoint_id: str, run_dir: str = ".",
                 on_start: Started = ignore_start) -> Engine:
    options = dict(engine_config)
    kind = options.pop("type")
    options.pop("max_retries_on_system_failure", None)  # the dispatcher's business
    if kind in ("GlobusComputeEngine", "GlobusMPIEngine"):
        from . import htex  # heavy: Parsl

        engine_class = getattr(htex, kind)
        return engine_class(endpoint_id, run_dir=run_dir, on_start=on_start, **options)
    return ENGINES[kind](endpoint_id, on_start=on_start, **options)
