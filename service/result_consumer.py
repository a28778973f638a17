"""The service's result consumer: reads results and heartbeats from the broker in batches,
hands each batch to the handler (results.py stores it), then forwards, dead-letters and
acknowledges the batch in one AMQP transaction."""

from __future__ import annotations

import logging
import threading
import time
import typing

import amqp
import attrs
import kombu

from ..broker.reconnecting import ReconnectingClient
from ..protocol.urls import is_embedded
from .broker import DEAD_LETTER_QUEUE, heartbeats_queue, results_queue

log = logging.getLogger(__name__)


@attrs.frozen
class Delivery:
    queue: str  # "results" or "heartbeats"
    sender: str | None  # the endpoint id its routing key names; None on the embedded broker
    body: bytes
    properties: dict
    redelivered: bool = False  # given back by the broker: whoever had it before never acknowledged it


@attrs.frozen
class Handled:
    """What the service made of a batch: results to forward to a task group queue, by index
    in the batch with the task id, and deliveries it refused, with the reason."""

    forwards: list[tuple[str, int, str]] = attrs.Factory(list)  # (queue, index, task id)
    refused: dict[int, str] = attrs.Factory(dict)


class ResultHandler(typing.Protocol):
    def handle(self, batch: list[Delivery]) -> Handled: ...

    def forwarded(self, task_ids: list[str]) -> None: ...


class ResultConsumer(ReconnectingClient, threading.Thread):
    """Reads results and heartbeats in batches and hands each batch to the handler.

    A batch is stored first; then its forwards to the SDK's task group queues, its refusals
    to the dead-letter queue and its acknowledgement go to the broker in one AMQP transaction
    on the consuming channel. If the service dies before the commit, none of them happened:
    the broker delivers the batch again, and the results the store already has but never
    forwarded are forwarded then. If it dies after, the batch is gone from the results
    queue, forwarded exactly once. So a crash loses no result and shows the SDK none twice.
    A message the handler refuses (undecodable, forged, invalid) goes to the dead-letter
    queue with its reason; the rest of its batch is stored as usual.
    """

    role = "result consumer"
    BATCH = 500
    GATHER_S = 0.05
    QUIET_S = 0.005
    give_up_when_refused = False  # the service serves on; an operator may fix the broker meanwhile
    # The store failing (a database restart) leaves the batch unacknowledged: it comes again.
    recoverable_errors = (Exception,)

    def __init__(self, url: str, handler: ResultHandler):
        threading.Thread.__init__(self, name="result-consumer", daemon=True)
        self._url = url
        self.forwarding = not is_embedded(url)
        self.handler = handler
        self._stop_event = threading.Event()
        self.ready = threading.Event()

    @property
    def url(self) -> str:
        return self._url

    def stop(self) -> None:
        self._stop_event.set()

    def wanted(self) -> bool:
        return not self._stop_event.is_set()

    def pause(self, seconds: float) -> bool:
        return not self._stop_event.wait(seconds)

    def run(self) -> None:
        ReconnectingClient.run(self)

    def session(self, connection: kombu.Connection) -> None:
        pending: list[tuple[kombu.Message, Delivery]] = []

        def on_message(message: kombu.Message) -> None:
            # The raw message: kombu decodes nothing here, so no body can fail before we look.
            queue = message.delivery_info.get("routing_key", "")
            sender, _, kind = queue.rpartition(".")
            body = message.body
            if isinstance(body, str):  # py-amqp decodes a body that names a text encoding
                body = body.encode(message.content_encoding or "utf-8", "surrogateescape")
            properties = dict(message.properties, content_type=message.content_type,
                              content_encoding=message.content_encoding)
            redelivered = bool(message.delivery_info.get("redelivered"))
            pending.append((message, Delivery(kind, sender or None, body, properties, redelivered)))

        channel = connection.channel()
        channel.basic_qos(0, self.BATCH * 2, False)
        if self.forwarding:
            channel.tx_select()  # publishes and acks of a batch commit together (embedded: no forwards)
        publisher = kombu.Producer(channel)
        with kombu.Consumer(channel, [results_queue, heartbeats_queue], on_message=on_message,
                            accept=None, no_ack=False):
            self.ready.set()
            while not self._stop_event.is_set():
                connection.heartbeat_check()  # AMQP heartbeats go out only when asked
                # Gather for up to GATHER_S after the first arrival: one store transaction per
                # batch, not per result, when results come one by one at a high rate. A pause of
                # QUIET_S ends it early: what the broker had sent is in, and a backlog that
                # built up while the last batch was flushed is not held back a whole GATHER_S.
                first_at = None
                while len(pending) < self.BATCH:
                    if pending and first_at is None:
                        first_at = time.monotonic()
                    left = min(self.QUIET_S, self.GATHER_S - (time.monotonic() - first_at)) if first_at else 0.05
                    if left <= 0:
                        break
                    try:
                        connection.drain_events(timeout=left)
                    except TimeoutError:
                        if not pending:
                            break
                    except OSError as exc:
                        if "timed out" not in str(exc):
                            raise
                        if not pending:
                            break
                if pending:
                    # Take the batch out first: publishing and acking can read frames and
                    # so run on_message, which must add to the next batch, not this one.
                    batch = pending.copy()
                    pending.clear()
                    self._flush(batch, publisher)

    def _flush(self, pending: list[tuple[kombu.Message, Delivery]], publisher: kombu.Producer) -> None:
        started = time.monotonic()
        deliveries = [d for _, d in pending]
        handled = self.handler.handle(deliveries)
        forwarded = []
        for queue, index, task_id in handled.forwards if self.forwarding else ():
            # py-amqp's own publish: kombu's Producer costs as much again as the publish itself,
            # and this loop runs once a result.
            delivery = deliveries[index]
            publisher.channel.basic_publish(_forwarded(delivery), exchange="", routing_key=queue)
            forwarded.append(task_id)
        for index, reason in handled.refused.items():
            delivery = deliveries[index]
            log.warning("refused a message on the %s queue (routing key %s.%s): %s; it is in the %r queue",
                        delivery.queue, delivery.sender, delivery.queue, reason, DEAD_LETTER_QUEUE)
            publisher.publish(delivery.body, exchange="", routing_key=DEAD_LETTER_QUEUE, **_as_sent(delivery),
                              headers={"x-refused-because": reason[:500],
                                       "x-routing-key": f"{delivery.sender}.{delivery.queue}"})
        # Deliveries come in order on one channel: the last one's multiple ack covers the batch.
        pending[-1][0].ack(multiple=True)
        if self.forwarding:
            publisher.channel.tx_commit()
        self.handler.forwarded(forwarded)
        log.debug("handled %d deliveries in %.3f s", len(pending), time.monotonic() - started)


def _forwarded(delivery: Delivery) -> amqp.Message:
    """A result as it goes on to its task group queue: persistent, its body, content type and
    encoding as the endpoint sent them, and the time it was sent (or now)."""
    return amqp.Message(delivery.body, delivery_mode=2, **_as_sent(delivery),
                        timestamp=delivery.properties.get("timestamp") or int(time.time()))


def _as_sent(delivery: Delivery) -> dict:
    """The body's own content type and encoding, so that it travels on byte for byte."""
    return {"content_type": delivery.properties.get("content_type") or "application/octet-stream",
            "content_encoding": delivery.properties.get("content_encoding") or "binary"}
