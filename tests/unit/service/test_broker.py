"""The service's broker side on the real RabbitMQ: the topology, what registration hands an
endpoint, task messages as the endpoint expects them, and task group queue names."""

from __future__ import annotations

import uuid

import kombu
import pytest

from compute_endpoint.service.broker import (
    Broker,
    OutgoingTask,
    queue_prefix,
    task_group_queue,
)


def test_each_identity_has_a_prefix_of_its_own_that_names_nothing_of_it():
    alice, bob = queue_prefix("alice@example.org"), queue_prefix("bob@example.org")
    assert alice != bob and alice == queue_prefix("alice@example.org")
    assert "alice" not in alice and alice.startswith("tg_") and alice.endswith("_")
    assert task_group_queue("alice@example.org", "g1").name == f"{alice}g1"


def test_registration_hands_the_endpoint_its_queues_and_how_to_publish(broker_url):
    broker = Broker(broker_url)
    endpoint_id = str(uuid.uuid4())
    try:
        info = broker.queue_info(endpoint_id, broker.declare_endpoint(endpoint_id))
    finally:
        broker.close()
    assert info["task_queue_info"]["queue"] == f"{endpoint_id}.tasks"
    assert info["result_queue_info"]["queue_publish_kwargs"] == {
        "exchange": "results", "routing_key": f"{endpoint_id}.results", "mandatory": True,
        "properties": {"delivery_mode": 2}}
    assert info["heartbeat_queue_info"]["queue_publish_kwargs"]["routing_key"] == f"{endpoint_id}.heartbeats"


def test_on_the_embedded_broker_everything_goes_by_queue_name(tmp_path):
    from compute_endpoint.protocol.urls import embedded_url

    broker = Broker(embedded_url(tmp_path / "broker"))
    try:
        info = broker.queue_info("e1", broker.public_url)
    finally:
        broker.close()
    assert info["result_queue_info"]["exchange"] == ""
    assert info["result_queue_info"]["queue_publish_kwargs"]["routing_key"] == "results"


def test_published_tasks_reach_the_endpoints_queue_with_the_headers_it_reads(broker_url):
    broker = Broker(broker_url)
    endpoint_id = str(uuid.uuid4())
    try:
        broker.declare_topology()
        broker.declare_endpoint(endpoint_id)
        broker.publish_tasks(endpoint_id, [
            OutgoingTask("t1", "f1", b"body one", "null", None),
            OutgoingTask("t2", "f1", b"body two", '{"num_nodes": 2}', ["json"])])
    finally:
        broker.close()
    with kombu.Connection(broker_url) as connection:
        channel = connection.default_channel
        first = channel.basic_get(f"{endpoint_id}.tasks", no_ack=True)
        second = channel.basic_get(f"{endpoint_id}.tasks", no_ack=True)
    assert (first.body, second.body) == (b"body one", b"body two")
    assert first.headers == {"task_uuid": "t1", "function_uuid": "f1", "resource_specification": "null"}
    assert second.headers["result_serializers"] == ["json"]
    assert first.properties["delivery_mode"] == 2


def test_a_deleted_endpoints_queue_is_gone(broker_url):
    broker = Broker(broker_url)
    endpoint_id = str(uuid.uuid4())
    try:
        broker.declare_endpoint(endpoint_id)
        broker.delete_endpoint(endpoint_id)
    finally:
        broker.close()
    with kombu.Connection(broker_url) as connection, pytest.raises(Exception, match="NOT_FOUND"):
        connection.default_channel.queue_declare(f"{endpoint_id}.tasks", passive=True)
