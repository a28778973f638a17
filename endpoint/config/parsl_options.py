"""Options that Parsl's own classes take (providers, launchers, address finders,
HighThroughputExecutor), checked against their signatures without building them, so a
misspelt option is found at load time with the accepted ones named."""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Mapping
from typing import Any, Union

import attrs

from .model import ADDRESS_FUNCTIONS, HTEX_NOT_FROM_YAML, GlobusComputeEngineConfig, GlobusMPIEngineConfig
from .values import ConfigValueError, did_you_mean, type_name


def check_parsl_options(module: str, what: str, kind: object, options: dict, at: tuple) -> None:
    """Check options against the named Parsl class's constructor, without building it."""
    import importlib

    names = sorted({n for n in getattr(importlib.import_module(module), "__all__", ()) if n[0].isupper()})
    if not isinstance(kind, str) or kind not in names:
        raise ConfigValueError(
            f"unknown {what} type {kind!r}; accepted: {', '.join(names)}" + did_you_mean(kind, names),
            at + ("type",),
        )
    cls = getattr(importlib.import_module(module), kind)
    for key, val in options.items():
        if key == "launcher" and what == "provider":
            if not isinstance(val, Mapping):
                raise ConfigValueError("expected a mapping with a launcher 'type'", at + (key,))
            launcher = dict(val)
            kind_of_launcher = launcher.pop("type", None)
            check_parsl_options("parsl.launchers", "launcher", kind_of_launcher, launcher, at + (key,))
            options = {k: v for k, v in options.items() if k != "launcher"}
    check_signature(kind, cls.__init__, options, at)


def check_signature(owner: str, function, options: Mapping[str, Any], at: tuple,
                     excluded: tuple[str, ...] = ("self",), also_accepted: tuple[str, ...] = ()) -> None:
    """Each option must be a parameter of function (or also_accepted), of a fitting type
    where the parameter's type is a plain one; required parameters must be given."""
    signature = inspect.signature(function)
    params = {n: p for n, p in signature.parameters.items()
              if n not in excluded and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    try:
        hints = typing.get_type_hints(function)
    except Exception:  # a Parsl class's own annotations may not resolve; names are still checked
        hints = {}
    accepted = sorted(set(params) | set(also_accepted))
    for key, val in options.items():
        if key in also_accepted:
            continue
        if key not in params:
            raise ConfigValueError(
                f"{owner} has no option {key!r}" + did_you_mean(key, accepted)
                + f"; accepted: {', '.join(accepted)}", at + (key,)
            )
        problem = simple_type_mismatch(hints.get(key) or hint_from_default(params[key]), val)
        if problem:
            raise ConfigValueError(f"{owner} option {key}: {problem}", at + (key,))
    missing = [n for n, p in params.items() if p.default is p.empty and n not in options]
    if missing:
        raise ConfigValueError(f"{owner} needs {', '.join(missing)}", at)


def hint_from_default(param: inspect.Parameter) -> object:
    """Unannotated Parsl options (LocalProvider's) are typed by their default: 1 means a number."""
    default = param.default
    if isinstance(default, bool):
        return bool
    if isinstance(default, (int, float)):
        return float
    if isinstance(default, str):
        return str
    return None


_SIMPLE_TYPES = {int: "an integer", float: "a number", str: "a string", bool: "a boolean"}


def simple_type_mismatch(hint: object, value: object) -> str | None:
    """Say what is wrong when the hint is a plain scalar type (or Optional of one)."""
    is_union = typing.get_origin(hint) in (Union, types.UnionType)
    allowed = typing.get_args(hint) if is_union else (hint,)
    if not all(a in _SIMPLE_TYPES or a is type(None) for a in allowed):
        return None  # complex hints are the provider's own business when it is built
    for a in allowed:
        if a is type(None) and value is None:
            return None
        if a is bool and type(value) is bool:
            return None
        if a is float and type(value) in (int, float):
            return None
        if a in (int, str) and type(value) is a:
            return None
    wanted = " or ".join(_SIMPLE_TYPES.get(a, "null") for a in allowed)
    return f"expected {wanted}, got {type_name(value)} ({value!r})"


def structure_address(value: object, _: object) -> str | dict:
    if isinstance(value, str) and value.strip():
        return value.strip()
    if not isinstance(value, Mapping):
        raise ConfigValueError(
            f"expected an address (a string) or a mapping naming one of Parsl's address finders "
            f"({', '.join(ADDRESS_FUNCTIONS)}), got {type_name(value)} ({value!r})")
    options = dict(value)
    kind = options.pop("type", None)
    if kind not in ADDRESS_FUNCTIONS:
        raise ConfigValueError(f"unknown address finder {kind!r}; accepted: {', '.join(ADDRESS_FUNCTIONS)}"
                               + did_you_mean(kind, ADDRESS_FUNCTIONS), ("type",))
    import parsl.addresses

    check_signature(kind, getattr(parsl.addresses, kind), options, ())
    return {"type": kind, **options}


def engine_fields(cls: type) -> set[str]:
    return {f.name for f in attrs.fields(cls)} - {"executor_options"}


def split_executor_options(value: Mapping) -> dict:
    """GlobusComputeEngine's or GlobusMPIEngine's own options, with every other key checked
    against Parsl's HighThroughputExecutor or MPIExecutor and kept in executor_options (as
    the official engines pass them)."""
    from parsl.executors import HighThroughputExecutor, MPIExecutor

    if value.get("type") == "GlobusMPIEngine":
        return _split(value, GlobusMPIEngineConfig, "GlobusMPIEngine", MPIExecutor.__init__, HTEX_NOT_FROM_YAML)
    return _split(value, GlobusComputeEngineConfig, "GlobusComputeEngine", HighThroughputExecutor.__init__,
                  HTEX_NOT_FROM_YAML)


# The pools' own arguments that are Python objects, or that the engine sets itself.
POOL_NOT_FROM_YAML = ("self", "initializer", "initargs")
START_METHODS = ("spawn", "forkserver", "fork")


def split_pool_options(value: Mapping, config_class: type) -> dict:
    """ThreadPoolEngine's and ProcessPoolEngine's own options, with every other key checked
    against the standard library executor's signature and kept in executor_options, as the
    official engines pass them on (``thread_name_prefix``, ``mp_context``, ``max_tasks_per_child``)."""
    import concurrent.futures

    name = config_class.__name__.removesuffix("Config")
    executor = (concurrent.futures.ThreadPoolExecutor if name == "ThreadPoolEngine"
                else concurrent.futures.ProcessPoolExecutor)
    split = _split(value, config_class, name, executor.__init__, POOL_NOT_FROM_YAML)
    options = split.get("executor_options", {})
    method = options.get("mp_context")
    if method is not None and method not in START_METHODS:
        raise ConfigValueError(f"mp_context must name a start method: {', '.join(START_METHODS)}; got {method!r}"
                               + did_you_mean(method, START_METHODS), ("mp_context",))
    per_child = options.get("max_tasks_per_child")
    if per_child is not None and not (type(per_child) is int and per_child > 0):
        raise ConfigValueError(f"max_tasks_per_child: expected a positive integer, got {type_name(per_child)} "
                               f"({per_child!r})", ("max_tasks_per_child",))
    if method == "fork" and per_child:
        raise ConfigValueError("max_tasks_per_child needs mp_context spawn or forkserver, not fork",
                               ("max_tasks_per_child",))
    return split


def _split(value: Mapping, config_class: type, owner: str, executor_init, not_from_yaml: tuple[str, ...]) -> dict:
    own = engine_fields(config_class)
    extra = {k: v for k, v in value.items() if k not in own}
    if not extra:
        return dict(value)
    check_signature(owner, executor_init, extra, (), excluded=not_from_yaml + tuple(own),
                    also_accepted=tuple(sorted(own)))
    return {**{k: v for k, v in value.items() if k in own}, "executor_options": extra}
