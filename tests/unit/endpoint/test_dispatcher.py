"""Every transition of the dispatcher's in-flight table, message by message."""

from __future__ import annotations

import uuid

import attrs
import pytest
from globus_compute_common import messagepack

from compute_endpoint.endpoint.dispatcher import (
    ENGINE,
    RESULT_LINK,
    TASK_LINK,
    UNREPORTED_LOSSES_MAX,
    EndpointDispatcher,
)
from compute_endpoint.endpoint.inflight import DispatchPolicy, TaskState
from compute_endpoint.protocol import messages
from compute_endpoint.supervisor.control import SUPERVISOR, Forgive, StopTree
from compute_endpoint.supervisor.status import TreeStatus
from compute_endpoint.workers.pipe_messages import (
    AckDeliveries,
    BrokerState,
    EngineStatus,
    PauseConsuming,
    PublishResults,
    PublishStatus,
    ResultsConfirmed,
    ResultsDone,
    RunTasks,
    StopRequested,
    TaskDelivery,
    TaskLost,
    TaskResult,
    TasksLost,
    TasksReceived,
    TasksStarted,
)

ENDPOINT_ID = str(uuid.uuid4())


def delivery(task_id: str, tag: int, generation: str = "g1", problem: str | None = None) -> TaskDelivery:
    return TaskDelivery(task_id=task_id, delivery_tag=tag, generation=generation, headers={}, body=b"task",
                        problem=problem)


@pytest.fixture
def dispatcher() -> EndpointDispatcher:
    d = EndpointDispatcher(ENDPOINT_ID, DispatchPolicy(max_retries_on_system_failure=1, heartbeat_period_s=30))
    for child in (TASK_LINK, RESULT_LINK, ENGINE):
        d.child_ready(child)
    return d


def ids(n: int) -> list[str]:
    return [str(uuid.UUID(int=i + 1)) for i in range(n)]


def test_received_tasks_go_to_the_engine_in_one_batch(dispatcher):
    a, b = ids(2)
    routed = list(dispatcher.route(TASK_LINK, TasksReceived((delivery(a, 1), delivery(b, 2)))))
    assert routed == [(ENGINE, RunTasks((delivery(a, 1), delivery(b, 2))))]
    assert {t: e.state for t, e in dispatcher.inflight.items()} == {a: TaskState.HANDED, b: TaskState.HANDED}


def test_tasks_wait_for_an_engine_that_is_not_ready(dispatcher):
    dispatcher.child_exited(ENGINE)
    [a] = ids(1)
    assert list(dispatcher.route(TASK_LINK, TasksReceived((delivery(a, 1),)))) == []
    assert dispatcher.inflight[a].state is TaskState.QUEUED
    assert list(dispatcher.child_ready(ENGINE)) == [(ENGINE, RunTasks((delivery(a, 1),)))]


def test_result_is_published_then_acknowledged_only_once_confirmed(dispatcher):
    [a] = ids(1)
    dispatcher.route(TASK_LINK, TasksReceived((delivery(a, 7),)))
    assert list(dispatcher.route(ENGINE, ResultsDone((TaskResult(a, b"r"),)))) == [
        (RESULT_LINK, PublishResults((TaskResult(a, b"r"),)))]
    assert dispatcher.inflight[a].state is TaskState.DONE
    assert list(dispatcher.route(RESULT_LINK, ResultsConfirmed((a,)))) == [(TASK_LINK, AckDeliveries("g1", (7,)))]
    assert a not in dispatcher.inflight
    assert dispatcher.figures()["completed"] == 1


def test_redelivery_of_a_running_task_is_not_run_again_and_its_new_tag_is_acked(dispatcher):
    [a] = ids(1)
    dispatcher.route(TASK_LINK, TasksReceived((delivery(a, 1, "g1"),)))
    # the task link reconnected: the broker delivers the task again under a new channel
    assert list(dispatcher.route(TASK_LINK, TasksReceived((delivery(a, 3, "g2"),)))) == []
    dispatcher.route(ENGINE, ResultsDone((TaskResult(a, b"r"),)))
    assert list(dispatcher.route(RESULT_LINK, ResultsConfirmed((a,)))) == [(TASK_LINK, AckDeliveries("g2", (3,)))]


def test_redelivery_of_a_confirmed_task_is_acked_at_once(dispatcher):
    [a] = ids(1)
    dispatcher.route(TASK_LINK, TasksReceived((delivery(a, 1),)))
    dispatcher.route(ENGINE, ResultsDone((TaskResult(a, b"r"),)))
    dispatcher.route(RESULT_LINK, ResultsConfirmed((a,)))
    assert list(dispatcher.route(TASK_LINK, TasksReceived((delivery(a, 9, "g2"),)))) == [
        (TASK_LINK, AckDeliveries("g2", (9,)))]
    assert dispatcher.figures()["duplicates"] == 1


def test_duplicate_delivery_on_the_same_channel_is_acked_with_the_first(dispatcher):
    [a] = ids(1)
    dispatcher.route(TASK_LINK, TasksReceived((delivery(a, 1), delivery(a, 2))))
    dispatcher.route(ENGINE, ResultsDone((TaskResult(a, b"r"),)))
    assert list(dispatcher.route(RESULT_LINK, ResultsConfirmed((a,)))) == [(TASK_LINK, AckDeliveries("g1", (1, 2)))]


def test_dead_engine_tasks_are_retried_then_failed_with_a_named_error(dispatcher):
    a, b = ids(2)
    dispatcher.route(TASK_LINK, TasksReceived((delivery(a, 1), delivery(b, 2))))
    dispatcher.route(ENGINE, TasksStarted((a, b)))
    dispatcher.route(ENGINE, ResultsDone((TaskResult(b, b"done before the crash"),)))
    dispatcher.child_exited(ENGINE)
    assert dispatcher.inflight[a].state is TaskState.QUEUED and dispatcher.inflight[a].attempts == 1
    assert dispatcher.inflight[b].state is TaskState.DONE  # a finished task is not run again
    assert list(dispatcher.child_ready(ENGINE)) == [(ENGINE, RunTasks((delivery(a, 1),)))]
    dispatcher.route(ENGINE, TasksStarted((a,)))
    dispatcher.child_exited(ENGINE)  # dies again: max_retries_on_system_failure is 1
    [(target, publish)] = dispatcher.child_ready(ENGINE)
    assert target == RESULT_LINK
    [failed] = publish.results
    result = messagepack.unpack(failed.packed)
    assert str(result.task_id) == a and result.is_error
    assert "engine process died while running this task (2 time(s)" in result.data


def test_only_tasks_the_engine_reported_started_count_a_try(dispatcher):
    running, queued = ids(2)
    dispatcher.route(TASK_LINK, TasksReceived((delivery(running, 1), delivery(queued, 2))))
    dispatcher.route(ENGINE, TasksStarted((running,)))
    assert dispatcher.inflight[running].state is TaskState.RUNNING
    assert dispatcher.inflight[queued].state is TaskState.HANDED
    for _ in range(2):  # two engines die with it queued: it goes on untouched
        dispatcher.child_exited(ENGINE)
        assert dispatcher.inflight[queued].attempts == 0
        dispatcher.child_ready(ENGINE)
    assert dispatcher.inflight[running].attempts == 1


def test_a_task_held_unreported_by_engine_after_engine_counts_as_started_at_last(dispatcher):
    [task] = ids(1)
    dispatcher.route(TASK_LINK, TasksReceived((delivery(task, 1),)))
    for _ in range(UNREPORTED_LOSSES_MAX):
        dispatcher.child_exited(ENGINE)
        dispatcher.child_ready(ENGINE)
    assert dispatcher.inflight[task].attempts == 0
    dispatcher.child_exited(ENGINE)
    assert dispatcher.inflight[task].attempts == 1


def test_a_start_report_for_a_task_not_running_changes_nothing(dispatcher):
    [task] = ids(1)
    dispatcher.route(TASK_LINK, TasksReceived((delivery(task, 1),)))
    dispatcher.route(ENGINE, ResultsDone((TaskResult(task, b"r"),)))
    dispatcher.route(ENGINE, TasksStarted((task, str(uuid.uuid4()))))  # late, and unknown
    assert dispatcher.inflight[task].state is TaskState.DONE


def test_restarted_result_link_gets_every_unconfirmed_result(dispatcher):
    a, b, c = ids(3)
    dispatcher.route(TASK_LINK, TasksReceived((delivery(a, 1), delivery(b, 2), delivery(c, 3))))
    dispatcher.route(ENGINE, ResultsDone((TaskResult(a, b"ra"), TaskResult(b, b"rb"))))
    dispatcher.route(RESULT_LINK, ResultsConfirmed((a,)))
    dispatcher.child_exited(RESULT_LINK)
    assert list(dispatcher.route(ENGINE, ResultsDone((TaskResult(c, b"rc"),)))) == []  # held while it is down
    [(target, replay)] = dispatcher.child_ready(RESULT_LINK)
    assert target == RESULT_LINK
    assert sorted(r.task_id for r in replay.results) == sorted([b, c])


def test_late_and_unknown_results_and_confirms_change_nothing(dispatcher):
    [a] = ids(1)
    dispatcher.route(TASK_LINK, TasksReceived((delivery(a, 1),)))
    dispatcher.route(ENGINE, ResultsDone((TaskResult(a, b"first"),)))
    assert list(dispatcher.route(ENGINE, ResultsDone((TaskResult(a, b"second"),)))) == []
    assert dispatcher.inflight[a].result == b"first"
    assert list(dispatcher.route(RESULT_LINK, ResultsConfirmed((str(uuid.uuid4()),)))) == []
    assert list(dispatcher.route(ENGINE, ResultsDone((TaskResult(str(uuid.uuid4()), b"x"),)))) == []


def test_a_task_that_cannot_run_is_answered_with_its_problem(dispatcher):
    [a] = ids(1)
    routed = list(dispatcher.route(TASK_LINK, TasksReceived((delivery(a, 1, problem="too large"),))))
    [(target, publish)] = routed
    assert target == RESULT_LINK
    assert messagepack.unpack(publish.results[0].packed).data == "too large"
    dispatcher.child_exited(ENGINE)
    assert dispatcher.inflight[a].state is TaskState.DONE  # never handed to an engine


def test_status_reports_follow_the_heartbeat_period_and_the_last_says_inactive(dispatcher):
    dispatcher.route(ENGINE, EngineStatus({"engine_type": "ThreadPoolEngine", "total_workers": 4}))
    [(target, first)] = dispatcher.tick(100.0, TreeStatus())
    assert target == RESULT_LINK and isinstance(first, PublishStatus)
    assert list(dispatcher.tick(110.0, TreeStatus())) == []
    assert len(list(dispatcher.tick(131.0, TreeStatus()))) == 1
    report = messagepack.unpack(first.packed)
    assert str(report.endpoint_id) == ENDPOINT_ID
    assert report.global_state["active"] is True and report.global_state["total_workers"] == 4
    stopping = dict(dispatcher.tree_stopping())
    assert isinstance(stopping[TASK_LINK], PauseConsuming)
    assert messagepack.unpack(stopping[RESULT_LINK].packed).global_state["active"] is False


def test_confirmed_memory_is_bounded(dispatcher, monkeypatch):
    import compute_endpoint.endpoint.dispatcher as module

    monkeypatch.setattr(module, "RECENTLY_CONFIRMED_MAX", 3)
    for task_id in ids(5):
        dispatcher.route(TASK_LINK, TasksReceived((delivery(task_id, 1),)))
        dispatcher.route(ENGINE, ResultsDone((TaskResult(task_id, b"r"),)))
        dispatcher.route(RESULT_LINK, ResultsConfirmed((task_id,)))
    assert len(dispatcher.recently_confirmed) == 3
    assert dispatcher.inflight == {}


def test_a_function_outside_allowed_functions_gets_an_error_result_and_never_reaches_the_engine(dispatcher):
    allowed, other = str(uuid.uuid4()), str(uuid.uuid4())
    dispatcher.reconfigure(DispatchPolicy(allowed_functions=frozenset([allowed])))
    ok, refused = ids(2)
    deliveries = (attrs.evolve(delivery(ok, 1), headers={"function_uuid": allowed.upper()}),
                  attrs.evolve(delivery(refused, 2), headers={"function_uuid": other}))
    routed = list(dispatcher.route(TASK_LINK, TasksReceived(deliveries)))
    to_engine = [m for target, m in routed if target == ENGINE]
    assert [d.task_id for d in to_engine[0].tasks] == [ok]
    [published] = [m for target, m in routed if target == RESULT_LINK]
    result = messages.unpack(published.results[0].packed)
    assert str(result.task_id) == refused and result.error_details.code == "FUNCTION_NOT_ALLOWED"
    assert other in result.data


def test_a_stop_from_the_service_stops_the_tree(dispatcher):
    routed = list(dispatcher.route(TASK_LINK, StopRequested("stop requested by alice")))
    assert routed == [(SUPERVISOR, StopTree("the Compute service asked it to stop (stop requested by alice)"))]


def test_the_status_snapshot_shows_links_tasks_and_the_last_report(dispatcher):
    dispatcher.route(TASK_LINK, BrokerState(True, "connected to amqp://b/", 100.0))
    dispatcher.route(RESULT_LINK, BrokerState(False, "lost the broker: reset", 200.0))
    dispatcher.route(TASK_LINK, TasksReceived((delivery(ids(1)[0], 1),)))
    list(dispatcher.tick(1000.0, TreeStatus()))
    snapshot = dispatcher.status_snapshot()
    assert snapshot["links"][TASK_LINK] == {"connected": True, "detail": "connected to amqp://b/", "since": 100.0}
    assert snapshot["links"][RESULT_LINK]["connected"] is False
    assert snapshot["tasks"]["in_flight"] == 1 and snapshot["last_status_report"] is not None
    assert snapshot["heartbeat_period"] == 30


def error_text(routed) -> dict[str, str]:
    """{task id: error text} of the error results in what the dispatcher routed."""
    texts = {}
    for name, message in routed:
        if name == RESULT_LINK and isinstance(message, PublishResults):
            for result in message.results:
                unpacked = messages.unpack(result.packed)
                if unpacked.is_error:
                    texts[result.task_id] = unpacked.data
    return texts


def test_a_task_whose_worker_died_runs_again_then_fails_saying_how_the_worker_died(dispatcher):
    a, b = ids(2)
    dispatcher.route(TASK_LINK, TasksReceived((delivery(a, 1), delivery(b, 2))))
    lost = TaskLost(a, "the worker running this task exited with status 3")
    assert list(dispatcher.route(ENGINE, TasksLost((lost,)))) == [(ENGINE, RunTasks((delivery(a, 1),)))]
    routed = list(dispatcher.route(ENGINE, TasksLost((lost,))))  # max_retries_on_system_failure is 1
    assert error_text(routed) == {a: "The worker running this task exited with status 3 (2 time(s); "
                                     "max_retries_on_system_failure is 1)"}
    assert dispatcher.inflight[b].state is TaskState.HANDED  # its neighbour is not touched
    assert dispatcher.counts["failed_system"] == 1


def test_an_engine_that_dies_running_tasks_is_forgiven_one_that_never_ran_is_not(dispatcher):
    a, b = ids(2)
    dispatcher.route(TASK_LINK, TasksReceived((delivery(a, 1), delivery(b, 2))))
    dispatcher.route(ENGINE, TasksStarted((a,)))
    [(to, forgive)] = dispatcher.child_exited(ENGINE)
    assert to == SUPERVISOR and isinstance(forgive, Forgive) and forgive.name == ENGINE
    dispatcher.child_ready(ENGINE)
    dispatcher.route(ENGINE, TasksStarted((a,)))
    dispatcher.ready.discard(ENGINE)  # a new engine that died before it was ready
    assert list(dispatcher.child_exited(ENGINE)) == []


def test_tasks_running_beside_others_when_their_engine_died_run_again_one_at_a_time(dispatcher):
    a, b, c, d = ids(4)
    dispatcher.route(TASK_LINK, TasksReceived(tuple(delivery(t, i) for i, t in enumerate((a, b, c)))))
    dispatcher.route(ENGINE, TasksStarted((a, b)))  # c was still queued in the engine
    dispatcher.child_exited(ENGINE)
    assert dispatcher.probation == [a, b]
    assert list(dispatcher.child_ready(ENGINE)) == [(ENGINE, RunTasks((delivery(a, 0),)))]  # a alone
    assert list(dispatcher.route(TASK_LINK, TasksReceived((delivery(d, 9),)))) == []  # d waits meanwhile
    dispatcher.route(ENGINE, TasksStarted((a,)))
    dispatcher.child_exited(ENGINE)  # a killed the engine again, alone: only a counts the try
    routed = list(dispatcher.child_ready(ENGINE))
    assert a in error_text(routed) and "2 time(s)" in error_text(routed)[a]
    assert (ENGINE, RunTasks((delivery(b, 1),))) in routed  # then b, alone
    assert dispatcher.inflight[b].attempts == 1
    routed = list(dispatcher.route(ENGINE, ResultsDone((TaskResult(b, b"fine"),))))
    assert (ENGINE, RunTasks((delivery(c, 2), delivery(d, 9)))) in routed  # probation over: the rest
    assert dispatcher.probation == []
