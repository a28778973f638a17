"""compute-service's HTTP API through real requests to a real subprocess, real RabbitMQ."""

from __future__ import annotations

import time
import uuid

import kombu
import pytest
import requests
import sqlalchemy as sa
from globus_compute_sdk.serialize import ComputeSerializer

from compute_endpoint.protocol import messages
from compute_endpoint.service.store import SCHEMA_VERSION, Store, hash_token
from tests.interop.standin_endpoint import StandInEndpoint

SERIALIZER = ComputeSerializer()


def double(x):
    return 2 * x


def boom():
    raise RuntimeError("kaboom")


class Api:
    def __init__(self, base: str, token: str | None):
        self.base = base
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def __call__(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return requests.request(method, self.base + path, headers=headers, timeout=30, **kwargs)


@pytest.fixture(params=["sqlite", "postgresql"])
def service(request, start_service):
    db_url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    return start_service(db_url=db_url)


@pytest.fixture
def alice(service) -> Api:
    return Api(service.url, service.token("alice"))


@pytest.fixture
def mallory(service) -> Api:
    return Api(service.url, service.token("mallory"))


def register_function(api: Api, fn) -> str:
    code = SERIALIZER.pack_buffers([SERIALIZER.serialize(fn)])
    response = api("POST", "/v3/functions", json={"function_name": fn.__name__, "function_code": code})
    assert response.status_code == 200, response.text
    return response.json()["function_uuid"]


def payload(*args, **kwargs) -> str:
    return SERIALIZER.pack_buffers([SERIALIZER.serialize(args), SERIALIZER.serialize(kwargs)])


def test_version_and_openapi_need_no_token(service):
    version = requests.get(f"{service.url}/v2/version", params={"service": "all"}).json()
    assert {"api", "min_sdk_version", "min_ep_version"} <= version.keys()
    document = requests.get(f"{service.url}/openapi.json").json()
    assert "/v3/endpoints/{endpoint_id}/submit" in document["paths"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic x"}])
def test_every_other_route_needs_a_valid_token(service, headers):
    response = requests.get(f"{service.url}/v2/endpoints", headers=headers)
    assert response.status_code == 401
    assert "token" in response.json()["error"] or "Authorization" in response.json()["error"]


def test_registration_returns_queue_info_and_reregistration_keeps_the_id(alice, broker_url):
    first = alice("POST", "/v3/endpoints", json={"endpoint_name": "ep", "display_name": "Mine"}).json()
    endpoint_id = first["endpoint_id"]
    assert first["task_queue_info"]["queue"] == f"{endpoint_id}.tasks"
    publish = first["result_queue_info"]["queue_publish_kwargs"]
    assert publish == {"exchange": "results", "routing_key": f"{endpoint_id}.results",
                       "mandatory": True, "properties": {"delivery_mode": 2}}
    assert first["heartbeat_queue_info"]["queue_publish_kwargs"]["routing_key"] == f"{endpoint_id}.heartbeats"
    again = alice("PUT", f"/v3/endpoints/{endpoint_id}", json={"endpoint_name": "ep"}).json()
    assert again["endpoint_id"] == endpoint_id
    with kombu.Connection(broker_url) as connection:  # the task queue really exists
        kombu.Queue(f"{endpoint_id}.tasks", no_declare=True).bind(connection.default_channel) \
            .queue_declare(passive=True)
    listed = alice("GET", "/v2/endpoints").json()
    assert [e["uuid"] for e in listed] == [endpoint_id]
    assert alice("GET", f"/v2/endpoints/{endpoint_id}").json()["name"] == "ep"


def test_another_identity_cannot_take_or_see_an_endpoint(alice, mallory):
    endpoint_id = alice("POST", "/v3/endpoints", json={"endpoint_name": "ep"}).json()["endpoint_id"]
    taken = mallory("PUT", f"/v3/endpoints/{endpoint_id}", json={"endpoint_name": "mine"})
    assert taken.status_code == 404  # as everything of another identity's: absent
    assert "alice" not in taken.text
    assert mallory("GET", f"/v2/endpoints/{endpoint_id}").status_code == 404
    assert mallory("DELETE", f"/v2/endpoints/{endpoint_id}").status_code == 404
    assert mallory("GET", "/v2/endpoints").json() == []


def test_locked_endpoint_refuses_registration(alice):
    endpoint_id = alice("POST", "/v3/endpoints", json={"endpoint_name": "ep"}).json()["endpoint_id"]
    assert alice("POST", f"/v3/endpoints/{endpoint_id}/lock").status_code == 200
    refused = alice("PUT", f"/v3/endpoints/{endpoint_id}", json={"endpoint_name": "ep"})
    assert refused.status_code == 423
    assert "locked" in refused.json()["error"]


def test_task_moves_from_waiting_to_success_or_failed(alice):
    registration = alice("POST", "/v3/endpoints", json={"endpoint_name": "ep"}).json()
    endpoint_id = registration["endpoint_id"]
    ok_fn, bad_fn = register_function(alice, double), register_function(alice, boom)
    submitted = alice("POST", f"/v3/endpoints/{endpoint_id}/submit",
                      json={"tasks": {ok_fn: [payload(21)], bad_fn: [payload()]}}).json()
    ok_task, bad_task = submitted["tasks"][ok_fn][0], submitted["tasks"][bad_fn][0]
    assert alice("GET", f"/v2/tasks/{ok_task}").json()["status"] == "waiting-for-ep"

    with StandInEndpoint(registration):
        deadline = time.monotonic() + 30
        for task in (bad_task, ok_task):
            while alice("GET", f"/v2/tasks/{task}").json()["status"] == "waiting-for-ep":
                assert time.monotonic() < deadline
                time.sleep(0.1)
    ok = alice("GET", f"/v2/tasks/{ok_task}").json()
    assert ok["status"] == "success" and SERIALIZER.deserialize(ok["result"]) == 42
    assert float(ok["completion_t"]) > 0
    bad = alice("GET", f"/v2/tasks/{bad_task}").json()
    assert bad["status"] == "failed" and "RuntimeError: kaboom" in bad["exception"]
    group = alice("GET", f"/v2/taskgroup/{submitted['task_group_id']}").json()
    assert sorted(t["id"] for t in group["tasks"]) == sorted([ok_task, bad_task])


def test_endpoint_status_follows_heartbeats(alice, broker_url):
    registration = alice("POST", "/v3/endpoints", json={"endpoint_name": "ep"}).json()
    endpoint_id = registration["endpoint_id"]
    assert alice("GET", f"/v2/endpoints/{endpoint_id}/status").json()["status"] == "offline"
    info = registration["heartbeat_queue_info"]["queue_publish_kwargs"]

    def beat(active: bool) -> None:
        report = messages.EPStatusReport(endpoint_id=uuid.UUID(endpoint_id),
                                         global_state={"active": active, "heartbeat_period": 30})
        with kombu.Connection(broker_url) as connection:
            connection.Producer().publish(messages.pack(report), exchange=info["exchange"],
                                          routing_key=info["routing_key"])

    def status_becomes(wanted: str) -> bool:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if alice("GET", f"/v2/endpoints/{endpoint_id}/status").json()["status"] == wanted:
                return True
            time.sleep(0.1)
        return False

    beat(True)
    assert status_becomes("online")
    beat(False)
    assert status_becomes("offline")


@pytest.mark.parametrize("method, path, body, status, phrase", [
    ("POST", "/v3/endpoints", "{not json", 422, "invalid request"),
    ("POST", "/v3/endpoints", {"endpoint_name": 5}, 422, "endpoint_name"),
    ("POST", "/v3/endpoints", {}, 422, "endpoint_name: Field required"),
    ("PUT", "/v3/endpoints/not-a-uuid", {"endpoint_name": "x"}, 422, "endpoint_id"),
    ("GET", f"/v2/tasks/{uuid.UUID(int=1)}", None, 404,
     "task 00000000-0000-0000-0000-000000000001 not found"),
    ("GET", f"/v2/functions/{uuid.UUID(int=2)}", None, 404, "function"),
    ("GET", f"/v2/taskgroup/{uuid.UUID(int=3)}", None, 404, "task group"),
    ("POST", f"/v3/endpoints/{uuid.UUID(int=4)}/submit", {"tasks": {}}, 404, "endpoint"),
    ("POST", "/v3/functions", {"function_name": "f", "function_code": "zz"}, 400, "packed buffer"),
    ("POST", "/v2/batch_status", {"task_ids": ["x"]}, 422, "task_ids"),
])
def test_bad_requests_get_a_4xx_naming_the_problem(alice, method, path, body, status, phrase):
    kwargs = {"data": body, "headers": {**alice.headers, "Content-Type": "application/json"}} \
        if isinstance(body, str) else {"json": body}
    response = requests.request(method, alice.base + path, timeout=30,
                                **({"headers": alice.headers} | kwargs))
    assert response.status_code == status, response.text
    assert phrase in response.json()["error"]


def test_submit_checks_payloads_and_function_ownership(alice, mallory):
    endpoint_id = alice("POST", "/v3/endpoints", json={"endpoint_name": "ep"}).json()["endpoint_id"]
    function_id = register_function(alice, double)
    bad = alice("POST", f"/v3/endpoints/{endpoint_id}/submit", json={"tasks": {function_id: ["3\nabc"]}})
    assert bad.status_code == 400 and "2 buffers" in bad.json()["error"]
    for empty in ({}, {function_id: []}):
        nothing = alice("POST", f"/v3/endpoints/{endpoint_id}/submit", json={"tasks": empty})
        assert nothing.status_code == 400 and "no task to submit" in nothing.json()["error"]
    theirs = register_function(mallory, double)
    foreign = alice("POST", f"/v3/endpoints/{endpoint_id}/submit", json={"tasks": {theirs: [payload(1)]}})
    assert foreign.status_code == 404 and f"function {theirs} not found" in foreign.json()["error"]


def test_oversized_body_is_refused(alice):
    response = alice("POST", "/v3/functions", data=b"x" * (10 * 1024 * 1024 + 1),
                     headers={**alice.headers, "Content-Type": "application/json"})
    assert response.status_code == 413
    assert "byte limit" in response.json()["error"]


def test_tokens_are_stored_hashed_and_schema_version_recorded(service):
    token = service.token("carol")
    url = service.db_url or f"sqlite:///{service.data_dir / 'service.db'}"
    engine = sa.create_engine(url)
    with engine.connect() as db:
        stored = [tuple(row) for row in db.execute(sa.text("SELECT token_sha256, identity FROM tokens"))]
        version = db.execute(sa.text("SELECT version FROM schema_version")).scalar()
    engine.dispose()
    assert all(token not in row[0] for row in stored)
    assert ("carol" in {row[1] for row in stored})
    assert version == SCHEMA_VERSION


def test_a_version_1_database_is_migrated_and_keeps_its_tokens(tmp_path):
    """Version 1 had no client identities and no token expiry."""
    url = f"sqlite:///{tmp_path / 'v1.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as db:
        db.execute(sa.text("CREATE TABLE schema_version (version INTEGER NOT NULL)"))
        db.execute(sa.text("INSERT INTO schema_version VALUES (1)"))
        db.execute(sa.text("CREATE TABLE tokens (token_sha256 VARCHAR(64) PRIMARY KEY, "
                           "identity VARCHAR(256) NOT NULL, created FLOAT NOT NULL)"))
        db.execute(sa.text("INSERT INTO tokens VALUES (:h, 'olduser', 0)"), {"h": hash_token("old-token")})
    engine.dispose()
    store = Store(url)
    assert store.identity_for_token("old-token") == "olduser"
    client_id, secret = store.create_client("robot")
    assert store.identity_for_client(client_id, secret) == "robot"
    assert store.identity_for_client(client_id, "wrong") is None
    expired = store.create_token("robot", lifetime_s=-1)
    assert store.identity_for_token(expired) is None
    with store.engine.connect() as db:
        assert db.execute(sa.text("SELECT version FROM schema_version")).scalar() == SCHEMA_VERSION
