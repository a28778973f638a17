"""The delivery guarantee under faults: 5,000 tasks through a real endpoint and RabbitMQ,
with one part of the system failing mid-run in each test.

Results are counted on a queue of the test's own, bound to the results exchange beside
the service's, so every result the endpoint publishes is seen, duplicates included.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid

import pytest

from compute_endpoint.protocol import messages
from tests.direct_tasks import DirectTasks
from tests.endpoint_harness import EndpointHarness

pytestmark = pytest.mark.slow

TASKS = int(os.environ.get("FAULT_TEST_TASKS", "5000"))
CONFIG = """\
engine:
  type: ThreadPoolEngine
  max_workers: 4
  max_retries_on_system_failure: 3
max_restarts: 20
"""


@pytest.fixture
def fault_run(start_service, broker_url, tmp_path):
    endpoint = EndpointHarness(start_service(), tmp_path / "gc", "ep", CONFIG)
    endpoint.start()
    run = DirectTasks(endpoint, broker_url)
    yield run
    run.close()
    endpoint.cli("stop", endpoint.name, "--timeout", "10")
    endpoint.kill_everything()


def run_with_fault(run: DirectTasks, name: str, inject) -> dict:
    run.publish(TASKS)
    run.collect(until=TASKS // 4)
    fault_time = time.monotonic()
    inject()
    run.collect(until=TASKS)
    run.settle()
    return run.report(name, fault_time)


@pytest.mark.parametrize("role", ["task link", "engine"])
def test_kill_9_of_a_child_loses_and_duplicates_nothing(fault_run, role):
    figures = run_with_fault(fault_run, f"kill -9 {role}",
                             lambda: os.kill(fault_run.endpoint.children()[role], signal.SIGKILL))
    assert (figures["lost"], figures["wrong"], figures["duplicates"]) == (0, 0, 0), figures
    assert fault_run.endpoint.status() == "Running"


def test_kill_9_of_the_result_link_loses_nothing(fault_run):
    """Results the dead link published but whose confirm it never saw are published again:
    no publisher can know whether the broker got them. Those (at most the link's bound of
    unconfirmed publishes) are the only duplicates; the service keeps the first by task id."""
    from compute_endpoint.workers.result_link import MAX_UNCONFIRMED

    figures = run_with_fault(fault_run, "kill -9 result link",
                             lambda: os.kill(fault_run.endpoint.children()["result link"], signal.SIGKILL))
    assert (figures["lost"], figures["wrong"]) == (0, 0), figures
    assert figures["duplicates"] <= MAX_UNCONFIRMED, figures
    assert fault_run.endpoint.status() == "Running"


def test_kill_9_of_the_supervisor_then_start_loses_nothing(fault_run):
    endpoint = fault_run.endpoint

    def inject():
        supervisor = endpoint.supervisor()
        supervisor.kill()
        supervisor.wait(5)
        endpoint.start()

    figures = run_with_fault(fault_run, "kill -9 supervisor, start", inject)
    assert (figures["lost"], figures["wrong"]) == (0, 0), figures
    # duplicates are allowed here, only of tasks in flight at the kill: bounded by prefetch
    assert figures["duplicates"] <= 2048 + 2000, figures
    assert endpoint.status() == "Running"


def test_broker_closing_every_connection_loses_and_duplicates_nothing(fault_run, broker_url):
    vhost = broker_url.rsplit("/", 1)[1]

    def inject():
        subprocess.run(["rabbitmqctl", "-q", "close_all_connections", "--vhost", vhost, "fault test"],
                       check=True, capture_output=True)

    from compute_endpoint.workers.result_link import MAX_UNCONFIRMED

    figures = run_with_fault(fault_run, "close_all_connections", inject)
    assert (figures["lost"], figures["wrong"]) == (0, 0), figures
    # as when the result link dies: publishes in flight when the connection closed may be sent twice
    assert figures["duplicates"] <= MAX_UNCONFIRMED, figures
    assert fault_run.endpoint.status() == "Running"


def test_malformed_messages_mixed_in_do_not_stop_the_endpoint(fault_run):
    good = TASKS // 5
    bad = []
    for i in range(good):
        kind = i % 5
        task_id = str(uuid.uuid4())
        if kind == 0:
            bad.append(({"function_uuid": "x"}, b"no task id at all"))
        elif kind == 1:
            bad.append(({"task_uuid": "not-a-uuid"}, b"\x01{}"))
        elif kind == 2:
            bad.append(({"task_uuid": task_id}, b"\x01not json"))
        elif kind == 3:
            bad.append(({"task_uuid": task_id}, messages.pack(messages.Task(task_id=uuid.UUID(task_id),
                                                                            task_buffer="3\nabc"))))
        else:
            bad.append(({"task_uuid": 12345}, b""))
    fault_run.publish(good, extra=bad)
    answerable = sum(1 for headers, _ in bad if isinstance(headers.get("task_uuid"), str)
                     and _is_uuid(headers["task_uuid"]))
    fault_run.collect(until=good + answerable)
    fault_run.settle(1.0)
    lost = [t for t in fault_run.expected if t not in fault_run.values]
    assert lost == []
    assert all(fault_run.value(t) == v for t, v in fault_run.expected.items())
    errors = [fault_run.value(t) for t in fault_run.values if t not in fault_run.expected]
    assert len(errors) == answerable and all(v[0] == "error" for v in errors)
    print(f"\nFAULT-RUN {{'fault': 'malformed', 'tasks': {good}, 'malformed': {len(bad)}, "
          f"'answered_with_errors': {answerable}, 'lost': 0}}")
    assert fault_run.endpoint.status() == "Running"


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
        return True
    except ValueError:
        return False


@pytest.mark.exclusive
def test_broker_stopped_for_ten_seconds_loses_nothing(fault_run):
    def inject():
        subprocess.run(["rabbitmqctl", "-q", "stop_app"], check=True, capture_output=True)
        time.sleep(10)
        subprocess.run(["rabbitmqctl", "-q", "start_app"], check=True, capture_output=True)

    figures = run_with_fault(fault_run, "broker stopped 10 s", inject)
    assert (figures["lost"], figures["wrong"]) == (0, 0), figures
    assert fault_run.endpoint.status() == "Running"
