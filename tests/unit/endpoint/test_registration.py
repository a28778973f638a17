"""Registration's answers, each turned into what the user reads and the exit code: a small
real HTTP server plays the service's answers that the local service never gives."""

from __future__ import annotations

import json
import uuid

import pytest

from compute_endpoint.endpoint.exit_codes import Exit
from compute_endpoint.endpoint.service_client import ServiceClient, ServiceError
from tests.canned_http import CannedService
from tests.conftest import free_port

ENDPOINT_ID = str(uuid.uuid4())
GOOD_ANSWER = {"endpoint_id": ENDPOINT_ID, "task_queue_info": {}, "result_queue_info": {},
               "heartbeat_queue_info": {}}


def register_at(url: str, *args):
    return ServiceClient(url, "tok").register(*args)


@pytest.fixture
def service():
    canned = CannedService()
    yield canned.url, canned.answers, canned.received
    canned.close()


def test_a_new_endpoint_is_posted_and_a_known_one_put_with_its_id(service):
    url, answers, received = service
    answers += [(200, json.dumps(GOOD_ANSWER).encode())] * 2
    assert register_at(url, "ep", None, "My EP", "engine: {}")["endpoint_id"] == ENDPOINT_ID
    assert register_at(url, "ep", uuid.UUID(ENDPOINT_ID), None, "engine: {}")["endpoint_id"] == ENDPOINT_ID
    first, second = received
    assert (first["method"], first["path"], second["method"], second["path"]) == \
        ("POST", "/v3/endpoints", "PUT", f"/v3/endpoints/{ENDPOINT_ID}")
    assert first["auth"] == "Bearer tok" and first["body"]["display_name"] == "My EP"
    assert first["body"]["metadata"]["endpoint_config"] == "engine: {}"
    assert "display_name" not in second["body"]


@pytest.mark.parametrize(("status", "body", "known", "says", "code"), [
    (401, b"{}", False, "log in again: globus-compute-endpoint login", Exit.NO_PERMISSION),
    (404, b"{}", True, "belongs to another identity", Exit.NO_PERMISSION),
    (403, b'{"error": "not yours"}', False, "refused the registration (403): not yours", Exit.NO_PERMISSION),
    (422, b"not json", False, "(422): not json", Exit.BAD_REQUEST),
    (503, b'{"error": "down"}', False, "(503): down", Exit.UNAVAILABLE),
    (200, b'{"endpoint_id": "x"}', False, "answered the registration without 'task_queue_info'", Exit.PROTOCOL),
    (200, b"[1]", False, "answered the registration without", Exit.PROTOCOL),
])
def test_each_refusal_says_what_happened_and_exits_by_sysexits(service, status, body, known, says, code):
    url, answers, _ = service
    answers.append((status, body))
    with pytest.raises(ServiceError) as refused:
        register_at(url, "ep", uuid.UUID(ENDPOINT_ID) if known else None, None, "")
    assert says in str(refused.value) and refused.value.exit_code == code


def test_an_id_other_than_the_one_asked_for_is_refused(service):
    url, answers, _ = service
    answers.append((200, json.dumps(GOOD_ANSWER).encode()))
    with pytest.raises(ServiceError, match="not the requested") as refused:
        register_at(url, "ep", uuid.uuid4(), None, "")
    assert refused.value.exit_code == Exit.SOFTWARE


def test_an_unreachable_service_is_worth_trying_again():
    with pytest.raises(ServiceError, match="cannot reach the Compute service") as refused:
        register_at(f"http://127.0.0.1:{free_port()}", "ep", None, None, "")
    assert refused.value.exit_code == Exit.TRY_AGAIN
