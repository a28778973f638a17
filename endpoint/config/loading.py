"""Reading config.yaml: one strict cattrs converter, and a bad file reported once, before
anything starts, with the file, the key path, the line and what would have been accepted.
Values are never coerced, so what the user wrote is what runs."""

from __future__ import annotations

import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TypeVar

import attrs
import cattrs
import yaml
from cattrs.errors import (
    AttributeValidationNote,
    BaseValidationError,
    ForbiddenExtraKeysError,
    IterableValidationNote,
)

from .model import (
    CONTAINER_TYPES,
    ENGINE_TYPES,
    MPI_LAUNCHERS,
    STRATEGIES,
    STRATEGY_OBJECTS,
    Accelerators,
    Address,
    AmqpPort,
    ByteSize,
    ContainerType,
    EndpointConfig,
    EngineConfig,
    ManagerConfig,
    MpiLauncher,
    NonNegativeInt,
    PortRange,
    PositiveFloat,
    PositiveInt,
    ProviderConfig,
    SerializerAllowlist,
    Strategy,
    UuidText,
)
from .parsl_options import check_parsl_options, split_executor_options, split_pool_options, structure_address
from .values import (
    ConfigValueError,
    bounded,
    did_you_mean,
    one_of,
    strict,
    structure_accelerators,
    structure_byte_size,
    structure_port_range,
    structure_uuid,
    type_name,
)


def _structure_engine(value: object, _: object) -> EngineConfig:
    if not isinstance(value, Mapping):
        raise ConfigValueError(f"expected a mapping with a 'type', got {type_name(value)}")
    if "type" not in value:
        raise ConfigValueError(
            f"engine type is missing; accepted: {', '.join(ENGINE_TYPES)}", ("type",)
        )
    kind = value["type"]
    if kind not in ENGINE_TYPES:
        raise ConfigValueError(
            f"unknown engine type {kind!r}; accepted: {', '.join(ENGINE_TYPES)}"
            + did_you_mean(kind, ENGINE_TYPES), ("type",)
        )
    if kind in ("GlobusComputeEngine", "GlobusMPIEngine"):
        value = split_executor_options(_strategy_object_as_name(value))
    else:
        value = split_pool_options(value, ENGINE_TYPES[kind])
    return _converter.structure(value, ENGINE_TYPES[kind])


def _strategy_object_as_name(engine: Mapping) -> Mapping:
    """engine.strategy in the official's old object form, {type: SimpleStrategy, max_idletime:
    N}, as today's strategy name and job_status_kwargs.max_idletime (which, given as well, wins)."""
    strategy = engine.get("strategy")
    if not isinstance(strategy, Mapping):
        return engine
    strategy = dict(strategy)
    kind = strategy.pop("type", None)
    if kind not in STRATEGY_OBJECTS:
        raise ConfigValueError(f"strategy type {kind!r} is not known; accepted: {', '.join(STRATEGY_OBJECTS)} "
                               f"(or a strategy name: {', '.join(STRATEGIES)})", ("strategy", "type"))
    unknown = sorted(set(strategy) - {"max_idletime"})
    if unknown:
        raise ConfigValueError(f"unknown key{did_you_mean(unknown[0], ['max_idletime'])}; accepted keys: type, "
                               "max_idletime", ("strategy", unknown[0]))
    status = dict(engine.get("job_status_kwargs") or {})
    if "max_idletime" in strategy:
        status.setdefault("max_idletime", strategy["max_idletime"])
    return {**engine, "strategy": STRATEGY_OBJECTS[kind], "job_status_kwargs": status}


def _structure_allowlist(value: object, _: object) -> list:
    from ...protocol.serialize import SerializationError, parse_allowlist

    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigValueError(f"expected a list of serialization strategies' import paths, got {value!r}")
    try:
        parse_allowlist(value)
    except SerializationError as exc:
        raise ConfigValueError(str(exc)) from None
    return list(value)


def _structure_provider(value: object, _: object) -> ProviderConfig:
    if not isinstance(value, Mapping):
        raise ConfigValueError(f"expected a mapping with a 'type', got {type_name(value)}")
    # An option set to null takes the provider's default: a template renders an option the
    # user did not give (`{{ worker_init|default() }}`) as null.
    options = {key: option for key, option in value.items() if option is not None}
    kind = options.pop("type", "LocalProvider")
    check_parsl_options("parsl.providers", "provider", kind, options, ())
    return ProviderConfig(kind, options)



def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True)
    conv.register_structure_hook(str, strict(str, "a string"))
    conv.register_structure_hook(int, strict(int, "an integer"))
    conv.register_structure_hook(float, strict(float, "a number"))
    conv.register_structure_hook(bool, strict(bool, "a boolean (true or false)"))
    conv.register_structure_hook(PositiveInt, bounded("int", lambda v: v > 0, "a positive integer"))
    conv.register_structure_hook(NonNegativeInt, bounded("int", lambda v: v >= 0, "an integer >= 0"))
    conv.register_structure_hook(PositiveFloat, bounded("float", lambda v: v > 0, "a positive number"))
    conv.register_structure_hook(PortRange, structure_port_range)
    conv.register_structure_hook(AmqpPort, bounded("int", lambda v: 0 < v < 65536, "a TCP port (1 to 65535)"))
    conv.register_structure_hook(SerializerAllowlist, _structure_allowlist)
    conv.register_structure_hook(ContainerType, one_of(CONTAINER_TYPES))
    conv.register_structure_hook(Strategy, one_of(STRATEGIES))
    conv.register_structure_hook(MpiLauncher, one_of(MPI_LAUNCHERS))
    conv.register_structure_hook(Address, structure_address)
    conv.register_structure_hook(Accelerators, structure_accelerators)
    conv.register_structure_hook(ByteSize, structure_byte_size)
    conv.register_structure_hook(UuidText, structure_uuid)
    conv.register_structure_hook(EngineConfig, _structure_engine)
    conv.register_structure_hook(ProviderConfig, _structure_provider)

    def list_first(list_type):
        item_type = typing.get_args(list_type)[0]

        def structure(value: object, _: object) -> list:
            if not isinstance(value, list):
                raise ConfigValueError(f"expected a list, got {type_name(value)} ({value!r})")
            items = []
            for index, item in enumerate(value):
                try:
                    items.append(conv.structure(item, item_type))
                except ConfigValueError as exc:
                    raise ConfigValueError(str(exc), (index, *exc.subpath)) from None
            return items
        return structure

    conv.register_structure_hook_factory(lambda cls: typing.get_origin(cls) is list, list_first)

    def mapping_first(cls):
        generated = cattrs.gen.make_dict_structure_fn(cls, conv)

        def structure(value: object, _: object):
            if not isinstance(value, Mapping):
                raise ConfigValueError(f"expected a mapping, got {type_name(value)} ({value!r})")
            return generated(value, cls)
        return structure

    conv.register_structure_hook_factory(
        lambda cls: attrs.has(cls) and cls is not ProviderConfig, mapping_first
    )
    return conv


_converter = _make_converter()



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

    def __reduce__(self):  # pickles (configs are checked in a throwaway process)
        return ConfigError, (self.source, self.problems)


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
                yield ConfigProblem(path + (key,), f"unknown key{did_you_mean(key, accepted)}; "
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


T = TypeVar("T")


def parse_config(text: str, source: str = "<config>") -> EndpointConfig:
    """Build the config from YAML text; raise ConfigError naming every problem found."""
    return _parse(text, source, EndpointConfig)


def parse_manager_config(text: str, source: str = "<config>") -> ManagerConfig:
    """A template-capable endpoint's config.yaml (no engine: the template has it)."""
    return _parse(text, source, ManagerConfig, empty_is_defaults=True)


def _parse(text: str, source: str, model: type[T], empty_is_defaults: bool = False) -> T:
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        reason = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(source, [ConfigProblem((), f"not valid YAML: {reason}",
                                                 mark.line + 1 if mark else None)]) from None
    if data is None and empty_is_defaults:  # as the official reads an empty manager config
        data = {}
    if not isinstance(data, Mapping):
        found = "an empty file" if data is None else type_name(data)
        raise ConfigError(source, [ConfigProblem((), f"expected a mapping of options, got {found}")])
    try:
        return _converter.structure(data, model)
    except (BaseValidationError, ConfigValueError) as exc:
        problems = [attrs.evolve(p, line=_line_of(root, p.path)) for p in _problems_from(exc)]
        problems.sort(key=lambda p: p.line or 0)  # in the order a reader meets them in the file
        raise ConfigError(source, problems) from None


# A config is a page or two of YAML; a huge one (planted, or generated by mistake) would
# stall whoever reads it, the supervisor's loop on SIGHUP among them.
MAX_CONFIG_BYTES = 1 << 20


def read_config_text(path: Path) -> str:
    """config.yaml's text, or ConfigError saying why it cannot be read or is too big."""
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(str(path), [ConfigProblem(
                (), f"is {size:,} bytes, over the {MAX_CONFIG_BYTES:,} a config may be")])
        return path.read_text()
    except OSError as exc:
        raise ConfigError(str(path), [ConfigProblem((), f"cannot be read: {exc.strerror}")]) from None


def load_config(path: Path) -> EndpointConfig:
    return parse_config(read_config_text(path), str(path))
