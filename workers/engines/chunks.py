"""How tasks are handed to workers (one by one, or in chunks under a backlog) and their
outcomes reported: what the engines share beyond their interface (base.py)."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from concurrent.futures import Future

import attrs

from ...supervisor.child import describe_exit
from ..execution import TASK_TIMEOUT, UNKNOWN_TASK_FAILURE, error_result
from ..payloads import Payload
from ..pipe_messages import TaskDelivery, TaskLost, TaskResult
from .base import Done, has_resource_specification

MAX_CHUNK = 32


def chunks(tasks: tuple[TaskDelivery, ...], capacity: int) -> list[tuple[TaskDelivery, ...]]:
    """Tasks grouped for the workers: one by one while there are no more than the workers
    can take at once (latency first); under a backlog, in chunks of up to MAX_CHUNK, a
    couple per worker, so the per-call overhead is paid once a chunk (throughput first)."""
    if len(tasks) <= 2 * capacity:
        return [(task,) for task in tasks]
    size = min(MAX_CHUNK, -(-len(tasks) // (2 * capacity)))
    return [tasks[i:i + size] for i in range(0, len(tasks), size)]


def chunk_arguments(chunk: tuple[TaskDelivery, ...]) -> list[tuple[str, Payload, list[str] | None]]:
    return [(t.task_id, t.body, t.headers.get("result_serializers")) for t in chunk]


@attrs.define
class ChunkProgress:
    """What is known of a chunk's tasks while it runs: which started, and which have had their
    outcome reported. Each task's result leaves as the task ends (the chunk's call returns
    only the results it could not send on their own), so a chunk never holds finished work."""

    tasks: tuple[TaskDelivery, ...]
    started: set[str] = attrs.field(factory=set)
    reported: set[str] = attrs.field(factory=set)
    lock: threading.Lock = attrs.field(factory=threading.Lock)
    settled: Callable[[str], None] | None = None  # told each task id once it has its outcome

    def report(self, done: Done, outcome: TaskResult | TaskLost) -> None:
        """Pass an outcome on, once per task whichever way it came."""
        if self.claim(outcome.task_id):
            done(outcome)

    def claim(self, task_id: str) -> bool:
        """True the first time: the caller settles this task."""
        with self.lock:
            if task_id in self.reported:
                return False
            self.reported.add(task_id)
        if self.settled is not None:
            self.settled(task_id)
        return True

    def unreported(self) -> list[TaskDelivery]:
        with self.lock:
            return [t for t in self.tasks if t.task_id not in self.reported]


class ChunkedSubmission:
    """submit_many for an engine with ``submit``, ``capacity``, ``outstanding``,
    ``endpoint_id`` and a ``_submit_chunk(progress, done) -> Future`` that runs the chunk's
    tasks one after another, reporting each task's start and result to ``progress`` as they
    happen. A task with a resource specification always goes alone (its own resources, or the
    engine's refusal of them)."""

    outstanding: int
    endpoint_id: str

    @property
    def capacity(self) -> int:
        raise NotImplementedError

    def submit(self, task: TaskDelivery, done: Done) -> None:
        raise NotImplementedError

    def _submit_chunk(self, progress: ChunkProgress, done: Done) -> Future:
        raise NotImplementedError

    def submit_many(self, tasks: tuple[TaskDelivery, ...], done: Done) -> None:
        plain = []
        for task in tasks:
            if not has_resource_specification(task.headers):
                plain.append(task)
            else:
                self.submit(task, done)
        for chunk in chunks(tuple(plain), self.capacity):
            if len(chunk) == 1:
                self.submit(chunk[0], done)
                continue
            self.outstanding += len(chunk)
            progress = ChunkProgress(chunk)
            future = self._submit_chunk(progress, done)
            future.add_done_callback(functools.partial(self._chunk_finished, progress, done=done))

    def _chunk_finished(self, progress: ChunkProgress, future: Future, done: Done) -> None:
        self.outstanding -= len(progress.tasks)
        self._settle_chunk(progress, future, done)

    def _settle_chunk(self, progress: ChunkProgress, future: Future, done: Done) -> None:
        """The outcome of each task the chunk's call did not report as it ran. When the worker
        running the chunk died, the task it was running when it died (started, no result) is
        lost; those it had not started yet go on, untouched, as tasks of their own."""
        if future.cancelled():
            return
        exc = future.exception()
        if exc is None:
            for task, packed in zip(progress.tasks, future.result(), strict=True):
                if packed is not None:
                    progress.report(done, TaskResult(task.task_id, packed))
            return
        death = describe_worker_death(exc)
        for task in progress.unreported():
            if death is None:
                progress.report(done, TaskResult(task.task_id, _failed_call(task.task_id, exc, self.endpoint_id)))
            elif task.task_id in progress.started:
                progress.report(done, TaskLost(task.task_id, death))
            elif progress.claim(task.task_id):
                self.submit(task, done)


def report_outcome(task_id: str, future: Future, done: Done, endpoint_id: str,
                   time_limit_s: float | None = None) -> None:
    """A task's outcome from its finished call: its packed Result; if its worker died under
    it, TaskLost saying how; if it ran over its time limit, an error naming the limit; if the
    call failed otherwise, an error naming that. A cancelled call (shutting down) reports
    nothing: the dispatcher still holds the task."""
    if future.cancelled():
        return
    exc = future.exception()
    if exc is None:
        done(TaskResult(task_id, future.result()))
    elif isinstance(exc, TimeoutError) and time_limit_s:
        done(TaskResult(task_id, over_time_limit(task_id, time_limit_s, endpoint_id,
                                                 "its worker was killed and replaced")))
    elif (death := describe_worker_death(exc)) is not None:
        done(TaskLost(task_id, death))
    else:
        done(TaskResult(task_id, _failed_call(task_id, exc, endpoint_id)))


def _failed_call(task_id: str, exc: BaseException, endpoint_id: str) -> bytes:
    return error_result(task_id, UNKNOWN_TASK_FAILURE, f"The worker running the task failed: {exc!r}",
                        endpoint_id=endpoint_id)


def describe_worker_death(exc: BaseException) -> str | None:
    """How the worker running a task died, from what its pool said; None if it did not die."""
    kind = type(exc).__name__
    if kind == "ProcessExpired":  # pebble: the worker process ended under the task
        code = exc.exitcode  # type: ignore[attr-defined]
        return f"the worker running this task {'was ' if code < 0 else ''}{describe_exit(code)}"
    if kind == "WorkerLost":  # Parsl: a pool's manager saw its worker process end
        return f"the worker running this task died ({exc})"
    if kind == "ManagerLost":  # Parsl: a whole worker pool (node, or batch job) went away
        return f"the worker pool running this task was lost ({exc})"
    return None


def over_time_limit(task_id: str, limit_s: float, endpoint_id: str, what_happened: str) -> bytes:
    text = (f"AppTimeout: the task ran over its time limit of {limit_s:g} s (task_timeout_s in the engine's "
            f"config, or GC_TASK_TIMEOUT in the endpoint's environment); {what_happened}")
    return error_result(task_id, TASK_TIMEOUT, text, endpoint_id=endpoint_id)
