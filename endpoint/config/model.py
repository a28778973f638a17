"""The endpoint's config.yaml as frozen attrs classes: every key, its type and its default."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, NewType, Union

import attrs
import yaml

from .values import ConfigValueError

# The official's old object form of engine.strategy ({type: SimpleStrategy, max_idletime: N}),
# still in its multi-user docs' examples: the Parsl strategy it names.
STRATEGY_OBJECTS = {"SimpleStrategy": "simple"}
CONTAINER_TYPES = ("docker", "podman", "podman-hpc", "apptainer", "singularity", "custom", "None")
IMAGE_CONTAINER_TYPES = ("docker", "podman", "podman-hpc", "apptainer", "singularity")
# Parsl's address finders, by the name a config gives as `address: {type: NAME, ...}`.
ADDRESS_FUNCTIONS = ("address_by_interface", "address_by_hostname", "address_by_route", "address_by_query")
# Parsl's scaling strategies; "none" (or null) keeps the blocks as they are.
STRATEGIES = ("simple", "htex_auto_scale", "none")
# How Parsl's MPI mode starts a task on its nodes (the official GlobusMPIEngine's choices).
MPI_LAUNCHERS = ("mpiexec", "srun", "aprun")
# HighThroughputExecutor arguments that are Python objects and cannot come from YAML,
# and those the engine sets itself.
HTEX_NOT_FROM_YAML = ("self", "provider", "manager_selector", "block_error_handler",
                      "remote_monitoring_radio", "storage_access")
CUSTOM_CONTAINER_FIELDS = ("{EXECUTOR_RUNDIR}", "{EXECUTOR_LAUNCH_CMD}")
# Providers that run each block in a container of their own choosing (the official refuses
# container_uri beside them).
PROVIDERS_WITH_OWN_CONTAINERS = ("AWSProvider", "GoogleCloudProvider", "KubernetesProvider")

MIN_HEARTBEAT_PERIOD_S = 5.0

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
AmqpPort = NewType("AmqpPort", int)  # any TCP port: sites put brokers behind ports of their own
SerializerAllowlist = NewType("SerializerAllowlist", list)  # import paths of SDK strategies, or its wildcards
ContainerType = NewType("ContainerType", str)
PortRange = NewType("PortRange", tuple)
Address = NewType("Address", object)  # an address string, or {type: <Parsl address finder>, ...}
Strategy = NewType("Strategy", str)
MpiLauncher = NewType("MpiLauncher", str)
Accelerators = NewType("Accelerators", object)  # a count, or a list of device names
ByteSize = NewType("ByteSize", int)  # a number of bytes, or a string such as "512 MiB" or "2GB"
UuidText = NewType("UuidText", str)  # a UUID, kept in its canonical text form


@attrs.frozen
class ProviderConfig:
    """A Parsl execution provider by class name, with options checked against its signature."""

    type: str = "LocalProvider"
    options: Mapping[str, Any] = attrs.field(factory=dict)


def _default_provider() -> ProviderConfig:
    return ProviderConfig("LocalProvider", {"init_blocks": 1, "max_blocks": 1, "min_blocks": 0})


@attrs.frozen
class _PoolEngineConfig:
    """What ThreadPoolEngine and ProcessPoolEngine share."""

    max_workers: PositiveInt | None = None
    max_retries_on_system_failure: NonNegativeInt = NonNegativeInt(0)
    # Seconds a task may run (None: GC_TASK_TIMEOUT from the environment, else no limit).
    task_timeout_s: PositiveFloat | None = None
    label: str | None = None  # the engine's name in logs, as the official's
    # The serialization strategies a task's function and arguments may arrive in (None: any).
    allowed_serializers: SerializerAllowlist | None = None
    # Any other option of the standard library's executor, checked against its signature.
    executor_options: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class ThreadPoolEngineConfig(_PoolEngineConfig):
    type: Literal["ThreadPoolEngine"] = "ThreadPoolEngine"


@attrs.frozen
class ProcessPoolEngineConfig(_PoolEngineConfig):
    type: Literal["ProcessPoolEngine"] = "ProcessPoolEngine"


@attrs.frozen
class JobStatusConfig:
    """How often the engine looks at its blocks, and how long an idle block lives."""

    strategy_period: PositiveFloat = PositiveFloat(5.0)
    max_idletime: PositiveFloat = PositiveFloat(120.0)


@attrs.frozen
class _HtexEngineConfig:
    """What GlobusComputeEngine and GlobusMPIEngine share: Parsl's HighThroughputExecutor
    (or its MPI variant) with a provider, as the official engines expose them.

    The options below are checked here; any other argument of the Parsl executor is
    accepted too, checked against its own signature, and kept in ``executor_options``.
    """

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
    prefetch_capacity: NonNegativeInt = NonNegativeInt(0)
    heartbeat_period: PositiveInt = PositiveInt(30)
    heartbeat_threshold: PositiveInt = PositiveInt(120)
    worker_port_range: PortRange | None = None
    interchange_port_range: PortRange | None = None
    worker_debug: bool = False
    max_retries_on_system_failure: NonNegativeInt = NonNegativeInt(0)
    task_timeout_s: PositiveFloat | None = None  # as for the pool engines
    allowed_serializers: SerializerAllowlist | None = None  # as for the pool engines
    job_status_kwargs: JobStatusConfig = attrs.field(factory=JobStatusConfig)
    container_type: ContainerType | None = None
    container_uri: str | None = None
    container_cmd_options: str | None = None
    executor_options: Mapping[str, Any] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        if self.container_uri and self.provider.type in PROVIDERS_WITH_OWN_CONTAINERS:
            raise ConfigValueError(
                f"container_uri is not compatible with {self.provider.type}, which manages containers itself "
                f"(give the image in the provider's own options; see "
                f"https://parsl.readthedocs.io/en/stable/stubs/parsl.providers.{self.provider.type}.html)",
                ("container_uri",))
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


@attrs.frozen
class GlobusComputeEngineConfig(_HtexEngineConfig):
    """Single-node tasks on the workers of each node of each block."""

    type: Literal["GlobusComputeEngine"] = "GlobusComputeEngine"
    max_workers_per_node: PositiveInt | None = None
    cores_per_worker: PositiveFloat = PositiveFloat(1.0)
    mem_per_worker: PositiveFloat | None = None
    available_accelerators: Accelerators | None = None


@attrs.frozen
class GlobusMPIEngineConfig(_HtexEngineConfig):
    """Multi-node (MPI) tasks: one worker pool on the first node of each block hands each
    task the nodes its resource_specification asks for, and the launcher prefix for them."""

    type: Literal["GlobusMPIEngine"] = "GlobusMPIEngine"
    max_workers_per_block: PositiveInt = PositiveInt(1)  # MPI tasks a block runs at once
    mpi_launcher: MpiLauncher = MpiLauncher("mpiexec")

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        launcher = self.provider.options.get("launcher")
        kind = launcher.get("type") if isinstance(launcher, Mapping) else None
        if launcher is not None and kind != "SimpleLauncher":
            raise ConfigValueError(
                f"GlobusMPIEngine needs the provider's launcher to be SimpleLauncher (one worker pool on a "
                f"block's first node, which launches each task across the block's nodes); got {kind}",
                ("provider", "launcher"))
        nodes = self.provider.options.get("nodes_per_block", 1)
        if self.max_workers_per_block > nodes:
            raise ConfigValueError(
                f"max_workers_per_block ({self.max_workers_per_block}) is more than the provider's "
                f"nodes_per_block ({nodes}): each MPI task takes at least one node of the block",
                ("max_workers_per_block",))


# typing.Union, not `|`: cattrs dispatches its structure hook on this exact object.
EngineConfig = Union[  # noqa: UP007
    ThreadPoolEngineConfig, ProcessPoolEngineConfig, GlobusComputeEngineConfig, GlobusMPIEngineConfig]
ENGINE_TYPES: dict[str, type] = {
    "GlobusComputeEngine": GlobusComputeEngineConfig,
    "GlobusMPIEngine": GlobusMPIEngineConfig,
    "ThreadPoolEngine": ThreadPoolEngineConfig,
    "ProcessPoolEngine": ProcessPoolEngineConfig,
}


@attrs.frozen
class _RegisteredConfig:
    """What both layouts' config.yaml hold: how the endpoint talks to the service, and what
    registration sends."""

    display_name: str | None = None
    amqp_port: AmqpPort | None = None
    # Seconds between status reports; below MIN_HEARTBEAT_PERIOD_S it is raised to it, as
    # the official does (effective_heartbeat_period).
    heartbeat_period: PositiveFloat = PositiveFloat(30.0)
    environment: str | None = None
    local_compute_services: bool = False
    debug: bool = False  # as --debug (which wins when given)
    # Sent at registration, as the official sends them: the service keeps them, and
    # allowed_functions is enforced at both ends (submit and the dispatcher).
    allowed_functions: list[UuidText] | None = None
    admins: list[UuidText] | None = None
    authentication_policy: UuidText | None = None
    subscription_id: UuidText | None = None
    public: bool = False
    high_assurance: bool = False

    @property
    def effective_heartbeat_period(self) -> float:
        return max(MIN_HEARTBEAT_PERIOD_S, self.heartbeat_period)

    def registration_fields(self) -> dict[str, Any]:
        """What registration sends besides the name and metadata, as the official sends it:
        the optional ones only when set."""
        fields: dict[str, Any] = {"public": self.public, "high_assurance": self.high_assurance}
        optional = {"allowed_functions": self.allowed_functions, "admins": self.admins,
                    "authentication_policy": self.authentication_policy, "subscription_uuid": self.subscription_id}
        fields.update({key: value for key, value in optional.items() if value is not None})
        return fields


@attrs.frozen
class PathsConfig:
    """Where a user endpoint keeps its files (endpoint_dir) and writes its log (endpoint_log);
    each defaults to $GLOBUS_COMPUTE_ENDPOINT_DIR / $GLOBUS_COMPUTE_LOG_PATH, then to
    user_endpoints/<name>/ of its manager and endpoint.log there. A classic endpoint's own
    directory is where its config.yaml is: it takes neither."""

    endpoint_dir: str | None = None
    endpoint_log: str | None = None


@attrs.frozen
class EndpointConfig(_RegisteredConfig):
    """A classic endpoint's config.yaml: its engine and its tuning besides."""

    engine: EngineConfig = attrs.field(kw_only=True)
    # Seconds of silence from the broker after which the connection is taken as lost.
    heartbeat_threshold: PositiveInt = PositiveInt(120)
    # Idle shutdown in heartbeat periods (endpoint/idle.py); 0 soft: never.
    idle_heartbeats_soft: NonNegativeInt = NonNegativeInt(0)
    idle_heartbeats_hard: NonNegativeInt = NonNegativeInt(5760)
    endpoint_setup: str | None = None
    endpoint_teardown: str | None = None
    # The supervisor: more than max_restarts child restarts within restart_window_s
    # stops the endpoint; a child silent for hung_child_timeout_s is replaced.
    max_restarts: NonNegativeInt = NonNegativeInt(5)
    restart_window_s: PositiveFloat = PositiveFloat(60.0)
    hung_child_timeout_s: PositiveFloat = PositiveFloat(30.0)
    prefetch: NonNegativeInt = NonNegativeInt(0)  # unacknowledged tasks the task link may hold; 0: automatic
    # Task bodies the tree may hold at once, in bytes: the second bound beside prefetch.
    max_task_bytes_in_flight: ByteSize = ByteSize(256 * 2**20)
    # A user endpoint's own directory and log (the official's paths); ~ and $VARS expanded.
    paths: PathsConfig | None = None


@attrs.frozen
class PamConfig:
    """The official's ``pam``: account management and a session for each user endpoint's user,
    with this PAM service (``/etc/pam.d/<service_name>``)."""

    enable: bool = True  # as the official's: `pam: {}` enables it
    service_name: str = "globus-compute-endpoint"


@attrs.frozen
class ManagerConfig(_RegisteredConfig):
    """A template-capable endpoint's config.yaml: what registration and the endpoint itself
    need; each user endpoint's engine and tuning come from the template (templates.py).
    ``multi_user`` (or an identity mapping, as the official reads it) makes it a multi-user
    endpoint, run by root: each identity's user endpoints run as the local user the mapping
    names (identity_map.py, run_as.py), PAM admits that user, and with high_assurance the audit
    log records each task."""

    user_config_template_path: str | None = None
    user_config_schema_path: str | None = None
    multi_user: bool = False
    identity_mapping_config_path: str | None = None
    audit_log_path: str | None = None
    pam: PamConfig = PamConfig(enable=False)
    mu_child_ep_grace_period_s: PositiveFloat = PositiveFloat(30.0)
    email: str | None = None  # the administrator's contact, as the official keeps it
    # User endpoints running at once, and starting at once; the rest wait their turn (status
    # shows them waiting). Each is a tree of processes: on a small host, starting dozens at
    # once starves them all. Pair the cap with idle limits in the template, so that user
    # endpoints nobody uses leave room for the others.
    max_user_endpoints: PositiveInt = PositiveInt(16)
    max_user_endpoint_starts: PositiveInt = PositiveInt(4)

    @property
    def maps_identities(self) -> bool:
        return self.multi_user or self.identity_mapping_config_path is not None

    def registration_fields(self) -> dict[str, Any]:
        fields = super().registration_fields()
        if self.maps_identities:
            fields["multi_user"] = True  # any identity may send it tasks: its mapping decides
        return fields
