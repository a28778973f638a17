"""What every engine shares: chunk sizes, and how a finished call becomes each task's Result."""

from __future__ import annotations

import concurrent.futures
import uuid

from compute_endpoint.protocol import messages
from compute_endpoint.workers.engines.base import has_resource_specification
from compute_endpoint.workers.engines.chunks import MAX_CHUNK, chunks, report_outcome
from compute_endpoint.workers.pipe_messages import TaskDelivery, TaskLost, TaskResult


def tasks(count: int) -> tuple[TaskDelivery, ...]:
    return tuple(TaskDelivery(str(uuid.uuid4()), i, "g", {}, b"") for i in range(count))


def test_one_by_one_while_workers_can_take_them_chunks_under_a_backlog():
    assert [len(c) for c in chunks(tasks(8), capacity=4)] == [1] * 8
    backlog = chunks(tasks(1000), capacity=4)
    assert all(len(c) <= MAX_CHUNK for c in backlog) and sum(map(len, backlog)) == 1000
    assert [len(c) for c in chunks(tasks(20), capacity=4)] == [3, 3, 3, 3, 3, 3, 2]


def finished(value=None, error=None, cancel=False) -> concurrent.futures.Future:
    future: concurrent.futures.Future = concurrent.futures.Future()
    if cancel:
        future.cancel()
    elif error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)
    return future


def test_a_task_gets_its_result_an_error_naming_the_failure_or_is_lost_with_its_worker():
    import pebble

    task_id = str(uuid.uuid4())
    got: list = []
    report_outcome(task_id, finished(b"one"), got.append, "ep")
    assert got == [TaskResult(task_id, b"one")]
    got.clear()
    report_outcome(task_id, finished(error=RuntimeError("pool broke")), got.append, "ep")
    [error] = [messages.unpack(r.packed) for r in got]
    assert error.is_error and "pool broke" in error.data
    got.clear()
    report_outcome(task_id, finished(error=pebble.ProcessExpired("Abnormal termination", code=-11)), got.append, "ep")
    assert got == [TaskLost(task_id, "the worker running this task was killed by SIGSEGV: a segmentation fault, "
                                     "in a C extension perhaps")]
    got.clear()
    report_outcome(task_id, finished(error=pebble.ProcessExpired("Abnormal termination", code=3)), got.append, "ep")
    assert got == [TaskLost(task_id, "the worker running this task exited with status 3")]
    got.clear()
    report_outcome(task_id, finished(error=TimeoutError("Task timeout")), got.append, "ep", time_limit_s=2.5)
    [late] = [messages.unpack(r.packed) for r in got]
    assert late.is_error and "time limit of 2.5 s" in late.data and "killed and replaced" in late.data
    got.clear()
    report_outcome(task_id, finished(cancel=True), got.append, "ep")
    assert got == []  # shutting down: the dispatcher still holds it


def test_a_resource_specification_is_one_with_content():
    assert not any(has_resource_specification({"resource_specification": v}) for v in (None, "", "null", "{}"))
    assert not has_resource_specification({})
    assert has_resource_specification({"resource_specification": '{"num_nodes": 2}'})
