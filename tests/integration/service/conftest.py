"""Fixtures of the service's integration tests."""

from __future__ import annotations

import collections
import threading

import pytest


@pytest.fixture
def deliveries_to_the_sdk(monkeypatch):
    """Every Result message the SDK's result watcher receives, by task id."""
    from globus_compute_common import messagepack
    from globus_compute_sdk.sdk.executor import _ResultWatcher

    counted: collections.Counter = collections.Counter()
    lock = threading.Lock()
    original = _ResultWatcher._on_message

    def counting(self, channel, basic_deliver, props, body):
        try:
            task_id = str(messagepack.unpack(body).task_id)
        except Exception:
            task_id = "undecodable"
        with lock:
            counted[task_id] += 1
        return original(self, channel, basic_deliver, props, body)

    monkeypatch.setattr(_ResultWatcher, "_on_message", counting)
    return counted
