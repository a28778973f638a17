"""The messagepack envelope of Globus Compute, protocol version 1, as frozen attrs classes.

Wire form: one version byte ``0x01`` then compact UTF-8 JSON
``{"message_type": <name>, "data": {...}}``, byte-compatible with
globus-compute-common 1.0: fields in declaration order, UUIDs as strings, absent
optionals as ``null``. Unknown fields are ignored when reading (newer peers may add
some); missing or ill-typed required fields are a ``MessageError``.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, ClassVar, NewType

import attrs
import cattrs

VERSION_BYTE = b"\x01"
# The largest task or result the Globus Compute service accepts (and so the endpoint and the
# local service): a bigger task gets an error result, a bigger result is replaced by one.
MAX_MESSAGE_BYTES = 10 * 1024 * 1024

TASK_STATES = frozenset({
    "received", "waiting-for-ep", "waiting-for-nodes", "waiting-for-launch", "execution-start",
    "execution-end", "running", "success", "failed", "result-received", "result-enqueued",
    "action-provider-received", "action-provider-task-submitted",
    "action-provider-task-group-in-progress", "action-provider-task-group-completed",
    "action-provider-task-group-error",
})
ACTORS = frozenset({
    "worker", "manager", "interchange", "endpoint", "result-processor", "web-service",
    "action-provider",
})


# Free-form JSON objects (details, global_state) pass through as they are.
JsonObject = NewType("JsonObject", dict)


class MessageError(ValueError):
    """Bytes that are not a valid message; str() says what is wrong."""


def _one_of(allowed: frozenset[str]):
    def check(_instance: object, attribute: attrs.Attribute, value: str) -> None:
        if value not in allowed:
            raise ValueError(f"{attribute.name} {value!r} is not one of {sorted(allowed)}")
    return check


@attrs.frozen
class TaskTransition:
    message_type: ClassVar[str] = "task_transition"
    timestamp: int
    state: str = attrs.field(validator=_one_of(TASK_STATES))
    actor: str = attrs.field(validator=_one_of(ACTORS))


@attrs.frozen
class Task:
    message_type: ClassVar[str] = "task"
    task_id: uuid.UUID
    container_id: uuid.UUID | None = None
    container: JsonObject | None = None
    task_buffer: str = ""


@attrs.frozen
class ResultErrorDetails:
    code: str
    user_message: str


@attrs.frozen
class Result:
    message_type: ClassVar[str] = "result"
    task_id: uuid.UUID
    data: str
    details: JsonObject | None = None
    error_details: ResultErrorDetails | None = None
    task_statuses: list[TaskTransition] | None = None

    @property
    def is_error(self) -> bool:
        return self.error_details is not None


@attrs.frozen
class EPStatusReport:
    message_type: ClassVar[str] = "ep_status_report"
    endpoint_id: uuid.UUID
    global_state: JsonObject
    task_statuses: dict[str, list[TaskTransition]] = attrs.field(factory=dict)


Message = Task | Result | EPStatusReport | TaskTransition
MESSAGE_TYPES: dict[str, type] = {
    cls.message_type: cls for cls in (Task, Result, EPStatusReport, TaskTransition)
}


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter()
    conv.register_structure_hook(uuid.UUID, lambda v, _: uuid.UUID(v) if isinstance(v, str) else _bad(v))
    conv.register_unstructure_hook(uuid.UUID, str)
    conv.register_structure_hook(str, lambda v, _: v if isinstance(v, str) else _bad(v, "a string"))
    conv.register_structure_hook(int, lambda v, _: v if type(v) is int else _bad(v, "an integer"))
    conv.register_structure_hook(JsonObject, lambda v, _: v if isinstance(v, dict) else _bad(v, "an object"))
    return conv


def _bad(value: object, wanted: str = "a UUID string") -> Any:
    raise ValueError(f"expected {wanted}, got {type(value).__name__}")


_converter = _make_converter()


def canonical_uuid(value: object) -> str | None:
    """A header's UUID in its canonical text form; None for anything but a string that is one
    (a header is a string on the wire; anything else in it was not sent by a Compute service)."""
    if not isinstance(value, str):
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


def pack(message: Message) -> bytes:
    body = {"message_type": message.message_type, "data": _converter.unstructure(message)}
    return VERSION_BYTE + json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def unpack(buf: bytes) -> Message:
    """Decode one message; raise MessageError naming what is wrong."""
    if not buf[:1] == VERSION_BYTE:
        raise MessageError(f"unsupported protocol version byte {buf[:1]!r}; expected {VERSION_BYTE!r}")
    try:
        envelope = json.loads(buf[1:])
    except (UnicodeDecodeError, ValueError) as exc:  # ValueError: also an integer of thousands of digits
        raise MessageError(f"body is not UTF-8 JSON: {str(exc)[:200]}") from None
    except RecursionError:
        raise MessageError("body is JSON nested too deeply") from None
    if not isinstance(envelope, dict) or not isinstance(envelope.get("data"), dict):
        raise MessageError("envelope must be an object with 'message_type' and an object 'data'")
    cls: Any = MESSAGE_TYPES.get(envelope.get("message_type"))  # type: ignore[arg-type]
    if cls is None:
        raise MessageError(f"unknown message_type {envelope.get('message_type')!r}; "
                           f"accepted: {', '.join(MESSAGE_TYPES)}")
    data = dict(envelope["data"])
    if cls is EPStatusReport and "global_state" not in data and "ep_status_report" in data:
        data["global_state"] = data.pop("ep_status_report")
    known = {f.name for f in attrs.fields(cls)}
    try:
        return _converter.structure({k: v for k, v in data.items() if k in known}, cls)
    except Exception as exc:  # cattrs reports a group; flatten it to one readable line
        raise MessageError(f"invalid {cls.message_type} message: {_describe(exc)}") from None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, cattrs.errors.BaseValidationError):
        return "; ".join(
            f"{_field_of(inner)}{_describe(inner)}" for inner in exc.exceptions
        )
    if isinstance(exc, KeyError):
        return "missing required field"
    return str(exc)


def _field_of(exc: BaseException) -> str:
    for note in getattr(exc, "__notes__", ()):
        name = getattr(note, "name", None)
        if isinstance(note, cattrs.errors.AttributeValidationNote) and name:
            return f"{name}: "
    return ""
