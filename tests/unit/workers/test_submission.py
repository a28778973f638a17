"""What every engine shares: chunk sizes, and how a finished call becomes each task's Result."""

from __future__ import annotations

import concurrent.futures
import uuid

from compute_endpoint.protocol import messages
from compute_endpoint.workers.pipe_messages import TaskDelivery
from compute_endpoint.workers.submission import MAX_CHUNK, chunks, has_resource_specification, report_outcome


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


def test_each_task_gets_its_result_or_an_error_naming_the_failure_and_cancelled_ones_none():
    ids = [str(uuid.uuid4()) for _ in range(3)]
    got = []
    report_outcome(ids, finished([b"a", b"b", b"c"]), got.append, "ep", chunked=True)
    assert [(r.task_id, r.packed) for r in got] == list(zip(ids, [b"a", b"b", b"c"], strict=True))
    got.clear()
    report_outcome(ids[:1], finished(b"one"), got.append, "ep")
    assert [r.packed for r in got] == [b"one"]
    got.clear()
    report_outcome(ids, finished(error=RuntimeError("worker died")), got.append, "ep", chunked=True)
    errors = [messages.unpack(r.packed) for r in got]
    assert [str(e.task_id) for e in errors] == ids
    assert all(e.is_error and "worker died" in e.data for e in errors)
    got.clear()
    report_outcome(ids, finished(cancel=True), got.append, "ep", chunked=True)
    assert got == []  # shutting down: the dispatcher still holds them


def test_a_resource_specification_is_one_with_content():
    assert not any(has_resource_specification({"resource_specification": v}) for v in (None, "", "null", "{}"))
    assert not has_resource_specification({})
    assert has_resource_specification({"resource_specification": '{"num_nodes": 2}'})
