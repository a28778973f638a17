"""The task link process: consumes the endpoint's task queue and hands tasks on in batches.

It never acknowledges a task on its own: only when the supervisor says the task's
result was confirmed by the broker (AckDeliveries). Should this process or its
connection die, the broker gives the unacknowledged tasks to the next consumer.
"""

from __future__ import annotations

import collections
import logging
import os
import uuid

import amqp

from ..supervisor.channel import ParentChannel
from ..supervisor.messages import Stop
from .amqp import FatalBrokerError, connect, drain, is_connection_error, run_link
from .messages import AckDeliveries, PauseConsuming, RejectDeliveries, TaskDelivery, TasksReceived
from .settings import WorkerSettings

log = logging.getLogger(__name__)

BATCH = 256
DEFAULT_PREFETCH = 1024
MAX_TASK_BYTES = 10 * 1024 * 1024


def main(channel: ParentChannel, settings: WorkerSettings) -> int:
    return run_link("task link", TaskLink, channel, settings)


class TaskLink:
    def __init__(self, channel: ParentChannel, settings: WorkerSettings):
        self.parent = channel
        self.settings = settings
        self.prefetch = settings.prefetch or DEFAULT_PREFETCH
        self.stopping: str | None = None
        self.paused = False
        self.connections = 0
        self.generation = ""
        self.channel = None  # the consuming channel; None while (re)connecting
        self.batch: list[TaskDelivery] = []
        self.acks = AckWindow()

    def stop(self, reason: str) -> None:
        self.stopping = self.stopping or reason

    def run(self) -> int:
        while not self.stopping:
            connection = connect(self.settings.task_queue_url, "task link", self.parent, self._handle)
            if connection is None:
                break
            try:
                self._consume(connection)
            except FatalBrokerError:
                raise
            except Exception as exc:
                if not is_connection_error(exc):
                    raise
                log.warning("task link lost the broker: %s; reconnecting", exc)
            finally:
                # Tags of this channel die with it: acks for them are dropped from now on.
                self.channel, self.generation, self.batch, self.acks = None, "", [], AckWindow()
                connection.release()
        log.info("task link stopped (%s)", self.stopping)
        return 0

    def _consume(self, connection) -> None:
        self.connections += 1
        # Delivery tags belong to one channel: the generation tells this channel's
        # tags from those of a channel (or a process) that is gone.
        self.generation = f"{os.getpid()}.{self.connections}"
        channel = connection.channel()
        channel.basic_qos(0, self.prefetch, False)
        try:
            channel.queue_declare(queue=self.settings.task_queue, passive=True)
        except amqp.exceptions.NotFound:
            raise FatalBrokerError(f"the task queue {self.settings.task_queue} does not exist; "
                                   "is the endpoint registered with this service?") from None
        consumer_tag = f"task-link-{self.generation}"
        channel.basic_consume(queue=self.settings.task_queue, callback=self._on_delivery, no_ack=False,
                              consumer_tag=consumer_tag, exclusive=True)
        log.info("task link consuming %s (prefetch %d)", self.settings.task_queue, self.prefetch)
        self.channel = channel
        while not self.stopping:
            if drain(connection, 0.02):
                while len(self.batch) < BATCH and drain(connection, 0.0005):
                    pass
            self._forward()
            for message in self.parent.receive(0):
                if not self._handle(message):
                    break
            if self.paused and consumer_tag:
                channel.basic_cancel(consumer_tag)
                consumer_tag = None
            connection.heartbeat_check()

    def _on_delivery(self, message) -> None:
        # py-amqp's and kombu's virtual messages share these attributes.
        headers = message.headers if isinstance(message.headers, dict) else {}
        tag = message.delivery_tag
        task_id = _canonical_uuid(headers.get("task_uuid"))
        if task_id is None:
            # No usable id: there is nothing to answer to. Reject without requeue
            # (dead-lettered where the queue has a dead-letter exchange), log it once.
            log.warning("rejecting a task message whose task_uuid header is %r (headers: %s)",
                        headers.get("task_uuid"), sorted(headers)[:10])
            self.channel.basic_reject(tag, requeue=False)
            return
        body = bytes(message.body)
        problem = None
        if len(body) > MAX_TASK_BYTES:
            problem = f"The task message of {len(body)} bytes exceeds the {MAX_TASK_BYTES} byte limit"
            body = b""
        self.acks.delivered(tag)
        self.batch.append(TaskDelivery(task_id=task_id, delivery_tag=tag, generation=self.generation,
                                       headers=headers, body=body, problem=problem,
                                       redelivered=bool(message.delivery_info.get("redelivered"))))

    def _forward(self) -> None:
        if self.batch:
            self.parent.send(TasksReceived(tuple(self.batch)))
            self.batch = []

    def _acknowledge(self, tags) -> None:
        upto, singles = self.acks.settle(tags)
        if upto is not None:
            self.channel.basic_ack(upto, multiple=True)
        for tag in singles:
            self.channel.basic_ack(tag)

    def _handle(self, message: object) -> bool:
        """Act on a supervisor message; False when it is time to stop."""
        if isinstance(message, AckDeliveries):
            if self.channel is not None and message.generation == self.generation:
                self._acknowledge(message.delivery_tags)
        elif isinstance(message, RejectDeliveries):
            if self.channel is not None and message.generation == self.generation:
                for tag in message.delivery_tags:
                    self.channel.basic_reject(tag, requeue=False)
                self.acks.done_elsewhere(message.delivery_tags)
                self._acknowledge(())  # tags settled behind the rejected ones may go now
        elif isinstance(message, PauseConsuming):
            self.paused = True
        elif isinstance(message, Stop):
            self.stop(message.reason or "asked to stop")
            return False
        return True


class AckWindow:
    """Acknowledges in few frames: settled tags at the front of the delivery order go in one
    ``multiple`` ack; tags settled behind a task still running wait for it, unless too many
    wait, then they go one by one (each ack is a frame and a write: thousands a second)."""

    MAX_WAITING = 256

    def __init__(self):
        self.order: collections.deque[int] = collections.deque()  # delivered, in delivery order
        self.settled: set[int] = set()  # may be acked, not yet
        self.gone: set[int] = set()  # acked one by one, or rejected

    def delivered(self, tag: int) -> None:
        self.order.append(tag)

    def settle(self, tags) -> tuple[int | None, list[int]]:
        """(highest tag to ack with multiple=True, or None; tags to ack one by one)."""
        self.settled.update(tags)
        upto = None
        while self.order and (self.order[0] in self.settled or self.order[0] in self.gone):
            tag = self.order.popleft()
            if tag in self.settled:
                self.settled.discard(tag)
                upto = tag  # every outstanding tag up to here is settled
            else:
                self.gone.discard(tag)
        singles = []
        if len(self.settled) > self.MAX_WAITING:
            singles = sorted(self.settled)
            self.gone.update(singles)
            self.settled.clear()
        return upto, singles

    def done_elsewhere(self, tags) -> None:
        """Tags answered otherwise (rejected): not to be covered by a multiple ack."""
        self.gone.update(tags)


def _canonical_uuid(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None
