"""The service's commands to an endpoint: what is acted on, and what is refused and why."""

from __future__ import annotations

import datetime
import json

import pytest

from compute_endpoint.protocol import commands


def test_a_stop_command_reads_back_with_its_reason():
    body, properties = commands.stop_endpoint("asked by alice", now=1000.0)
    assert commands.read(body, properties, now=1010.0) == commands.StopEndpoint("asked by alice")
    # py-amqp hands the timestamp over as a datetime
    stamped = dict(properties, timestamp=datetime.datetime.fromtimestamp(1000, datetime.timezone.utc))
    assert commands.read(body, stamped, now=1010.0) == commands.StopEndpoint("asked by alice")


@pytest.mark.parametrize(("body", "properties", "why"), [
    (b"{}", {"content_type": "text/plain", "timestamp": 1000}, "content type 'text/plain'"),
    (b"{}", {"content_type": "application/json"}, "no timestamp"),
    (b'{"command": "stop_endpoint"}', {"content_type": "application/json", "timestamp": 700},
     "over the 180 s a command stays valid"),
    (b"\xff\xfe", {"content_type": "application/json", "timestamp": 1000}, "not JSON"),
    (b"[1, 2]", {"content_type": "application/json", "timestamp": 1000}, "a JSON list, not an object"),
    (b'{"command": "rm -rf"}', {"content_type": "application/json", "timestamp": 1000}, "unknown command 'rm -rf'"),
    (json.dumps({"command": "stop_endpoint", "pad": "x" * 70000}).encode(),
     {"content_type": "application/json", "timestamp": 1000}, "over 65536"),
])
def test_anything_else_is_refused_with_the_reason(body, properties, why):
    refused = commands.read(body, properties, now=1000.0)
    assert isinstance(refused, commands.Refused) and why in refused.reason
