"""Each endpoint gets a RabbitMQ user of its own (where the management API answers),
allowed only its own task queue and the results and heartbeats exchanges."""

from __future__ import annotations

from urllib.parse import urlsplit

import amqp.exceptions
import kombu
import pytest
import requests


def register(service, headers, name) -> dict:
    response = requests.post(f"{service.url}/v3/endpoints", headers=headers, json={"endpoint_name": name},
                             timeout=10)
    response.raise_for_status()
    return response.json()


def consume_once(url: str, queue: str) -> None:
    with kombu.Connection(url, connect_timeout=5) as connection:
        channel = connection.channel()
        channel.basic_consume(queue=queue, callback=lambda m: None, no_ack=False, consumer_tag="probe")


def test_an_endpoint_user_reaches_only_its_own_queue(start_service, broker_url, rabbitmq_management):
    service = start_service()
    headers = {"Authorization": f"Bearer {service.token('alice')}"}
    first, second = register(service, headers, "one"), register(service, headers, "two")
    url = first["task_queue_info"]["connection_url"]
    parts = urlsplit(url)
    assert parts.username == f"ep-{first['endpoint_id']}" and parts.password not in ("guest", "", None)
    assert url == first["result_queue_info"]["connection_url"]
    assert urlsplit(second["task_queue_info"]["connection_url"]).password != parts.password

    consume_once(url, f"{first['endpoint_id']}.tasks")  # its own tasks: allowed
    with kombu.Connection(url) as connection:  # results and heartbeats: it may publish, with confirms
        producer = kombu.Producer(connection.channel())
        for key in ("results", "heartbeats"):
            producer.publish(b"x", exchange=key, routing_key=f"{first['endpoint_id']}.{key}", mandatory=True)
    for queue in (f"{second['endpoint_id']}.tasks", "results", "heartbeats"):
        with pytest.raises(amqp.exceptions.AccessRefused):
            consume_once(url, queue)
    with pytest.raises(amqp.exceptions.AccessRefused), kombu.Connection(url) as connection:
        connection.channel().basic_publish(amqp.Message(b"x"), exchange="tasks",
                                           routing_key=f"{second['endpoint_id']}.tasks")
        connection.drain_events(timeout=2)  # the refusal arrives as a channel close

    # Re-registration rotates the password; deleting the endpoint removes the user.
    again = requests.put(f"{service.url}/v3/endpoints/{first['endpoint_id']}", headers=headers,
                         json={"endpoint_name": "one"}, timeout=10).json()
    assert urlsplit(again["task_queue_info"]["connection_url"]).password != parts.password
    with pytest.raises(amqp.exceptions.AccessRefused):
        consume_once(url, f"{first['endpoint_id']}.tasks")
    assert requests.delete(f"{service.url}/v2/endpoints/{first['endpoint_id']}", headers=headers,
                           timeout=10).status_code == 200
    users = requests.get(f"{rabbitmq_management}/users", auth=("guest", "guest"), timeout=10).json()
    assert f"ep-{first['endpoint_id']}" not in {u["name"] for u in users}
    assert f"ep-{second['endpoint_id']}" in {u["name"] for u in users}


def test_shared_credentials_when_asked(start_service, broker_url, rabbitmq_management, tmp_path):
    from tests.conftest import RunningService

    (tmp_path / "shared").mkdir()
    service = RunningService(tmp_path / "shared", None, broker_url, extra_args=["--shared-broker-credentials"])
    try:
        headers = {"Authorization": f"Bearer {service.token('bob')}"}
        assert urlsplit(register(service, headers, "ep")["task_queue_info"]["connection_url"]).username == "guest"
    finally:
        service.stop()
