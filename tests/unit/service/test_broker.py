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


def test_a_batch_is_confirmed_as_a_whole_once_and_fast_and_an_unroutable_one_raises(broker_url):
    """Confirms that arrive while the batch is still going out count too (py-amqp reads them
    before each publish): three batches of 1,000 are each confirmed well within the confirm
    timeout, and no batch goes out twice. A batch for a queue that is gone raises."""
    import time

    from compute_endpoint.service.broker import CONFIRM_TIMEOUT_S

    broker = Broker(broker_url)
    endpoint_id = str(uuid.uuid4())
    try:
        broker.declare_topology()
        broker.declare_endpoint(endpoint_id)
        slowest = 0.0
        for batch in range(3):
            started = time.monotonic()
            broker.publish_tasks(endpoint_id, [OutgoingTask(f"t{batch}-{i}", "f1", b"x" * 2000, "null", None)
                                               for i in range(1000)])
            slowest = max(slowest, time.monotonic() - started)
        assert slowest < CONFIRM_TIMEOUT_S / 3, f"a batch took {slowest:.1f} s: confirms went missing"
        with kombu.Connection(broker_url) as connection:
            queue = connection.default_channel.queue_declare(f"{endpoint_id}.tasks", passive=True)
        assert queue.message_count == 3000
        with pytest.raises(Exception, match="could not route"):
            broker.publish_tasks(str(uuid.uuid4()), [OutgoingTask("t", "f1", b"x", "null", None)])
    finally:
        broker.close()


def test_tasks_published_after_a_command_on_the_same_channel_are_confirmed_at_once(broker_url, monkeypatch, caplog):
    """A start or stop command and a submit share the service's publishing channel; the
    command must count among the channel's confirmed deliveries, or the submit after it waits
    for a confirm that never comes, times out and goes again on a new connection."""
    from compute_endpoint.service import broker as broker_module

    monkeypatch.setattr(broker_module, "CONFIRM_TIMEOUT_S", 3.0)
    broker = Broker(broker_url)
    endpoint_id = str(uuid.uuid4())
    try:
        broker.declare_topology()
        broker.declare_endpoint(endpoint_id)
        for round_ in range(2):
            broker.send_stop(endpoint_id, "a test")
            broker.publish_tasks(endpoint_id, [OutgoingTask(f"t{round_}", "f1", b"x", "null", None)])
        broker.send_stop(str(uuid.uuid4()), "an endpoint whose queue is gone: nobody to tell, no error")
        broker.publish_tasks(endpoint_id, [OutgoingTask("t2", "f1", b"x", "null", None)])
    finally:
        broker.close()
    assert "retrying on a new one" not in caplog.text
    with kombu.Connection(broker_url) as connection:
        channel = connection.default_channel
        assert channel.queue_declare(f"{endpoint_id}.tasks", passive=True).message_count == 3
        assert channel.queue_declare(f"{endpoint_id}.commands", passive=True).message_count == 2
