"""Commands the service sends a running endpoint on the endpoint's command queue: a small
JSON body, ``application/json``, stamped with the time it was sent. As the official
endpoint does with its commands, one older than MAX_AGE_S is dropped: a stop meant for a
run long gone must not stop the next one."""

from __future__ import annotations

import datetime
import json
import time

import attrs

CONTENT_TYPE = "application/json"
MAX_AGE_S = 180
MAX_COMMAND_BYTES = 64 * 1024
STOP_ENDPOINT = "stop_endpoint"


@attrs.frozen
class StopEndpoint:
    reason: str


@attrs.frozen
class Refused:
    """Not a command this endpoint acts on; ``reason`` says why."""

    reason: str


def stop_endpoint(reason: str, now: float | None = None) -> tuple[bytes, dict]:
    """The body and AMQP properties of a stop command."""
    body = json.dumps({"command": STOP_ENDPOINT, "reason": reason}).encode()
    return body, {"content_type": CONTENT_TYPE, "timestamp": int(now if now is not None else time.time())}


def read(body: bytes | str, properties: dict, now: float | None = None) -> StopEndpoint | Refused:
    if properties.get("content_type") != CONTENT_TYPE:
        return Refused(f"content type {properties.get('content_type')!r}, not {CONTENT_TYPE}")
    sent = _seconds(properties.get("timestamp"))
    if sent is None:
        return Refused("no timestamp")
    age = (now if now is not None else time.time()) - sent
    if age > MAX_AGE_S:
        return Refused(f"sent {age:.0f} s ago, over the {MAX_AGE_S} s a command stays valid")
    if len(body) > MAX_COMMAND_BYTES:
        return Refused(f"a body of {len(body)} bytes, over {MAX_COMMAND_BYTES}")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        return Refused(f"not JSON: {exc}")
    if not isinstance(data, dict):
        return Refused(f"a JSON {type(data).__name__}, not an object")
    if data.get("command") != STOP_ENDPOINT:
        return Refused(f"unknown command {str(data.get('command'))[:80]!r}; known: {STOP_ENDPOINT}")
    reason = data.get("reason")
    return StopEndpoint(reason[:500] if isinstance(reason, str) else "asked by the service")


def _seconds(stamp: object) -> float | None:
    """py-amqp gives an AMQP timestamp as a datetime; other clients as a number."""
    if isinstance(stamp, datetime.datetime):
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=datetime.timezone.utc)
        return stamp.timestamp()
    if isinstance(stamp, (int, float)) and not isinstance(stamp, bool):
        return float(stamp)
    return None
