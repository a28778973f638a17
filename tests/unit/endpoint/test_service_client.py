"""The CLI's calls to the service besides registration (test_registration.py): the routes
and what each failure says."""

from __future__ import annotations

import pytest

from compute_endpoint.endpoint.exit_codes import Exit
from compute_endpoint.endpoint.service_client import ServiceClient, ServiceError
from tests.canned_http import CannedService
from tests.conftest import free_port

ENDPOINT = "0b1f0000-0000-4000-8000-000000000001"


@pytest.fixture
def service():
    canned = CannedService()
    yield canned
    canned.close()


def test_each_call_goes_to_its_route_with_the_token(service):
    for body in ({"status": "online"}, {"lock_expiration": 1}, {"result": 302}):
        service.answer(200, body)
    client = ServiceClient(service.url + "/", "tok")
    assert client.endpoint_status(ENDPOINT) == {"status": "online"}
    assert client.lock_endpoint(ENDPOINT) == {"lock_expiration": 1}
    assert client.delete_endpoint(ENDPOINT) == {"result": 302}
    assert [(r["method"], r["path"]) for r in service.received] == [
        ("GET", f"/v2/endpoints/{ENDPOINT}/status"), ("POST", f"/v3/endpoints/{ENDPOINT}/lock"),
        ("DELETE", f"/v2/endpoints/{ENDPOINT}")]
    assert {r["auth"] for r in service.received} == {"Bearer tok"}


@pytest.mark.parametrize(("status", "body", "says", "code"), [
    (401, {}, "log in again", Exit.NO_PERMISSION),
    (404, {"error": "endpoint not found"}, "answered 404: endpoint not found", Exit.NO_PERMISSION),
    (503, {"error": "broker down"}, "answered 503: broker down", Exit.UNAVAILABLE),
    (500, b"<html>oops", "answered 500: <html>oops", Exit.UNAVAILABLE),
    (200, b"not json", "with no JSON", Exit.PROTOCOL),
])
def test_failures_say_what_the_service_answered(service, status, body, says, code):
    service.answer(status, body)
    with pytest.raises(ServiceError) as failed:
        ServiceClient(service.url, "tok").delete_endpoint(ENDPOINT)
    assert says in str(failed.value) and failed.value.exit_code == code
    assert failed.value.status == (status if status >= 400 else None)


def test_no_answer_at_all_is_worth_trying_again():
    with pytest.raises(ServiceError) as failed:
        ServiceClient(f"http://127.0.0.1:{free_port()}", "tok").lock_endpoint(ENDPOINT)
    assert failed.value.unreachable and failed.value.exit_code == Exit.TRY_AGAIN
