"""The Globus Compute SDK's serialization, byte-compatible with globus-compute-sdk 4.x.

Every serialized object is a str: a 3-character header (two characters and a newline)
naming the strategy, then its payload. Several such strings travel together as
``pack_buffers``: each prefixed by its length in characters and a newline.

This module is light (dill, stdlib) so it can run inside worker processes on compute
nodes that lack the endpoint's heavy dependencies.
"""

from __future__ import annotations

import codecs
import functools
import inspect
import json
import pickle
from collections.abc import Callable, Iterable
from typing import Any

import attrs
import dill


class SerializationError(ValueError):
    """Data that could not be (de)serialized; str() says which strategy failed and why."""


def pack_buffers(buffers: Iterable[str]) -> str:
    return "".join(f"{len(b)}\n{b}" for b in buffers)


def unpack_buffers(packed: str) -> list[str]:
    buffers = []
    rest = packed
    while rest:
        length_text, sep, rest = rest.partition("\n")
        if not sep:
            raise SerializationError("packed buffer is missing a length line")
        # ASCII digits only ("²".isdigit() is true), and no more than a 10 MiB body could need.
        if not (length_text.isascii() and length_text.isdigit() and len(length_text) <= 9):
            raise SerializationError(f"packed buffer has an invalid length {length_text[:20]!r}; "
                                     "expected a decimal number of characters")
        length = int(length_text)
        if len(rest) < length:
            raise SerializationError(f"packed buffer is truncated: {length} characters announced, "
                                     f"{len(rest)} left")
        buffers.append(rest[:length])
        rest = rest[length:]
    return buffers


# For these exact types dill writes what the C pickler writes, byte for byte, some 20
# times slower: a task's plain result need not pay for that.
_PLAIN_TYPES = frozenset({type(None), bool, int, float, str, bytes})


def _b64_dill(obj: object) -> str:
    if type(obj) in _PLAIN_TYPES:
        data = pickle.dumps(obj, protocol=dill.settings["protocol"])
    else:
        data = dill.dumps(obj)
    return codecs.encode(data, "base64").decode()


def _un_b64_dill(text: str) -> Any:
    return dill.loads(codecs.decode(text.encode(), "base64"))


@functools.lru_cache(maxsize=256)
def _compiled(source: str):
    """A task's function source, compiled once per worker: the same function comes again
    and again. Each task still runs it in a namespace of its own."""
    return compile(source, "<string>", "exec")


def _exec_named(name: str, source: str) -> Any:
    namespace: dict[str, Any] = {}
    exec(_compiled(source), namespace)  # the user's own function source: running it is the job
    return namespace[name]


@attrs.frozen
class Strategy:
    """One SDK strategy: its header, its SDK class name, whether it is for code."""

    header: str
    name: str
    for_code: bool
    dump: Callable[[Any], str] | None  # None: deserialize-only (deprecated)
    load: Callable[[str], Any]

    def serialize(self, obj: Any) -> str:
        if self.dump is None:
            raise SerializationError(f"{self.name} can no longer serialize")
        return self.header + self.dump(obj)

    def deserialize(self, payload: str) -> Any:
        if not payload.startswith(self.header):
            raise SerializationError(f"payload does not start with the {self.name} header")
        return self.load(payload[len(self.header):])


def _source_pair(getsource: Callable[[Any], str]) -> Callable[[Any], tuple[str, str]]:
    return lambda fn: (fn.__name__, getsource(fn))


_inspect_source = _source_pair(inspect.getsource)
_dill_source = _source_pair(lambda fn: dill.source.getsource(fn, lstrip=True))


def _load_combined(body: str) -> Any:
    """CombinedCode (10): ':'-joined id/payload pairs; the first that loads wins."""
    parts = body.split(":")
    errors = []
    for ident, payload in zip(parts[0::2], parts[1::2], strict=False):
        strategy = STRATEGIES_BY_HEADER.get(ident)
        if strategy is None:
            raise SerializationError(f"CombinedCode names an unknown strategy {ident!r}")
        try:
            return strategy.deserialize(ident + payload)
        except Exception as exc:
            errors.append(f"{strategy.name}: {exc}")
    raise SerializationError("no CombinedCode part could be loaded: " + "; ".join(errors))


def _combo(names: list[str]) -> tuple[Callable[[Any], str], Callable[[str], Any]]:
    """AllCodeStrategies / AllDataStrategies: pack_buffers of several serializations."""
    def dump(obj: Any) -> str:
        buffers = []
        for name in names:
            try:
                buffers.append(STRATEGIES_BY_NAME[name].serialize(obj))
            except Exception:
                continue
        if not buffers:
            raise SerializationError(f"none of {', '.join(names)} could serialize the object")
        return pack_buffers(buffers)

    def load(body: str) -> Any:
        errors = []
        for buffer in unpack_buffers(body):
            strategy = STRATEGIES_BY_HEADER.get(buffer[:3])
            try:
                if strategy is None:
                    raise SerializationError(f"unknown header {buffer[:3]!r}")
                return strategy.deserialize(buffer)
            except Exception as exc:
                errors.append(str(exc))
        raise SerializationError("no part could be loaded: " + "; ".join(errors))
    return dump, load


_STRATEGIES = [
    Strategy("00\n", "DillDataBase64", False, _b64_dill, _un_b64_dill),
    Strategy("11\n", "JSONData", False, json.dumps, json.loads),
    Strategy("01\n", "DillCode", True, _b64_dill, _un_b64_dill),
    Strategy("02\n", "PickleCode", True, None,
             lambda body: pickle.loads(codecs.decode(body.encode(), "base64"))),
    Strategy("03\n", "DillCodeTextInspect", True, lambda fn: _b64_dill(_inspect_source(fn)),
             lambda body: _exec_named(*_un_b64_dill(body))),
    Strategy("04\n", "DillCodeSource", True, lambda fn: _b64_dill(_dill_source(fn)),
             lambda body: _exec_named(*_un_b64_dill(body))),
    Strategy("st\n", "PureSourceTextInspect", True, lambda fn: ":".join(_inspect_source(fn)),
             lambda body: _exec_named(*body.split(":", 1))),
    Strategy("sd\n", "PureSourceDill", True, lambda fn: ":".join(_dill_source(fn)),
             lambda body: _exec_named(*body.split(":", 1))),
    Strategy("10\n", "CombinedCode", True, None, _load_combined),
    Strategy("12\n", "AllCodeStrategies", True,
             *_combo(["PureSourceTextInspect", "PureSourceDill", "DillCode"])),
    Strategy("13\n", "AllDataStrategies", False, *_combo(["JSONData", "DillDataBase64"])),
]
STRATEGIES_BY_HEADER = {s.header: s for s in _STRATEGIES}
STRATEGIES_BY_NAME = {s.name: s for s in _STRATEGIES}
DEFAULT_DATA = STRATEGIES_BY_NAME["DillDataBase64"]
DEFAULT_CODE = STRATEGIES_BY_NAME["DillCode"]


def strategy_from_path(import_path: str) -> Strategy:
    """The strategy an SDK import path names (``globus_compute_sdk.serialize.JSONData``)."""
    name = import_path.rpartition(".")[2]
    try:
        return STRATEGIES_BY_NAME[name]
    except KeyError:
        raise SerializationError(
            f"unknown serialization strategy {import_path!r}; known: {', '.join(STRATEGIES_BY_NAME)}"
        ) from None


def serialize(obj: Any) -> str:
    """Serialize as the SDK does by default: functions with DillCode, data with DillDataBase64."""
    return (DEFAULT_CODE if callable(obj) else DEFAULT_DATA).serialize(obj)


def serialize_from_list(obj: Any, import_paths: Iterable[str] | None) -> str:
    """The first of the requested strategies that works, as the SDK's result serializers do."""
    paths = list(import_paths or ())
    strategies = [strategy_from_path(p) for p in paths] or [DEFAULT_DATA, DEFAULT_CODE]
    errors = []
    for strategy in strategies:
        if strategy.for_code != callable(obj):
            errors.append(f"{strategy.name}: is a {'code' if strategy.for_code else 'data'} strategy")
            continue
        try:
            return strategy.serialize(obj)
        except Exception as exc:
            errors.append(f"{strategy.name}: {exc}")
    raise SerializationError("every strategy failed: " + "; ".join(errors))


def deserialize(payload: str) -> Any:
    strategy = STRATEGIES_BY_HEADER.get(payload[:3])
    if strategy is None:
        raise SerializationError(f"unknown serialization header {payload[:3]!r}")
    return strategy.deserialize(payload)


# A site's allowed_serializers (every engine's key, as the official's): which strategies a
# task's function and arguments may arrive in. The SDK's own wildcards stand for every code,
# or every data, strategy it can still select (not the deprecated PickleCode).
CODE_WILDCARD = "globus_compute_sdk.*Code"
DATA_WILDCARD = "globus_compute_sdk.*Data"
_SDK_MODULES = ("globus_compute_sdk.serialize", "globus_compute_sdk.serialize.concretes")
_SELECTABLE = [s for s in _STRATEGIES if s.name != "PickleCode"]


def parse_allowlist(values: Iterable[str]) -> frozenset[str]:
    """The names of the strategies an allowed_serializers list allows; SerializationError
    naming what is wrong: an unknown path, a wildcard mixed with strategies of its kind, or
    a list that does not allow at least one code and one data strategy (a task needs both)."""
    allowed: set[str] = set()
    wildcards = set()
    for value in values:
        if value in (CODE_WILDCARD, DATA_WILDCARD):
            wildcards.add(value)
            continue
        module, _, name = str(value).rpartition(".")
        strategy = STRATEGIES_BY_NAME.get(name)
        if module not in _SDK_MODULES or strategy is None or strategy not in _SELECTABLE:
            known = ", ".join(f"globus_compute_sdk.serialize.{s.name}" for s in _SELECTABLE)
            raise SerializationError(f"{value!r} is not a serialization strategy one may allow; accepted: {known}, "
                                     f"{CODE_WILDCARD}, {DATA_WILDCARD}")
        allowed.add(strategy.name)
    for wildcard in sorted(wildcards):
        for_code = wildcard == CODE_WILDCARD
        if any(STRATEGIES_BY_NAME[name].for_code == for_code for name in allowed):
            raise SerializationError(f"{wildcard!r} cannot be mixed with specific {'code' if for_code else 'data'} "
                                     "strategies: give one or the other")
        allowed.update(s.name for s in _SELECTABLE if s.for_code == for_code)
    if {STRATEGIES_BY_NAME[name].for_code for name in allowed} != {True, False}:
        raise SerializationError("allowed_serializers must allow at least one code and one data strategy (a task "
                                 f"needs both); got {', '.join(map(str, values)) or 'none'}")
    return frozenset(allowed)


def disallowed(buffers: list[str], allowed: frozenset[str]) -> str | None:
    """Why a task's serialized function and arguments may not be deserialized here, read
    from their headers alone (nothing is deserialized); None when every one is allowed."""
    for buffer in buffers:
        strategy = STRATEGIES_BY_HEADER.get(buffer[:3])
        if strategy is None or strategy.name in allowed:
            continue  # an unknown header fails on deserialization, saying so
        kind, what = ("Code", "function") if strategy.for_code else ("Data", "arguments")
        return (f"{kind} serializer {strategy.name} disabled by current configuration.\n"
                f"The current configuration requires the *{what}* to be serialized with one of the allowed "
                f"{kind} classes:\n\n    Allowed serializers: {', '.join(sorted(allowed))}")
    return None
