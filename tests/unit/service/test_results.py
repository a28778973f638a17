"""What the service accepts from endpoints, one message at a time: a bad or forged message is
refused with its reason, and the rest of its batch is stored and forwarded."""

from __future__ import annotations

import uuid

import pytest

from compute_endpoint.protocol import messages
from compute_endpoint.service.broker import queue_prefix
from compute_endpoint.service.result_consumer import Delivery
from compute_endpoint.service.results import MAX_REPORT_DEPTH, Refused, ResultRecorder, checked_report
from compute_endpoint.service.store import Store


@pytest.fixture
def recorder(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'service.db'}")
    store.upsert_endpoint("alice", "e1", "ep", None, False, None)
    store.upsert_endpoint("mallory", "e2", "ep", None, False, None)
    group = store.ensure_task_group("alice", None)
    store.create_tasks("alice", "e1", group, {"11111111-1111-1111-1111-111111111111": "f"})
    return ResultRecorder(store), group


def result(task_id: str, data: str = "42", error: bool = False) -> bytes:
    details = messages.ResultErrorDetails(code="RemoteExecutionError", user_message=data) if error else None
    return messages.pack(messages.Result(task_id=uuid.UUID(task_id), data=data, error_details=details))


def test_a_good_result_is_stored_and_forwarded_to_its_owners_group_beside_refused_ones(recorder):
    recorder, group = recorder
    task = "11111111-1111-1111-1111-111111111111"
    batch = [Delivery("results", "e2", result(task, "forged"), {}),  # mallory's endpoint answering alice's task
             Delivery("results", "e1", b"\x01{not json", {}),
             Delivery("results", "e1", result(str(uuid.uuid4())), {}),  # no such task
             Delivery("results", "e1", result(task), {})]
    handled = recorder.handle(batch)
    assert handled.forwards == [(f"{queue_prefix('alice')}{group}", 3, task)]
    assert "another endpoint" in handled.refused[0]
    assert handled.refused[1].startswith("undecodable")
    assert "no such task" in handled.refused[2]
    assert recorder.store.tasks_by_id("alice", [task])[task].result == "42"


def test_status_reports_are_checked_and_only_for_the_sender(recorder):
    recorder, _ = recorder
    report = messages.pack(messages.EPStatusReport(endpoint_id=uuid.UUID(int=1), global_state=messages.JsonObject({})))
    handled = recorder.handle([Delivery("heartbeats", "e1", report, {})])
    assert "sent as endpoint e1" in handled.refused[0]


@pytest.mark.parametrize("report, phrase", [
    ([], "must be a mapping"),
    ({"heartbeat_period": -1}, "heartbeat_period"),
    ({"heartbeat_period": True}, "heartbeat_period"),
    ({"active": "yes"}, "active must be true or false"),
    ({"n": float("inf")}, "out of range"),
    ({"x": object()}, "type object"),
    ({"big": "x" * 70_000}, "bytes"),
])
def test_a_report_unfit_to_store_or_show_is_refused_naming_why(report, phrase):
    with pytest.raises(Refused, match=phrase):
        checked_report(report)


def test_a_report_nested_too_deep_is_refused():
    deep: dict = {}
    for _ in range(MAX_REPORT_DEPTH + 2):
        deep = {"a": deep}
    with pytest.raises(Refused, match="deeper"):
        checked_report(deep)
    assert checked_report({"heartbeat_period": 30, "active": False, "tasks": [1, 2.5, None]})


def test_copies_of_one_result_in_a_batch_are_stored_once_and_forwarded_once(recorder):
    recorder, _ = recorder
    task = "11111111-1111-1111-1111-111111111111"
    handled = recorder.handle([Delivery("results", "e1", result(task, "first"), {}),
                               Delivery("results", "e1", result(task, "second"), {})])
    assert [f[1:] for f in handled.forwards] == [(0, task)] and handled.refused == {}
    assert recorder.store.tasks_by_id("alice", [task])[task].result == "first"
