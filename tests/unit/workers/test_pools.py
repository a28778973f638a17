"""The standard library's pools as engines, built as the config builds them, with the
executor options passed through (thread_name_prefix, mp_context, max_tasks_per_child)."""

from __future__ import annotations

import threading
import uuid

from globus_compute_sdk.serialize import ComputeSerializer, PureSourceTextInspect

from compute_endpoint.protocol import messages
from compute_endpoint.protocol.serialize import deserialize
from compute_endpoint.workers.engines.base import build_engine
from compute_endpoint.workers.pipe_messages import TaskDelivery, TaskResult
from tests.waiting import wait_for

# Source, not a reference: the pool's worker processes cannot import this test module.
SDK = ComputeSerializer(strategy_code=PureSourceTextInspect())


def thread_name():
    import threading

    return threading.current_thread().name


def process_id():
    import os

    return os.getpid()


def delivery(fn) -> TaskDelivery:
    task_id = str(uuid.uuid4())
    buffer = SDK.pack_buffers([SDK.serialize(fn)]) + SDK.pack_buffers([SDK.serialize(()), SDK.serialize({})])
    body = messages.pack(messages.Task(task_id=uuid.UUID(task_id), task_buffer=buffer))
    return TaskDelivery(task_id, 1, "g", {}, body)


def run_all(engine, tasks: list[TaskDelivery], timeout: float = 60) -> list:
    """Each task's value, in order, submitted one by one as the engine process does."""
    results: dict[str, TaskResult] = {}
    finished = threading.Event()

    def done(result: TaskResult) -> None:
        results[result.task_id] = result
        if len(results) == len(tasks):
            finished.set()

    for task in tasks:
        engine.submit(task, done)
    assert finished.wait(timeout), f"{len(results)} of {len(tasks)} results"
    values = []
    for task in tasks:
        result = messages.unpack(results[task.task_id].packed)
        assert not result.is_error, result.data
        values.append(deserialize(result.data))
    return values


def test_thread_pool_names_its_threads_as_configured():
    engine = build_engine({"type": "ThreadPoolEngine", "max_workers": 2, "thread_name_prefix": "mine"}, "ep")
    try:
        names = run_all(engine, [delivery(thread_name) for _ in range(3)])
    finally:
        engine.shutdown(cancel_pending=False)
    assert all(name.startswith("mine_") for name in names), names
    assert engine.capacity == 2


def test_process_pool_takes_a_start_method_and_recycles_workers_after_max_tasks_per_child():
    engine = build_engine({"type": "ProcessPoolEngine", "max_workers": 1, "mp_context": "forkserver",
                           "max_tasks_per_child": 1}, "ep")
    try:
        pids = [run_all(engine, [delivery(process_id)])[0] for _ in range(3)]
        assert engine.context.get_start_method() == "forkserver"
    finally:
        engine.shutdown(cancel_pending=False)
    assert len(set(pids)) == 3, pids  # one task each, then a fresh worker


def test_process_pool_workers_are_kept_without_a_limit():
    engine = build_engine({"type": "ProcessPoolEngine", "max_workers": 1}, "ep")
    try:
        pids = [run_all(engine, [delivery(process_id)])[0] for _ in range(3)]
        assert engine.context.get_start_method() == "spawn"  # the default
    finally:
        engine.shutdown(cancel_pending=False)
    assert len(set(pids)) == 1, pids


def sleep_a_second():
    import time

    time.sleep(1.0)
    return "late"


def test_a_thread_over_its_time_limit_gets_the_limits_error_once_and_its_late_value_is_dropped():
    engine = build_engine({"type": "ThreadPoolEngine", "max_workers": 2, "task_timeout_s": 0.3}, "ep")
    outcomes: list[TaskResult] = []
    try:
        task = delivery(sleep_a_second)
        engine.submit(task, outcomes.append)
        wait_for(lambda: outcomes, 30, "the time limit's error")
    finally:
        engine.shutdown(cancel_pending=False)  # waits for the thread: its late value comes now or never
    assert [outcome.task_id for outcome in outcomes] == [task.task_id]
    result = messages.unpack(outcomes[0].packed)
    assert result.is_error and "time limit of 0.3 s" in result.data, result.data
