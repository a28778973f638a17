"""The config's value types: strict scalars (``"5"`` is not a number), bounded numbers,
sizes in bytes, port ranges, choices with "did you mean", and what each error says."""

from __future__ import annotations

import difflib
import re
from typing import Any


class ConfigValueError(ValueError):
    """A value that is the right type but not accepted; ``subpath`` refines where."""

    def __init__(self, message: str, subpath: tuple[str | int, ...] = ()):
        super().__init__(message)
        self.subpath = subpath



def type_name(value: object) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a mapping", type(None): "null"}.get(type(value), type(value).__name__)


def strict(expected: type, description: str):
    def structure(value: object, _: object) -> Any:
        ok = type(value) is expected or (expected is float and type(value) is int)
        if not ok:
            raise ConfigValueError(f"expected {description}, got {type_name(value)} ({value!r})")
        return expected(value)
    return structure


def bounded(base: str, check, rule: str):
    def structure(value: object, _: object) -> Any:
        kind = int if base == "int" else float
        value = strict(kind, "an integer" if base == "int" else "a number")(value, None)
        if not check(value):
            raise ConfigValueError(f"expected {rule}, got {value!r}")
        return value
    return structure


BYTE_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "kib": 2**10, "m": 10**6, "mb": 10**6, "mib": 2**20,
              "g": 10**9, "gb": 10**9, "gib": 2**30}
MIN_BYTE_SIZE = 2**20


def structure_byte_size(value: object, _: object) -> int:
    """A positive number of bytes, at least 1 MiB: an integer, or a number and a unit."""
    accepted = ('a number of bytes of at least 1 MiB: an integer, or a number and a unit '
                '(KB, MB, GB, KiB, MiB, GiB), such as "512 MiB"')
    if type(value) is int:
        size = value
    elif isinstance(value, str) and (match := re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", value)) \
            and match.group(2).lower() in BYTE_UNITS:
        size = int(float(match.group(1)) * BYTE_UNITS[match.group(2).lower()])
    else:
        raise ConfigValueError(f"expected {accepted}, got {type_name(value)} ({value!r})")
    if size < MIN_BYTE_SIZE:
        raise ConfigValueError(f"expected {accepted}, got {value!r}")
    return size


def structure_port_range(value: Any, _: object) -> tuple[int, int]:
    ports_ok = (isinstance(value, list) and len(value) == 2
                and all(type(p) is int and 0 < p < 65536 for p in value))
    if not ports_ok or value[0] > value[1]:
        raise ConfigValueError(
            f"expected [low, high], two ports from 1 to 65535 with low <= high, got {value!r}"
        )
    return (value[0], value[1])


def one_of(choices: tuple):
    def structure(value: object, _: object) -> Any:
        if value not in choices or type(value) is bool:
            raise ConfigValueError(
                f"{value!r} is not accepted; accepted values: {', '.join(map(str, choices))}"
                + did_you_mean(value, choices)
            )
        return value
    return structure


def did_you_mean(word: object, choices) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def structure_accelerators(value: object, _: object) -> int | list[str]:
    if type(value) is int and value >= 0:
        return value
    if isinstance(value, list):
        for index, name in enumerate(value):
            if type(name) is not str:
                raise ConfigValueError(f"expected a string, got {type_name(name)} ({name!r})", (index,))
        return list(value)
    raise ConfigValueError(f"expected a number of accelerators or a list of their names, got "
                           f"{type_name(value)} ({value!r})")


def structure_uuid(value: object, _: object) -> str:
    import uuid

    if isinstance(value, str):
        try:
            return str(uuid.UUID(value))
        except ValueError:
            pass
    raise ConfigValueError(f"expected a UUID (such as 4b116d3c-1703-4f8f-9f6f-39921e5864df), "
                           f"got {type_name(value)} ({value!r})")
