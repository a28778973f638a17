"""Staying connected to the broker: the one loop that the endpoint's links and the
service's result consumer share, in the manner of kombu's ConsumerMixin.

connect (with jittered exponential backoff) → run a session on the connection → when the
connection fails with one of its own ``connection_errors``/``channel_errors``, wait and
connect again. The backoff starts over only after a connection that stayed up for a while,
so a broker that accepts connections and drops them at once is not hammered.
"""

from __future__ import annotations

import logging
import random
import time

import amqp.exceptions
import kombu
import kombu.exceptions

from ..protocol.urls import redact_url
from .connection import broker_connection, explain_tls_error

log = logging.getLogger(__name__)

AMQP_HEARTBEAT_S = 60


class FatalBrokerError(Exception):
    """Retrying cannot help (wrong credentials, no permission, a bad certificate); str() says
    what to fix."""


class Backoff:
    """Delays between connection attempts: start, doubled after each failure up to maximum;
    back to start once a connection has stayed up for healthy_s."""

    def __init__(self, start: float = 0.5, maximum: float = 10.0, healthy_s: float = 30.0):
        self.start, self.maximum, self.healthy_s = start, maximum, healthy_s
        self._next = start
        self._connected_at: float | None = None

    def connected(self) -> None:
        self._connected_at = time.monotonic()

    def next_delay(self) -> float:
        """The nominal delay before the next attempt (wait a jittered part of it)."""
        if self._connected_at is not None and time.monotonic() - self._connected_at >= self.healthy_s:
            self._next = self.start
        self._connected_at = None
        delay, self._next = self._next, min(self._next * 2, self.maximum)
        return delay


def jittered(delay: float) -> float:
    """Half to all of delay: processes that lost the broker together do not return together."""
    return delay * random.uniform(0.5, 1.0)


class ReconnectingClient:
    """A broker client that keeps its connection: subclasses say where it connects (``url``),
    what one connection's work is (``session``), whether to go on (``wanted``) and how to
    wait (``pause``), and may act on the hooks."""

    role = "broker client"
    HEALTHY_S = 30.0
    # Credentials or certificates refused: stop with FatalBrokerError (a link: the
    # supervisor stops the tree with the reason), or go on trying (the service's consumer:
    # an operator may fix the broker while the service serves).
    give_up_when_refused = True
    # Errors of the session's own making that a new connection may cure, beside the broker's.
    recoverable_errors: tuple[type[BaseException], ...] = ()
    # AMQP heartbeats: a connection that misses two is taken as dead.
    amqp_heartbeat_s: float = AMQP_HEARTBEAT_S

    @property
    def url(self) -> str:
        raise NotImplementedError

    def wanted(self) -> bool:
        """Connect (again)?"""
        raise NotImplementedError

    def pause(self, seconds: float) -> bool:
        """Wait before the next attempt; False to give up instead."""
        raise NotImplementedError

    def session(self, connection: kombu.Connection) -> None:
        """Work on one connection; return when done (the client then ends)."""
        raise NotImplementedError

    def broker_state(self, connected: bool, detail: str) -> None:
        """Each time the connection comes up or goes down (or an attempt fails), with what to show."""

    def connection_lost(self) -> None:
        """After a session ended on a failed connection, before connecting again."""

    def disconnected(self) -> None:
        """After every session, however it ended."""

    def finished(self) -> None:
        """Once, when the client is about to end."""

    def run(self) -> None:
        backoff = Backoff(healthy_s=self.HEALTHY_S)
        while self.wanted():
            connection = self._connect(backoff)
            if connection is None:
                break
            backoff.connected()
            self.broker_state(True, f"connected to {redact_url(self.url)}")
            try:
                self.session(connection)
                break
            except FatalBrokerError:
                raise
            except (*connection.connection_errors, *connection.channel_errors, OSError,
                    kombu.exceptions.OperationalError,  # from kombu's own calls
                    *self.recoverable_errors) as exc:
                delay = backoff.next_delay()
                log.warning("%s lost the broker (%s); retrying in %.1f s", self.role, exc, delay)
                self.broker_state(False, f"lost the broker: {exc}")
                self.connection_lost()
            finally:
                self.disconnected()
                connection.release()
            if not self.pause(jittered(delay)):
                break
        self.finished()

    def _connect(self, backoff: Backoff) -> kombu.Connection | None:
        attempt = 0
        while True:
            attempt += 1
            connection = broker_connection(self.url, heartbeat=self.amqp_heartbeat_s, connect_timeout=10)
            try:
                # One try per attempt: kombu's own connect() retries after 2 s, under our backoff.
                connection.ensure_connection(max_retries=0)
                if attempt > 1:
                    log.info("%s connected to %s after %d attempts", self.role, redact_url(self.url), attempt)
                return connection
            except Exception as exc:
                connection.release()
                problem = _refusal(exc, self.url)
                if problem and self.give_up_when_refused:
                    raise FatalBrokerError(problem) from None
                delay = backoff.next_delay()
                # Loud at first and now and then after; a long outage must not flood the log.
                level = logging.WARNING if attempt in (1, 5) or attempt % 30 == 0 else logging.DEBUG
                log.log(level, "%s cannot reach %s (attempt %d: %s); retrying in %.1f s", self.role,
                        redact_url(self.url), attempt, problem or exc, delay)
                self.broker_state(False, f"cannot reach {redact_url(self.url)} (attempt {attempt}: {problem or exc})")
            if not self.pause(jittered(delay)):
                return None


def _refusal(exc: Exception, url: str) -> str | None:
    """What to fix when retrying cannot help, else None."""
    cause: BaseException = exc
    if isinstance(exc, kombu.exceptions.OperationalError) and exc.__cause__:  # kombu wraps socket errors
        cause = exc.__cause__
    if isinstance(cause, amqp.exceptions.AccessRefused):
        return f"the broker at {redact_url(url)} refused the credentials: {cause}"
    return explain_tls_error(cause, url)
