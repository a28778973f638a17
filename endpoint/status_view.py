"""What `globus-compute-endpoint status` shows: the endpoint's state and, while it runs, the
tree as its supervisor last wrote it (status_board.py); why it stopped when it does not
run. Reads files only: it never asks the supervisor or the service."""

from __future__ import annotations

import time

from ..supervisor.status import TreeStatus
from .directory import EndpointDirectory
from .status import EndpointState, endpoint_status
from .status_board import read_status

# A supervisor writes every second: a file older than this means a busy or stuck loop.
STALE_AFTER_S = 5.0


def gather(directory: EndpointDirectory) -> dict:
    """Everything `status` shows, as `status --json` prints it."""
    status = endpoint_status(directory)
    view: dict = {"name": directory.name, "endpoint_id": str(status.endpoint_id) if status.endpoint_id else None,
                  "state": status.label, "pid": status.pid, "tree": None, "last_stop": directory.read_last_stop()}
    if status.state is EndpointState.RUNNING:
        snapshot = read_status(directory.path)
        if snapshot is not None:
            snapshot["age_s"] = round(max(0.0, time.time() - snapshot.get("written", 0)), 1)
        view["tree"] = snapshot
        view["last_stop"] = None  # of an earlier run
    return view


def render_tasks(view: dict) -> str:
    """`status --tasks`: the tasks in flight, oldest first."""
    from texttable import Texttable

    tree = view["tree"] or {}
    listed = tree.get("tasks_in_flight")
    if view["state"] != EndpointState.RUNNING.value or listed is None:
        return f"Endpoint {view['name']} is {view['state'].lower()}: no tasks in flight to show."
    in_flight = (tree.get("tasks") or {}).get("in_flight", len(listed))
    if not listed:
        return f"Endpoint {view['name']}: no tasks in flight."
    now = time.time()
    table = Texttable(max_width=0)
    table.set_deco(Texttable.BORDER | Texttable.HEADER | Texttable.VLINES)
    table.header(["Task", "Function", "State", "Since", "For", "Engine losses"])
    for task in listed:
        table.add_row([task["task_id"], task.get("function_id") or "-", task["state"], _clock(task.get("since")),
                       _duration(now - task.get("since", now)), task.get("attempts", 0)])
    more = in_flight - len(listed)
    return table.draw() + (f"\n... and {more} more in flight (the oldest {len(listed)} are shown)" if more > 0 else "")


def render(view: dict) -> str:
    lines = [f"Endpoint {view['name']} ({view['endpoint_id'] or 'never registered'}): {view['state']}"
             + (f", pid {view['pid']}" if view["pid"] else "")]
    tree = view["tree"]
    if tree is not None:
        lines += _tree_lines(tree)
    elif view["state"] == EndpointState.RUNNING.value:
        lines.append("No status file yet: the endpoint is starting (or was started by an older version).")
    if view["last_stop"] and view["state"] != EndpointState.RUNNING.value:
        stop = view["last_stop"]
        lines.append(f"Last stop: {_clock(stop.get('time'))}: {stop['reason']} (exit code {stop.get('exit_code')})")
    return "\n".join(lines)


def _tree_lines(tree: dict) -> list[str]:
    from texttable import Texttable

    now = time.time()
    lines = []
    if tree.get("started"):
        lines.append(f"Up {_duration(now - tree['started'])}, since {_clock(tree['started'])}")
    if tree.get("age_s", 0) > STALE_AFTER_S:
        lines.append(f"Warning: the status file is {tree['age_s']:.0f} s old: the supervisor's loop is busy or stuck")
    supervised = TreeStatus.from_json(tree.get("tree") or {})
    if supervised.stopping:
        lines.append(f"Stopping: {supervised.stopping}")
    table = Texttable(max_width=0)
    table.set_deco(Texttable.BORDER | Texttable.HEADER | Texttable.VLINES)
    table.header(["Child", "PID", "State", "For", "Restarts", "Broker"])
    for role, child in supervised.children.items():
        link = (tree.get("links") or {}).get(role)
        broker = ""
        if isinstance(link, dict):
            broker = ("" if link.get("connected") else "DOWN: ") + str(link.get("detail"))
        table.add_row([role, child.pid or "-", child.state.value, _duration(now - (child.since or now)), child.restarts,
                       broker])
    lines.append(table.draw())
    limits = tree.get("user_endpoint_limits")
    if limits:
        lines.append(f"User endpoints: {limits['running']} of at most {limits['max']} ({limits['starting']} starting, "
                     f"of at most {limits['max_starts']} at once); {limits['waiting']} waiting their turn"
                     + "".join(f"\n  waiting: {name} (for {_duration(now - child.get('since', now))})"
                               for name, child in (tree.get("user_endpoints") or {}).items()
                               if child.get("state") == "waiting"))
    tasks = tree.get("tasks") or {}
    lines.append(f"Tasks: {tasks.get('in_flight', 0)} in flight ({tasks.get('queued', 0)} queued, "
                 f"{tasks.get('handed', 0) + tasks.get('running', 0)} in the engine, {tasks.get('done', 0)} "
                 f"awaiting the broker's confirm); {tasks.get('received', 0)} received, "
                 f"{tasks.get('completed', 0)} completed, {tasks.get('duplicates', 0)} duplicates, "
                 f"{tasks.get('retried', 0)} retried")
    engine = tree.get("engine") or {}
    if engine:
        figures = [f"{engine.get('total_workers', '?')} workers", f"{engine.get('outstanding_tasks', 0)} outstanding"]
        if "blocks" in engine or "managers" in engine:
            figures.append(f"{engine.get('blocks', engine.get('managers', 0))} blocks")
        lines.append(f"Engine: {engine.get('engine_type', '?')}, " + ", ".join(figures))
    report = tree.get("last_status_report")
    lines.append(f"Last status report: {_duration(now - report) + ' ago' if report else 'none yet'} "
                 f"(every {tree.get('heartbeat_period', 0):g} s)")
    return lines


def _clock(stamp: object) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp)) if isinstance(stamp, (int, float)) else "?"


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"
