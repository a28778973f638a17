"""The endpoint's process tree for real: start, kill -9 each part, stop, restart intensity."""

from __future__ import annotations

import os
import signal
import statistics
import time

import psutil
import pytest
import requests

from compute_endpoint.endpoint.exit_codes import Exit
from tests.endpoint_harness import ROLES, THREAD_POOL_CONFIG, EndpointHarness

pytestmark = pytest.mark.slow


def square(x):
    return x * x


def task_uuid(_):
    import os

    return os.environ["GC_TASK_UUID"]


@pytest.fixture
def make_endpoint(start_service, tmp_path):
    harnesses = []

    def make(config_text: str = THREAD_POOL_CONFIG, name: str = "ep") -> EndpointHarness:
        service = harnesses[0].service if harnesses else start_service()
        harness = EndpointHarness(service, tmp_path / f"gc{len(harnesses)}", name, config_text)
        harnesses.append(harness)
        return harness

    yield make
    for harness in harnesses:
        harness.cli("stop", harness.name, "--timeout", "5")
        harness.kill_everything()


def test_start_shows_the_documented_tree_and_runs_tasks(make_endpoint):
    endpoint = make_endpoint()
    result = endpoint.start()
    assert f"Starting endpoint; registered ID: {endpoint.endpoint_id}" in result.stdout
    for step in ("Registering with the Compute service", "Checking the broker", "engine ready", "is running"):
        assert step in result.stdout
    assert endpoint.status() == "Running"
    supervisor = endpoint.supervisor()
    assert supervisor.cmdline()[0] == endpoint.title()
    assert sorted(endpoint.children()) == sorted(ROLES)
    # the daemon is detached from the start command: another session, no terminal
    assert os.getsid(supervisor.pid) != os.getsid(0)
    task_ids = endpoint.submit(task_uuid, [(i,) for i in range(3)])
    results = endpoint.results(task_ids)
    assert [endpoint_value(results[t]) for t in task_ids] == task_ids
    assert endpoint.run(square, [(i,) for i in range(50)]) == [i * i for i in range(50)]

    stopped = endpoint.stop()
    assert stopped.returncode == 0
    assert f"Endpoint <{endpoint.name}> is now stopped" in stopped.stdout
    assert endpoint.status() == "Stopped"
    assert endpoint.tree_processes() == []


def endpoint_value(result):
    from tests.endpoint_harness import SERIALIZER

    return SERIALIZER.deserialize(result["result"])


def test_each_killed_child_is_replaced_in_under_a_second_typically_and_tasks_keep_flowing(make_endpoint):
    endpoint = make_endpoint(THREAD_POOL_CONFIG + "max_restarts: 100\n")
    endpoint.start()
    times: dict[str, list[float]] = {role: [] for role in ROLES}
    replaced_at = dict.fromkeys(ROLES, 0.0)
    kills_per_role = int(os.environ.get("RESTART_KILLS_PER_ROLE", "20"))
    for round_ in range(kills_per_role):
        for role in ROLES:
            # Each child lives 1.1 s before it is killed again, so it counts as healthy and no
            # backoff applies; the others are killed meanwhile.
            time.sleep(max(0.0, replaced_at[role] + 1.1 - time.monotonic()))
            victim = endpoint.children()[role]
            killed = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            _, _ = endpoint.wait_for_child(role, other_than=victim)
            replaced_at[role] = time.monotonic()
            times[role].append(replaced_at[role] - killed)
        if round_ % 5 == 0:
            assert endpoint.run(square, [(round_,)]) == [round_ * round_]
    assert endpoint.status() == "Running"
    assert endpoint.run(square, [(i,) for i in range(20)]) == [i * i for i in range(20)]
    summary = {role: (statistics.median(t), max(t)) for role, t in times.items()}
    print("\nrestart times over", kills_per_role, "kills per role (median s, max s):", summary)
    # The typical replacement is the promise (well under a second); a single one may take longer
    # when the host is loaded (1.26 s seen once in a full parallel CI run). The recovery figure
    # itself is the bench's (kill -9 rows of `make bench`).
    for role, (typical, worst) in summary.items():
        assert typical < 1.0, f"{role}: {times[role]}"
        assert worst < 3.0, f"{role}: {times[role]}"


def test_killing_a_child_ten_times_in_a_row_stops_the_endpoint_as_disconnected(make_endpoint):
    endpoint = make_endpoint()
    endpoint.start()
    supervisor = endpoint.supervisor()
    victim = None
    for _ in range(10):
        if not supervisor.is_running():
            break
        try:
            victim, _ = endpoint.wait_for_child("engine", other_than=victim, timeout=15)
        except AssertionError:
            break
        os.kill(victim, signal.SIGKILL)
    supervisor.wait(timeout=30)
    assert endpoint.status() == "Disconnected"
    assert "more than 5 restarts within 60 s (last: engine); giving up" in endpoint.log()
    assert endpoint.tree_processes() == []
    # start cleans up and runs again
    endpoint.start()
    assert endpoint.status() == "Running"
    assert endpoint.run(square, [(3,)]) == [9]


def test_kill_9_of_the_supervisor_leaves_nothing_and_lists_disconnected(make_endpoint):
    endpoint = make_endpoint()
    endpoint.start()
    tree = [endpoint.supervisor(), *endpoint.supervisor().children(recursive=True)]
    os.kill(tree[0].pid, signal.SIGKILL)
    gone, alive = psutil.wait_procs(tree, timeout=5)
    assert alive == []
    assert endpoint.status() == "Disconnected"
    endpoint.start()  # cleans up after the unclean stop
    assert endpoint.status() == "Running"


def test_sigterm_and_sigquit_stop_gracefully_and_sighup_restarts_children(make_endpoint):
    endpoint = make_endpoint()
    endpoint.start()
    before = endpoint.children()
    endpoint.supervisor().send_signal(signal.SIGHUP)
    for role in ROLES:
        endpoint.wait_for_child(role, other_than=before[role], timeout=30)
    assert endpoint.run(square, [(i,) for i in range(10)]) == [i * i for i in range(10)]
    for signum in (signal.SIGTERM, signal.SIGQUIT):
        supervisor = endpoint.supervisor()
        supervisor.send_signal(signum)
        supervisor.wait(timeout=30)
        assert endpoint.status() == "Stopped"
        assert endpoint.tree_processes() == []
        if signum == signal.SIGTERM:
            endpoint.start()


def test_start_refuses_a_running_endpoint_and_restart_replaces_it(make_endpoint):
    endpoint = make_endpoint()
    endpoint.start()
    first = endpoint.supervisor().pid
    again = endpoint.cli("start", endpoint.name)
    assert again.returncode == 1 and "already running" in again.stderr
    restarted = endpoint.cli("restart", endpoint.name)
    assert restarted.returncode == 0, restarted.stderr
    assert endpoint.supervisor().pid != first
    assert endpoint.status() == "Running"


def test_failing_endpoint_setup_stops_start_with_its_status_and_stderr(make_endpoint):
    endpoint = make_endpoint(THREAD_POOL_CONFIG + "endpoint_setup: |\n  echo preparing\n  echo 'no conda here' >&2\n"
                                                  "  exit 3\n")
    result = endpoint.cli("start", endpoint.name)
    assert result.returncode == 3
    assert "endpoint_setup failed with exit status 3" in result.stderr
    assert "no conda here" in result.stderr
    assert "Traceback" not in result.stderr
    assert endpoint.status() == "Initialized"
    assert "preparing" in endpoint.log()


def test_teardown_runs_on_stop(make_endpoint, tmp_path):
    marker = tmp_path / "torn-down"
    endpoint = make_endpoint(THREAD_POOL_CONFIG + f"endpoint_teardown: touch {marker}\n")
    endpoint.start()
    assert not marker.exists()
    endpoint.stop()
    assert marker.exists()


def test_start_without_login_or_with_bad_config_says_what_to_do(make_endpoint):
    endpoint = make_endpoint()
    endpoint.cli("logout")
    result = endpoint.cli("start", endpoint.name)
    assert result.returncode == Exit.NO_PERMISSION
    assert "login" in result.stderr
    endpoint.cli("login", "--token", endpoint.token)
    (endpoint.directory / "config.yaml").write_text("engine: {type: ThreadPoolEngin}\n")
    bad = endpoint.cli("start", endpoint.name)
    assert bad.returncode == Exit.CONFIG
    assert "did you mean 'ThreadPoolEngine'" in bad.stderr


def test_status_reports_say_online_then_inactive_after_stop(make_endpoint):
    import requests

    endpoint = make_endpoint()
    endpoint.start()
    url = f"{endpoint.service.url}/v2/endpoints/{endpoint.endpoint_id}/status"

    def status():
        return requests.get(url, headers=endpoint.headers, timeout=10).json()

    deadline = time.monotonic() + 15
    while status()["status"] != "online":
        assert time.monotonic() < deadline, status()
        time.sleep(0.2)
    details = status()["details"]
    assert details["engine_type"] == "ThreadPoolEngine" and details["active"] is True
    assert set(details["supervisor"]["children"]) == set(ROLES)
    endpoint.stop()
    deadline = time.monotonic() + 15
    while status()["status"] != "offline":
        assert time.monotonic() < deadline, status()
        time.sleep(0.2)
    assert status()["details"]["active"] is False


def test_broker_refusing_the_credentials_stops_the_endpoint_with_the_reason(start_service, broker_url, tmp_path,
                                                                           rabbitmq_management):
    """Credentials revoked while running: reconnecting cannot help, so the tree stops and says why."""
    import subprocess
    from urllib.parse import unquote, urlsplit

    vhost = broker_url.rsplit("/", 1)[1]
    service = start_service()  # the management API answers: the endpoint gets a broker user of its own
    endpoint = EndpointHarness(service, tmp_path / "gc", "ep", THREAD_POOL_CONFIG)
    endpoint.start()
    registration = requests.put(f"{service.url}/v3/endpoints/{endpoint.endpoint_id}", headers=endpoint.headers,
                                json={"endpoint_name": "ep"}, timeout=10).json()
    handed = urlsplit(registration["task_queue_info"]["connection_url"])
    assert unquote(handed.username) == f"ep-{endpoint.endpoint_id}@{vhost}"
    # That re-registration gave the user a new password; the running links still hold the old one.
    supervisor = endpoint.supervisor()
    subprocess.run(["rabbitmqctl", "-q", "close_all_connections", "--vhost", vhost, "test"], check=True,
                   capture_output=True)
    supervisor.wait(timeout=60)
    log = endpoint.log()
    assert "stopped with exit code 78" in log  # CONFIG_ERROR: restarting cannot fix it
    assert "refused the credentials" in log and "restarting cannot fix that" in log
    assert handed.password not in log
    # Broker URLs are logged with the password redacted: the user name is never followed by one.
    assert f"{handed.username}:" not in log.replace(f"{handed.username}:***@", "")
    assert endpoint.status() == "Disconnected"
    assert endpoint.tree_processes() == []
