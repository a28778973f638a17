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
