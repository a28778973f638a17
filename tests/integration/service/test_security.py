"""Regression tests for the security review's findings against compute-service, each named
after its finding: attacks by another identity, forged and poison AMQP messages, bad HTTP
input and loose local files, through a real service, real RabbitMQ and real files."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import time
import uuid
from urllib.parse import urlsplit

import amqp.exceptions
import kombu
import pytest
import requests
from globus_compute_sdk.serialize import ComputeSerializer

from compute_endpoint.protocol import messages
from tests.conftest import BIN_DIR, free_port
from tests.waiting import wait_for

pytestmark = pytest.mark.slow
SERIALIZER = ComputeSerializer()


def double(x):
    return 2 * x


class Identity:
    """One identity's bearer token against a service."""

    def __init__(self, service, name: str):
        self.service = service
        self.headers = {"Authorization": f"Bearer {service.token(name)}"}

    def __call__(self, method: str, path: str, **kwargs) -> requests.Response:
        return requests.request(method, self.service.url + path, headers={**self.headers, **kwargs.pop("headers", {})},
                                timeout=30, **kwargs)

    def register(self, name: str = "ep") -> dict:
        response = self("POST", "/v3/endpoints", json={"endpoint_name": name})
        assert response.status_code == 200, response.text
        return response.json()

    def submit(self, endpoint_id: str, count: int = 1, **extra) -> list[str]:
        code = SERIALIZER.pack_buffers([SERIALIZER.serialize(double)])
        function_id = self("POST", "/v3/functions", json={"function_name": "double", "function_code": code}).json()[
            "function_uuid"]
        payload = SERIALIZER.pack_buffers([SERIALIZER.serialize((1,)), SERIALIZER.serialize({})])
        response = self("POST", f"/v3/endpoints/{endpoint_id}/submit",
                        json={"tasks": {function_id: [payload] * count}, **extra})
        assert response.status_code == 200, response.text
        return response.json()["tasks"][function_id]

    def task(self, task_id: str) -> dict:
        return self("GET", f"/v2/tasks/{task_id}").json()


@pytest.fixture
def service(start_service, rabbitmq_management):
    return start_service()


@pytest.fixture
def alice(service) -> Identity:
    return Identity(service, "alice")


@pytest.fixture
def mallory(service) -> Identity:
    return Identity(service, "mallory")


def publish_as(registration: dict, kind: str, body: bytes, routing_key: str | None = None,
               content_type: str | None = None) -> None:
    """Publish as the registered endpoint does (its own broker user), with confirms."""
    info = registration[f"{kind}_queue_info"]
    kwargs = dict(info["queue_publish_kwargs"])
    kwargs.pop("properties", None)
    if routing_key is not None:
        kwargs["routing_key"] = routing_key
    with kombu.Connection(info["connection_url"], transport_options={"confirm_publish": True}) as connection:
        producer = kombu.Producer(connection.channel())
        producer.publish(body, content_type=content_type, content_encoding="binary" if content_type is None
                         else "utf-8", delivery_mode=2, **kwargs)


def result_for(task_id: str, data: str = "forged") -> bytes:
    return messages.pack(messages.Result(task_id=uuid.UUID(task_id), data=data))


def dead_letters(broker_url: str, timeout: float = 10, expect: int = 1) -> list[kombu.Message]:
    """The messages in the service's dead-letter queue, with their stated reasons."""
    found: list = []
    deadline = time.monotonic() + timeout
    with kombu.Connection(broker_url) as connection:
        queue = kombu.Queue("dead-letter", no_declare=True)
        with kombu.Consumer(connection.channel(), [queue], accept=None,
                            on_message=lambda m: (found.append(m), m.ack())):
            while len(found) < expect and time.monotonic() < deadline:
                try:
                    connection.drain_events(timeout=0.5)
                except TimeoutError:
                    pass
    return found


# ------------------------------------------------------------------ critical


def test_sdk_result_url_hands_out_a_user_for_the_callers_own_results_only(alice, mallory, broker_url):
    """Finding: /v2/get_amqp_result_connection_url handed every token holder the service's
    own broker credentials."""
    endpoint = alice.register()
    mine = alice("GET", "/v2/get_amqp_result_connection_url").json()
    theirs = mallory("GET", "/v2/get_amqp_result_connection_url").json()
    url = mine["connection_url"]
    assert urlsplit(url).username.startswith("sdk-") and urlsplit(url).password not in ("guest", None)
    assert mine["queue_prefix"] != theirs["queue_prefix"]
    # A new password at every request: the previous one stops working for new connections.
    again = alice("GET", "/v2/get_amqp_result_connection_url").json()["connection_url"]
    assert urlsplit(again).password != urlsplit(url).password
    url = again

    alice.submit(endpoint["endpoint_id"], task_group_id=str(uuid.uuid4()), create_queue=True)
    groups = [q for q in _queues(broker_url) if q.startswith(mine["queue_prefix"])]
    assert groups, "the submit made no task group queue with the caller's prefix"
    with kombu.Connection(url) as connection:  # its own task group queue: readable
        connection.channel().basic_consume(queue=groups[0], callback=lambda m: None, consumer_tag="own")
    mallory.submit(mallory.register("m")["endpoint_id"], task_group_id=str(uuid.uuid4()), create_queue=True)
    [other_group] = [q for q in _queues(broker_url) if q.startswith(theirs["queue_prefix"])]
    for queue in (other_group, f"{endpoint['endpoint_id']}.tasks", "results"):
        with pytest.raises(amqp.exceptions.AccessRefused), kombu.Connection(url) as connection:
            connection.channel().basic_consume(queue=queue, callback=lambda m: None, consumer_tag="probe")
    with pytest.raises(amqp.exceptions.AccessRefused), kombu.Connection(url) as connection:
        connection.channel().basic_publish(amqp.Message(b"x"), exchange="tasks",
                                           routing_key=f"{endpoint['endpoint_id']}.tasks")
        connection.drain_events(timeout=2)


def test_without_broker_users_the_service_refuses_to_share_its_credentials_unless_asked(broker_url, tmp_path):
    """Finding: without the management API every caller got the service's own credentials."""
    data_dir = tmp_path / "no-management"
    data_dir.mkdir()
    # A management API address where nothing answers stands in for RabbitMQ without the plugin.
    refused = subprocess.run(
        [str(BIN_DIR / "compute-service"), "serve", "--port", str(free_port()), "--data-dir", str(data_dir),
         "--broker", broker_url.replace("127.0.0.1", "localhost")],
        capture_output=True, text=True, timeout=60,
        env=dict(os.environ, COMPUTE_SERVICE_MANAGEMENT_URL=f"http://127.0.0.1:{free_port()}"))
    assert refused.returncode == 1, refused.stderr
    assert "management API does not answer" in refused.stderr
    assert "--shared-broker-credentials" in refused.stderr and "Traceback" not in refused.stderr


# ------------------------------------------------------------------ high


def test_a_forged_result_from_another_endpoint_is_refused_and_the_real_one_kept(alice, mallory, service,
                                                                                 broker_url):
    """Finding: results were completed by task id alone, whoever sent them."""
    victim = alice.register()
    [task_id] = alice.submit(victim["endpoint_id"])
    attacker = mallory.register("attacker")
    # Under its own routing key, for a task of another endpoint: refused by the service.
    publish_as(attacker, "result", result_for(task_id))
    [letter] = dead_letters(broker_url)
    assert "belongs to another endpoint" in letter.headers["x-refused-because"]
    assert alice.task(task_id)["status"] == "waiting-for-ep"
    # Under the victim's routing key: refused by the broker (topic permissions).
    with pytest.raises(amqp.exceptions.AccessRefused):
        publish_as(attacker, "result", result_for(task_id), routing_key=f"{victim['endpoint_id']}.results")
    # The owner's endpoint's result is the one kept.
    publish_as(victim, "result", result_for(task_id, SERIALIZER.serialize(2)))
    done = wait_for(lambda: alice.task(task_id).get("status") == "success" and alice.task(task_id))
    assert SERIALIZER.deserialize(done["result"]) == 2


@pytest.mark.parametrize("global_state, reason", [
    ({"heartbeat_period": "x"}, "heartbeat_period must be a number of seconds"),
    ({"heartbeat_period": 1e308}, "a report number out of range"),
    ({"heartbeat_period": 1e9}, "heartbeat_period must be a number of seconds"),
    ({"outstanding_tasks": float("inf")}, "out of range"),
    ({"nested": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": 1}}}}}}}}}}, "nested deeper"),
])
def test_a_status_report_with_bad_fields_is_refused_and_status_still_answers(alice, broker_url, global_state,
                                                                            reason):
    """Finding: heartbeat_period "x" made the owner's status route answer 500; 1e308 made it
    show online forever."""
    endpoint = alice.register()
    report = messages.EPStatusReport(endpoint_id=uuid.UUID(endpoint["endpoint_id"]), global_state=global_state,
                                     task_statuses={})
    try:
        body = messages.pack(report)
    except ValueError:  # infinity cannot be packed as JSON by us: send it as Python's json writes it
        body = b"\x01" + json.dumps({"message_type": "ep_status_report", "data": {
            "endpoint_id": endpoint["endpoint_id"], "global_state": global_state, "task_statuses": {}}}).encode()
    publish_as(endpoint, "heartbeat", body)
    [letter] = dead_letters(broker_url)
    assert reason in letter.headers["x-refused-because"] or "undecodable" in letter.headers["x-refused-because"]
    status = alice("GET", f"/v2/endpoints/{endpoint['endpoint_id']}/status")
    assert status.status_code == 200 and status.json()["status"] == "offline"


def test_a_status_report_for_another_endpoint_is_refused(alice, mallory, broker_url):
    victim, attacker = alice.register(), mallory.register("attacker")
    report = messages.EPStatusReport(endpoint_id=uuid.UUID(victim["endpoint_id"]),
                                     global_state={"active": True, "heartbeat_period": 30}, task_statuses={})
    publish_as(attacker, "heartbeat", messages.pack(report))
    [letter] = dead_letters(broker_url)
    assert f"sent as endpoint {attacker['endpoint_id']}" in letter.headers["x-refused-because"]
    assert alice("GET", f"/v2/endpoints/{victim['endpoint_id']}/status").json()["status"] == "offline"


@pytest.mark.parametrize("poison, content_type", [
    (b"\x01" + b'{"message_type": "result", "data": {"task_id": "%s", "data": ' + b"9" * 5000 + b"}}", None),
    (b"[" * 100_000, None),
    (b"this is not JSON", "application/json"),
], ids=["5000-digit-integer", "100000-brackets", "non-json-as-json"])
def test_one_poison_message_is_dead_lettered_and_the_genuine_results_are_stored(alice, broker_url, poison,
                                                                               content_type):
    """Finding: one bad message stopped result processing for everyone, forever."""
    endpoint = alice.register()
    task_ids = alice.submit(endpoint["endpoint_id"], count=3)
    if b"%s" in poison:
        poison = poison.replace(b"%s", task_ids[0].encode())
    publish_as(endpoint, "result", poison, content_type=content_type)
    for task_id in task_ids:
        publish_as(endpoint, "result", result_for(task_id, SERIALIZER.serialize(2)))
    wait_for(lambda: all(alice.task(t)["status"] == "success" for t in task_ids), what="the genuine results")
    [letter] = dead_letters(broker_url)
    body = letter.body.encode() if isinstance(letter.body, str) else letter.body  # decoded when it names utf-8
    assert body == poison


# ------------------------------------------------------------------ medium


def test_a_deleted_endpoint_id_cannot_be_taken_and_its_pending_tasks_fail(alice, mallory):
    """Findings: another identity could register a deleted endpoint's id (and receive the tasks
    for the old owner's still-running daemon); the deleted endpoint's tasks stayed waiting."""
    endpoint = alice.register()
    endpoint_id = endpoint["endpoint_id"]
    [task_id] = alice.submit(endpoint_id)
    assert alice("DELETE", f"/v2/endpoints/{endpoint_id}").status_code == 200
    failed = alice.task(task_id)
    assert failed["status"] == "failed" and f"endpoint {endpoint_id} was deleted" in failed["exception"]
    taken = mallory("PUT", f"/v3/endpoints/{endpoint_id}", json={"endpoint_name": "mine-now"})
    assert taken.status_code == 404 and "alice" not in taken.text
    assert alice("GET", f"/v2/endpoints/{endpoint_id}").status_code == 404
    # Its owner may bring it back (the daemon's restart re-registers it).
    assert alice("PUT", f"/v3/endpoints/{endpoint_id}", json={"endpoint_name": "ep"}).status_code == 200


def test_submits_are_capped_with_a_413_naming_the_cap(alice, start_service, tmp_path):
    """Finding: one submit could carry about a million tasks."""
    endpoint = alice.register()
    code = SERIALIZER.pack_buffers([SERIALIZER.serialize(double)])
    function_id = alice("POST", "/v3/functions", json={"function_name": "d", "function_code": code}).json()[
        "function_uuid"]
    payload = SERIALIZER.pack_buffers([SERIALIZER.serialize((1,)), SERIALIZER.serialize({})])
    response = alice("POST", f"/v3/endpoints/{endpoint['endpoint_id']}/submit",
                     json={"tasks": {function_id: [payload] * 10_001}})
    assert response.status_code == 413
    assert "10001 tasks in one submit; the limit is 10000" in response.json()["error"]


def test_the_embedded_broker_folder_is_private_and_a_foreign_one_is_refused(tmp_path):
    """Finding: the embedded broker's folder and message files were world-readable, and an
    existing folder was not checked."""
    from compute_endpoint.broker.connection import broker_connection
    from compute_endpoint.protocol.urls import embedded_url

    data_dir = tmp_path / "data"
    port = free_port()
    service = subprocess.Popen([str(BIN_DIR / "compute-service"), "serve", "--port", str(port), "--data-dir",
                                str(data_dir), "--broker", embedded_url(data_dir / "broker")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: _answers(port), what="the service")
        folder = data_dir / "broker"
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        with broker_connection(embedded_url(folder)) as connection:
            kombu.Producer(connection.channel()).publish(b"secret", exchange="", routing_key="x.tasks")
        files = [p for p in folder.iterdir() if p.is_file()]
        assert files and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files)
    finally:
        service.terminate()
        service.wait(10)
    loose = tmp_path / "loose"
    (loose / "broker").mkdir(parents=True)
    (loose / "broker").chmod(0o777)
    refused = subprocess.run([str(BIN_DIR / "compute-service"), "serve", "--port", str(free_port()), "--data-dir",
                              str(loose), "--broker", embedded_url(loose / "broker")],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1
    assert "others may write" in refused.stderr and "Traceback" not in refused.stderr


# ------------------------------------------------------------------ low


def test_reregistering_another_identitys_endpoint_answers_404_without_naming_them(alice, mallory):
    endpoint_id = alice.register()["endpoint_id"]
    taken = mallory("PUT", f"/v3/endpoints/{endpoint_id}", json={"endpoint_name": "x"})
    assert taken.status_code == 404 and "alice" not in taken.text


def test_deeply_nested_metadata_is_refused_at_registration(alice):
    metadata: dict = {}
    for _ in range(300):
        metadata = {"m": metadata}
    response = alice("POST", "/v3/endpoints", json={"endpoint_name": "deep", "metadata": metadata})
    assert response.status_code in (400, 422) and "nested" in response.json()["error"]
    listed = alice("GET", "/v2/endpoints")
    assert listed.status_code == 200


@pytest.mark.parametrize("length_line", ["²", "9" * 5000])
def test_a_garbled_packed_buffer_length_is_a_400(alice, length_line):
    response = alice("POST", "/v3/functions", json={"function_name": "f", "function_code": f"{length_line}\nx"})
    assert response.status_code == 400 and "invalid length" in response.json()["error"]


def test_a_chunked_body_over_the_limit_is_a_413(alice, service):
    def chunks():
        for _ in range(11):
            yield b"x" * (1024 * 1024)

    response = requests.post(f"{service.url}/v3/functions", data=chunks(), timeout=60,
                             headers={**alice.headers, "Content-Type": "application/json"})
    assert response.status_code == 413 and "byte limit" in response.json()["error"]
    small = requests.post(f"{service.url}/v3/endpoints", data=iter([b'{"endpoint_name":', b' "chunked"}']),
                          headers={**alice.headers, "Content-Type": "application/json"}, timeout=30)
    assert small.status_code == 200, small.text


def test_tokens_can_be_listed_revoked_and_given_a_lifetime(service):
    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN_DIR / "compute-service"), "token", *args, "--data-dir", str(service.data_dir)],
                              capture_output=True, text=True, timeout=60)

    token = cli("create", "--identity", "carol").stdout.strip()
    short = cli("create", "--identity", "carol", "--lifetime", "1").stdout.strip()
    headers = {"Authorization": f"Bearer {token}"}
    assert requests.get(f"{service.url}/v2/endpoints", headers=headers, timeout=10).status_code == 200
    listed = cli("list", "--identity", "carol").stdout
    assert token not in listed and listed.count("carol") == 2
    time.sleep(1.2)
    assert requests.get(f"{service.url}/v2/endpoints", headers={"Authorization": f"Bearer {short}"},
                        timeout=10).status_code == 401
    assert "(expired)" in cli("list", "--identity", "carol").stdout
    import hashlib

    revoked = cli("revoke", hashlib.sha256(token.encode()).hexdigest()[:12])
    assert revoked.returncode == 0 and "Revoked 1 token" in revoked.stdout
    assert requests.get(f"{service.url}/v2/endpoints", headers=headers, timeout=10).status_code == 401
    assert "no token has the id" in cli("revoke", "0" * 12).stderr
    assert "hex digits" in cli("revoke", "short").stderr


def _queues(broker_url: str) -> list[str]:
    vhost = urlsplit(broker_url).path[1:]
    listed = subprocess.run(["rabbitmqctl", "-q", "list_queues", "-p", vhost, "name", "--no-table-headers"],
                            capture_output=True, text=True, check=True).stdout
    return [line.strip() for line in listed.splitlines() if line.strip()]


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 1).close()
        return True
    except OSError:
        return False


def test_the_result_consumers_reconnect_backoff_resets_after_a_healthy_period(broker_url, rabbitmq_management,
                                                                              caplog, monkeypatch):
    """Finding: the consumer's reconnect backoff never reset, so after a few broker hiccups
    over days it waited the longest delay for every later one."""
    import logging

    from compute_endpoint.service.broker import Broker
    from compute_endpoint.service.result_consumer import ResultConsumer
    from compute_endpoint.service.results import ResultRecorder
    from compute_endpoint.service.store import Store

    caplog.set_level(logging.WARNING, logger="compute_endpoint.service.broker")
    # Long enough that the quick failures stay quick on a loaded CI host: each cycle runs
    # rabbitmqctl twice (list, close), which took over 3 s there.
    monkeypatch.setattr(ResultConsumer, "HEALTHY_S", 12.0)
    Broker(broker_url).declare_topology()
    consumer = ResultConsumer(broker_url, ResultRecorder(Store("sqlite://")))
    consumer.start()
    vhost = urlsplit(broker_url).path[1:]
    closed: set[str] = set()

    def close_its_connections(wait_healthy: float):
        time.sleep(wait_healthy)
        consumer.ready.clear()  # set again once it has reconnected
        def connections():  # rabbitmqctl sees a new connection at once (the management API lags)
            # list_connections takes no vhost: it lists the whole node's, so pick this test's by
            # their vhost column (closing the others would break tests running beside this one).
            listed = subprocess.run(["rabbitmqctl", "-q", "list_connections", "pid", "vhost",
                                     "--no-table-headers"], capture_output=True, text=True).stdout
            rows = [line.split("\t") for line in listed.splitlines()]
            return [row[0].strip() for row in rows
                    if len(row) == 2 and row[1].strip() == vhost and row[0].strip() not in closed]

        for name in wait_for(connections, what="the consumer's connection listed"):
            subprocess.run(["rabbitmqctl", "-q", "close_connection", name, "test"], capture_output=True)
            closed.add(name)
        wait_for(lambda: "retrying in" in caplog.text, what="the consumer noticing")

    try:
        assert consumer.ready.wait(20)
        delays = []
        for healthy in (0.0, 0.0, 0.0, 13.0):  # three quick failures, then one after a healthy period
            caplog.clear()
            close_its_connections(healthy)
            delays.append(float(caplog.text.split("retrying in ")[1].split(" s")[0]))
            wait_for(consumer.ready.is_set, timeout=30, what="the reconnect")
        assert delays[:3] == [0.5, 1.0, 2.0] and delays[3] == 0.5, delays
    finally:
        consumer.stop()
        consumer.join(10)
