"""Fixtures of the integration tests."""

from __future__ import annotations

import pytest

from tests.endpoint_harness import EndpointHarness


@pytest.fixture
def make_endpoint(start_service, tmp_path):
    """Start real endpoints (CLI, daemon, tree) against a real service; stopped, and
    anything left killed, at the end of the test."""
    harnesses = []

    def make(config_text: str) -> EndpointHarness:
        harness = EndpointHarness(start_service(), tmp_path / f"gc{len(harnesses)}", "ep", config_text)
        harnesses.append(harness)
        harness.start()
        return harness

    yield make
    for harness in harnesses:
        harness.cli("stop", harness.name, "--timeout", "10")
        harness.kill_everything()
