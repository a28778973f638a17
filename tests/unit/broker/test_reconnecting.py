"""The reconnect loop the links and the service's consumer share, against the real RabbitMQ."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit, urlunsplit

import pytest

from compute_endpoint.broker.reconnecting import Backoff, FatalBrokerError, ReconnectingClient
from tests.conftest import free_port


def test_backoff_doubles_to_its_maximum_and_starts_over_only_after_a_healthy_connection(monkeypatch):
    now = [100.0]
    monkeypatch.setattr("compute_endpoint.broker.reconnecting.time.monotonic", lambda: now[0])
    backoff = Backoff(start=0.5, maximum=4.0, healthy_s=30.0)
    assert [backoff.next_delay() for _ in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    backoff.connected()
    now[0] += 29.0  # dropped before it proved healthy: keep backing off
    assert backoff.next_delay() == 4.0
    backoff.connected()
    now[0] += 30.0
    assert backoff.next_delay() == 0.5
    assert backoff.next_delay() == 1.0  # one healthy connection resets once, not for ever after


class Recorder(ReconnectingClient):
    """A client that records what the loop asks of it."""

    role = "test client"

    def __init__(self, url: str, sessions: list, attempts: int = 100):
        self._url = url
        self.sessions = sessions  # what each session does, in turn
        self.pauses: list[float] = []
        self.events: list[str] = []
        self.attempts = attempts

    @property
    def url(self) -> str:
        return self._url

    def wanted(self) -> bool:
        return bool(self.sessions)

    def pause(self, seconds: float) -> bool:
        self.pauses.append(seconds)
        return len(self.pauses) < self.attempts

    def session(self, connection) -> None:
        connection.channel()  # a real round trip: the connection is open
        self.events.append("session")
        self.sessions.pop(0)(connection)

    def connection_lost(self) -> None:
        self.events.append("lost")

    def disconnected(self) -> None:
        self.events.append("disconnected")

    def finished(self) -> None:
        self.events.append("finished")


def test_a_lost_connection_is_reopened_after_a_pause_and_the_hooks_run_in_order(broker_url):
    def drop(connection):
        connection.connection.sock.shutdown(socket.SHUT_RDWR)  # as a broker restart does
        connection.drain_events(timeout=1)

    client = Recorder(broker_url, [drop, lambda connection: None])
    client.run()
    assert client.events == ["session", "lost", "disconnected", "session", "disconnected", "finished"]
    assert len(client.pauses) == 1 and 0.25 <= client.pauses[0] <= 0.5


def test_an_unreachable_broker_is_retried_with_growing_pauses_until_the_client_gives_up():
    client = Recorder(f"amqp://guest:guest@127.0.0.1:{free_port()}//", [lambda connection: None], attempts=4)
    client.run()
    assert client.events == ["finished"]
    assert len(client.pauses) == 4
    # jittered halves of 0.5, 1, 2, 4
    for pause, nominal in zip(client.pauses, (0.5, 1.0, 2.0, 4.0), strict=True):
        assert nominal / 2 <= pause <= nominal


def wrong_password(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"guest:not-the-password@{parts.hostname}:{parts.port or 5672}"))


def test_refused_credentials_end_a_link_at_once_with_what_to_fix(broker_url):
    client = Recorder(wrong_password(broker_url), [lambda connection: None])
    with pytest.raises(FatalBrokerError, match="refused the credentials"):
        client.run()
    assert client.pauses == []


def test_a_client_that_must_serve_on_keeps_trying_refused_credentials(broker_url):
    client = Recorder(wrong_password(broker_url), [lambda connection: None], attempts=2)
    client.give_up_when_refused = False
    client.run()
    assert len(client.pauses) == 2 and client.events == ["finished"]
