"""schemathesis against the published OpenAPI document: no 5xx, responses as documented.

Bounded in examples per operation and derandomized, so the suite is quick and repeatable.
For a deeper hunt: SCHEMATHESIS_EXAMPLES=200 SCHEMATHESIS_RANDOM=1 pytest this file.
"""

from __future__ import annotations

import os

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    ignored_auth,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "25"))


@pytest.fixture
def api_schema(start_service):
    service = start_service()
    token = service.token("fuzzer")
    schema = schemathesis.openapi.from_url(f"{service.url}/openapi.json")
    schema.config.headers = {"Authorization": f"Bearer {token}"}
    yield schema
    # Registrations made by the fuzzer declared queues: delete them (their vhost goes too).
    headers = {"Authorization": f"Bearer {token}"}
    for endpoint in requests.get(f"{service.url}/v2/endpoints", headers=headers, timeout=30).json():
        requests.delete(f"{service.url}/v2/endpoints/{endpoint['uuid']}", headers=headers, timeout=30)


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=not os.environ.get("SCHEMATHESIS_RANDOM"),
          suppress_health_check=list(HealthCheck))
def test_api_never_errors_and_answers_as_documented(case):
    case.call_and_validate(
        checks=[not_a_server_error, status_code_conformance, content_type_conformance,
                response_schema_conformance, ignored_auth],
    )


# ------------------------------------------------------------------ bodies and headers at the limits

LIMIT = 10 * 1024 * 1024
ROUTES = [("POST", "/v3/endpoints"), ("POST", "/v3/functions"), ("POST", "/v2/batch_status"),
          ("PUT", "/v3/endpoints/00000000-0000-4000-8000-000000000001"),
          ("POST", "/v3/endpoints/00000000-0000-4000-8000-000000000001/submit"), ("POST", "/v2/oauth2/token")]


def _nested(depth: int) -> bytes:
    return b'{"endpoint_name": "x", "metadata": ' + b'{"a": ' * depth + b"1" + b"}" * depth + b"}"


def _bodies():
    from hypothesis import strategies as st

    json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50),
                               lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10),
                                                                                           inner, max_size=5),
                               max_leaves=30)
    return st.one_of(
        json_values.map(lambda v: __import__("json").dumps(v).encode()),
        st.binary(max_size=2000),  # not UTF-8, not JSON
        st.integers(1, 2000).map(_nested),  # deep nesting
        st.integers(4000, 20000).map(lambda n: b'{"task_ids": [' + b"9" * n + b"]}"),  # huge integers
        st.sampled_from([b"[" * 100_000, b'{"function_name": "f", "function_code": "\xc2\xb2\\nx"}',
                         b'{"function_name": "f", "function_code": "' + b"9" * 5000 + b'\\nx"}']),
    )


def _headers():
    from hypothesis import strategies as st

    header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
                          max_size=100)  # what HTTP/1.1 can carry in a header
    auth = st.one_of(st.just(None), header_text.map(lambda t: "Bearer " + t),
                     st.just("Bearer " + "x" * 8000), st.just("Basic !!!"), st.just("Basic " + "QUJD" * 100))
    content_type = st.sampled_from([None, "application/json", "text/plain", "application/x-www-form-urlencoded",
                                    "application/json; charset=latin-1", "multipart/form-data; boundary=x"])
    return st.tuples(auth, content_type)


@pytest.mark.slow
def test_bodies_and_headers_at_the_limits_get_a_clear_4xx_never_a_5xx(start_service):
    """Past what the OpenAPI document describes: bodies that are not JSON, nested thousands
    deep, with integers of thousands of digits, garbled packed buffers, at and over the size
    limit, sent whole or chunked; and odd Authorization and Content-Type headers."""
    from hypothesis import given
    from hypothesis import strategies as st

    service = start_service()
    token = service.token("limits")
    seen: dict[int, int] = {}

    @settings(max_examples=MAX_EXAMPLES * 8, deadline=None, derandomize=not os.environ.get("SCHEMATHESIS_RANDOM"),
              suppress_health_check=list(HealthCheck))
    @given(route=st.sampled_from(ROUTES), body=_bodies(), headers=_headers(), authorized=st.booleans(),
           chunked=st.booleans())
    def check(route, body, headers, authorized, chunked):
        auth, content_type = headers
        sent = {}
        if authorized:
            sent["Authorization"] = f"Bearer {token}"
        elif auth is not None:
            sent["Authorization"] = auth
        if content_type:
            sent["Content-Type"] = content_type
        data = iter([body[:len(body) // 2], body[len(body) // 2:]]) if chunked else body
        response = requests.request(route[0], service.url + route[1], data=data, headers=sent, timeout=60)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        assert response.status_code < 500, (route, body[:200], sent, response.text[:500])
        if response.status_code >= 400:
            assert response.headers["content-type"].startswith("application/json")
            assert response.json().get("error"), response.text[:200]

    check()
    for size, chunked in ((LIMIT, False), (LIMIT + 1, False), (LIMIT + 1, True)):
        body = b"x" * size
        data = iter([body[:size // 2], body[size // 2:]]) if chunked else body
        response = requests.post(f"{service.url}/v3/functions", data=data, timeout=60,
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        assert response.status_code == (413 if size > LIMIT else 422), (size, chunked, response.text[:200])
    assert 500 not in seen and len(seen) > 2, seen
