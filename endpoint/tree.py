"""The endpoint's process tree: which children, in what order, under which policy."""

from __future__ import annotations

import getpass
import logging
import os
import time
from pathlib import Path

import cattrs

from ..protocol.urls import is_embedded, portable_vhost, with_port
from ..supervisor.spec import ChildSpec, RestartPolicy
from ..supervisor.supervisor import Supervisor
from ..workers.payloads import TASK_BODIES, PayloadStore
from ..workers.settings import PublishTarget, WorkerSettings
from .config import EndpointConfig, EngineConfig, GlobusComputeEngineConfig
from .daemon import Progress
from .dispatcher import ENGINE, RESULT_LINK, TASK_LINK, EndpointDispatcher
from .idle import IdleWatch

log = logging.getLogger(__name__)

# Start order: the task link first (tasks wait in the dispatcher until the engine is
# ready), the engine last. Stop order is the reverse: the engine finishes, the result
# link publishes what is left, the task link acknowledges it and goes last.
CHILD_TARGETS = {
    TASK_LINK: "compute_endpoint.workers.task_link:main",
    RESULT_LINK: "compute_endpoint.workers.result_link:main",
    ENGINE: "compute_endpoint.workers.engine:main",
}


def _url(url: str, amqp_port: int | None) -> str:
    if is_embedded(url):
        return url  # a folder on this machine: no port, no vhost
    url = portable_vhost(url)
    return with_port(url, amqp_port) if amqp_port else url


def _publish_target(info: dict, amqp_port: int | None) -> PublishTarget:
    kwargs = info.get("queue_publish_kwargs") or {}
    return PublishTarget(connection_url=_url(info["connection_url"], amqp_port),
                         exchange=kwargs.get("exchange", info.get("exchange", "")),
                         routing_key=kwargs.get("routing_key", info.get("queue", "")),
                         mandatory=bool(kwargs.get("mandatory", True)),
                         properties=dict(kwargs.get("properties") or {"delivery_mode": 2}))


def worker_settings(name: str, directory_path: Path, log_file: Path, config: EndpointConfig,
                    config_text: str, registration: dict, debug: bool) -> WorkerSettings:
    task_info = registration["task_queue_info"]
    engine = engine_options(config.engine)
    return WorkerSettings(
        endpoint_id=str(registration["endpoint_id"]), endpoint_name=name, log_file=str(log_file), debug=debug,
        task_queue_url=_url(task_info["connection_url"], config.amqp_port), task_queue=task_info["queue"],
        results=_publish_target(registration["result_queue_info"], config.amqp_port),
        heartbeats=_publish_target(registration["heartbeat_queue_info"], config.amqp_port),
        engine=engine, heartbeat_period_s=config.effective_heartbeat_period,
        prefetch=config.prefetch or prefetch_for(config.engine),
        max_task_bytes_in_flight=config.max_task_bytes_in_flight,
        run_dir=str(directory_path), config_raw=config_text,
        command_queue=(registration.get("command_queue_info") or {}).get("queue", ""),
        broker_silence_s=float(config.heartbeat_threshold),
    )


def engine_options(engine_config: EngineConfig) -> dict:
    """The engine's block of config.yaml as the engine is built from it: every option, its
    default included (the config model is where engine defaults are declared)."""
    engine = cattrs.Converter().unstructure(engine_config)
    if isinstance(engine_config, GlobusComputeEngineConfig):  # the provider's options sit beside its type
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
    if workers is None and hasattr(engine, "provider"):
        per_node = engine.max_workers_per_node or os.cpu_count() or 1
        options = engine.provider.options
        workers = per_node * max(1, int(options.get("max_blocks", 1))) * int(options.get("nodes_per_block", 1))
    workers = workers or os.cpu_count() or 1
    return min(MAX_PREFETCH, max(MIN_PREFETCH, workers * PREFETCH_PER_WORKER))


def run_tree(settings: WorkerSettings, config: EndpointConfig, progress: Progress) -> tuple[int, str | None]:
    """Run the tree to its end: (exit code, why it stopped)."""
    specs = [ChildSpec(name=role, target=target, title=settings.role_title(role),
                       shutdown_timeout_s=30.0 if role == ENGINE else 10.0)
             for role, target in CHILD_TARGETS.items()]
    policy = RestartPolicy(intensity=config.max_restarts, period_s=config.restart_window_s,
                           hung_after_s=config.hung_child_timeout_s)
    dispatcher = EndpointDispatcher(settings.endpoint_id,
                                    getattr(config.engine, "max_retries_on_system_failure", 0),
                                    settings.heartbeat_period_s, ep_info=_ep_info(settings),
                                    engine_type=config.engine.type,
                                    idle=IdleWatch(config.idle_heartbeats_soft, config.idle_heartbeats_hard,
                                                   settings.heartbeat_period_s),
                                    allowed_functions=config.allowed_functions)
    waiting = set(CHILD_TARGETS)

    def on_startup(event: str) -> None:
        role = event.removesuffix(" ready")
        if role in waiting:
            waiting.discard(role)
            progress.say(f"  {role} ready")
            if not waiting:
                dispatcher.startup_listener = None
                attached = "; Ctrl-C or SIGTERM stops it" if progress.echo else ""
                progress.running(f"Endpoint {settings.endpoint_name} is running (pid {os.getpid()}); "
                                 f"log: {settings.log_file}{attached}")

    dispatcher.startup_listener = on_startup
    supervisor = Supervisor(specs, policy, dispatcher, settings, title=settings.title)
    log.info("starting endpoint %s (%s)", settings.endpoint_name, settings.endpoint_id)
    # Bodies of tasks a previous run held: the broker delivers those tasks again.
    task_bodies = PayloadStore(Path(settings.run_dir) / TASK_BODIES)
    task_bodies.clear()
    try:
        code = supervisor.run()
    finally:
        task_bodies.clear()
    log.info("endpoint %s stopped with exit code %d; tasks: %s", settings.endpoint_name, code,
             dispatcher.figures())
    progress.say(f"Endpoint {settings.endpoint_name} stopped ({supervisor.stop_reason or 'exit code ' + str(code)})")
    return code, supervisor.stop_reason


def _ep_info(settings: WorkerSettings) -> dict:
    return {"posix_username": getpass.getuser(), "posix_uid": os.getuid(), "posix_gid": os.getgid(),
            "posix_ppid": os.getppid(), "posix_sid": os.getsid(0), "start_unix": time.time(),
            "config_raw": settings.config_raw}

