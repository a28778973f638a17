"""The endpoint's dispatcher: the in-flight table that makes delivery exactly-once-visible.

Every task the broker delivered is in the table from its delivery until its result is
confirmed by the broker; only then is the delivery acknowledged. From that table:

- a redelivery of a task already running or done is not run again (its new delivery
  tag is acknowledged once the result is confirmed; at once if it already was);
- a restarted engine gets the tasks the dead one held; a task counts a try only if the dead
  engine had reported it started (a task still queued in the engine is passed on untouched),
  up to ``max_retries_on_system_failure`` tries, then an error result names the failure;
- when an engine that was running several tasks dies (a task that kills its process takes a
  ThreadPoolEngine, and its neighbours, with it), the tasks it was running are on probation:
  each runs again alone before anything else runs, so the one that kills the engine again does
  so alone, and only it counts another try;
- a task whose worker died under it (the engine lives on) counts a try, and runs again or
  fails saying how its worker died;
- a restarted result link gets every result not yet confirmed.

The supervisor calls it from its loop; it never blocks and does no I/O but building
the status report.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable

from ..protocol import messages
from ..supervisor.control import PARENT, SUPERVISOR, Forgive, StopTree
from ..supervisor.status import TreeStatus
from ..workers.execution import FUNCTION_NOT_ALLOWED, UNKNOWN_TASK_FAILURE, error_result
from ..workers.payloads import size_of
from ..workers.pipe_messages import (
    AckDeliveries,
    BrokerState,
    EngineStatus,
    PauseConsuming,
    PublishResults,
    PublishStatus,
    ResultsConfirmed,
    ResultsDone,
    RunTasks,
    StopRequested,
    TaskDelivery,
    TaskEvent,
    TaskEvents,
    TaskLost,
    TaskResult,
    TasksLost,
    TasksReceived,
    TasksStarted,
)
from .inflight import DispatchPolicy, InFlight, TaskState
from .status_board import StatusBoard, TreeLedger

log = logging.getLogger(__name__)

TASK_LINK, RESULT_LINK, ENGINE = "task link", "result link", "engine"
# Ids of tasks whose results are confirmed and acknowledged, to acknowledge a redelivery
# without running it again. A redelivery comes at most a prefetch window (16,384 at most)
# after the task, from a task link that died with it unacknowledged: 100,000 ids cover
# several windows, at about 10 MB.
RECENTLY_CONFIRMED_MAX = 100_000
# Tasks in flight written to the status file for `status --tasks`: the oldest, a bounded few
# (the file is rewritten every second, and a backlog holds tens of thousands).
STATUS_TASKS_LISTED = 1000
# An engine reports a start a moment after it happens: a task that kills its engine at once
# may die unreported. After this many engine deaths while it was held unreported, it counts
# as started anyway, so that such a task cannot take engine after engine down for free.
UNREPORTED_LOSSES_MAX = 2

Routed = tuple[str, object]


class EndpointDispatcher:
    """The supervisor's dispatcher for an endpoint tree (see the module's docstring): routes
    tasks, results and confirms between the children and keeps the in-flight table. It also
    keeps what the tree's status shows (``status_board``, when given, gets it each tick)."""

    def __init__(self, endpoint_id: str, policy: DispatchPolicy | None = None, ep_info: dict | None = None,
                 engine_type: str | None = None, status_board: StatusBoard | None = None):
        self.endpoint_id = endpoint_id
        self.policy = policy = policy or DispatchPolicy()
        self.idle = policy.idle_watch()
        self.ledger = TreeLedger(status_board)
        self.ep_info = ep_info or {}
        self.inflight: dict[str, InFlight] = {}
        self.recently_confirmed: OrderedDict[str, None] = OrderedDict()
        self.ready: set[str] = set()
        # Tasks that were running beside others when their engine died: each runs alone, in
        # this order, before the engine gets anything else (the module's docstring).
        self.probation: list[str] = []
        # Until the engine reports its figures, reports still say which engine it is.
        self.engine_figures: dict = {"engine_type": engine_type} if engine_type else {}
        self.counts = {"received": 0, "duplicates": 0, "completed": 0, "retried": 0, "failed_system": 0}
        # Told each child's readiness (start-up progress); set by tree.run_tree.
        self.startup_listener: Callable[[str], None] | None = None  # told each child's name once it is ready
        self.stopping_listener: Callable[[], None] | None = None  # told when the tree begins to stop
        # A multi-user endpoint's user endpoint tells its manager each task's events (audit.py).
        self.audited = False
        self._audit_events: list[TaskEvent] = []

    # ------------------------------------------------------------------ routing

    def route(self, source: str, message: object) -> Iterable[Routed]:
        routed = self._route(source, message)
        if not self._audit_events:
            return routed
        events, self._audit_events = tuple(self._audit_events), []
        return [*routed, (PARENT, TaskEvents(events))]

    def _audit(self, entry: InFlight, action: str, detail: str = "") -> None:
        if self.audited:
            function_id = messages.canonical_uuid(entry.delivery.headers.get("function_uuid")) or ""
            self._audit_events.append(TaskEvent(entry.delivery.task_id, function_id, action, detail))

    def _route(self, source: str, message: object) -> Iterable[Routed]:
        if isinstance(message, TasksReceived):
            return self._received(message.deliveries)
        if isinstance(message, TasksStarted):
            for task_id in message.task_ids:
                entry = self.inflight.get(task_id)
                if entry is not None and entry.state is TaskState.HANDED:
                    entry.state = TaskState.RUNNING
                    self._audit(entry, "RUNNING")
            return []
        if isinstance(message, ResultsDone):
            return self._done(message.results) + self._probation_progress()
        if isinstance(message, TasksLost):
            return self._lost(message.lost) + self._probation_progress()
        if isinstance(message, ResultsConfirmed):
            return self._confirmed(message.task_ids)
        if isinstance(message, EngineStatus):
            self.engine_figures = message.figures
            return []
        if isinstance(message, BrokerState):
            self.ledger.link_state(source, message.connected, message.detail, message.since)
            return []
        if isinstance(message, StopRequested):
            return [(SUPERVISOR, StopTree(f"the Compute service asked it to stop ({message.reason})"))]
        log.warning("dispatcher: unexpected %s from %s", type(message).__name__, source)
        return []

    def _received(self, deliveries: Iterable[TaskDelivery]) -> list[Routed]:
        to_run, acks, refused = [], [], []
        for delivery in deliveries:
            entry = self.inflight.get(delivery.task_id)
            if entry is not None:  # a redelivery of a task we hold: keep the newest tag
                self.counts["duplicates"] += 1
                if entry.delivery.generation == delivery.generation:
                    entry.extra_deliveries.append(delivery)
                else:
                    entry.delivery = delivery
            elif delivery.task_id in self.recently_confirmed:  # done and confirmed already
                self.counts["duplicates"] += 1
                acks.append(delivery)
            else:
                self.counts["received"] += 1
                entry = self.inflight[delivery.task_id] = InFlight(delivery)
                self._audit(entry, "RECEIVED")
                refusal = self._refusal(delivery)
                if refusal:  # cannot run: answer with an error, never give it to the engine
                    self._audit(entry, "FAILED", refusal[1])
                    refused.append(TaskResult(delivery.task_id, error_result(
                        delivery.task_id, *refusal, endpoint_id=self.endpoint_id)))
                    entry.state = TaskState.HANDED
                elif ENGINE in self.ready and not self.probation:
                    entry.state = TaskState.HANDED
                    to_run.append(delivery)
        routed = self._acks(acks) + self._done(refused)
        if to_run:
            routed.append((ENGINE, RunTasks(tuple(to_run))))
        return routed

    def _refusal(self, delivery: TaskDelivery) -> tuple[str, str] | None:
        """(error code, text) when the task must not run; its body is never looked at."""
        if delivery.problem:
            return UNKNOWN_TASK_FAILURE, delivery.problem
        function_id = messages.canonical_uuid(delivery.headers.get("function_uuid"))
        allowed = self.policy.allowed_functions
        if allowed is not None and function_id not in allowed:
            return FUNCTION_NOT_ALLOWED, (f"Function {function_id} is not allowed on endpoint {self.endpoint_id}: "
                                          "its configuration lists the functions it runs (allowed_functions)")
        return None

    def _done(self, results: Iterable[TaskResult]) -> list[Routed]:
        publish = []
        for result in results:
            entry = self.inflight.get(result.task_id)
            if entry is None or entry.state is TaskState.DONE:
                continue  # a late result of a task already settled
            entry.state, entry.result = TaskState.DONE, result.packed
            self._audit(entry, "EXEC_END")
            publish.append(result)
        if publish and RESULT_LINK in self.ready:
            return [(RESULT_LINK, PublishResults(tuple(publish)))]
        return []

    def _lost(self, lost: Iterable[TaskLost]) -> list[Routed]:
        """Tasks whose worker died under them (the engine lives on): each counts a try."""
        to_run, failed = [], []
        for item in lost:
            entry = self.inflight.get(item.task_id)
            if entry is None or entry.state is TaskState.DONE:
                continue
            entry.attempts += 1
            entry.state = TaskState.QUEUED
            if entry.attempts > self.policy.max_retries_on_system_failure:
                failed.append(self._failed_for_good(item.task_id, entry, item.why[:1].upper() + item.why[1:]))
            elif ENGINE in self.ready and not self.probation:
                self.counts["retried"] += 1
                entry.state = TaskState.HANDED
                to_run.append(entry.delivery)
        routed = self._done(failed)
        if to_run:
            routed.append((ENGINE, RunTasks(tuple(to_run))))
        return routed

    def _failed_for_good(self, task_id: str, entry: InFlight, what_happened: str) -> TaskResult:
        self.counts["failed_system"] += 1
        text = (f"{what_happened} ({entry.attempts} time(s); max_retries_on_system_failure is "
                f"{self.policy.max_retries_on_system_failure})")
        return TaskResult(task_id, error_result(task_id, UNKNOWN_TASK_FAILURE, text, endpoint_id=self.endpoint_id))

    def _confirmed(self, task_ids: Iterable[str]) -> list[Routed]:
        acks = []
        for task_id in task_ids:
            entry = self.inflight.pop(task_id, None)
            if entry is None:
                continue
            self.counts["completed"] += 1
            acks.append(entry.delivery)
            acks.extend(entry.extra_deliveries)
            self.recently_confirmed[task_id] = None
        while len(self.recently_confirmed) > RECENTLY_CONFIRMED_MAX:
            self.recently_confirmed.popitem(last=False)
        return self._acks(acks)

    def _acks(self, deliveries: list[TaskDelivery]) -> list[Routed]:
        by_generation: dict[str, list[int]] = {}
        for delivery in deliveries:
            by_generation.setdefault(delivery.generation, []).append(delivery.delivery_tag)
        # Acks for a task link that is gone are dropped: the broker redelivers those
        # tasks, and the redelivery is acknowledged from recently_confirmed.
        return [(TASK_LINK, AckDeliveries(g, tuple(tags))) for g, tags in by_generation.items()]

    # ------------------------------------------------------------------ children coming and going

    def child_ready(self, name: str) -> Iterable[Routed]:
        self.ready.add(name)
        if self.startup_listener is not None:
            self.startup_listener(name)
        if name == ENGINE:
            return self._resubmit()
        if name == RESULT_LINK:
            unconfirmed = [TaskResult(t, e.result) for t, e in self.inflight.items()
                           if e.state is TaskState.DONE and e.result is not None]
            if unconfirmed:
                log.info("sending %d unconfirmed results to the new result link", len(unconfirmed))
                return [(RESULT_LINK, PublishResults(tuple(unconfirmed)))]
        return []

    def child_exited(self, name: str) -> Iterable[Routed]:
        was_running = name in self.ready
        self.ready.discard(name)
        if name != ENGINE:
            return []
        started = []
        for task_id, entry in self.inflight.items():
            if entry.state is TaskState.RUNNING:
                started.append(task_id)
                entry.attempts += 1
                entry.state = TaskState.QUEUED
            elif entry.state is TaskState.HANDED:  # still queued in the engine: not a try
                entry.unreported_losses += 1
                if entry.unreported_losses > UNREPORTED_LOSSES_MAX and not self.policy.starts_reported_first:
                    entry.attempts += 1
                entry.state = TaskState.QUEUED
        if len(started) > 1:
            retried = [t for t in started if self.inflight[t].attempts <= self.policy.max_retries_on_system_failure]
            self.probation = retried + [t for t in self.probation if t not in retried]
        if was_running and started:
            # An engine that had started tasks ran; what killed it is likelier one of them
            # (user code may exit, segfault or exhaust memory) than the engine itself.
            return [(SUPERVISOR, Forgive(ENGINE, f"it was running {len(started)} task(s), which may have "
                                                 "killed it"))]
        return []

    def _resubmit(self) -> list[Routed]:
        failed = [self._failed_for_good(task_id, entry, "The engine process died while running this task")
                  for task_id, entry in self.inflight.items()
                  if entry.state is TaskState.QUEUED and entry.attempts > self.policy.max_retries_on_system_failure]
        routed: list[Routed] = self._done(failed) if failed else []
        self._drop_settled_suspects()
        if self.probation:
            suspect = self.inflight[self.probation[0]]
            if suspect.state is TaskState.QUEUED:
                log.info("running task %s alone (%d on probation): it was running beside others when their "
                         "engine died", self.probation[0], len(self.probation))
                self.counts["retried"] += 1
                suspect.state = TaskState.HANDED
                routed.append((ENGINE, RunTasks((suspect.delivery,))))
            return routed
        to_run = []
        for entry in self.inflight.values():
            if entry.state is TaskState.QUEUED:
                if entry.attempts:
                    self.counts["retried"] += 1
                entry.state = TaskState.HANDED
                to_run.append(entry.delivery)
        if to_run:
            log.info("giving %d tasks to the engine (%d retried)", len(to_run),
                     sum(1 for d in to_run if self.inflight[d.task_id].attempts))
            routed.append((ENGINE, RunTasks(tuple(to_run))))
        return routed

    def _drop_settled_suspects(self) -> None:
        while self.probation and (self.probation[0] not in self.inflight
                                  or self.inflight[self.probation[0]].state is TaskState.DONE):
            self.probation.pop(0)

    def _probation_progress(self) -> list[Routed]:
        """After results: the next task on probation runs alone, or, once none is left, the engine
        gets everything that waited meanwhile."""
        if not self.probation or ENGINE not in self.ready:
            return []
        return self._resubmit()

    # ------------------------------------------------------------------ status reports

    def tick(self, now: float, tree: TreeStatus) -> Iterable[Routed]:
        self.ledger.observe(now, tree, self.status_snapshot)
        if RESULT_LINK not in self.ready or not self.ledger.report_due(now, self.policy.heartbeat_period_s):
            return []
        routed: list[Routed] = [(RESULT_LINK, PublishStatus(self.status_report(active=True)))]
        idle_reason = self.idle.heartbeat(self.counts["received"], self.counts["completed"])
        if idle_reason:
            routed.append((SUPERVISOR, StopTree(idle_reason)))
        return routed

    def reconfigure(self, policy: DispatchPolicy) -> None:
        """A reloaded config.yaml: what it decides applies from now on (the idle count starts over)."""
        self.policy = policy
        self.idle = policy.idle_watch()
        self.ledger.next_report = 0.0  # a report at once says the new period

    def status_snapshot(self) -> dict:
        """The tree as `status` shows it (status_board.py)."""
        return self.ledger.snapshot(self.endpoint_id, self.ep_info.get("start_unix"), self.policy.heartbeat_period_s,
                                    tasks=self.figures(), engine=self.engine_figures,
                                    tasks_in_flight=self.oldest_in_flight(STATUS_TASKS_LISTED))

    def oldest_in_flight(self, limit: int) -> list[dict]:
        """The first tasks in flight, oldest first (the table keeps the order they came in)."""
        return [{"task_id": task_id, "function_id": entry.delivery.headers.get("function_uuid"),
                 "state": entry.state.value, "since": entry.received, "attempts": entry.attempts}
                for task_id, entry in itertools.islice(self.inflight.items(), limit)]

    def tree_stopping(self) -> Iterable[Routed]:
        if self.stopping_listener is not None:
            self.stopping_listener()
        return [(TASK_LINK, PauseConsuming()), (RESULT_LINK, PublishStatus(self.status_report(active=False)))]

    def figures(self) -> dict:
        states = {s.value: 0 for s in TaskState}
        body_bytes = 0
        for entry in self.inflight.values():
            states[entry.state.value] += 1
            body_bytes += size_of(entry.delivery.body)
        return {"in_flight": len(self.inflight), "task_bytes_in_flight": body_bytes, **states, **self.counts}

    def status_report(self, active: bool) -> bytes:
        global_state = {
            **self.engine_figures,
            "heartbeat_period": self.policy.heartbeat_period_s,
            "active": active,
            "supervisor": {**self.ledger.tree.to_json(), "tasks": self.figures()},
            **self.ep_info,
            "posix_pid": os.getpid(),
            "report_time": time.time(),
        }
        return messages.pack(messages.EPStatusReport(endpoint_id=uuid.UUID(self.endpoint_id),
                                                     global_state=messages.JsonObject(global_state)))
