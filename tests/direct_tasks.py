"""Tasks published straight to an endpoint's queue, and their results counted on a tap
queue of the test's own bound to the results exchange beside the service's, so every
result the endpoint publishes is seen, duplicates included."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable

import amqp
import kombu

from compute_endpoint.protocol import messages

from .endpoint_harness import SERIALIZER, EndpointHarness


def double(x):
    import time

    time.sleep(0.002)  # 5,000 tasks take a few seconds on 4 workers: long enough to fail mid-run
    return 2 * x


class DirectTasks:
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
        """count tasks of double(i), then the extra (headers, body) messages as they are."""
        self.publish_calls(double, (((i,), 2 * i) for i in range(count)))
        producer = kombu.Producer(self.connection.channel())
        for headers, body in extra:
            producer.publish(body, exchange="tasks", routing_key=f"{self.endpoint.endpoint_id}.tasks",
                             headers=headers, delivery_mode=2)

    def publish_calls(self, function, calls: Iterable[tuple[tuple, object]]) -> None:
        """A task of function(*args) for each (args, expected value); made as they go."""
        function_code = SERIALIZER.pack_buffers([SERIALIZER.serialize(function)])
        producer = kombu.Producer(self.connection.channel())
        for args, value in calls:
            task_id = str(uuid.uuid4())
            payload = SERIALIZER.pack_buffers([SERIALIZER.serialize(args), SERIALIZER.serialize({})])
            body = messages.pack(messages.Task(task_id=uuid.UUID(task_id), task_buffer=function_code + payload))
            self.expected[task_id] = value
            producer.publish(body, exchange="tasks", routing_key=f"{self.endpoint.endpoint_id}.tasks",
                             headers={"task_uuid": task_id, "function_uuid": str(uuid.uuid4()),
                                      "resource_specification": "null"}, delivery_mode=2)

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
