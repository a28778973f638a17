from __future__ import annotations

import pytest

from compute_endpoint.protocol.urls import (
    broker_connection,
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
