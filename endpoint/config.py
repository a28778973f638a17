"""The endpoint's config.yaml as frozen attrs classes, read with one strict cattrs converter.

A bad file is reported once, before anything starts: the file, the key path, the line
and what would have been accepted. Values are never coerced (``"5"`` is not a number),
so what the user wrote is what runs.
"""

from __future__ import annotations

import difflib
import inspect
import re
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, NewType, Union

import attrs
import cattrs
import yaml
from cattrs.errors import (
    AttributeValidationNote,
    BaseValidationError,
    ForbiddenExtraKeysError,
    IterableValidationNote,
)

AMQP_PORTS = (443, 5671, 5672)
CONTAINER_TYPES = ("docker", "podman", "podman-hpc", "apptainer", "singularity", "custom", "None")
IMAGE_CONTAINER_TYPES = ("docker", "podman", "podman-hpc", "apptainer", "singularity")
# Parsl's address finders, by the name a config gives as `address: {type: NAME, ...}`.
ADDRESS_FUNCTIONS = ("address_by_interface", "address_by_hostname", "address_by_route", "address_by_query")
# Parsl's scaling strategies; "none" (or null) keeps the blocks as they are.
STRATEGIES = ("simple", "htex_auto_scale", "none")
# HighThroughputExecutor arguments that are Python objects and cannot come from YAML,
# and those the engine sets itself.
HTEX_NOT_FROM_YAML = ("self", "provider", "manager_selector", "block_error_handler",
                      "remote_monitoring_radio", "storage_access")
CUSTOM_CONTAINER_FIELDS = ("{EXECUTOR_RUNDIR}", "{EXECUTOR_LAUNCH_CMD}")

DEFAULT_CONFIG_TEMPLATE = """\
amqp_port: 443
display_name: {display_name}
engine:
  type: GlobusComputeEngine
  provider:
    type: LocalProvider
    init_blocks: 1
    max_blocks: 1
    min_blocks: 0
"""


def default_config_text(display_name: str | None = None) -> str:
    """The documented default config.yaml, with the display name when one is given."""
    shown = "null" if display_name is None else yaml.safe_dump(display_name).splitlines()[0]
    return DEFAULT_CONFIG_TEMPLATE.format(display_name=shown)


PositiveInt = NewType("PositiveInt", int)
NonNegativeInt = NewType("NonNegativeInt", int)
PositiveFloat = NewType("PositiveFloat", float)
AmqpPort = NewType("AmqpPort", int)
ContainerType = NewType("ContainerType", str)
PortRange = NewType("PortRange", tuple)
Address = NewType("Address", object)  # an address string, or {type: <Parsl address finder>, ...}
Strategy = NewType("Strategy", str)
Accelerators = NewType("Accelerators", object)  # a count, or a list of device names
ByteSize = NewType("ByteSize", int)  # a number of bytes, or a string such as "512 MiB" or "2GB"


class ConfigValueError(ValueError):
    """A value that is the right type but not accepted; ``subpath`` refines where."""

    def __init__(self, message: str, subpath: tuple[str | int, ...] = ()):
        super().__init__(message)
        self.subpath = subpath


@attrs.frozen
class ProviderConfig:
    """A Parsl execution provider by class name, with options checked against its signature."""

    type: str = "LocalProvider"
    options: Mapping[str, Any] = attrs.field(factory=dict)


def _default_provider() -> ProviderConfig:
    return ProviderConfig("LocalProvider", {"init_blocks": 1, "max_blocks": 1, "min_blocks": 0})


@attrs.frozen
class ThreadPoolEngineConfig:
    type: Literal["ThreadPoolEngine"] = "ThreadPoolEngine"
    max_workers: PositiveInt | None = None
    max_retries_on_system_failure: NonNegativeInt = NonNegativeInt(0)


@attrs.frozen
class ProcessPoolEngineConfig:
    type: Literal["ProcessPoolEngine"] = "ProcessPoolEngine"
    max_workers: PositiveInt | None = None
    max_retries_on_system_failure: NonNegativeInt = NonNegativeInt(0)


@attrs.frozen
class JobStatusConfig:
    """How often the engine looks at its blocks, and how long an idle block lives."""

    strategy_period: PositiveFloat = PositiveFloat(5.0)
    max_idletime: PositiveFloat = PositiveFloat(120.0)


@attrs.frozen
class GlobusComputeEngineConfig:
    """Parsl's HighThroughputExecutor with a provider, as the official engine exposes it.

    The options below are checked here; any other HighThroughputExecutor argument is
    accepted too, checked against HTEX's own signature, and kept in ``executor_options``.
    """

    type: Literal["GlobusComputeEngine"] = "GlobusComputeEngine"
    provider: ProviderConfig = attrs.field(factory=_default_provider)
    label: str | None = None
    # None: the interchange listens on every interface and workers try every address of
    # this host, so pools on compute nodes reach it over the cluster network.
    address: Address | None = None
    loopback_address: str = "127.0.0.1"
    # CurveZMQ between the interchange and the worker pools; off only by choice.
    encrypted: bool = True
    strategy: Strategy | None = Strategy("simple")
    run_in_sandbox: bool = False  # each task runs in a fresh directory of working_dir
    working_dir: str = "tasks_working_dir"  # relative to the endpoint's directory
    max_workers_per_node: PositiveInt | None = None
    cores_per_worker: PositiveFloat = PositiveFloat(1.0)
    mem_per_worker: PositiveFloat | None = None
    available_accelerators: Accelerators | None = None
    prefetch_capacity: NonNegativeInt = NonNegativeInt(0)
    heartbeat_period: PositiveInt = PositiveInt(30)
    heartbeat_threshold: PositiveInt = PositiveInt(120)
    worker_port_range: PortRange | None = None
    interchange_port_range: PortRange | None = None
    worker_debug: bool = False
    max_retries_on_system_failure: NonNegativeInt = NonNegativeInt(0)
    job_status_kwargs: JobStatusConfig = attrs.field(factory=JobStatusConfig)
    container_type: ContainerType | None = None
    container_uri: str | None = None
    container_cmd_options: str | None = None
    executor_options: Mapping[str, Any] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        kind = self.container_type
        if kind in IMAGE_CONTAINER_TYPES and not self.container_uri:
            raise ConfigValueError(
                f"container_type {kind} needs container_uri (the image name or .sif path)",
                ("container_uri",),
            )
        if kind == "custom":
            template = self.container_cmd_options or ""
            missing = [f for f in CUSTOM_CONTAINER_FIELDS if f not in template]
            if missing:
                raise ConfigValueError(
                    "container_type custom needs container_cmd_options as a template "
                    f"containing {' and '.join(CUSTOM_CONTAINER_FIELDS)}; missing {', '.join(missing)}",
                    ("container_cmd_options",),
                )


# typing.Union, not `|`: cattrs dispatches its structure hook on this exact object.
EngineConfig = Union[ThreadPoolEngineConfig, ProcessPoolEngineConfig, GlobusComputeEngineConfig]  # noqa: UP007
ENGINE_TYPES: dict[str, type] = {
    "GlobusComputeEngine": GlobusComputeEngineConfig,
    "ThreadPoolEngine": ThreadPoolEngineConfig,
    "ProcessPoolEngine": ProcessPoolEngineConfig,
}


@attrs.frozen
class EndpointConfig:
    engine: EngineConfig
    display_name: str | None = None
    amqp_port: AmqpPort | None = None
    heartbeat_period: PositiveInt = PositiveInt(30)
    endpoint_setup: str | None = None
    endpoint_teardown: str | None = None
    environment: str | None = None
    local_compute_services: bool = False
    # The supervisor: more than max_restarts child restarts within restart_window_s
    # stops the endpoint; a child silent for hung_child_timeout_s is replaced.
    max_restarts: NonNegativeInt = NonNegativeInt(5)
    restart_window_s: PositiveFloat = PositiveFloat(60.0)
    hung_child_timeout_s: PositiveFloat = PositiveFloat(30.0)
    prefetch: NonNegativeInt = NonNegativeInt(0)  # unacknowledged tasks the task link may hold; 0: automatic
    # Task bodies the tree may hold at once, in bytes: the second bound beside prefetch.
    max_task_bytes_in_flight: ByteSize = ByteSize(256 * 2**20)


# ---------------------------------------------------------------- the converter


def _type_name(value: object) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a mapping", type(None): "null"}.get(type(value), type(value).__name__)


def _strict(expected: type, description: str):
    def structure(value: object, _: object) -> Any:
        ok = type(value) is expected or (expected is float and type(value) is int)
        if not ok:
            raise ConfigValueError(f"expected {description}, got {_type_name(value)} ({value!r})")
        return expected(value)
    return structure


def _bounded(base: str, check, rule: str):
    def structure(value: object, _: object) -> Any:
        kind = int if base == "int" else float
        value = _strict(kind, "an integer" if base == "int" else "a number")(value, None)
        if not check(value):
            raise ConfigValueError(f"expected {rule}, got {value!r}")
        return value
    return structure


BYTE_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "kib": 2**10, "m": 10**6, "mb": 10**6, "mib": 2**20,
              "g": 10**9, "gb": 10**9, "gib": 2**30}
MIN_BYTE_SIZE = 2**20


def _structure_byte_size(value: object, _: object) -> int:
    """A positive number of bytes, at least 1 MiB: an integer, or a number and a unit."""
    accepted = ('a number of bytes of at least 1 MiB: an integer, or a number and a unit '
                '(KB, MB, GB, KiB, MiB, GiB), such as "512 MiB"')
    if type(value) is int:
        size = value
    elif isinstance(value, str) and (match := re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", value)) \
            and match.group(2).lower() in BYTE_UNITS:
        size = int(float(match.group(1)) * BYTE_UNITS[match.group(2).lower()])
    else:
        raise ConfigValueError(f"expected {accepted}, got {_type_name(value)} ({value!r})")
    if size < MIN_BYTE_SIZE:
        raise ConfigValueError(f"expected {accepted}, got {value!r}")
    return size


def _structure_port_range(value: Any, _: object) -> tuple[int, int]:
    ports_ok = (isinstance(value, list) and len(value) == 2
                and all(type(p) is int and 0 < p < 65536 for p in value))
    if not ports_ok or value[0] > value[1]:
        raise ConfigValueError(
            f"expected [low, high], two ports from 1 to 65535 with low <= high, got {value!r}"
        )
    return (value[0], value[1])


def _one_of(choices: tuple):
    def structure(value: object, _: object) -> Any:
        if value not in choices or type(value) is bool:
            raise ConfigValueError(
                f"{value!r} is not accepted; accepted values: {', '.join(map(str, choices))}"
                + _did_you_mean(value, choices)
            )
        return value
    return structure


def _did_you_mean(word: object, choices) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _structure_engine(value: object, _: object) -> EngineConfig:
    if not isinstance(value, Mapping):
        raise ConfigValueError(f"expected a mapping with a 'type', got {_type_name(value)}")
    if "type" not in value:
        raise ConfigValueError(
            f"engine type is missing; accepted: {', '.join(ENGINE_TYPES)}", ("type",)
        )
    kind = value["type"]
    if kind not in ENGINE_TYPES:
        raise ConfigValueError(
            f"unknown engine type {kind!r}; accepted: {', '.join(ENGINE_TYPES)}"
            + _did_you_mean(kind, ENGINE_TYPES), ("type",)
        )
    if kind == "GlobusComputeEngine":
        value = _split_executor_options(value)
    return _converter.structure(value, ENGINE_TYPES[kind])


def _structure_provider(value: object, _: object) -> ProviderConfig:
    if not isinstance(value, Mapping):
        raise ConfigValueError(f"expected a mapping with a 'type', got {_type_name(value)}")
    options = dict(value)
    kind = options.pop("type", "LocalProvider")
    _check_parsl_options("parsl.providers", "provider", kind, options, ())
    return ProviderConfig(kind, options)


def _check_parsl_options(module: str, what: str, kind: object, options: dict, at: tuple) -> None:
    """Check options against the named Parsl class's constructor, without building it."""
    import importlib

    names = sorted({n for n in getattr(importlib.import_module(module), "__all__", ()) if n[0].isupper()})
    if not isinstance(kind, str) or kind not in names:
        raise ConfigValueError(
            f"unknown {what} type {kind!r}; accepted: {', '.join(names)}" + _did_you_mean(kind, names),
            at + ("type",),
        )
    cls = getattr(importlib.import_module(module), kind)
    for key, val in options.items():
        if key == "launcher" and what == "provider":
            if not isinstance(val, Mapping):
                raise ConfigValueError("expected a mapping with a launcher 'type'", at + (key,))
            launcher = dict(val)
            kind_of_launcher = launcher.pop("type", None)
            _check_parsl_options("parsl.launchers", "launcher", kind_of_launcher, launcher, at + (key,))
            options = {k: v for k, v in options.items() if k != "launcher"}
    _check_signature(kind, cls.__init__, options, at)


def _check_signature(owner: str, function, options: Mapping[str, Any], at: tuple,
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
                f"{owner} has no option {key!r}" + _did_you_mean(key, accepted)
                + f"; accepted: {', '.join(accepted)}", at + (key,)
            )
        problem = _simple_type_mismatch(hints.get(key) or _hint_from_default(params[key]), val)
        if problem:
            raise ConfigValueError(f"{owner} option {key}: {problem}", at + (key,))
    missing = [n for n, p in params.items() if p.default is p.empty and n not in options]
    if missing:
        raise ConfigValueError(f"{owner} needs {', '.join(missing)}", at)


def _hint_from_default(param: inspect.Parameter) -> object:
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


def _simple_type_mismatch(hint: object, value: object) -> str | None:
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
    return f"expected {wanted}, got {_type_name(value)} ({value!r})"


def _structure_address(value: object, _: object) -> str | dict:
    if isinstance(value, str) and value.strip():
        return value.strip()
    if not isinstance(value, Mapping):
        raise ConfigValueError(
            f"expected an address (a string) or a mapping naming one of Parsl's address finders "
            f"({', '.join(ADDRESS_FUNCTIONS)}), got {_type_name(value)} ({value!r})")
    options = dict(value)
    kind = options.pop("type", None)
    if kind not in ADDRESS_FUNCTIONS:
        raise ConfigValueError(f"unknown address finder {kind!r}; accepted: {', '.join(ADDRESS_FUNCTIONS)}"
                               + _did_you_mean(kind, ADDRESS_FUNCTIONS), ("type",))
    import parsl.addresses

    _check_signature(kind, getattr(parsl.addresses, kind), options, ())
    return {"type": kind, **options}


def _structure_accelerators(value: object, _: object) -> int | list[str]:
    if type(value) is int and value >= 0:
        return value
    if isinstance(value, list):
        for index, name in enumerate(value):
            if type(name) is not str:
                raise ConfigValueError(f"expected a string, got {_type_name(name)} ({name!r})", (index,))
        return list(value)
    raise ConfigValueError(f"expected a number of accelerators or a list of their names, got "
                           f"{_type_name(value)} ({value!r})")


def _engine_fields(cls: type) -> set[str]:
    return {f.name for f in attrs.fields(cls)} - {"executor_options"}


def _split_executor_options(value: Mapping) -> dict:
    """GlobusComputeEngine's own options, with every other key checked against Parsl's
    HighThroughputExecutor and kept in executor_options (as the official engine passes them)."""
    own = _engine_fields(GlobusComputeEngineConfig)
    extra = {k: v for k, v in value.items() if k not in own}
    if not extra:
        return dict(value)
    from parsl.executors import HighThroughputExecutor

    _check_signature("GlobusComputeEngine", HighThroughputExecutor.__init__, extra, (),
                     excluded=HTEX_NOT_FROM_YAML + tuple(own), also_accepted=tuple(sorted(own)))
    return {**{k: v for k, v in value.items() if k in own}, "executor_options": extra}


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True)
    conv.register_structure_hook(str, _strict(str, "a string"))
    conv.register_structure_hook(int, _strict(int, "an integer"))
    conv.register_structure_hook(float, _strict(float, "a number"))
    conv.register_structure_hook(bool, _strict(bool, "a boolean (true or false)"))
    conv.register_structure_hook(PositiveInt, _bounded("int", lambda v: v > 0, "a positive integer"))
    conv.register_structure_hook(NonNegativeInt, _bounded("int", lambda v: v >= 0, "an integer >= 0"))
    conv.register_structure_hook(PositiveFloat, _bounded("float", lambda v: v > 0, "a positive number"))
    conv.register_structure_hook(PortRange, _structure_port_range)
    conv.register_structure_hook(AmqpPort, _one_of(AMQP_PORTS))
    conv.register_structure_hook(ContainerType, _one_of(CONTAINER_TYPES))
    conv.register_structure_hook(Strategy, _one_of(STRATEGIES))
    conv.register_structure_hook(Address, _structure_address)
    conv.register_structure_hook(Accelerators, _structure_accelerators)
    conv.register_structure_hook(ByteSize, _structure_byte_size)
    conv.register_structure_hook(EngineConfig, _structure_engine)
    conv.register_structure_hook(ProviderConfig, _structure_provider)

    def mapping_first(cls):
        generated = cattrs.gen.make_dict_structure_fn(cls, conv)

        def structure(value: object, _: object):
            if not isinstance(value, Mapping):
                raise ConfigValueError(f"expected a mapping, got {_type_name(value)} ({value!r})")
            return generated(value, cls)
        return structure

    conv.register_structure_hook_factory(
        lambda cls: attrs.has(cls) and cls is not ProviderConfig, mapping_first
    )
    return conv


_converter = _make_converter()


# ---------------------------------------------------------------- loading and errors


@attrs.frozen
class ConfigProblem:
    path: tuple[str | int, ...]
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = ".".join(str(p) for p in self.path) or "(top level)"
        line = f" (line {self.line})" if self.line else ""
        return f"{where}{line}: {self.message}"


class ConfigError(Exception):
    """Everything wrong with one config file, in one message."""

    def __init__(self, source: str, problems: list[ConfigProblem]):
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"Invalid endpoint configuration in {source}:\n{lines}")


def _walk(exc: BaseException, path: tuple) -> Iterator[tuple[tuple, BaseException]]:
    if isinstance(exc, BaseValidationError):
        for inner in exc.exceptions:
            step = tuple(
                n.name if isinstance(n, AttributeValidationNote) else n.index
                for n in getattr(inner, "__notes__", ())
                if isinstance(n, (AttributeValidationNote, IterableValidationNote))
            )
            yield from _walk(inner, path + step)
    else:
        yield path, exc


def _problems_from(exc: BaseException) -> Iterator[ConfigProblem]:
    for path, err in _walk(exc, ()):
        if isinstance(err, ForbiddenExtraKeysError):
            accepted = [f.name for f in attrs.fields(err.cl)]
            for key in sorted(err.extra_fields):
                yield ConfigProblem(path + (key,), f"unknown key{_did_you_mean(key, accepted)}; "
                                                   f"accepted keys: {', '.join(accepted)}")
        elif isinstance(err, KeyError):
            yield ConfigProblem(path, "is required")
        elif isinstance(err, ConfigValueError):
            yield ConfigProblem(path + err.subpath, str(err))
        else:  # a shape cattrs itself rejected, e.g. a list where a tuple of two is wanted
            yield ConfigProblem(path, f"not accepted: {err}")


def _line_of(root: yaml.Node | None, path: tuple) -> int | None:
    """The 1-based line of the deepest node on path that exists in the YAML."""
    node, line = root, (root.start_mark.line + 1 if root else None)
    for step in path:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == str(step)), None)
            if match is None:
                break
            node, line = match[1], match[0].start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
            node = node.value[step]
            line = node.start_mark.line + 1
        else:
            break
    return line


def parse_config(text: str, source: str = "<config>") -> EndpointConfig:
    """Build the config from YAML text; raise ConfigError naming every problem found."""
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        reason = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(source, [ConfigProblem((), f"not valid YAML: {reason}",
                                                 mark.line + 1 if mark else None)]) from None
    if not isinstance(data, Mapping):
        found = "an empty file" if data is None else _type_name(data)
        raise ConfigError(source, [ConfigProblem((), f"expected a mapping of options, got {found}")])
    try:
        return _converter.structure(data, EndpointConfig)
    except (BaseValidationError, ConfigValueError) as exc:
        problems = [attrs.evolve(p, line=_line_of(root, p.path)) for p in _problems_from(exc)]
        problems.sort(key=lambda p: p.line or 0)  # in the order a reader meets them in the file
        raise ConfigError(source, problems) from None


def load_config(path: Path) -> EndpointConfig:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(str(path), [ConfigProblem((), f"cannot be read: {exc.strerror}")]) from None
    return parse_config(text, str(path))
