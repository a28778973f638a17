"""A template-capable endpoint run for real: the root tree's command link takes the service's
start commands, and each set of user options gets a user endpoint of its own, a supervisor
tree under the root one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from urllib.parse import unquote

import psutil
import pytest
import requests

from tests.endpoint_harness import SERIALIZER, EndpointHarness
from tests.waiting import wait_for

pytestmark = pytest.mark.slow

TEMPLATE = """\
engine:
  type: ThreadPoolEngine
  max_workers: {{ workers|default(2) }}
  max_retries_on_system_failure: 2
heartbeat_period: 5
idle_heartbeats_soft: {{ idle|default(0) }}
"""
SCHEMA = {"type": "object", "properties": {"workers": {"type": "integer", "minimum": 1, "maximum": 8},
                                           "idle": {"type": "integer"}}}


def worker_pid(x):
    import os

    return (x, os.getpid())


def slow_worker_pid(x):
    import os
    import time

    time.sleep(0.01)  # 1,000 of them on two workers: about 5 s, long enough to kill things mid-run
    return (x, os.getpid())


@pytest.fixture
def manager(start_service, tmp_path):
    harness = EndpointHarness(start_service(), tmp_path / "gc", "tc", "display_name: Templated\n")
    (harness.directory / "user_config_template.yaml.j2").write_text(TEMPLATE)
    (harness.directory / "user_config_schema.json").write_text(json.dumps(SCHEMA))
    (harness.directory / "user_environment.yaml").write_text("SITE_SCRATCH: /scratch/test\n")
    started = harness.cli("start", harness.name)
    assert started.returncode == 0, started.stdout + started.stderr + harness.log()
    assert "command link ready" in started.stdout
    yield harness
    stop_with_its_user_endpoints(harness)


def stop_with_its_user_endpoints(harness: EndpointHarness) -> None:
    harness.cli("stop", harness.name, "--timeout", "20")
    harness.kill_everything()
    for process in psutil.process_iter(["cmdline"]):  # user endpoints carry their own ids in their titles
        if str(harness.directory) in " ".join(process.info["cmdline"] or ()):
            process.kill()


def submit(harness: EndpointHarness, fn, args: list[tuple], options: dict | None) -> list[str]:
    function_id = harness.register_function(fn)
    payloads = [SERIALIZER.pack_buffers([SERIALIZER.serialize(a), SERIALIZER.serialize({})]) for a in args]
    body = {"tasks": {function_id: payloads}}
    if options is not None:
        body["user_endpoint_config"] = options
    response = requests.post(f"{harness.service.url}/v3/endpoints/{harness.endpoint_id}/submit",
                             headers=harness.headers, json=body, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()["tasks"][function_id]


def values(harness, task_ids: list[str], timeout: float = 90) -> list:
    results = harness.results(task_ids, timeout)
    for task_id in task_ids:
        assert results[task_id]["status"] == "success", results[task_id].get("exception")
    return [SERIALIZER.deserialize(results[t]["result"]) for t in task_ids]


def all_answered(harness, task_ids: list[str]) -> bool:
    response = requests.post(f"{harness.service.url}/v2/batch_status", headers=harness.headers,
                             json={"task_ids": task_ids}, timeout=30)
    results = response.json()["results"]
    return all(results.get(t, {}).get("status") in ("success", "failed") for t in task_ids)


def user_endpoints(harness) -> dict[str, dict]:
    status = json.loads(harness.cli("status", harness.name, "--json").stdout)
    children = ((status.get("tree") or {}).get("tree") or {}).get("children") or {}
    return {name: child for name, child in children.items() if name != "command link"}


def test_each_set_of_user_options_gets_a_user_endpoint_of_its_own(manager):
    started = time.monotonic()
    first = values(manager, submit(manager, worker_pid, [(i,) for i in range(4)], {"workers": 1}))
    first_result_s = time.monotonic() - started
    again = values(manager, submit(manager, worker_pid, [(9,)], {"workers": 1}))
    other = values(manager, submit(manager, worker_pid, [(i,) for i in range(4)], {"workers": 3}))
    default = values(manager, submit(manager, worker_pid, [(0,)], None))
    assert [v[0] for v in first] == list(range(4)) and [v[0] for v in other] == list(range(4))
    wait_for(lambda: len(u := user_endpoints(manager)) == 3 and all(c["state"] == "running" for c in u.values()),
             20, "three user endpoints running")
    # One process tree per user endpoint: the same options reuse it, other ones do not.
    pids = {v[1] for v in first} | {v[1] for v in again}
    assert len(pids) == 1 and {v[1] for v in other}.isdisjoint(pids) and default[0][1] not in pids
    tree = psutil.Process(manager.supervisor().pid)
    titles = [p.cmdline()[0] for p in tree.children(recursive=True) if p.cmdline()]
    assert sum(1 for t in titles if t.endswith(" task link")) == 3
    assert sum(1 for t in titles if t.endswith(" command link")) == 1
    assert first_result_s < 60
    listed = manager.cli("list").stdout
    assert sum(1 for line in listed.splitlines() if "| tc/uep." in line) == 3, listed
    status = manager.cli("status", manager.name).stdout
    assert "| command link" in status and sum(1 for line in status.splitlines() if "| uep." in line) == 3


def test_a_user_endpoint_stops_when_idle_and_starts_again_when_asked(manager):
    assert values(manager, submit(manager, worker_pid, [(1,)], {"idle": 1}))[0][0] == 1
    wait_for(lambda: not user_endpoints(manager), 40, "the idle user endpoint leaving the tree")
    assert values(manager, submit(manager, worker_pid, [(2,)], {"idle": 1}))[0][0] == 2


def test_options_the_schema_refuses_start_nothing_and_fail_their_tasks_with_the_reason(manager):
    bad = submit(manager, worker_pid, [(1,)], {"workers": 99})
    result = manager.results(bad, timeout=30)[bad[0]]  # the endpoint tells the service; no hang
    assert result["status"] == "failed"
    assert "user option workers: 99 is greater than the maximum of 8" in result["exception"]
    assert not user_endpoints(manager)
    assert values(manager, submit(manager, worker_pid, [(2,)], {"workers": 2}))[0][0] == 2  # others run


def child_titled(parent: psutil.Process, suffix: str) -> psutil.Process | None:
    for process in parent.children():
        try:
            if process.cmdline() and process.cmdline()[0].endswith(suffix):
                return process
        except psutil.NoSuchProcess:
            continue
    return None


def test_kill_9_of_the_command_link_a_user_endpoint_and_its_engine_loses_no_task(manager):
    task_ids = submit(manager, slow_worker_pid, [(i,) for i in range(1000)], {"workers": 2})
    endpoint = wait_for(lambda: (u := user_endpoints(manager)) and next(iter(u.values())), 30, "a user endpoint")
    sub_tree = psutil.Process(endpoint["pid"])
    engine = wait_for(lambda: child_titled(sub_tree, " engine"), 30, "the user endpoint's engine")
    os.kill(engine.pid, signal.SIGKILL)
    command_link = child_titled(manager.supervisor(), " command link")
    os.kill(command_link.pid, signal.SIGKILL)
    wait_for(lambda: (e := child_titled(sub_tree, " engine")) and e.pid != engine.pid, 30, "a new engine")
    os.kill(sub_tree.pid, signal.SIGKILL)
    done = requests.post(f"{manager.service.url}/v2/batch_status", headers=manager.headers,
                         json={"task_ids": task_ids}, timeout=30).json()["results"]
    assert sum(1 for r in done.values() if r["status"] == "success") < 1000  # the kills came mid-run
    got = values(manager, task_ids, timeout=180)
    assert sorted(v[0] for v in got) == list(range(1000))  # every task, each with one result
    restarted = next(iter(user_endpoints(manager).values()))
    assert restarted["restarts"] >= 1 and restarted["pid"] != sub_tree.pid
    assert child_titled(manager.supervisor(), " command link").pid != command_link.pid


def test_an_endpoint_configured_by_the_official_4_19_runs_under_ours(start_service, tmp_path):
    """Its directory as the official `configure` writes it (GlobusComputeEngine template and
    all), started by ours unchanged; tasks with and without user options."""
    import subprocess

    from tests.official_manager import official_user_venv

    base = tmp_path / "gc"
    made = subprocess.run([str(official_user_venv() / "bin" / "globus-compute-endpoint"), "configure", "offep",
                           "--multi-user", "false"], env=dict(os.environ, GLOBUS_COMPUTE_USER_DIR=str(base)),
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stdout + made.stderr
    written = {p.name: p.read_text() for p in (base / "offep").iterdir()}
    harness = EndpointHarness(start_service(), base, "offep", config_text=None)  # the directory as it is
    try:
        started = harness.cli("start", "offep")
        assert started.returncode == 0, started.stdout + started.stderr + harness.log()
        # The official template turns the SDK's user_runtime into a uv environment to install:
        # these submits carry none (no network here), as a user pinning nothing would.
        assert values(harness, submit(harness, worker_pid, [(1,), (2,)], None), timeout=120)[1][0] == 2
        options = {"endpoint_setup": "echo the user endpoint is set up"}
        assert values(harness, submit(harness, worker_pid, [(3,)], options), timeout=120)[0][0] == 3
        assert len(user_endpoints(harness)) == 2
        logs = [p.read_text() for p in (base / "offep" / "user_endpoints").glob("*/endpoint.log")]
        assert sum("the user endpoint is set up" in text for text in logs) == 1
        assert {p.name: p.read_text() for p in (base / "offep").iterdir() if p.name in written} == written
    finally:
        harness.cli("stop", "offep", "--timeout", "30")
        harness.kill_everything()
        for process in psutil.process_iter(["cmdline"]):
            if str(harness.directory) in " ".join(process.info["cmdline"] or ()):
                process.kill()


def nested(depth: int) -> dict:
    options: dict = {"leaf": 1}
    for _ in range(depth):
        options = {"n": options}
    return options


def test_poison_options_never_stop_the_tree_and_the_service_refuses_what_the_endpoint_would(manager, broker_url):
    """Findings: {"self": 1} raised a TypeError out of render(**options) that killed the root
    supervisor, and the unacknowledged command killed it again after each restart; options
    900 deep crash-looped the command link; a lone surrogate crash-looped a user endpoint;
    options over 64 KiB got 200 and their tasks waited forever."""
    import kombu

    from compute_endpoint.protocol import commands

    url = f"{manager.service.url}/v3/endpoints/{manager.endpoint_id}/submit"
    function_id = manager.register_function(worker_pid)
    payload = SERIALIZER.pack_buffers([SERIALIZER.serialize((1,)), SERIALIZER.serialize({})])
    for options, status, says in ((nested(900), 400, "nested deeper than"),
                                  ({"text": "\ud800"}, 400, "not valid Unicode"),
                                  ({"big": "x" * (70 * 1024)}, 413, "bytes of JSON")):
        body = json.dumps({"tasks": {function_id: [payload]}, "user_endpoint_config": options})  # as the SDK would
        response = requests.post(url, headers={**manager.headers, "Content-Type": "application/json"}, data=body,
                                 timeout=60)
        assert response.status_code == status and says in response.text, (response.status_code, response.text)

    # Forged straight onto the command queue, past the service: each is read, acknowledged and
    # refused, and the tree runs on.
    creds = {"endpoint_id": "00000000-0000-4000-8000-000000000001",
             **{key: {"queue": "nowhere", "connection_url": broker_url} for key in commands.QUEUE_INFO_KEYS}}
    with kombu.Connection(broker_url) as connection:
        producer = kombu.Producer(connection.channel())
        for options in (nested(900), {"text": "\ud800"}, {"self": 1, "workers": 1}):
            body, properties = commands.start_endpoint("uep.poison", creds, options, {}, [])
            producer.publish(body, exchange="", routing_key=f"{manager.endpoint_id}.commands", **properties)
    wait_for(lambda: "uep.poison" in manager.log(), 20, "the forged commands read")

    vhost = unquote(broker_url.rsplit("/", 1)[1])

    def commands_left() -> str:  # rabbitmqctl's figures are the broker's now (the management API's lag)
        return subprocess.run(["rabbitmqctl", "-q", "list_queues", "-p", vhost, "name", "messages_ready",
                               "messages_unacknowledged", "--no-table-headers"],
                              capture_output=True, text=True, timeout=60).stdout
    commands_queue = f"{manager.endpoint_id}.commands"
    wait_for(lambda: f"{commands_queue}\t0\t0" in commands_left(), 30,
             "the forged commands gone from the queue, none held to be redelivered")
    assert manager.status() == "Running"

    # Through the service, an option named "self" is only an option.
    assert values(manager, submit(manager, worker_pid, [(5,)], {"self": 1, "workers": 1}))[0][0] == 5
    assert manager.supervisor().is_running()


def refused_function():
    return "ran"


def test_a_user_endpoint_inherits_its_managers_allowed_functions_at_both_ends(start_service, tmp_path, broker_url):
    """Finding: a function refused at the manager's id ran when submitted straight to the id
    of one of its user endpoints (that id is in the service's endpoint list and every task)."""
    import uuid

    import kombu

    from compute_endpoint.protocol import messages

    harness = EndpointHarness(start_service(), tmp_path / "gc", "tc", "display_name: Templated\n")
    allowed_id = harness.register_function(worker_pid)
    refused_id = harness.register_function(refused_function)
    (harness.directory / "config.yaml").write_text(f"display_name: Templated\nallowed_functions: [{allowed_id}]\n")
    (harness.directory / "user_config_template.yaml.j2").write_text(TEMPLATE)
    started = harness.cli("start", harness.name)
    assert started.returncode == 0, started.stdout + started.stderr + harness.log()
    try:
        assert values(harness, submit(harness, worker_pid, [(1,)], {"workers": 1}))[0][0] == 1
        payload = SERIALIZER.pack_buffers([SERIALIZER.serialize(()), SERIALIZER.serialize({})])
        to_manager = requests.post(f"{harness.service.url}/v3/endpoints/{harness.endpoint_id}/submit",
                                   headers=harness.headers, json={"tasks": {refused_id: [payload]}}, timeout=30)
        assert to_manager.status_code == 403
        listed = requests.get(f"{harness.service.url}/v2/endpoints", headers=harness.headers, timeout=30).json()
        [user_endpoint_id] = [e["uuid"] for e in listed if e["name"].startswith("uep.")]
        to_user_endpoint = requests.post(f"{harness.service.url}/v3/endpoints/{user_endpoint_id}/submit",
                                         headers=harness.headers, json={"tasks": {refused_id: [payload]}}, timeout=30)
        assert to_user_endpoint.status_code == 403, to_user_endpoint.text

        # Past the service, straight onto the user endpoint's queue: the endpoint refuses it too.
        task_id = str(uuid.uuid4())
        code = SERIALIZER.pack_buffers([SERIALIZER.serialize(refused_function)])
        body = messages.pack(messages.Task(task_id=uuid.UUID(task_id), task_buffer=code + payload))
        tap = kombu.Queue(f"tap-{task_id[:8]}", kombu.Exchange("results", type="topic", passive=True),
                          routing_key=f"{user_endpoint_id}.results", auto_delete=True)
        with kombu.Connection(broker_url) as connection:
            tap.bind(connection.default_channel).declare()
            kombu.Producer(connection.channel()).publish(
                body, exchange="tasks", routing_key=f"{user_endpoint_id}.tasks", delivery_mode=2,
                headers={"task_uuid": task_id, "function_uuid": refused_id, "resource_specification": "null"})
            deadline = time.monotonic() + 30
            while (message := tap.bind(connection.default_channel).get(no_ack=True)) is None:
                assert time.monotonic() < deadline, "no result for the forged task"
                time.sleep(0.2)
        result = messages.unpack(message.body)
        assert result.is_error and "is not allowed on endpoint" in result.data, result.data
    finally:
        stop_with_its_user_endpoints(harness)


def test_a_flood_of_distinct_options_waits_its_turn_under_the_caps_and_every_task_is_answered(start_service,
                                                                                             tmp_path):
    """Finding: 40 submits with distinct options started 40 sub-trees at once on 2 cores; their
    starts passed the hung timeout, they were killed, the manager's restart intensity ran out
    and it stopped with every user endpoint. Scaled down: caps of 2 running and 1 starting,
    six distinct options submitted at once."""
    harness = EndpointHarness(start_service(), tmp_path / "gc", "tc",
                              "display_name: Templated\nmax_user_endpoints: 2\nmax_user_endpoint_starts: 1\n")
    (harness.directory / "user_config_template.yaml.j2").write_text(TEMPLATE)
    (harness.directory / "user_config_schema.json").write_text(json.dumps(SCHEMA))
    harness.start()
    try:
        submitted = [submit(harness, worker_pid, [(k,)], {"workers": k, "idle": 1}) for k in range(1, 7)]
        most_alive, seen_waiting, killed = 0, "", None
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            status = json.loads(harness.cli("status", harness.name, "--json").stdout)
            children = user_endpoints(harness)
            most_alive = max(most_alive, sum(1 for c in children.values() if c["state"] != "stopped"))
            if any(c.get("state") == "waiting" for c in (status["tree"] or {}).get("user_endpoints", {}).values()):
                seen_waiting = seen_waiting or harness.cli("status", harness.name).stdout
            running = [c for c in children.values() if c["state"] == "running"]
            if killed is None and running:  # a user endpoint's crash costs its manager nothing
                killed = running[0]["pid"]
                os.kill(killed, signal.SIGKILL)
            if all_answered(harness, [t for ids in submitted for t in ids]):
                break
            time.sleep(0.3)
        assert [values(harness, ids, timeout=5)[0][0] for ids in submitted] == list(range(1, 7))
        assert most_alive <= 2, most_alive
        assert "waiting their turn" in seen_waiting and "waiting: uep." in seen_waiting, seen_waiting
        status = json.loads(harness.cli("status", harness.name, "--json").stdout)
        assert status["state"] == "Running" and status["tree"]["tree"]["restarts_in_window"] == 0
        assert killed is not None and f"(pid {killed}) killed by SIGKILL" in harness.log()
        assert "hung" not in harness.log() and "giving up" not in harness.log()
    finally:
        stop_with_its_user_endpoints(harness)


def test_the_service_reclaims_a_gone_user_endpoint_and_registers_it_again_when_asked(start_service, tmp_path,
                                                                                     broker_url, rabbitmq_management):
    """Finding: every distinct set of options left a RabbitMQ user, a queue and a database row
    that were never reclaimed."""
    from urllib.parse import quote, urlsplit

    from compute_endpoint.service.broker_users import endpoint_user

    service = start_service(extra_args=["--reclaim-user-endpoints-after", "3"])
    harness = EndpointHarness(service, tmp_path / "gc", "tc", "display_name: Templated\n")
    (harness.directory / "user_config_template.yaml.j2").write_text(TEMPLATE)
    (harness.directory / "user_config_schema.json").write_text(json.dumps(SCHEMA))
    harness.start()
    vhost = urlsplit(broker_url).path.lstrip("/")
    auth = ("guest", "guest")

    def user_endpoint_ids() -> list[str]:
        listed = requests.get(f"{service.url}/v2/endpoints", headers=harness.headers, timeout=30).json()
        return [e["uuid"] for e in listed if e["name"].startswith("uep.")]

    def on_the_broker(uep: str) -> tuple[int, int]:
        user = requests.get(f"{rabbitmq_management}/users/{quote(endpoint_user(uep, vhost), safe='')}", auth=auth,
                            timeout=10)
        queue = requests.get(f"{rabbitmq_management}/queues/{quote(vhost, safe='')}/{uep}.tasks", auth=auth,
                             timeout=10)
        return user.status_code, queue.status_code

    try:
        assert values(harness, submit(harness, worker_pid, [(1,)], {"idle": 1}))[0][0] == 1
        [uep] = user_endpoint_ids()
        assert on_the_broker(uep) == (200, 200)
        # It stops itself once idle (a heartbeat of 5 s), and is reclaimed 3 s after its last word.
        wait_for(lambda: not user_endpoint_ids(), 90, "the gone user endpoint reclaimed")
        assert f"reclaimed user endpoint {uep}" in service.log.read_text()
        assert on_the_broker(uep) == (404, 404)
        assert not user_endpoints(harness)
        # The next submit with the same options registers it again, under the same id.
        assert values(harness, submit(harness, worker_pid, [(2,)], {"idle": 1}))[0][0] == 2
        assert user_endpoint_ids() == [uep] and on_the_broker(uep) == (200, 200)
    finally:
        stop_with_its_user_endpoints(harness)


def where_and_what():
    import os

    return (os.getcwd(), {name: os.environ.get(name) for name in (
        "GLOBUS_COMPUTE_ENDPOINT_NAME", "GC_USER_PYTHON_VERSION", "GC_USER_SDK_VERSION", "CWD",
        "GLOBUS_COMPUTE_LOG_PATH", "GLOBUS_COMPUTE_ENDPOINT_DIR")})


def test_the_officials_layout_without_a_config_and_its_reserved_variables_and_environment(start_service, tmp_path):
    """No config.yaml (the official reads that as a manager with defaults), a template named
    .yaml (the official's fallback from .j2), _GC.env and _GC.mapped_identity in it, and
    user_environment.yaml's CWD and log path."""
    import pwd

    harness = EndpointHarness(start_service(), tmp_path / "gc", "tc", "display_name: Templated\n")
    (harness.directory / "config.yaml").unlink()
    rendered = tmp_path / "rendered"
    (harness.directory / "user_config_template.yaml").write_text(
        "engine:\n  type: ThreadPoolEngine\n  max_workers: 1\nheartbeat_period: 5\n"
        "endpoint_setup: \"echo {{ _GC.mapped_identity.local.uname }}-{{ _GC.env.SITE_MARK }} > "
        f"{rendered}\"\n")
    work, log_path = tmp_path / "work", tmp_path / "logs" / "uep.log"
    work.mkdir()
    (harness.directory / "user_environment.yaml").write_text(f"CWD: {work}\nGLOBUS_COMPUTE_LOG_PATH: {log_path}\n")
    harness.env["SITE_MARK"] = "marked"
    harness.start()
    try:
        function_id = harness.register_function(where_and_what)
        payload = SERIALIZER.pack_buffers([SERIALIZER.serialize(()), SERIALIZER.serialize({})])
        response = requests.post(
            f"{harness.service.url}/v3/endpoints/{harness.endpoint_id}/submit", headers=harness.headers, timeout=60,
            json={"tasks": {function_id: [payload]}, "user_endpoint_config": {},
                  "user_runtime": {"python": {"version": "3.12.1"}, "globus_compute_sdk_version": "4.19.0",
                                   "globus_compute_sdk_version_info": None}})
        assert response.status_code == 200, response.text
        [[cwd, environment]] = values(harness, response.json()["tasks"][function_id])
        [name] = user_endpoints(harness)
        assert cwd == str(work) and environment == {
            "GLOBUS_COMPUTE_ENDPOINT_NAME": name, "GC_USER_PYTHON_VERSION": "3.12.1", "GC_USER_SDK_VERSION": "4.19.0",
            "CWD": str(work), "GLOBUS_COMPUTE_LOG_PATH": str(log_path),
            "GLOBUS_COMPUTE_ENDPOINT_DIR": str(harness.directory / "user_endpoints" / name)}
        assert log_path.exists() and "task link" in log_path.read_text()  # the user endpoint logs there
        assert rendered.read_text().strip() == f"{pwd.getpwuid(os.geteuid()).pw_name}-marked"
    finally:
        stop_with_its_user_endpoints(harness)
