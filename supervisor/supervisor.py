"""The supervisor loop: start children, route their messages, restart them by policy.

One thread, one loop, one wait: every child's pipe and process sentinel and the
self-pipe of queued signals go into one ``multiprocessing.connection.wait``. The loop
body reads top to bottom: handle signals, handle messages, reap exited children,
check liveness, start children whose backoff is over, move the stop along.
"""

from __future__ import annotations

import logging
import signal
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from multiprocessing.connection import wait
from typing import Any, Protocol

from setproctitle import setproctitle

from .child import Child, describe_exit, spawn_context
from .control import PARENT, SUPERVISOR, Forgive, Halt, Pong, Ready, StartChild, Stop, StopChild, StopTree
from .liveness import Liveness, Verdict
from .pipe import ParentPipe
from .restarts import Fate, decide
from .signals import SignalQueue
from .spec import ChildSpec, ExitCode, Restart, RestartPolicy
from .states import LIVE_STATES, ChildState
from .status import TreeStatus

log = logging.getLogger(__name__)

Routed = tuple[str, object]  # (name of the child to send to, message)


class Dispatcher(Protocol):
    """What the supervisor consults about the messages it carries. It returns the
    messages to send on; it must never block, and it keeps what a child that is down
    should get once it is back (``child_ready``). A ``StopTree`` addressed to SUPERVISOR
    stops the tree (the dispatcher's own reasons: idle, asked from afar)."""

    def route(self, source: str, message: object) -> Iterable[Routed]: ...

    def child_ready(self, name: str) -> Iterable[Routed]: ...

    def child_exited(self, name: str) -> Iterable[Routed]: ...

    def tick(self, now: float, tree: TreeStatus) -> Iterable[Routed]: ...

    def tree_stopping(self) -> Iterable[Routed]: ...


class Supervisor:
    """Runs a tree of child processes: starts them in order, carries their messages through
    the dispatcher, restarts them by policy, and stops them in reverse order (see the
    module's docstring for the loop)."""

    # The longest the loop waits without an event: how late a ping, a backoff restart, a
    # stop deadline or a status report may be. A quarter second keeps all of them prompt
    # for people and costs nothing measurable (the wait returns at once on any event).
    TICK_S = 0.25

    def __init__(self, specs: Sequence[ChildSpec], policy: RestartPolicy, dispatcher: Dispatcher,
                 child_config: object, title: str = "", reload: Callable[[], object] | None = None,
                 parent: ParentPipe | None = None, liveness: Liveness | None = None):
        self.context = spawn_context()
        # On SIGHUP, before the rolling restart: the children's new config, or an exception that
        # says why the running one stays (gunicorn's reload).
        self.reload = reload
        self.children = {s.name: Child(s, self.context, child_config) for s in specs}
        self.dynamic: set[str] = set()  # children started at run time (StartChild)
        # A supervisor that is itself a child (a sub-tree, as in OTP): it answers its parent's
        # pings from this loop, stops when told, and says it is ready once its children are.
        self.parent = parent
        self._told_parent_ready = False
        self.order = [s.name for s in specs]
        self.policy = policy
        self.liveness = liveness or Liveness()
        self.dispatcher = dispatcher
        self.title = title
        self.restart_times: deque[float] = deque()
        self.booting: list[str] = []  # children still to start, each once the one before is ready
        self.rolling: list[str] = []  # children still to restart for SIGHUP, in order
        self.stop_reason: str | None = None
        self.exit_code = ExitCode.OK
        self.signals = SignalQueue()
        self._next_tick = 0.0

    # ------------------------------------------------------------------ the loop

    def run(self) -> int:
        if self.title:
            setproctitle(self.title)
        self.signals.install([signal.SIGTERM, signal.SIGQUIT, signal.SIGINT, signal.SIGHUP])
        try:
            self.booting = list(self.order)
            self._boot_next()
            while not self._all_stopped():
                self._wait_and_handle()
        finally:
            self._kill_all()
            self.signals.uninstall()
        if self.stop_reason:
            level = logging.INFO if self.exit_code == ExitCode.OK else logging.ERROR
            log.log(level, "supervisor stopped: %s", self.stop_reason)
        return int(self.exit_code)

    def _wait_and_handle(self) -> None:
        live = [(c, c.conn, c.process.sentinel) for c in self.children.values()
                if c.process is not None and c.conn is not None]
        waitables: list[Any] = [self.signals.reader, *(conn for _, conn, _ in live),
                                *(sentinel for _, _, sentinel in live)]
        if self.parent is not None:
            waitables.append(self.parent.conn)
        ready = wait(waitables, timeout=self._next_timeout())
        now = time.monotonic()
        if self.signals.reader in ready:
            self._handle_signals()
        if self.parent is not None and self.parent.conn in ready:
            self._handle_parent()
        for child, conn, _ in live:
            if conn in ready:
                self._handle_messages(child)
        for child, _, sentinel in live:
            if sentinel in ready:
                self._reap(child, now)
        self._check_liveness(now)
        self._start_due(now)
        self._advance_stop(now)
        if now >= self._next_tick:
            self._next_tick = now + self.TICK_S
            self._send(self.dispatcher.tick(now, self.tree_status()))

    def _next_timeout(self) -> float:
        due = [c.restart_at for c in self.children.values() if c.state is ChildState.BACKOFF]
        if not due:
            return self.TICK_S
        return max(0.0, min(self.TICK_S, min(due) - time.monotonic()))

    # ------------------------------------------------------------------ signals

    def _handle_signals(self) -> None:
        for signum in self.signals.drain():
            if signum in (signal.SIGTERM, signal.SIGQUIT, signal.SIGINT):
                self.stop(f"received {signal.Signals(signum).name}")
            elif signum == signal.SIGHUP and self.stop_reason is None:
                self._reload_and_roll()

    def _reload_and_roll(self) -> None:
        if self.reload is not None:
            try:
                config = self.reload()
            except Exception as exc:  # the reload's own error says what is wrong with the new config
                log.error("SIGHUP: the configuration was not reloaded; the running one stays.\n%s", exc)
                return
            for child in self.children.values():
                if child.name not in self.dynamic:  # those started at run time have their own
                    child.config = config  # each takes it at its restart below
        log.info("SIGHUP: restarting children one by one")
        self.rolling = list(self.order)
        self._roll_next()

    def _boot_next(self) -> None:
        if self.booting and self.stop_reason is None:
            self.children[self.booting.pop(0)].start()

    def _roll_next(self) -> None:
        while self.rolling:
            child = self.children[self.rolling[0]]
            # A temporary child is never restarted: stopping it would end it for good.
            if child.state in LIVE_STATES and child.spec.restart is not Restart.TEMPORARY:
                child.request_stop("rolling restart", time.monotonic())
                return
            self.rolling.pop(0)  # not running, or not to be restarted: nothing to do

    # ------------------------------------------------------------------ messages

    def _handle_messages(self, child: Child) -> None:
        try:
            while child.conn is not None and child.conn.poll():
                self._handle_message(child, child.conn.recv())
        except (EOFError, OSError):
            pass  # the child is gone; its sentinel tells the rest

    def _handle_message(self, child: Child, message: object) -> None:
        if isinstance(message, Pong):
            child.health.answered(time.monotonic())
        elif isinstance(message, Ready):
            child.health.answered(time.monotonic())
            if child.state is ChildState.STARTING:
                child.change_state(ChildState.RUNNING, f"ready in {time.monotonic() - child.started_at:.2f} s")
                self._send(self.dispatcher.child_ready(child.name))
                self._boot_next()
                self._tell_parent_if_ready()
                if self.rolling and self.rolling[0] == child.name:
                    self.rolling.pop(0)
                    self._roll_next()
        elif isinstance(message, Halt):
            child.halt = message  # acted on when it exits
        else:
            self._send(self.dispatcher.route(child.name, message))

    def _handle_parent(self) -> None:
        assert self.parent is not None
        try:
            messages = self.parent.receive(0)  # pings are answered in there
        except (EOFError, OSError):
            self.stop("the parent supervisor is gone")
            return
        for message in messages:
            if isinstance(message, Stop):
                self.stop(message.reason or "asked by the parent supervisor")

    def _tell_parent_if_ready(self) -> None:
        if (self.parent is not None and not self._told_parent_ready and not self.booting
                and all(c.state is ChildState.RUNNING for c in self.children.values())):
            self._told_parent_ready = True
            self.parent.ready()

    def _send(self, routed: Iterable[Routed]) -> None:
        for name, message in routed:
            if name == SUPERVISOR:
                self._obey(message)
            elif name == PARENT:
                if self.parent is not None:
                    self.parent.send(message)
            elif name in self.children:
                self.children[name].send(message)  # a child that is down is the dispatcher's to replay
            else:
                log.warning("dropped a %s for %s, which is not in the tree", type(message).__name__, name)

    def _obey(self, message: object) -> None:
        """What the dispatcher asks of the supervisor itself."""
        if isinstance(message, StopTree):
            self.stop(message.reason)
        elif isinstance(message, Forgive):
            child = self.children.get(message.name)
            if child is not None:
                child.forgiven = message.why
        elif isinstance(message, StartChild):
            self._start_dynamic(message.spec, message.config)
        elif isinstance(message, StopChild):
            child = self.children.get(message.name)
            if child is not None and child.state in LIVE_STATES:
                child.retire(message.reason or "asked to stop", time.monotonic())
            elif child is not None and child.state is ChildState.BACKOFF:
                child.change_state(ChildState.STOPPED, message.reason or "asked to stop")
                self._forget_if_dynamic(child)

    def _start_dynamic(self, spec: ChildSpec, config: object) -> None:
        existing = self.children.get(spec.name)
        if existing is not None and existing.state is not ChildState.STOPPED:
            return  # it lives (or is about to be restarted): one child a name
        if self.stop_reason is not None:
            return
        child = Child(spec, self.context, config)
        self.children[spec.name] = child
        if spec.name not in self.order:
            self.order.append(spec.name)  # started last, stopped first
        self.dynamic.add(spec.name)
        log.info("starting %s on request", spec.name)
        child.start()

    def _forget_if_dynamic(self, child: Child) -> None:
        """A child started at run time leaves the tree once it has ended for good."""
        if child.name in self.dynamic and child.state is ChildState.STOPPED and self.stop_reason is None:
            self.dynamic.discard(child.name)
            self.order.remove(child.name)
            del self.children[child.name]

    # ------------------------------------------------------------------ exits

    def _reap(self, child: Child, now: float) -> None:
        """Carry out what restarts.decide says of a child that has exited."""
        code = child.reap()
        uptime = now - child.started_at
        self._send(self.dispatcher.child_exited(child.name))
        if child.state is not ChildState.STOPPING and self.stop_reason is None:  # unasked: say how it went
            log.log(logging.WARNING if code else logging.INFO, "%s (pid %s) %s after %.1f s%s",
                    child.name, child.pid, describe_exit(code), uptime,
                    f"; {child.forgiven}, so it does not count as a restart" if child.forgiven else "")
        decision = decide(child, code, uptime, self.stop_reason is not None, self.policy, self.restart_times, now)
        fate, exited = decision.fate, describe_exit(code)
        if fate is Fate.BACKOFF:
            child.back_off(now + decision.delay_s, f"restart in {decision.delay_s:.2f} s", decision.quick_crashes)
        elif fate is Fate.FORGIVEN:
            child.back_off(now, "restart at once", child.quick_crashes)
        elif fate is Fate.ROLLED:
            child.change_state(ChildState.STOPPED, exited)
            child.start()
        else:
            child.change_state(ChildState.STOPPED, "restart intensity exceeded" if fate is Fate.GAVE_UP_TREE
                               else "its restart intensity exceeded" if fate is Fate.GAVE_UP_ALONE else exited)
            self._after_an_end(child, fate)

    def _after_an_end(self, child: Child, fate: Fate) -> None:
        """A child that has stopped for good: what that means for the tree."""
        halt = child.halt
        if fate is Fate.HALTED_ALONE and halt is not None:
            log.error("%s cannot go on: %s (%s); it is not restarted, and the rest of the tree goes on",
                      child.name, halt.reason, _code_name(halt.code))
        elif fate is Fate.HALTED_TREE and halt is not None:
            self.stop(f"{child.name} cannot go on: {halt.reason} ({_code_name(halt.code)}); "
                      "restarting cannot fix that", _exit_code(halt.code))
        elif fate is Fate.GAVE_UP_ALONE:
            log.error("%s restarted more than %d times within %g s; it is stopped, and the rest of the tree goes on",
                      child.name, self.policy.intensity, self.policy.period_s)
        elif fate is Fate.GAVE_UP_TREE:
            self.stop(f"more than {self.policy.intensity} restarts within {self.policy.period_s:g} s "
                      f"(last: {child.name}); giving up", ExitCode.RESTART_INTENSITY)
        self._forget_if_dynamic(child)

    def _start_due(self, now: float) -> None:
        if self.stop_reason is not None:
            return
        for child in self.children.values():
            if child.state is ChildState.BACKOFF and now >= child.restart_at:
                child.start()

    # ------------------------------------------------------------------ liveness

    def _check_liveness(self, now: float) -> None:
        for child in self.children.values():
            if child.state not in LIVE_STATES:
                continue
            health = child.health
            if health.condemned:  # hung, asked for its stack: killed once the grace is over
                if now >= health.kill_at:
                    child.kill()
                continue
            window_s = self.liveness.hung_after_s
            if child.state is ChildState.STARTING and child.spec.start_timeout_s is not None:
                window_s = max(window_s, child.spec.start_timeout_s)
            judgement = health.judge(now, window_s, self.liveness.busy_cpu_share)
            if judgement.verdict is Verdict.HUNG:
                log.error("%s (pid %s) has not answered for %.1f s and used %.1f s of CPU meanwhile: hung "
                          "(stuck, not busy); killing it (SIGABRT first, for its stack in the log)",
                          child.name, child.pid, now - health.last_answer, judgement.cpu_used_s)
                child.abort(now, self.liveness.abort_grace_s)
                continue
            if judgement.verdict is Verdict.BUSY:
                log.warning("%s (pid %s) has not answered for %.1f s but used %.1f s of CPU in the last %.0f s, "
                            "and waited %.1f s for one: busy, not hung; waiting", child.name, child.pid,
                            now - health.last_answer, judgement.cpu_used_s, window_s, judgement.cpu_waited_s)
            # A starting child is pinged too: one that serves its pipe while it boots (a tree
            # whose own children are starting) shows it is alive however long that takes.
            child.ping(now, self.liveness.ping_interval_s)

    # ------------------------------------------------------------------ stopping

    def stop(self, reason: str, exit_code: ExitCode = ExitCode.OK) -> None:
        """Stop the whole tree: children in reverse start order, each graceful then killed."""
        if self.stop_reason is not None:
            return
        self.stop_reason, self.exit_code = reason, exit_code
        log.log(logging.INFO if exit_code == ExitCode.OK else logging.ERROR, "stopping: %s", reason)
        self.rolling = []
        self._send(self.dispatcher.tree_stopping())
        for child in self.children.values():
            if child.state is ChildState.BACKOFF:
                child.change_state(ChildState.STOPPED, "tree stopping")

    def _advance_stop(self, now: float) -> None:
        if self.stop_reason is None:
            return
        for name in reversed(self.order):
            child = self.children[name]
            if child.state is ChildState.STOPPED:
                continue
            if child.state in LIVE_STATES:
                child.request_stop(self.stop_reason, now)
            elif child.state is ChildState.STOPPING and now > child.stop_deadline:
                log.warning("%s (pid %s) did not stop within %.0f s; killing it", child.name, child.pid,
                            child.spec.shutdown_timeout_s)
                child.kill()
                child.stop_deadline = float("inf")
            return  # one at a time: the next waits for this one to be gone

    def _all_stopped(self) -> bool:
        return self.stop_reason is not None and all(
            c.state is ChildState.STOPPED for c in self.children.values())

    def _kill_all(self) -> None:
        for child in self.children.values():
            child.kill()
            if child.process is not None:
                child.process.join(timeout=5)

    # ------------------------------------------------------------------ reporting


    def tree_status(self) -> TreeStatus:
        return TreeStatus({c.name: c.describe() for c in self.children.values()}, len(self.restart_times),
                          self.stop_reason)


def _exit_code(code: int) -> ExitCode:
    try:
        return ExitCode(code)
    except ValueError:
        return ExitCode.CONFIG_ERROR


def _code_name(code: int) -> str:
    try:
        return ExitCode(code).name
    except ValueError:
        return f"code {code}"
