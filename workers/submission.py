"""What every engine shares: the interface the engine process drives, and how tasks are
handed to workers (one by one, or in chunks under a backlog) and their outcomes reported.

An engine takes tasks and calls ``done`` with each packed Result, from whatever thread
it likes; the engine process wakes on it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from typing import Any, Protocol

from .execution import UNKNOWN_TASK_FAILURE, error_result
from .payloads import Payload
from .pipe_messages import TaskDelivery, TaskResult

Done = Callable[[TaskResult], None]
Started = Callable[[str], None]  # told each task id as a worker starts it, from any thread


def ignore_start(_task_id: str) -> None:
    pass


class Engine(Protocol):
    @property
    def capacity(self) -> int: ...

    def submit(self, task: TaskDelivery, done: Done) -> None: ...

    def submit_many(self, tasks: tuple[TaskDelivery, ...], done: Done) -> None: ...

    def status(self) -> dict: ...

    def failure(self) -> str | None: ...

    def abandon(self) -> None: ...

    def shutdown(self, cancel_pending: bool) -> None: ...


class ResourceSpecificationError(ValueError):
    pass


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


class ChunkedSubmission:
    """submit_many for an engine with ``submit``, ``capacity``, ``outstanding``,
    ``endpoint_id`` and a ``_submit_chunk(arguments) -> Future`` running ``run_tasks``.
    A task with a resource specification always goes alone (its own resources, or the
    engine's refusal of them)."""

    outstanding: int
    endpoint_id: str

    @property
    def capacity(self) -> int:
        raise NotImplementedError

    def submit(self, task: TaskDelivery, done: Done) -> None:
        raise NotImplementedError

    def _submit_chunk(self, arguments: list[tuple[str, Payload, list[str] | None]]) -> Future:
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
            future = self._submit_chunk(chunk_arguments(chunk))
            future.add_done_callback(functools.partial(self._chunk_finished, chunk, done=done))

    def _chunk_finished(self, chunk: tuple[TaskDelivery, ...], future: Future, done: Done) -> None:
        self.outstanding -= len(chunk)
        report_outcome([t.task_id for t in chunk], future, done, self.endpoint_id, chunked=True)


def report_outcome(task_ids: Sequence[str], future: Future, done: Done, endpoint_id: str,
                   chunked: bool = False) -> None:
    """Each task's Result from a finished call: its packed Result, or for a chunk the list of
    them. If the call itself failed (its worker, node or block died), an error for each; if
    it was cancelled (shutting down), nothing: the dispatcher still holds those tasks."""
    if future.cancelled():
        return
    exc = future.exception()
    if exc is None:
        packed = future.result() if chunked else [future.result()]
        for task_id, result in zip(task_ids, packed, strict=True):
            done(TaskResult(task_id, result))
        return
    for task_id in task_ids:
        done(TaskResult(task_id, error_result(task_id, UNKNOWN_TASK_FAILURE,
                                              f"The worker running the task failed: {exc!r}",
                                              endpoint_id=endpoint_id)))


# How a task message says it has no resource specification (the header's JSON text).
NO_SPECIFICATION = (None, "", "null", "{}")


def has_resource_specification(headers: Mapping[str, Any]) -> bool:
    return headers.get("resource_specification") not in NO_SPECIFICATION


def check_no_resource_specification(engine: str, task: TaskDelivery) -> None:
    if has_resource_specification(task.headers):
        raise ResourceSpecificationError(
            f"{engine} does not support resource_specification (got {task.headers['resource_specification']}); "
            "use GlobusComputeEngine for per-task priority, GlobusMPIEngine for multi-node (MPI) tasks")
