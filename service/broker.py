"""The service's side of AMQP: topology, and publishing tasks and commands (the results and
heartbeats it consumes: result_consumer.py).

Topology (as the hosted service has it; endpoints only declare passively):
    exchange tasks (direct)      -> queue <endpoint_id>.tasks   (routing key = queue name)
    exchange results (topic)     -> queue results               (*.results)
    exchange heartbeats (topic)  -> queue heartbeats            (*.heartbeats)
    default exchange             -> queue tg_<identity>_<task_group_id>  (results for the SDK Executor)
    default exchange             -> queue dead-letter           (messages the service refused)

Endpoints publish results and status reports with routing key ``<endpoint_id>.results`` /
``.heartbeats``; with broker users of their own, the broker lets each use only its own id
(topic permissions), and the service accepts a result only for a task of that endpoint.

The embedded broker (kombu's filesystem transport) keeps exchange bindings per process,
so there every message goes through the default exchange to its queue by name, and
there are no task group queues: the SDK Executor needs AMQP, the SDK Client's polling
works.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import typing
from collections.abc import Callable

import amqp
import attrs
import kombu
from kombu.exceptions import OperationalError

from ..broker.connection import broker_connection
from ..protocol import commands
from ..protocol.urls import is_embedded, portable_vhost
from .broker_users import BrokerUsers

log = logging.getLogger(__name__)

TASK_GROUP_QUEUE_PREFIX = "tg_"
# A task group queue nobody reads for this long is removed by the broker.
TASK_GROUP_QUEUE_EXPIRES_MS = 6 * 3600 * 1000

tasks_exchange = kombu.Exchange("tasks", type="direct", durable=True)
results_exchange = kombu.Exchange("results", type="topic", durable=True)
heartbeats_exchange = kombu.Exchange("heartbeats", type="topic", durable=True)
results_queue = kombu.Queue("results", results_exchange, routing_key="*.results", durable=True)
heartbeats_queue = kombu.Queue("heartbeats", heartbeats_exchange, routing_key="*.heartbeats",
                               durable=True, queue_arguments={"x-max-length": 10000})


def task_queue(endpoint_id: str) -> kombu.Queue:
    name = f"{endpoint_id}.tasks"
    return kombu.Queue(name, tasks_exchange, routing_key=name, durable=True)


def command_queue(endpoint_id: str) -> kombu.Queue:
    """Where the service tells a running endpoint what to do (stop); a command no endpoint
    took within its validity is dropped by the broker."""
    name = f"{endpoint_id}.commands"
    return kombu.Queue(name, exchange=kombu.Exchange(""), routing_key=name, durable=True,
                       queue_arguments={"x-message-ttl": commands.MAX_AGE_S * 1000})


DEAD_LETTER_QUEUE = "dead-letter"
dead_letter_queue = kombu.Queue(DEAD_LETTER_QUEUE, exchange=kombu.Exchange(""), routing_key=DEAD_LETTER_QUEUE,
                                durable=True, queue_arguments={"x-max-length": 10000})


def queue_prefix(identity: str) -> str:
    """The prefix of an identity's task group queues: a broker user of the identity's own
    may read exactly the queues with this prefix, and no one else's."""
    return f"{TASK_GROUP_QUEUE_PREFIX}{hashlib.sha256(identity.encode()).hexdigest()[:20]}_"


def task_group_queue(identity: str, task_group_id: str) -> kombu.Queue:
    name = f"{queue_prefix(identity)}{task_group_id}"
    return kombu.Queue(name, exchange=kombu.Exchange(""), routing_key=name, durable=True,
                       queue_arguments={"x-expires": TASK_GROUP_QUEUE_EXPIRES_MS})


@attrs.frozen
class OutgoingTask:
    task_id: str
    function_id: str
    body: bytes
    resource_specification: str  # JSON text, "null" when none: what the endpoint expects
    result_serializers: list[str] | None


class Broker:
    """One publishing connection shared by the request threads (kombu connections are not
    thread-safe, so a lock serialises them)."""

    def __init__(self, url: str, public_url: str | None = None, users: BrokerUsers | None = None):
        self.url = url
        self.public_url = portable_vhost(public_url or url)
        self.embedded = is_embedded(url)
        self.users = users  # one broker user per endpoint, where the management API answers
        self._lock = threading.Lock()
        self._connection = self._connect()
        self._producer: kombu.Producer | None = None

    def _connect(self) -> kombu.Connection:
        return broker_connection(self.url, transport_options={"confirm_publish": True})

    def _channel_producer(self) -> kombu.Producer:
        if self._producer is None:
            self._connection.ensure_connection(max_retries=3)
            self._producer = kombu.Producer(self._connection.channel())
        return self._producer

    def _run(self, action: Callable[[kombu.Producer], None]) -> None:
        with self._lock:
            try:
                action(self._channel_producer())
            except (OperationalError, OSError, ConnectionError) as exc:
                # One retry on a fresh connection: the broker may have restarted.
                log.warning("the broker connection failed (%r); retrying on a new one", exc)
                self._reset()
                action(self._channel_producer())

    def _reset(self) -> None:
        self._producer = None
        try:
            self._connection.close()
        except Exception:  # already broken; a new one follows
            pass
        self._connection = self._connect()

    def declare_topology(self) -> None:
        def declare(producer: kombu.Producer) -> None:
            for entity in (tasks_exchange, results_exchange, heartbeats_exchange, results_queue,
                           heartbeats_queue, dead_letter_queue):
                entity.bind(producer.channel).declare()
        self._run(declare)

    def declare_endpoint(self, endpoint_id: str) -> str:
        """Declare the endpoint's task and command queues; return the broker URL to hand it."""
        def declare(producer: kombu.Producer) -> None:
            task_queue(endpoint_id).bind(producer.channel).declare()
            command_queue(endpoint_id).bind(producer.channel).declare()
        self._run(declare)
        return self.users.grant(endpoint_id, self.public_url) if self.users else self.public_url

    def delete_endpoint(self, endpoint_id: str) -> None:
        def delete(producer: kombu.Producer) -> None:
            task_queue(endpoint_id).bind(producer.channel).delete()
            command_queue(endpoint_id).bind(producer.channel).delete()
        self._run(delete)
        if self.users:
            self.users.revoke(endpoint_id)

    def declare_task_group(self, identity: str, task_group_id: str) -> None:
        if self.embedded:
            return  # no task group queues: the Executor cannot use the embedded broker
        self._run(lambda p: task_group_queue(identity, task_group_id).bind(p.channel).declare())

    def publish_tasks(self, endpoint_id: str, outgoing: list[OutgoingTask]) -> None:
        """Publish a submit's tasks and return once the broker has confirmed every one: all of
        them go out, then the confirms are awaited together (one round trip a batch, not one
        a task). A task the broker did not take raises, and the submit fails."""
        routing_key = f"{endpoint_id}.tasks"

        def headers(task: OutgoingTask) -> dict[str, typing.Any]:
            out: dict[str, typing.Any] = {"task_uuid": task.task_id, "function_uuid": task.function_id,
                                          "resource_specification": task.resource_specification}
            if task.result_serializers:
                out["result_serializers"] = task.result_serializers
            return out

        if self.embedded:  # kombu's virtual transport: no confirms to wait for
            def publish_each(producer: kombu.Producer) -> None:
                for task in outgoing:
                    producer.publish(task.body, exchange="", routing_key=routing_key, headers=headers(task),
                                     delivery_mode=2)
            self._run(publish_each)
            return
        self._run(lambda producer: publish_confirmed(
            producer.channel, [amqp.Message(task.body, delivery_mode=2, application_headers=headers(task),
                                            content_type="application/data", content_encoding="binary")
                               for task in outgoing], tasks_exchange.name, routing_key))

    def send_stop(self, endpoint_id: str, reason: str) -> None:
        self.send_command(endpoint_id, *commands.stop_endpoint(reason))

    def send_command(self, endpoint_id: str, body: bytes, properties: dict) -> None:
        routing_key = command_queue(endpoint_id).name
        if self.embedded:
            self._run(lambda p: p.publish(body, exchange="", routing_key=routing_key, delivery_mode=2, **properties))
            return
        # Through the same confirmed publish as tasks: a publish beside it on the channel would
        # shift the delivery numbers it waits for (and a submit after a start command waited
        # out CONFIRM_TIMEOUT_S). Not mandatory: a command for an endpoint whose queue is gone
        # reaches no one, as before.
        self._run(lambda p: publish_confirmed(p.channel, [amqp.Message(body, delivery_mode=2, **properties)],
                                              "", routing_key, mandatory=False))

    def queue_info(self, endpoint_id: str, connection_url: str) -> dict:
        """What registration hands the endpoint: where to read tasks and write results."""
        def exchange(name: str) -> str:
            return "" if self.embedded else name

        def publish_kwargs(name: str) -> dict:
            routing_key = name if self.embedded else f"{endpoint_id}.{name}"
            return {"exchange": exchange(name), "routing_key": routing_key,
                    "mandatory": True, "properties": {"delivery_mode": 2}}
        return {
            "endpoint_id": endpoint_id,
            "task_queue_info": {"connection_url": connection_url, "exchange": exchange("tasks"),
                                "queue": f"{endpoint_id}.tasks"},
            "result_queue_info": {"connection_url": connection_url, "exchange": exchange("results"),
                                  "queue": "results", "queue_publish_kwargs": publish_kwargs("results")},
            "heartbeat_queue_info": {"connection_url": connection_url, "exchange": exchange("heartbeats"),
                                     "queue": "heartbeats", "queue_publish_kwargs": publish_kwargs("heartbeats")},
            "command_queue_info": {"connection_url": connection_url, "queue": command_queue(endpoint_id).name},
        }

    def close(self) -> None:
        with self._lock:
            self._connection.release()


CONFIRM_TIMEOUT_S = 30.0


def publish_confirmed(channel, messages: list[amqp.Message], exchange: str, routing_key: str,
                      mandatory: bool = True) -> None:
    """Publish messages on a py-amqp channel in confirm mode, then wait until the broker has
    confirmed them all (its acks may each cover many). A nack, an unroutable mandatory message
    or no answer within CONFIRM_TIMEOUT_S raises. It numbers the channel's deliveries itself,
    as the broker does, so every publish on the channel must go through it.

    Confirms are collected by the channel's ack listeners, not by waiting for the next ack
    frame: py-amqp reads (and dispatches) whatever frames have arrived before each publish,
    so acks for the first messages come in while the last ones are still going out."""
    if not channel._confirm_selected:
        channel._confirm_selected = True
        channel.confirm_select()
    first = getattr(channel, "published_count", 0) + 1
    last = first + len(messages) - 1
    channel.published_count = last
    unconfirmed = set(range(first, last + 1))
    refused: list[str] = []

    def on_ack(delivery_tag: int, multiple: bool) -> None:
        if multiple:  # every one up to this tag
            unconfirmed.difference_update([t for t in unconfirmed if t <= delivery_tag])
        else:
            unconfirmed.discard(delivery_tag)

    def on_nack(delivery_tag: int, multiple: bool) -> None:
        refused.append(f"the broker refused {'messages up to ' if multiple else 'message '}#{delivery_tag}")

    def on_return(exc, _exchange, key, _message) -> None:
        refused.append(f"the broker could not route a message to {key}: {exc}")

    listeners = (("basic_ack", on_ack), ("basic_nack", on_nack), ("basic_return", on_return))
    for event, listener in listeners:
        channel.events[event].add(listener)
    try:
        for message in messages:
            # The raw publish: the connection's confirm_publish would wait for each one.
            channel._basic_publish(message, exchange=exchange, routing_key=routing_key, mandatory=mandatory)
        deadline = time.monotonic() + CONFIRM_TIMEOUT_S
        while unconfirmed and not refused:
            left = deadline - time.monotonic()
            try:
                if left <= 0:
                    raise TimeoutError
                channel.connection.drain_events(timeout=left)
            except TimeoutError:
                raise OperationalError(f"the broker confirmed {len(messages) - len(unconfirmed)} of "
                                       f"{len(messages)} messages in {CONFIRM_TIMEOUT_S:.0f} s") from None
    finally:
        for event, listener in listeners:
            channel.events[event].discard(listener)
    if refused:
        raise OperationalError(f"{refused[0]} ({len(refused)} problem(s) in a batch of {len(messages)})")
