"""What both links share: the BrokerLink skeleton (connect, one session, reconnect on the
connection's own errors), connecting with jittered backoff while answering the supervisor,
and telling fatal broker errors (retrying cannot help) from passing ones."""

from __future__ import annotations

import logging
import random
import signal
import time
from collections.abc import Callable

import amqp.exceptions
import kombu

from ..protocol.urls import broker_connection, explain_tls_error, redact_url
from ..supervisor.pipe import ParentPipe
from ..supervisor.spec import ExitCode
from .settings import WorkerSettings
from .startup import begin_child

log = logging.getLogger(__name__)

BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 10.0
AMQP_HEARTBEAT_S = 60


class FatalBrokerError(Exception):
    """Retrying cannot help (wrong credentials, no permission); str() says what to fix."""


def drain(connection: kombu.Connection, timeout: float) -> bool:
    """Process broker frames for up to timeout; False when nothing arrived."""
    try:
        connection.drain_events(timeout=timeout)
        return True
    except TimeoutError:
        return False


def connect(url: str, what: str, parent: ParentPipe,
            on_message: Callable[[object], bool]) -> kombu.Connection | None:
    """Connect with jittered exponential backoff, answering the supervisor meanwhile.

    ``on_message`` sees each supervisor message that arrives while waiting and returns
    False to give up (a Stop). Returns None when it gave up.
    """
    delay = BACKOFF_START_S
    attempt = 0
    while True:
        attempt += 1
        connection = broker_connection(url, heartbeat=AMQP_HEARTBEAT_S, connect_timeout=10)
        try:
            connection.connect()
            if attempt > 1:
                log.info("%s connected to %s after %d attempts", what, redact_url(url), attempt)
            return connection
        except amqp.exceptions.AccessRefused as exc:
            connection.release()
            raise FatalBrokerError(f"the broker at {redact_url(url)} refused the credentials: {exc}") from None
        except Exception as exc:
            connection.release()
            tls_problem = explain_tls_error(exc, url)
            if tls_problem:  # retrying cannot make a certificate valid: stop with the reason
                raise FatalBrokerError(tls_problem) from None
            level = logging.WARNING if attempt in (1, 5) or attempt % 30 == 0 else logging.DEBUG
            log.log(level, "%s cannot reach %s (attempt %d: %s); retrying in %.1f s", what, redact_url(url),
                    attempt, exc, delay)
        deadline = time.monotonic() + delay * random.uniform(0.5, 1.0)
        while time.monotonic() < deadline:
            for message in parent.receive(timeout=min(0.2, max(0.0, deadline - time.monotonic()))):
                if not on_message(message):
                    return None
        delay = min(delay * 2, BACKOFF_MAX_S)


class BrokerLink:
    """A link process's life with the broker, in the manner of kombu's ConsumerMixin: connect
    (with backoff, answering the supervisor meanwhile), run one session on the connection,
    and when the connection fails (one of its own ``connection_errors`` or
    ``channel_errors``) connect again; a FatalBrokerError ends it. A link says who it is
    (``role``), where it connects (``url``), what a session does (``session``), how it
    answers the supervisor (``handle``), and may act on the hooks."""

    role = "link"
    # Connect again when asked to stop while disconnected? (to publish what is left)
    reconnect_while_stopping = False

    def __init__(self, parent: ParentPipe, settings: WorkerSettings):
        self.parent = parent  # the pipe to the supervisor
        self.settings = settings
        self.stopping: str | None = None

    @property
    def url(self) -> str:
        raise NotImplementedError

    def stop(self, reason: str) -> None:
        self.stopping = self.stopping or reason

    def handle(self, message: object) -> bool:
        """Act on a supervisor message; False when it is time to stop."""
        raise NotImplementedError

    def session(self, connection: kombu.Connection) -> None:
        """Work on one connection; return when done (the link then ends)."""
        raise NotImplementedError

    def connection_lost(self) -> None:
        """After a session ended on a failed connection, before connecting again."""

    def disconnected(self) -> None:
        """After every session, however it ended."""

    def finished(self) -> None:
        """Once, when the link is about to end."""

    def run(self) -> int:
        while self.reconnect_while_stopping or not self.stopping:
            connection = connect(self.url, self.role, self.parent, self.handle)
            if connection is None:
                break
            try:
                self.session(connection)
                break
            except FatalBrokerError:
                raise
            except (*connection.connection_errors, *connection.channel_errors, OSError,
                    kombu.exceptions.OperationalError) as exc:  # the last from kombu's own calls
                log.warning("%s lost the broker: %s; reconnecting", self.role, exc)
                self.connection_lost()
            finally:
                self.disconnected()
                connection.release()
        self.finished()
        log.info("%s stopped (%s)", self.role, self.stopping)
        return 0


def run_link(link_class: type[BrokerLink], parent: ParentPipe, settings: WorkerSettings) -> int:
    """The body of a link process's main: title and logging first, then the link's loop.

    A broker that refuses the credentials cannot be fixed by restarting: that exits
    with CONFIG_ERROR, which stops the tree with the reason in the log.
    """
    role = link_class.role
    begin_child(settings, role)
    link = link_class(parent, settings)
    signal.signal(signal.SIGTERM, lambda *_: link.stop("SIGTERM"))
    parent.ready()
    try:
        return link.run()
    except FatalBrokerError as exc:
        log.error("%s cannot continue: %s", role, exc)
        return ExitCode.CONFIG_ERROR
