"""The result link process: publishes results and status reports with publisher confirms.

Results are published asynchronously, up to a bound of unconfirmed ones, and each is
reported back (ResultsConfirmed) only when the broker has confirmed it. What is not
confirmed when the connection drops is published again on the next connection; what
this process holds when it dies, the supervisor's dispatcher holds too and sends again.

A large result arrives as a reference to its file in ``unacked_results/`` (the engine
wrote it there, payloads.py); it is read only to be published, and its file goes once
the broker confirmed it. Results still unconfirmed when the broker cannot be reached
are written there too, and the next result link of this endpoint publishes whatever
it finds there.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from pathlib import Path

import amqp

from ..protocol.urls import is_embedded, redact_url
from ..supervisor.control import Stop
from ..supervisor.pipe import ParentPipe
from .broker_link import BrokerLink, FatalBrokerError, drain, run_link
from .payloads import UNACKED_RESULTS, Payload, PayloadStore, Stored, load
from .pipe_messages import PublishResults, PublishStatus, ResultsConfirmed
from .settings import PublishTarget, WorkerSettings

log = logging.getLogger(__name__)

MAX_UNCONFIRMED = 2000
FINAL_FLUSH_S = 5.0


def main(parent: ParentPipe, settings: WorkerSettings) -> int:
    return run_link(ResultLink, parent, settings)


class ResultLink(BrokerLink):
    """Publishes results and status reports, and tells the supervisor which results the
    broker confirmed (only then may their tasks be acknowledged). Keeps each result until
    its confirm: across reconnects in memory or in ``unacked_results/``, across its own
    death in the supervisor's dispatcher."""

    role = "result link"
    settings: WorkerSettings
    reconnect_while_stopping = True  # to publish what is left, the final status report included

    def __init__(self, parent: ParentPipe, settings: WorkerSettings):
        super().__init__(parent, settings)
        self.to_publish: OrderedDict[str, Payload] = OrderedDict()  # task id -> packed Result
        self.unconfirmed: dict[int, str] = {}  # publish sequence number -> task id
        self.in_flight: dict[str, Payload] = {}  # task id -> packed Result, published, unconfirmed
        self.statuses: list[bytes] = []  # packed status reports to publish
        self.confirmed: list[str] = []
        self.sequence = 0
        self.confirm_on_return = False
        self.spool = PayloadStore(Path(settings.run_dir) / UNACKED_RESULTS)
        for task_id, stored in self.spool.stored():
            self.to_publish[task_id] = stored
        if self.to_publish:
            log.info("result link found %d spooled results to publish", len(self.to_publish))

    @property
    def url(self) -> str:
        return self.settings.results.connection_url

    def connection_lost(self) -> None:
        self._spool_unconfirmed()

    def finished(self) -> None:
        if self.to_publish or self.in_flight:
            self._spool_unconfirmed()
            log.warning("result link stopping with %d unconfirmed results, spooled to %s",
                        len(self.to_publish), self.spool.directory)

    def session(self, connection) -> None:
        channel = connection.channel()
        for target in (self.settings.results, self.settings.heartbeats):
            if not target.exchange:
                continue  # the default exchange always exists
            try:
                channel.exchange_declare(target.exchange, "topic", passive=True)
            except amqp.exceptions.NotFound:
                raise FatalBrokerError(f"the exchange {target.exchange!r} does not exist at "
                                       f"{redact_url(target.connection_url)}") from None
        # The embedded broker has no confirms: its publish returns once the message is on disk.
        self.confirm_on_return = is_embedded(self.settings.results.connection_url)
        if not self.confirm_on_return:
            channel.confirm_select()
            channel.events["basic_ack"].add(self._on_ack)
            channel.events["basic_nack"].add(self._on_nack)
        self.sequence = 0
        log.info("result link publishing to %s", redact_url(self.settings.results.connection_url))
        flush_deadline = None
        while True:
            self._publish_pending(channel)
            if self.to_publish or self.in_flight:
                drain(connection, 0.0005)
            for message in self.parent.receive(0.0 if (self.to_publish or self.in_flight) else 0.02):
                self.handle(message)
            self._report_confirmed()
            connection.heartbeat_check()
            if self.stopping:
                # Publish what is already here (the final status report included), then go.
                flush_deadline = flush_deadline or time.monotonic() + FINAL_FLUSH_S
                if not (self.to_publish or self.in_flight or self.statuses) or time.monotonic() > flush_deadline:
                    return

    def _publish_pending(self, channel) -> None:
        while self.statuses:
            self._publish(channel, self.settings.heartbeats, self.statuses.pop(0))
        while self.to_publish and len(self.in_flight) < MAX_UNCONFIRMED:
            task_id, payload = self.to_publish.popitem(last=False)
            try:
                packed = load(payload)
            except FileNotFoundError:
                # Only a confirm removes a result's file: a result link before this one
                # had it confirmed, and died before it could say so.
                log.info("the result of task %s was confirmed already", task_id)
                self.confirmed.append(task_id)
                continue
            self.in_flight[task_id] = payload
            self.unconfirmed[self._publish(channel, self.settings.results, packed)] = task_id
        if self.confirm_on_return and self.unconfirmed:
            self._on_ack(self.sequence, multiple=True)

    def _publish(self, channel, target: PublishTarget, body: bytes) -> int:
        """Publish; return the sequence number the broker's confirm will carry."""
        message = channel.prepare_message(body, properties=dict(target.properties))
        channel.basic_publish(message, exchange=target.exchange, routing_key=target.routing_key,
                              mandatory=target.mandatory)
        self.sequence += 1  # confirms number every publish on the channel, status reports too
        return self.sequence

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        for sequence in self._settled(delivery_tag, multiple):
            task_id = self.unconfirmed.pop(sequence, None)
            payload = self.in_flight.pop(task_id, None) if task_id is not None else None
            if task_id is not None and payload is not None:
                self.confirmed.append(task_id)
                if isinstance(payload, Stored):
                    self.spool.discard(task_id)

    def _on_nack(self, delivery_tag: int, multiple: bool) -> None:
        for sequence in self._settled(delivery_tag, multiple):
            task_id = self.unconfirmed.pop(sequence, None)
            if task_id is not None and task_id in self.in_flight:
                log.warning("broker refused the result of task %s; publishing it again", task_id)
                self.to_publish[task_id] = self.in_flight.pop(task_id)

    def _settled(self, delivery_tag: int, multiple: bool) -> list[int]:
        if not multiple:
            return [delivery_tag]
        settled = []
        for sequence in self.unconfirmed:  # in publish order: stop at the first one after the tag
            if sequence > delivery_tag:
                break
            settled.append(sequence)
        return settled

    def _spool_unconfirmed(self) -> None:
        """Keep every unconfirmed result for the next connection, and on disk meanwhile."""
        self.to_publish.update(self.in_flight)
        self.in_flight.clear()
        self.unconfirmed.clear()
        for task_id, payload in self.to_publish.items():
            if isinstance(payload, bytes):
                self.to_publish[task_id] = self.spool.write(task_id, payload)

    def _report_confirmed(self) -> None:
        if self.confirmed:
            self.parent.send(ResultsConfirmed(tuple(self.confirmed)))
            self.confirmed = []

    def handle(self, message: object) -> bool:
        if isinstance(message, PublishResults):
            for result in message.results:
                if result.task_id not in self.in_flight:
                    self.to_publish[result.task_id] = result.packed
        elif isinstance(message, PublishStatus):
            self.statuses.append(message.packed)
        elif isinstance(message, Stop):
            self.stop(message.reason or "asked to stop")
            return False
        return True
