"""A template-capable endpoint's own tree: a tree of trees, as in OTP where a supervisor's
child may itself be a supervisor.

    Globus Compute Endpoint (<id>, <name>)                        the root supervisor
     \\_ ... command link                                          the service's commands
     \\_ Globus Compute Endpoint (<user endpoint id>, <name>)     one per user endpoint: a
         \\_ ... task link, result link, engine                    supervisor of a classic tree

The command link hands each start command to the ManagerDispatcher, which renders the
template with the user's options (templates.py), and asks the root supervisor to start the
user endpoint as a child (StartChild); the command is acknowledged once that is done.
A user endpoint is TRANSIENT: restarted when it dies, gone when it stops itself (its
template's idle limits) or is stopped. Each keeps its files (log, spool, status) in
``user_endpoints/<name>/`` of the endpoint's directory.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

import attrs

from ..protocol import commands, messages
from ..supervisor.control import SUPERVISOR, StartChild, StopTree
from ..supervisor.spec import ChildSpec, Restart, RestartPolicy
from ..supervisor.states import ChildState
from ..supervisor.status import TreeStatus
from ..supervisor.supervisor import Supervisor
from ..workers.pipe_messages import (
    AckCommand,
    BrokerState,
    CommandReceived,
    PublishFailureNotice,
    PublishStatus,
    TaskEvents,
)
from ..workers.settings import ManagerSettings
from .audit import AuditLog
from .config import ConfigError, ManagerConfig
from .daemon import Progress
from .identity_map import IdentityMap, LocalUser, MappingRefused, describe_identities
from .run_as import PamRefused, pam_check_account
from .status_board import StatusBoard, TreeLedger
from .templates import Reserved, TemplateError, mapped_identity, render_directory, user_environment
from .user_launch import UserEndpointLaunch, inherit_allowed_functions, user_endpoint_environment, user_endpoint_paths

log = logging.getLogger(__name__)

COMMAND_LINK = "command link"
FAILURE_HEARTBEAT_PERIOD_S = 3  # what the official's failure notice says
USER_ENDPOINTS = "user_endpoints"
USER_ENDPOINT_START_TIMEOUT_S = 600.0
Routed = tuple[str, object]


@attrs.frozen
class WaitingStart:
    """A start command waiting for room under the caps, with its acknowledgement held back."""

    command: commands.StartUserEndpoint
    ack: Routed
    since: float  # wall clock, for status


class ManagerDispatcher:
    """The root supervisor's dispatcher: acts on the service's commands and reports that the
    endpoint is alive. The user endpoints' own tasks never pass here: each sub-tree has its
    own dispatcher."""

    def __init__(self, settings: ManagerSettings, directory: Path, owner_id: str | None, debug: bool,
                 status_board: StatusBoard | None = None):
        self.settings, self.directory, self.owner_id, self.debug = settings, directory, owner_id, debug
        self.ledger = TreeLedger(status_board)
        self.started = time.time()
        self.startup_listener: Callable[[str], None] | None = None  # start's progress (run_manager_tree)
        self.stopping_listener: Callable[[], None] | None = None  # told when the tree begins to stop
        self.user_endpoint_ids: dict[str, str] = {}  # user endpoint name -> its endpoint id
        self.waiting: dict[str, WaitingStart] = {}  # starts waiting their turn, oldest first
        self._told_waiting: set[str] = set()  # the waiting ones last logged
        # A multi-user endpoint's: its mapping (read at the first start), each user endpoint's
        # user, and its audit log.
        self.identity_map: IdentityMap | None = None
        self.run_as: dict[str, LocalUser] = {}
        self.audit = AuditLog(Path(settings.audit_log_path), settings.endpoint_id) if settings.audit_log_path \
            else None

    def route(self, source: str, message: object) -> Iterable[Routed]:
        if isinstance(message, TaskEvents):
            self._audit(source, message)
            return []
        if isinstance(message, CommandReceived):
            ack = (COMMAND_LINK, AckCommand(message.generation, message.delivery_tag))
            if isinstance(message.command, commands.StartUserEndpoint):
                return self._wait_turn(message.command, ack) if self._admissible(message.command) else [ack]
            return [*self._act(message.command), ack]
        if isinstance(message, BrokerState):
            self.ledger.link_state(source, message.connected, message.detail, message.since)
        return []

    def _admissible(self, command: commands.StartUserEndpoint) -> bool:
        if self.settings.identity_mapping_path:  # multi-user: any identity; its mapping decides
            return True
        if self.owner_id and command.identities and self.owner_id not in command.identities:
            log.warning("refused to start user endpoint %s: the command is for another identity", command.name)
            return False
        return True

    def _wait_turn(self, command: commands.StartUserEndpoint, ack: Routed) -> list[Routed]:
        """A start waits in line, unacknowledged (so it outlives this process), until tick()
        finds room under the caps. A newer start for the same user endpoint replaces the one
        waiting: the service gave it new credentials."""
        earlier = self.waiting.pop(command.name, None)
        self.waiting[command.name] = WaitingStart(command, ack, earlier.since if earlier else time.time())
        return [earlier.ack] if earlier else []

    def _admit(self, tree: TreeStatus) -> list[Routed]:
        """Start the waiting user endpoints there is room for, oldest first."""
        live, starting = user_endpoints_in(tree)
        routed: list[Routed] = []
        for name in list(self.waiting):
            if name not in live and (len(live) >= self.settings.max_user_endpoints
                                     or len(starting) >= self.settings.max_user_endpoint_starts):
                break
            waiting = self.waiting.pop(name)
            if name not in live:  # else it runs already: the supervisor keeps one child a name
                acted = self._act(waiting.command)
                if any(isinstance(message, StartChild) for _, message in acted):  # not a failure notice
                    live.add(name)
                    starting.add(name)
                routed += acted
            routed.append(waiting.ack)
        if self.waiting and self.waiting.keys() != self._told_waiting:
            log.info("%d user endpoint(s) wait their turn (%d running of at most %d, %d starting of at most %d): %s",
                     len(self.waiting), len(live), self.settings.max_user_endpoints, len(starting),
                     self.settings.max_user_endpoint_starts, ", ".join(self.waiting))
        self._told_waiting = set(self.waiting)
        return routed

    def _act(self, command: object) -> list[Routed]:
        if isinstance(command, commands.StopEndpoint):
            return [(SUPERVISOR, StopTree(f"the Compute service asked it to stop ({command.reason})"))]
        if isinstance(command, commands.CannotStart):
            log.error("cannot start user endpoint %s (%s): %s", command.name, command.endpoint_id, command.reason)
            return [(COMMAND_LINK, self.failure_notice(command, command.reason))]
        if not isinstance(command, commands.StartUserEndpoint):
            return []
        try:
            spec, launch = self.user_endpoint(command)
        except (MappingRefused, PamRefused) as exc:
            log.error("refused to start user endpoint %s (%s) for %s: %s", command.name, command.endpoint_id,
                      describe_identities(command.identity_records()), getattr(exc, "detail", exc))
            return [(COMMAND_LINK, self.failure_notice(command, str(exc)))]
        except (TemplateError, ConfigError, OSError) as exc:
            log.error("cannot start user endpoint %s (%s): %s", command.name, command.endpoint_id, exc)
            return [(COMMAND_LINK, self.failure_notice(command, str(exc)))]
        except Exception as exc:  # a command, whatever it holds, must never stop the tree
            log.exception("cannot start user endpoint %s (%s)", command.name, command.endpoint_id)
            return [(COMMAND_LINK, self.failure_notice(
                command, f"the endpoint could not use these options: {type(exc).__name__}: {exc}"[:2000]))]
        return [(SUPERVISOR, StartChild(spec, launch))]

    def failure_notice(self, command: commands.StartUserEndpoint | commands.CannotStart,
                       error: str) -> PublishFailureNotice:
        """As the official does: a status report of the user endpoint that says why it cannot
        start, published with its credentials; the service fails its waiting tasks with it."""
        from .tree import publish_target

        report = messages.EPStatusReport(endpoint_id=uuid.UUID(command.endpoint_id), global_state=messages.JsonObject(
            {"error": error, "active": False, "heartbeat_period": FAILURE_HEARTBEAT_PERIOD_S}))
        return PublishFailureNotice(publish_target(command.amqp_creds["heartbeat_queue_info"], None),
                                    messages.pack(report))

    def user_endpoint(self, command: commands.StartUserEndpoint) -> tuple[ChildSpec, UserEndpointLaunch]:
        from .tree import worker_settings

        run_as = self._local_user(command) if self.settings.identity_mapping_path else None
        reserved = Reserved(self.settings.parent_config,
                            mapped_identity(run_as.uid if run_as else os.geteuid(), command.effective_identity or None),
                            dict(os.environ))
        text, config = render_directory(self.directory, command.user_opts, command.user_runtime,
                                        template=Path(self.settings.template_path) if self.settings.template_path
                                        else None,
                                        schema=Path(self.settings.schema_path) if self.settings.schema_path else None,
                                        reserved=reserved)
        config = inherit_allowed_functions(config, self.settings.allowed_functions)
        environment = user_endpoint_environment(command, user_environment(self.directory))
        if run_as is None:
            run_dir, log_file = user_endpoint_paths(self.directory / USER_ENDPOINTS / command.name, config, environment)
        else:  # its files are its user's, in their home, made by it once it is that user; nothing
            # of root's environment enters its paths
            environment = run_as.environment(environment)
            run_dir, log_file = user_endpoint_paths(Path(run_as.home) / ".globus_compute" / command.name, config,
                                                    environment, make=False, inherited={})
        settings = worker_settings(command.name, run_dir, log_file, config, text, command.amqp_creds, self.debug)
        # One user's endpoint that cannot run stops no one else's (isolated); its start may run
        # the template's endpoint_setup, which may wait on the network for minutes.
        spec = ChildSpec(name=command.name, target="compute_endpoint.endpoint.user_endpoint:main",
                         title=settings.title, restart=Restart.TRANSIENT, shutdown_timeout_s=60.0,
                         isolated=True, start_timeout_s=USER_ENDPOINT_START_TIMEOUT_S)
        log.info("starting user endpoint %s (%s) with options %s", command.name, command.endpoint_id,
                 sorted(command.user_opts))
        self.user_endpoint_ids[command.name] = command.endpoint_id
        if run_as is not None:
            self.run_as[command.name] = run_as
        return spec, UserEndpointLaunch(settings, text, environment, self.settings.allowed_functions, run_as,
                                        self.settings.pam_service or None, self.audit is not None)

    def _local_user(self, command: commands.StartUserEndpoint) -> LocalUser:
        """Who the command's identity runs as here: the mapping's first match, a real account
        not root's, and (with PAM) one whose account PAM accepts."""
        if self.identity_map is None:
            self.identity_map = IdentityMap(Path(self.settings.identity_mapping_path), self.settings.endpoint_id)
        identity_set = command.identity_records()
        user = self.identity_map.local_user(identity_set)
        if self.settings.pam_service:
            pam_check_account(user, self.settings.pam_service)
        log.info("user endpoint %s runs as %s (uid %d) for %s", command.name, user.name, user.uid,
                 describe_identities(identity_set))
        return user

    def _audit(self, source: str, events: TaskEvents) -> None:
        """Lines for the audit log, stamped with what this process knows of the sender (its
        uid, pid and endpoint id, from the child it started), never with what the sender says."""
        user = self.run_as.get(source)
        child = self.ledger.tree.children.get(source)
        if self.audit is None or user is None or child is None:
            return
        self.audit.write(user.uid, child.pid, self.user_endpoint_ids.get(source, ""), events)

    def child_ready(self, name: str) -> Iterable[Routed]:
        if self.startup_listener is not None:
            self.startup_listener(name)
        return []

    def child_exited(self, name: str) -> Iterable[Routed]:
        return []

    def tick(self, now: float, tree: TreeStatus) -> Iterable[Routed]:
        admitted = self._admit(tree) if self.waiting else []
        self.ledger.observe(now, tree, self.status_snapshot)
        if not self.ledger.connected(COMMAND_LINK) or not self.ledger.report_due(now, self.settings.heartbeat_period_s):
            return admitted
        return [*admitted, (COMMAND_LINK, PublishStatus(self.status_report(active=True)))]

    def tree_stopping(self) -> Iterable[Routed]:
        if self.stopping_listener is not None:
            self.stopping_listener()
        return [(COMMAND_LINK, PublishStatus(self.status_report(active=False)))]

    def user_endpoints(self) -> dict:
        """The user endpoints in the tree now, {name: {state, pid, since, restarts, endpoint_id}},
        and those waiting their turn (state "waiting")."""
        running = {name: {**child.to_json(), "endpoint_id": self.user_endpoint_ids.get(name)}
                   for name, child in self.ledger.tree.children.items() if name != COMMAND_LINK}
        waiting = {name: {"state": "waiting", "pid": None, "since": start.since, "restarts": 0,
                          "endpoint_id": start.command.endpoint_id}
                   for name, start in self.waiting.items() if name not in running}
        return {**running, **waiting}

    def user_endpoint_limits(self) -> dict:
        live, starting = user_endpoints_in(self.ledger.tree)
        return {"running": len(live), "max": self.settings.max_user_endpoints, "starting": len(starting),
                "max_starts": self.settings.max_user_endpoint_starts, "waiting": len(self.waiting)}

    def status_report(self, active: bool) -> bytes:
        state = {"heartbeat_period": self.settings.heartbeat_period_s, "active": active, "template_capable": True,
                 "user_endpoints": {name: child["state"] for name, child in self.user_endpoints().items()},
                 "posix_pid": os.getpid(), "start_unix": self.started, "report_time": time.time()}
        return messages.pack(messages.EPStatusReport(endpoint_id=uuid.UUID(self.settings.endpoint_id),
                                                     global_state=messages.JsonObject(state)))

    def status_snapshot(self) -> dict:
        return self.ledger.snapshot(self.settings.endpoint_id, self.started, self.settings.heartbeat_period_s,
                                    tasks={}, engine={}, template_capable=True, user_endpoints=self.user_endpoints(),
                                    user_endpoint_limits=self.user_endpoint_limits())


def user_endpoints_in(tree: TreeStatus) -> tuple[set[str], set[str]]:
    """The user endpoints of the tree whose processes live (or are about to), and those of
    them still starting: what the caps count."""
    children = {name: child for name, child in tree.children.items() if name != COMMAND_LINK}
    return ({name for name, child in children.items() if child.live},
            {name for name, child in children.items() if child.state is ChildState.STARTING})


def run_manager_tree(settings: ManagerSettings, config: ManagerConfig, directory: Path, owner_id: str | None,
                     progress: Progress, debug: bool) -> tuple[int, str | None]:
    """Run a template-capable endpoint's tree to its end: (exit code, why it stopped)."""
    board = StatusBoard(directory)
    dispatcher = ManagerDispatcher(settings, directory, owner_id, debug, board)
    spec = ChildSpec(name=COMMAND_LINK, target="compute_endpoint.workers.command_link:main",
                     title=settings.role_title(COMMAND_LINK))

    def on_startup(name: str) -> None:
        if name == COMMAND_LINK:
            dispatcher.startup_listener = None
            progress.say(f"  {COMMAND_LINK} ready")
            attached = "; Ctrl-C or SIGTERM stops it" if progress.echo else ""
            progress.running(f"Endpoint {settings.endpoint_name} (template-capable) is running (pid {os.getpid()}); "
                             f"log: {settings.log_file}{attached}")

    dispatcher.startup_listener = on_startup
    dispatcher.stopping_listener = progress.stopping
    supervisor = Supervisor([spec], RestartPolicy(intensity=20, period_s=60.0), dispatcher, settings,
                            title=settings.title)
    log.info("starting template-capable endpoint %s (%s)", settings.endpoint_name, settings.endpoint_id)
    try:
        code = supervisor.run()
    finally:
        board.remove()
        if dispatcher.audit is not None:  # after every user endpoint stopped: their last events are in
            dispatcher.audit.close()
    progress.say(f"Endpoint {settings.endpoint_name} stopped ({supervisor.stop_reason or 'exit code ' + str(code)})")
    return code, supervisor.stop_reason
