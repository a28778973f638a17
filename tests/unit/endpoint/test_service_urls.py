"""Which Compute service an endpoint talks to, chosen as the official endpoint chooses it."""

from __future__ import annotations

import pytest

from compute_endpoint.endpoint.service_urls import (
    ENVIRONMENT_ENV,
    LOCAL_URL,
    SERVICE_URL_ENV,
    environment_name,
    is_hosted,
    service_url,
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    monkeypatch.delenv(SERVICE_URL_ENV, raising=False)
    monkeypatch.delenv(ENVIRONMENT_ENV, raising=False)


def test_production_by_default_and_a_named_environment_otherwise(monkeypatch):
    assert service_url() == "https://compute.api.globus.org"
    assert service_url("sandbox") == "https://compute.api.sandbox.globuscs.info"
    assert service_url("no-such-environment") == "https://compute.api.globus.org"
    monkeypatch.setenv(ENVIRONMENT_ENV, "preview")
    assert service_url() == "https://compute.api.preview.globus.org" and environment_name() == "preview"


def test_local_services_and_an_explicit_url_win_in_that_order(monkeypatch):
    assert service_url("sandbox", local_compute_services=True) == LOCAL_URL
    assert environment_name("sandbox", local_compute_services=True) == "local"
    monkeypatch.setenv(SERVICE_URL_ENV, "http://compute.example:8080/")
    assert service_url("sandbox", local_compute_services=True) == "http://compute.example:8080"


def test_hosted_means_globus_operated_over_https():
    assert is_hosted("https://compute.api.globus.org")
    assert is_hosted("https://compute.api.sandbox.globuscs.info")
    assert not is_hosted(LOCAL_URL)
    assert not is_hosted("http://compute.api.globus.org")  # not over TLS: not theirs
