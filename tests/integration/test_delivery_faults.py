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

import amqp
import kombu
import pytest

from compute_endpoint.protocol import messages
from tests.endpoint_harness import SERIALIZER, EndpointHarness

pytestmark = pytest.mark.slow

TASKS = int(os.environ.get("FAULT_TEST_TASKS", "5000"))
CONFIG = """\
engine:
  type: ThreadPoolEngine
  max_workers: 4
  max_retries_on_system_failure: 3
max_restarts: 20
"""


def double(x):
    import time

    time.sleep(0.002)  # 5,000 tasks take a few seconds on 4 workers: long enough to fail mid-run
    return 2 * x


class FaultRun:
    """Publishes tasks straight to the endpoint's queue and counts results on a tap queue."""

    def __init__(self, endpoint: EndpointHarness, broker_url: str):
        self.endpoint, self.broker_url = endpoint, broker_url
        self.tap_name = f"tap-{uuid.uuid4().hex[:8]}"
        self.connection = kombu.Connection(broker_url)
        results_exchange = kombu.Exchange("results", type="topic", passive=True)
        self.tap = kombu.Queue(self.tap_name, results_exchange, routing_key=f"{endpoint.endpoint_id}.results",
                               auto_delete=False, durable=True)  # survives a broker restart
        self.tap.bind(self.connection.default_channel).declare()
        self.values: dict[str, list] = {}
        self.expected: dict[str, int] = {}
        self.arrivals: list[float] = []

    def publish(self, count: int, extra: list[tuple[dict, bytes]] = ()) -> None:
        function_code = SERIALIZER.pack_buffers([SERIALIZER.serialize(double)])
        producer = kombu.Producer(self.connection.channel())
        for i in range(count):
            task_id = str(uuid.uuid4())
            payload = SERIALIZER.pack_buffers([SERIALIZER.serialize((i,)), SERIALIZER.serialize({})])
            body = messages.pack(messages.Task(task_id=uuid.UUID(task_id), task_buffer=function_code + payload))
            self.expected[task_id] = 2 * i
            producer.publish(body, exchange="tasks", routing_key=f"{self.endpoint.endpoint_id}.tasks",
                             headers={"task_uuid": task_id, "function_uuid": str(uuid.uuid4()),
                                      "resource_specification": "null"}, delivery_mode=2)
        for headers, body in extra:
            producer.publish(body, exchange="tasks", routing_key=f"{self.endpoint.endpoint_id}.tasks",
                             headers=headers, delivery_mode=2)

    def collect(self, until: int, timeout: float = 120) -> None:
        """Read results until `until` distinct tasks have answered."""
        def on_message(body, message):
            result = messages.unpack(message.body)  # the data is decoded at report time: keep up
            self.values.setdefault(str(result.task_id), []).append(result)
            self.arrivals.append(time.monotonic())
            message.ack()

        deadline = time.monotonic() + timeout
        while len(self.values) < until:
            try:
                channel = self.connection.channel()
                channel.basic_qos(0, 50, False)  # read as results come, so progress is seen as it happens
                with kombu.Consumer(channel, [self.tap], callbacks=[on_message], accept=None):
                    while len(self.values) < until:
                        assert time.monotonic() < deadline, (
                            f"only {len(self.values)} of {until} results after {timeout} s; "
                            f"log:\n{self.endpoint.log()[-4000:]}")
                        try:
                            self.connection.drain_events(timeout=0.5)
                        except TimeoutError:
                            pass
            except (OSError, KeyError, kombu.exceptions.OperationalError, amqp.exceptions.AMQPError):
                # the broker closed this connection too (a fault under test): reconnect
                self.connection.release()
                time.sleep(0.5)
                self.connection = kombu.Connection(self.broker_url)

    def settle(self, quiet_s: float = 2.0) -> None:
        """Collect whatever else arrives (late duplicates) until quiet for quiet_s."""
        count = -1
        while count != sum(len(v) for v in self.values.values()):
            count = sum(len(v) for v in self.values.values())
            try:
                self.collect(until=len(self.values) + 1, timeout=quiet_s)
            except AssertionError:
                pass

    def value(self, task_id: str):
        result = self.values[task_id][0]
        return ("error", result.data) if result.is_error else SERIALIZER.deserialize(result.data)

    def stall_after(self, fault_time: float) -> float:
        """The longest wait between results from the fault on: how long the flow stopped."""
        times = [fault_time, *sorted(t for t in self.arrivals if t > fault_time)]
        return max((b - a for a, b in zip(times, times[1:], strict=False)), default=float("inf"))

    def report(self, name: str, fault_time: float) -> dict:
        lost = [t for t in self.expected if t not in self.values]
        wrong = {t: self.value(t) for t in self.values if t in self.expected and self.value(t) != self.expected[t]}
        duplicates = sum(len(v) - 1 for v in self.values.values())
        figures = {"fault": name, "tasks": len(self.expected), "lost": len(lost), "wrong": len(wrong),
                   "duplicates": duplicates, "after_fault": sum(1 for t in self.arrivals if t > fault_time),
                   "recovery_s": round(self.stall_after(fault_time), 2)}
        if wrong:
            print("wrong results:", list(wrong.items())[:3])
        print(f"\nFAULT-RUN {figures}")
        return figures

    def close(self) -> None:
        try:
            self.tap.bind(self.connection.default_channel).delete()
        finally:
            self.connection.release()


@pytest.fixture
def fault_run(start_service, broker_url, tmp_path):
    endpoint = EndpointHarness(start_service(), tmp_path / "gc", "ep", CONFIG)
    endpoint.start()
    run = FaultRun(endpoint, broker_url)
    yield run
    run.close()
    endpoint.cli("stop", endpoint.name, "--timeout", "10")
    endpoint.kill_everything()


def run_with_fault(run: FaultRun, name: str, inject) -> dict:
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
