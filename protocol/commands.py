"""Commands the service sends a running endpoint on the endpoint's command queue: a small
JSON body, ``application/json``, stamped with the time it was sent. As the official
endpoint does with its commands, one older than MAX_AGE_S is dropped: a stop meant for a
run long gone must not stop the next one.

Two commands: ``stop_endpoint`` (ours), and the official ``cmd_start_endpoint`` that a
template-capable endpoint (a manager) gets to start a user endpoint:
``{"command": "cmd_start_endpoint", "globus_identity_set": [{"sub": ...}], "kwargs": {"name",
"amqp_creds": {endpoint_id, task_queue_info, result_queue_info, heartbeat_queue_info},
"user_opts": {...}, "user_runtime": {...}}}``."""

from __future__ import annotations

import datetime
import json
import re
import time
import uuid

import attrs

from .json_depth import json_depth

CONTENT_TYPE = "application/json"
MAX_AGE_S = 180
MAX_COMMAND_BYTES = 64 * 1024
STOP_ENDPOINT = "stop_endpoint"
START_ENDPOINT = "cmd_start_endpoint"
# A user endpoint's name becomes a directory's: letters, digits, dot, dash, underscore.
USER_ENDPOINT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
QUEUE_INFO_KEYS = ("task_queue_info", "result_queue_info", "heartbeat_queue_info")
# What a user endpoint's options (the SDK's user_endpoint_config) may be: the service refuses
# at submit what the endpoint would refuse, so no task waits on a start that cannot happen.
MAX_USER_OPTIONS_BYTES = 32 * 1024  # leaves room in a command for the credentials
MAX_USER_OPTIONS_DEPTH = 16


@attrs.frozen
class StopEndpoint:
    reason: str


@attrs.frozen
class StartUserEndpoint:
    name: str
    endpoint_id: str
    amqp_creds: dict  # what registration answers for a classic endpoint, for this user endpoint
    user_opts: dict
    user_runtime: dict
    identities: frozenset[str]  # the submitting user's identity set (subs)
    effective_identity: str = ""  # the one of them that submitted
    # The identity set as sent (each identity's text fields: sub, username, email...), in its
    # order: what a multi-user endpoint's identity mapping reads.
    identity_set: tuple[tuple[tuple[str, str], ...], ...] = ()

    def identity_records(self) -> list[dict[str, str]]:
        """The identity set as records; from an older service that sent none, the subs alone."""
        return [dict(fields) for fields in self.identity_set] or [{"sub": sub} for sub in sorted(self.identities)]


@attrs.frozen
class CannotStart:
    """A start command for a user endpoint that cannot be carried out: its waiting tasks are
    failed with ``reason`` (through a status report with the user endpoint's credentials)."""

    name: str
    endpoint_id: str
    amqp_creds: dict
    reason: str


@attrs.frozen
class Refused:
    """Not a command this endpoint acts on; ``reason`` says why."""

    reason: str


def stop_endpoint(reason: str, now: float | None = None) -> tuple[bytes, dict]:
    """The body and AMQP properties of a stop command."""
    body = json.dumps({"command": STOP_ENDPOINT, "reason": reason}).encode()
    return body, {"content_type": CONTENT_TYPE, "timestamp": int(now if now is not None else time.time())}


def start_endpoint(name: str, amqp_creds: dict, user_opts: dict, user_runtime: dict | None,
                   identities: list[str], username: str = "", now: float | None = None) -> tuple[bytes, dict]:
    """The body and AMQP properties of a start command, as the official service sends it
    (the official manager requires the three identity fields). Each identity is a record as
    Globus Auth gives it (id, sub, username, status): identity mappers read those fields, and
    skip an identity whose status is not "used" or "private"."""
    body = json.dumps({"command": START_ENDPOINT, "globus_username": username,
                       "globus_effective_identity": identities[0] if identities else "",
                       "globus_identity_set": [{"id": sub, "sub": sub, "username": username, "status": "used"}
                                               for sub in identities],
                       "args": [], "kwargs": {"name": name, "amqp_creds": amqp_creds, "user_opts": user_opts,
                                              "user_runtime": user_runtime or {}}}).encode()
    return body, {"content_type": CONTENT_TYPE, "timestamp": int(now if now is not None else time.time())}


Command = StopEndpoint | StartUserEndpoint | CannotStart


@attrs.frozen
class OptionsProblem:
    """Why options cannot start a user endpoint; too_big: their size is what is wrong (the
    service answers that 413, the rest 400)."""

    text: str
    too_big: bool = False


def user_options_problem(options: object, what: str = "user_endpoint_config") -> OptionsProblem | None:
    """Why these options cannot start a user endpoint (too big, too deep, not valid Unicode,
    not a JSON object), or None."""
    if not isinstance(options, dict):
        return OptionsProblem(f"{what} must be a JSON object, got {type(options).__name__}")
    try:
        size = len(json.dumps(options, ensure_ascii=False).encode())
    except UnicodeEncodeError:
        return OptionsProblem(f"{what} holds a string that is not valid Unicode (a lone surrogate); send UTF-8 text")
    except (ValueError, RecursionError):
        return OptionsProblem(f"{what} is nested deeper than {MAX_USER_OPTIONS_DEPTH} levels")
    if size > MAX_USER_OPTIONS_BYTES:
        return OptionsProblem(f"{what} is {size} bytes of JSON, over the {MAX_USER_OPTIONS_BYTES} a user endpoint "
                              "accepts", too_big=True)
    if json_depth(options, MAX_USER_OPTIONS_DEPTH, scalars_count=False) > MAX_USER_OPTIONS_DEPTH:
        return OptionsProblem(f"{what} is nested deeper than {MAX_USER_OPTIONS_DEPTH} levels")
    return None


def read(body: bytes | str, properties: dict, now: float | None = None) -> Command | Refused:
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
    except RecursionError:
        return Refused("JSON nested too deep to read")
    if not isinstance(data, dict):
        return Refused(f"a JSON {type(data).__name__}, not an object")
    if data.get("command") == START_ENDPOINT:
        return _start(data)
    if data.get("command") != STOP_ENDPOINT:
        return Refused(f"unknown command {str(data.get('command'))[:80]!r}; known: {STOP_ENDPOINT}, {START_ENDPOINT}")
    reason = data.get("reason")
    return StopEndpoint(reason[:500] if isinstance(reason, str) else "asked by the service")


def _start(data: dict) -> StartUserEndpoint | CannotStart | Refused:
    kwargs = data.get("kwargs")
    if not isinstance(kwargs, dict):
        return Refused("a start command without kwargs")
    name, creds = kwargs.get("name"), kwargs.get("amqp_creds")
    if not isinstance(name, str) or not USER_ENDPOINT_NAME.fullmatch(name):
        return Refused(f"a user endpoint name must be letters, digits, '.', '-' or '_' (1 to 128), "
                       f"got {str(name)[:80]!r}")
    if not isinstance(creds, dict) or not all(isinstance(creds.get(key), dict) for key in QUEUE_INFO_KEYS):
        return Refused(f"amqp_creds must hold {', '.join(QUEUE_INFO_KEYS)}")
    try:
        endpoint_id = str(uuid.UUID(str(creds.get("endpoint_id"))))
    except ValueError:
        return Refused(f"amqp_creds.endpoint_id {str(creds.get('endpoint_id'))[:80]!r} is not a UUID")
    options, runtime = kwargs.get("user_opts") or {}, kwargs.get("user_runtime") or {}
    problem = user_options_problem(options, "user_opts") or user_options_problem(runtime, "user_runtime")
    if problem:
        return CannotStart(name, endpoint_id, creds, problem.text)
    identity_set = [one for one in (data.get("globus_identity_set") or [])[:MAX_IDENTITIES]
                     if isinstance(one, dict) and one.get("sub")]
    identities = frozenset(str(one.get("sub")) for one in identity_set)
    effective = data.get("globus_effective_identity")
    return StartUserEndpoint(name, endpoint_id, creds, options, runtime, identities,
                             effective if isinstance(effective, str) and effective in identities else "",
                             tuple(_identity_fields(one) for one in identity_set))


MAX_IDENTITIES = 64  # linked identities of one Globus account: a handful in practice
MAX_IDENTITY_FIELD = 1024


def _identity_fields(identity: dict) -> tuple[tuple[str, str], ...]:
    """An identity's text fields, each bounded: what mappers match on, nothing else."""
    return tuple((key, value) for key, value in identity.items()
                 if isinstance(key, str) and isinstance(value, str) and len(value) <= MAX_IDENTITY_FIELD)


def _seconds(stamp: object) -> float | None:
    """py-amqp gives an AMQP timestamp as a datetime; other clients as a number."""
    if isinstance(stamp, datetime.datetime):
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=datetime.timezone.utc)
        return stamp.timestamp()
    if isinstance(stamp, (int, float)) and not isinstance(stamp, bool):
        return float(stamp)
    return None
