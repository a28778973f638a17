"""The endpoint's process tree: which children, in what order, under which policy."""

from __future__ import annotations

import getpass
import logging
import os
import time
from pathlib import Path

import attrs
import cattrs

from ..protocol.urls import is_embedded, portable_vhost, with_port
from ..supervisor.liveness import Liveness
from ..supervisor.pipe import ParentPipe
from ..supervisor.spec import ChildSpec, RestartPolicy
from ..supervisor.supervisor import Supervisor
from ..supervisor.throwaway import in_throwaway_process
from ..workers.payloads import TASK_BODIES, PayloadStore
from ..workers.settings import PublishTarget, WorkerSettings
from .config import (
    ConfigError,
    ConfigProblem,
    EndpointConfig,
    EngineConfig,
    GlobusComputeEngineConfig,
    GlobusMPIEngineConfig,
    parse_config,
    read_config_text,
)
from .daemon import Progress
from .directory import untrusted_path
from .dispatcher import ENGINE, RESULT_LINK, TASK_LINK, EndpointDispatcher
from .inflight import DispatchPolicy
from .status_board import StatusBoard

log = logging.getLogger(__name__)

# Start order: the task link first (tasks wait in the dispatcher until the engine is
# ready), the engine last. Stop order is the reverse: the engine finishes, the result
# link publishes what is left, the task link acknowledges it and goes last.
CHILD_TARGETS = {
    TASK_LINK: "compute_endpoint.workers.task_link:main",
    RESULT_LINK: "compute_endpoint.workers.result_link:main",
    ENGINE: "compute_endpoint.workers.engine:main",
}


def broker_url(url: str, amqp_port: int | None) -> str:
    if is_embedded(url):
        return url  # a folder on this machine: no port, no vhost
    url = portable_vhost(url)
    return with_port(url, amqp_port) if amqp_port else url


def publish_target(info: dict, amqp_port: int | None) -> PublishTarget:
    kwargs = info.get("queue_publish_kwargs") or {}
    return PublishTarget(connection_url=broker_url(info["connection_url"], amqp_port),
                         exchange=kwargs.get("exchange", info.get("exchange", "")),
                         routing_key=kwargs.get("routing_key", info.get("queue", "")),
                         mandatory=bool(kwargs.get("mandatory", True)),
                         properties=dict(kwargs.get("properties") or {"delivery_mode": 2}))


def worker_settings(name: str, directory_path: Path, log_file: Path, config: EndpointConfig,
                    config_text: str, registration: dict, debug: bool) -> WorkerSettings:
    task_info = registration["task_queue_info"]
    settings = WorkerSettings(
        endpoint_id=str(registration["endpoint_id"]), endpoint_name=name, log_file=str(log_file), debug=debug,
        task_queue_url=broker_url(task_info["connection_url"], config.amqp_port), task_queue=task_info["queue"],
        results=publish_target(registration["result_queue_info"], config.amqp_port),
        heartbeats=publish_target(registration["heartbeat_queue_info"], config.amqp_port),
        engine={}, run_dir=str(directory_path),
        command_queue=(registration.get("command_queue_info") or {}).get("queue", ""),
    )
    return reconfigured(settings, config, config_text, debug)


def reconfigured(settings: WorkerSettings, config: EndpointConfig, config_text: str,
                 debug_flag: bool) -> WorkerSettings:
    """The settings with everything config.yaml decides taken from config (what registration
    decided stays): how a SIGHUP moves the children onto an edited file. ``debug_flag``:
    --debug was given (it wins over the file)."""
    return attrs.evolve(
        settings, engine=engine_options(config.engine), heartbeat_period_s=config.effective_heartbeat_period,
        prefetch=config.prefetch or prefetch_for(config.engine),
        max_task_bytes_in_flight=config.max_task_bytes_in_flight, broker_silence_s=float(config.heartbeat_threshold),
        config_raw=config_text, debug=debug_flag or config.debug)


def engine_options(engine_config: EngineConfig) -> dict:
    """The engine's block of config.yaml as the engine is built from it: every option, its
    default included (the config model is where engine defaults are declared)."""
    engine = cattrs.Converter().unstructure(engine_config)
    # The provider's options sit beside its type.
    if isinstance(engine_config, (GlobusComputeEngineConfig, GlobusMPIEngineConfig)):
        engine["provider"] = {"type": engine_config.provider.type, **engine_config.provider.options}
    engine.update(engine.pop("executor_options", {}))  # HTEX's own options, beside ours as in config.yaml
    return engine


# A task is acknowledged only once its result is confirmed, so the prefetch window must
# cover every task on that round trip: at a few thousand tasks/s and tens of ms, thousands.
PREFETCH_PER_WORKER = 256
MIN_PREFETCH = 2048
MAX_PREFETCH = 16384


def prefetch_for(engine) -> int:
    """Unacknowledged tasks the task link may hold: enough to keep every worker busy while
    results travel and acknowledgements come back; bounded, since each may be 10 MiB."""
    workers = getattr(engine, "max_workers", None)
    if isinstance(engine, GlobusMPIEngineConfig):  # an MPI task holds nodes, not a core
        workers = engine.max_workers_per_block * max(1, int(engine.provider.options.get("max_blocks", 1)))
    elif workers is None and hasattr(engine, "provider"):
        per_node = engine.max_workers_per_node or os.cpu_count() or 1
        options = engine.provider.options
        workers = per_node * max(1, int(options.get("max_blocks", 1))) * int(options.get("nodes_per_block", 1))
    workers = workers or os.cpu_count() or 1
    return min(MAX_PREFETCH, max(MIN_PREFETCH, workers * PREFETCH_PER_WORKER))


def run_tree(settings: WorkerSettings, config: EndpointConfig, progress: Progress,
             debug_flag: bool = False, parent: ParentPipe | None = None,
             audited: bool = False) -> tuple[int, str | None]:
    """Run the tree to its end: (exit code, why it stopped). ``debug_flag``: --debug was given.
    ``parent``: the tree is a user endpoint, a child of a template-capable endpoint's tree;
    ``audited``: it tells that parent each task's events, for its audit log."""
    specs = [ChildSpec(name=role, target=target, title=settings.role_title(role),
                       shutdown_timeout_s=30.0 if role == ENGINE else 10.0)
             for role, target in CHILD_TARGETS.items()]
    policy = RestartPolicy(intensity=config.max_restarts, period_s=config.restart_window_s)
    board = StatusBoard(Path(settings.run_dir))
    dispatcher = EndpointDispatcher(settings.endpoint_id, DispatchPolicy.from_config(config),
                                    ep_info=_ep_info(settings), engine_type=config.engine.type, status_board=board)
    dispatcher.audited = audited and parent is not None
    dispatcher.startup_listener = _startup_progress(settings, dispatcher, progress)
    dispatcher.stopping_listener = progress.stopping
    supervisor = Supervisor(specs, policy, dispatcher, settings, title=settings.title,
                            reload=ConfigReloader(settings, config, dispatcher, debug_flag), parent=parent,
                            liveness=Liveness(hung_after_s=config.hung_child_timeout_s))
    log.info("starting endpoint %s (%s)", settings.endpoint_name, settings.endpoint_id)
    # Bodies of tasks a previous run held: the broker delivers those tasks again.
    task_bodies = PayloadStore(Path(settings.run_dir) / TASK_BODIES)
    task_bodies.clear()
    try:
        code = supervisor.run()
    finally:
        task_bodies.clear()
        board.remove()
    log.info("endpoint %s stopped with exit code %d; tasks: %s", settings.endpoint_name, code,
             dispatcher.figures())
    progress.say(f"Endpoint {settings.endpoint_name} stopped ({supervisor.stop_reason or 'exit code ' + str(code)})")
    return code, supervisor.stop_reason


def _startup_progress(settings: WorkerSettings, dispatcher: EndpointDispatcher, progress: Progress):
    """Tells `start` each child's readiness, then that the endpoint runs."""
    waiting = set(CHILD_TARGETS)

    def on_startup(role: str) -> None:
        if role in waiting:
            waiting.discard(role)
            progress.say(f"  {role} ready")
            if not waiting:
                dispatcher.startup_listener = None
                attached = "; Ctrl-C or SIGTERM stops it" if progress.echo else ""
                progress.running(f"Endpoint {settings.endpoint_name} is running (pid {os.getpid()}); "
                                 f"log: {settings.log_file}{attached}")
    return on_startup


# Keys that registration or the supervisor's own policy took at start: a reload cannot change them.
KEYS_FIXED_AT_START = ("display_name", "amqp_port", "environment", "local_compute_services", "allowed_functions",
                       "admins", "authentication_policy", "subscription_id", "public", "high_assurance",
                       "max_restarts", "restart_window_s", "hung_child_timeout_s")


class ConfigReloader:
    """What SIGHUP does before the children restart one by one (gunicorn's reload): read
    config.yaml again, check it, and move the tree onto it: the children's settings (the
    engine block, prefetch, byte budget, heartbeat) and the dispatcher's policy (retries,
    idle limits, allowed functions). A file that does not load raises ConfigError, with the
    usual message, and the supervisor keeps the running configuration."""

    def __init__(self, settings: WorkerSettings, config: EndpointConfig, dispatcher: EndpointDispatcher,
                 debug_flag: bool):
        self.settings, self.config, self.dispatcher, self.debug_flag = settings, config, dispatcher, debug_flag

    def __call__(self) -> WorkerSettings:
        path = Path(self.settings.run_dir) / "config.yaml"
        problem = untrusted_path(path)
        if problem:  # it may have become a link to another user's file since the start
            raise ConfigError(str(path), [ConfigProblem((), problem)])
        text = read_config_text(path)
        config = in_throwaway_process(parse_config, text, str(path))  # Parsl stays out of the supervisor
        for key in KEYS_FIXED_AT_START:
            if getattr(config, key) != getattr(self.config, key):
                log.warning("SIGHUP: %s changed in %s; it takes effect at the next start", key, path)
        self.settings = reconfigured(self.settings, config, text, self.debug_flag)
        self.config = config
        self.dispatcher.reconfigure(DispatchPolicy.from_config(config))
        log.info("SIGHUP: reloaded %s (engine %s)", path, config.engine.type)
        return self.settings


def _ep_info(settings: WorkerSettings) -> dict:
    return {"posix_username": getpass.getuser(), "posix_uid": os.getuid(), "posix_gid": os.getgid(),
            "posix_ppid": os.getppid(), "posix_sid": os.getsid(0), "start_unix": time.time(),
            "config_raw": settings.config_raw}

