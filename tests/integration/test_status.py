"""Operating a running endpoint: `status` shows the live tree (and why a stopped one stopped),
and SIGHUP moves the tree onto an edited config.yaml without losing a task."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from tests.endpoint_harness import THREAD_POOL_CONFIG
from tests.waiting import wait_for

pytestmark = pytest.mark.slow

ONE_WORKER = THREAD_POOL_CONFIG.replace("max_workers: 4", "max_workers: 1")


def status_json(harness) -> dict:
    result = harness.cli("status", harness.name, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def all_running(harness, timeout: float = 20) -> dict:
    """The status once every child runs."""
    def ready():
        view = status_json(harness)
        children = (view["tree"] or {}).get("tree", {}).get("children", {})
        return len(children) == 3 and all(c["state"] == "running" for c in children.values()) and view
    return wait_for(ready, timeout, "every child running in status")


def nap(seconds):
    import time

    time.sleep(seconds)
    return seconds


def test_status_shows_the_live_tree_and_a_restart_after_kill_9(make_endpoint):
    harness = make_endpoint(THREAD_POOL_CONFIG)
    assert harness.run(nap, [(0,)] * 3) == [0] * 3
    view = wait_for(lambda: (v := status_json(harness))["tree"] and v["tree"]["tasks"]["completed"] == 3 and v,
                    5, "a status file with the tasks done")
    assert view["state"] == "Running" and view["pid"] == harness.supervisor().pid
    children = view["tree"]["tree"]["children"]
    assert {role: child["state"] for role, child in children.items()} == {
        "task link": "running", "result link": "running", "engine": "running"}
    assert all(child["restarts"] == 0 for child in children.values())
    assert view["tree"]["links"]["task link"]["connected"] is True
    assert view["tree"]["tasks"]["received"] == 3 and view["tree"]["tasks"]["completed"] == 3
    old_engine = children["engine"]["pid"]

    os.kill(old_engine, signal.SIGKILL)
    restarted = wait_for(lambda: (c := status_json(harness)["tree"]["tree"]["children"]["engine"])["pid"] != old_engine
                         and c["state"] == "running" and c, 10, "the engine's restart in status")
    assert restarted["restarts"] == 1
    text = harness.cli("status", harness.name).stdout
    assert f"Endpoint ep ({harness.endpoint_id}): Running" in text
    assert "| engine " in text and "connected to amqp://" in text and "3 completed" in text
    assert os.stat(harness.directory / "status.json").st_mode & 0o777 == 0o600


def test_status_of_a_stopped_and_of_a_disconnected_endpoint(make_endpoint):
    harness = make_endpoint(THREAD_POOL_CONFIG)
    supervisor = harness.supervisor()
    supervisor.send_signal(signal.SIGKILL)
    supervisor.wait(10)
    view = status_json(harness)
    assert view["state"] == "Disconnected" and view["tree"] is None
    assert "Disconnected" in harness.cli("status", harness.name).stdout
    harness.kill_everything()
    harness.start()
    assert harness.stop().returncode == 0
    view = status_json(harness)
    assert view["state"] == "Stopped" and view["last_stop"]["reason"] == "received SIGTERM"
    assert "Last stop: " in harness.cli("status", harness.endpoint_id).stdout  # by UUID too
    assert not (harness.directory / "status.json").exists()


def test_sighup_moves_the_tree_onto_the_edited_config_without_losing_a_task(make_endpoint):
    harness = make_endpoint(ONE_WORKER)
    wait_for(lambda: (v := status_json(harness))["tree"] and v["tree"]["engine"].get("total_workers") == 1, 40,
             "the first engine's figures")
    task_ids = harness.submit(nap, [(0.2,)] * 30)
    harness.wait_until_running(1)  # mid-run
    (harness.directory / "config.yaml").write_text(THREAD_POOL_CONFIG.replace("max_workers: 4", "max_workers: 3"))
    harness.supervisor().send_signal(signal.SIGHUP)
    results = harness.results(task_ids, timeout=90)
    assert all(r["status"] == "success" for r in results.values()), [r for r in results.values()
                                                                     if r["status"] != "success"][:2]
    assert len(results) == 30
    wait_for(lambda: status_json(harness)["tree"]["engine"].get("total_workers") == 3, 40,
             "the new engine's capacity (3) in status")
    assert "SIGHUP: reloaded" in harness.log()
    view = status_json(harness)
    assert all(child["restarts"] == 1 for child in view["tree"]["tree"]["children"].values())


def test_sighup_with_a_broken_file_keeps_the_running_configuration(make_endpoint):
    harness = make_endpoint(ONE_WORKER)
    before = all_running(harness)
    pids = {role: c["pid"] for role, c in before["tree"]["tree"]["children"].items()}
    (harness.directory / "config.yaml").write_text("engine:\n  type: ThreadPoolEngin\n")
    harness.supervisor().send_signal(signal.SIGHUP)
    wait_for(lambda: "the configuration was not reloaded" in harness.log(), 10, "the refusal in the log")
    assert "did you mean 'ThreadPoolEngine'" in harness.log()
    time.sleep(1.5)
    after = status_json(harness)
    assert {role: c["pid"] for role, c in after["tree"]["tree"]["children"].items()} == pids
    assert harness.run(nap, [(0,)]) == [0]


def test_status_tasks_lists_the_tasks_in_flight_oldest_first(make_endpoint):
    """Operators asked the official for it (globus-compute#154): what is in flight, and since when."""
    harness = make_endpoint(ONE_WORKER)
    function_id = harness.register_function(nap)
    task_ids = harness.submit(nap, [(3,), (0,), (0,)])
    view = wait_for(lambda: len((v := json.loads(harness.cli("status", harness.name, "--tasks", "--json").stdout))
                                ["tasks_in_flight"]) == 3 and v, 10, "three tasks in flight in status")
    listed = view["tasks_in_flight"]
    assert sorted(t["task_id"] for t in listed) == sorted(task_ids)
    assert {t["function_id"] for t in listed} == {function_id}
    assert [t["since"] for t in listed] == sorted(t["since"] for t in listed)  # oldest first
    assert {t["state"] for t in listed} <= {"queued", "handed", "running"}
    text = harness.cli("status", harness.name, "--tasks").stdout
    header = text.splitlines()[1]
    assert all(column in header for column in ("Task", "Function", "State", "Since", "For"))
    assert all(task_id in text for task_id in task_ids) and function_id in text
    harness.results(task_ids)
    wait_for(lambda: "no tasks in flight" in harness.cli("status", harness.name, "--tasks").stdout, 10,
             "no tasks left in flight")
    harness.stop()
    assert "is stopped: no tasks in flight to show" in harness.cli("status", harness.name, "--tasks").stdout
