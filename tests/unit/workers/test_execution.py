"""Task execution as a worker does it, with payloads made by the official SDK."""

from __future__ import annotations

import uuid

import pytest
from globus_compute_common import messagepack
from globus_compute_sdk.serialize import ComputeSerializer

from compute_endpoint.protocol import messages
from compute_endpoint.workers.execution import (
    COULD_NOT_EXECUTE,
    MAX_RESULT_SIZE_EXCEEDED,
    REMOTE_EXECUTION_ERROR,
    run_task,
)

SDK = ComputeSerializer()


def task_body(fn, *args, **kwargs) -> tuple[str, bytes]:
    task_id = str(uuid.uuid4())
    buffer = SDK.pack_buffers([SDK.serialize(fn)]) + SDK.pack_buffers([SDK.serialize(args), SDK.serialize(kwargs)])
    return task_id, messages.pack(messages.Task(task_id=uuid.UUID(task_id), task_buffer=buffer))


def run(fn, *args, serializers=None, limit=None, **kwargs):
    task_id, body = task_body(fn, *args, **kwargs)
    packed = run_task(task_id, body, serializers, "ep-1", **({"max_result_bytes": limit} if limit else {}))
    result = messagepack.unpack(packed)  # the official reader must accept what we send
    assert str(result.task_id) == task_id
    return task_id, result


def add(a, b=0):
    return a + b


def test_plain_function_result_reads_with_the_sdk():
    _, result = run(add, 2, b=40)
    assert not result.is_error
    assert SDK.deserialize(result.data) == 42
    assert [s.state for s in result.task_statuses] == ["execution-start", "execution-end"]


def test_the_task_sees_its_own_id():
    def own_id():
        import os

        return os.environ["GC_TASK_UUID"]

    task_id, result = run(own_id)
    assert SDK.deserialize(result.data) == task_id


def test_user_exception_becomes_an_error_result_with_the_traceback():
    def fails(x):
        raise ValueError(f"bad value {x}")

    _, result = run(fails, 7)
    assert result.is_error
    assert result.error_details.code == REMOTE_EXECUTION_ERROR
    assert "ValueError: bad value 7" in result.data
    assert "in fails" in result.data
    assert "workers/execution.py" not in result.data  # our frames are not the user's business


def test_result_over_the_limit_is_an_error_within_it_is_not():
    _, small = run(lambda n: "x" * n, 1000, limit=10_000)
    assert SDK.deserialize(small.data) == "x" * 1000
    _, big = run(lambda n: "x" * n, 100_000, limit=10_000)
    assert big.is_error and big.error_details.code == MAX_RESULT_SIZE_EXCEEDED
    assert "exceeds the 10000 byte limit" in big.data


def test_requested_result_serializers_are_used():
    _, result = run(add, 1, 2, serializers=["globus_compute_sdk.serialize.JSONData"])
    assert result.data == "11\n3"


@pytest.mark.parametrize("body", [b"garbage", b"\x01{}", messages.pack(messages.Task(
    task_id=uuid.UUID(int=7), task_buffer="3\nabc"))], ids=["garbage", "empty-envelope", "truncated-buffer"])
def test_undecodable_task_becomes_an_error_for_its_id(body):
    task_id = str(uuid.uuid4())
    result = messagepack.unpack(run_task(task_id, body))
    assert str(result.task_id) == task_id
    assert result.error_details.code == COULD_NOT_EXECUTE


def test_many_threads_running_tasks_at_once_never_trip_over_the_task_id_variable():
    """ThreadPoolEngine's threads share os.environ; unsetting GC_TASK_UUID raced (KeyError)."""
    import concurrent.futures

    def noop():
        return None

    bodies = [task_body(noop) for _ in range(2000)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda tb: messagepack.unpack(run_task(tb[0], tb[1], None, "ep-1")), bodies))
    assert [r.is_error for r in results].count(True) == 0
