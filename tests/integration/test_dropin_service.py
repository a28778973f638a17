"""What the official endpoint does with the service, done by ours against a real
compute-service and RabbitMQ: remote stop, remote delete, allow-lists at both ends, idle
shutdown."""

from __future__ import annotations

import json
import time
import uuid

import kombu
import pytest
import requests

from compute_endpoint.endpoint.exit_codes import Exit
from compute_endpoint.protocol import messages
from tests.endpoint_harness import SERIALIZER, THREAD_POOL_CONFIG, EndpointHarness
from tests.waiting import wait_for

pytestmark = pytest.mark.slow


def triple(x):
    return 3 * x


def halve(x):
    return x / 2


def wait_until(predicate, timeout: float, what: str) -> float:
    """When predicate() came true (monotonic clock)."""
    wait_for(predicate, timeout, what)
    return time.monotonic()


def stop_note(harness: EndpointHarness) -> str:
    listed = harness.cli("list").stdout
    return next((line for line in listed.splitlines() if line.startswith(f"{harness.name}: ")), "")


def test_the_service_stops_a_running_endpoint_within_a_heartbeat_and_refuses_it_for_a_while(make_endpoint):
    harness = make_endpoint(THREAD_POOL_CONFIG + "heartbeat_period: 5\n")
    assert harness.run(triple, [(2,)]) == [6]
    asked = time.monotonic()
    # What Client.stop_endpoint and `stop --remote` on another host do: the lock route.
    response = requests.post(f"{harness.service.url}/v3/endpoints/{harness.endpoint_id}/lock",
                             headers=harness.headers, timeout=30)
    assert response.status_code == 200, response.text
    stopped = wait_until(lambda: harness.status() == "Stopped", 15, "the endpoint stopping itself")
    assert stopped - asked < 5  # within one heartbeat period
    assert "stopped itself" in stop_note(harness)
    assert "the Compute service asked it to stop (stop requested by researcher)" in stop_note(harness)
    assert "supervisor stopped" in harness.log()
    again = harness.cli("start", harness.name)
    assert again.returncode == Exit.UNAVAILABLE and "locked until" in again.stderr


def test_stop_remote_asks_the_service_and_stops_it_here(make_endpoint):
    harness = make_endpoint(THREAD_POOL_CONFIG)
    result = harness.cli("stop", harness.name, "--remote", "--debug")
    assert result.returncode == 0, result.stderr
    assert f"Asked the Compute service at {harness.service.url} to stop endpoint {harness.endpoint_id}" \
        in result.stdout
    assert harness.status() == "Stopped"


def test_delete_removes_the_endpoint_from_the_service_then_its_directory(make_endpoint):
    harness = make_endpoint(THREAD_POOL_CONFIG)
    endpoint_id = harness.endpoint_id
    result = harness.cli("delete", endpoint_id, "--yes", "--force")  # by its UUID, while it runs
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Endpoint {endpoint_id} deleted from the Compute service" in result.stdout
    assert not harness.directory.exists()
    gone = requests.get(f"{harness.service.url}/v2/endpoints/{endpoint_id}", headers=harness.headers, timeout=30)
    assert gone.status_code == 404


def test_delete_keeps_the_directory_when_the_service_cannot_delete_it_unless_forced(start_service, tmp_path):
    harness = EndpointHarness(start_service(), tmp_path / "gc")
    harness.start()
    harness.stop()
    endpoint_id = harness.endpoint_id
    harness.service.stop()
    refused = harness.cli("delete", harness.name, "--yes")
    assert refused.returncode == Exit.TRY_AGAIN, refused.stdout + refused.stderr
    assert "cannot reach the Compute service" in refused.stderr and "is kept" in refused.stderr
    assert harness.directory.exists()
    forced = harness.cli("delete", harness.name, "--yes", "--force")
    assert forced.returncode == 0, forced.stderr
    assert f"could not delete endpoint {endpoint_id} from the Compute service" in forced.stdout
    assert "deleting the local directory anyway (--force)" in forced.stdout
    assert not harness.directory.exists()


def published_result(channel, queue: str, timeout: float = 30) -> messages.Result:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = channel.basic_get(queue, no_ack=True)
        if message is not None:
            return messages.unpack(message.body)
        time.sleep(0.1)
    raise AssertionError("no result published")


def test_allowed_functions_are_enforced_by_the_service_and_by_the_endpoint_itself(start_service, broker_url,
                                                                                  tmp_path):
    harness = EndpointHarness(start_service(), tmp_path / "gc")
    allowed, other = harness.register_function(triple), harness.register_function(halve)
    (harness.directory / "config.yaml").write_text(THREAD_POOL_CONFIG + f"allowed_functions: [{allowed}]\n")
    harness.start()
    assert harness.run(triple, [(5,)]) == [15]
    listed = requests.get(f"{harness.service.url}/v3/endpoints/{harness.endpoint_id}/allowed_functions",
                          headers=harness.headers, timeout=30).json()
    assert listed["functions"] == [allowed]

    payload = SERIALIZER.pack_buffers([SERIALIZER.serialize((4,)), SERIALIZER.serialize({})])
    refused = requests.post(f"{harness.service.url}/v3/endpoints/{harness.endpoint_id}/submit",
                            headers=harness.headers, json={"tasks": {other: [payload]}}, timeout=30)
    assert refused.status_code == 403
    assert f"function {other} is not allowed on endpoint {harness.endpoint_id}" in refused.json()["error"]

    # Past the service (a task put on the queue directly): the endpoint refuses it itself,
    # without deserializing it (its body is not even a task message).
    task_id = str(uuid.uuid4())
    with kombu.Connection(broker_url) as connection:
        channel = connection.channel()
        tap = kombu.Queue(f"tap-{task_id[:8]}", kombu.Exchange("results", type="topic", passive=True),
                          routing_key=f"{harness.endpoint_id}.results", durable=False, auto_delete=True)
        tap.bind(channel).declare()
        kombu.Producer(channel).publish(b"not a task: never unpacked", exchange="tasks",
                                        routing_key=f"{harness.endpoint_id}.tasks",
                                        headers={"task_uuid": task_id, "function_uuid": other,
                                                 "resource_specification": "null"})
        result = published_result(channel, tap.name)
    assert str(result.task_id) == task_id and result.is_error
    assert result.error_details.code == "FUNCTION_NOT_ALLOWED"
    assert f"Function {other} is not allowed on endpoint {harness.endpoint_id}" in result.data
    assert "not a task" not in harness.log()


def test_an_idle_endpoint_stops_itself_and_list_says_why(make_endpoint):
    harness = make_endpoint(THREAD_POOL_CONFIG + "heartbeat_period: 5\nidle_heartbeats_soft: 1\n")
    assert harness.run(triple, [(1,), (2,)]) == [3, 6]
    wait_until(lambda: harness.status() == "Stopped", 30, "the idle endpoint stopping")
    note = stop_note(harness)
    assert "stopped itself" in note and "idle: no task for 1 heartbeat periods of 5 s (idle_heartbeats_soft)" in note
    record = json.loads((harness.directory / "last_stop.json").read_text())
    assert record["exit_code"] == 0
