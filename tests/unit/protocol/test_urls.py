from __future__ import annotations

import pytest

from compute_endpoint.broker.connection import broker_connection
from compute_endpoint.protocol.urls import (
    embedded_folder,
    embedded_url,
    is_embedded,
    portable_vhost,
    redact_url,
    with_port,
)


@pytest.mark.parametrize(("url", "expected"), [
    ("amqp://guest:secret@host:5672/%2F", "amqp://guest:***@host:5672/%2F"),
    ("amqp://host:5672/%2F", "amqp://host:5672/%2F"),
    ("filesystem:///var/lib/broker", "filesystem:///var/lib/broker"),
])
def test_redact_url(url, expected):
    assert redact_url(url) == expected


def test_with_port_and_portable_vhost():
    assert with_port("amqp://u:p@host:443//", 5672) == "amqp://u:p@host:5672//"
    assert portable_vhost("amqp://u:p@host:5672//") == "amqp://u:p@host:5672/%2F"


def test_embedded_urls_name_their_folder(tmp_path):
    url = embedded_url(tmp_path)
    assert is_embedded(url) and not is_embedded("amqp://host//")
    assert embedded_folder(url) == str(tmp_path)


def test_embedded_connection_really_moves_messages_through_the_folder(tmp_path):
    url = embedded_url(tmp_path)
    with broker_connection(url) as producer_side, broker_connection(url) as consumer_side:
        channel = producer_side.channel()
        channel.basic_publish(channel.prepare_message(b"payload", headers={"task_uuid": "x"}),
                              exchange="", routing_key="abc.tasks")
        assert [p.name.endswith(".abc.tasks.msg") for p in tmp_path.iterdir() if p.is_file()] == [True]
        received = []
        reader = consumer_side.channel()
        reader.basic_consume(queue="abc.tasks", no_ack=False, callback=received.append, consumer_tag="t")
        consumer_side.drain_events(timeout=2)
        assert received[0].body == b"payload" and received[0].headers == {"task_uuid": "x"}
        reader.basic_ack(received[0].delivery_tag)


def test_embedded_consumer_never_sees_a_half_written_message(tmp_path):
    """kombu's own filesystem transport writes in place; a consumer polling meanwhile could
    read a partial file and lose the message. Ours renames whole files into view."""
    import multiprocessing

    url, count = embedded_url(tmp_path), 150
    body = b"x" * 2_000_000  # big enough that a write is seen half done

    received = []
    with broker_connection(url) as consumer:
        channel = consumer.channel()
        channel.basic_consume(queue="q", no_ack=True, callback=received.append, consumer_tag="c")
        producer = multiprocessing.get_context("spawn").Process(target=_produce, args=(url, count, len(body)))
        producer.start()
        import time

        deadline = time.monotonic() + 60
        while len(received) < count and time.monotonic() < deadline:
            try:
                consumer.drain_events(timeout=0.5)
            except TimeoutError:
                pass
        producer.join()
    assert sorted(m.headers["n"] for m in received) == list(range(count))
    assert all(m.body == body for m in received)


def _produce(url: str, count: int, size: int) -> None:
    with broker_connection(url) as connection:
        channel = connection.channel()
        for i in range(count):
            channel.basic_publish(channel.prepare_message(b"x" * size, headers={"n": i}), exchange="", routing_key="q")
