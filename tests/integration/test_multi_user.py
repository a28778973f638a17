"""A multi-user endpoint run for real, as root: two local users made for the test, the
identities alice and bob of compute-service mapped to them by an expression mapping, and each
identity's tasks running in a sub-tree that became its user before it ran anything."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from pathlib import Path

import psutil
import pytest
import requests

from tests.endpoint_harness import SERIALIZER, EndpointHarness, Submitter
from tests.local_users import mapping
from tests.shared_install import shared_install
from tests.waiting import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("multi_user"), pytest.mark.timeout(900),  # the shared install
              pytest.mark.skipif(os.geteuid() != 0, reason="a multi-user endpoint runs as root (CI runs as root)")]

TEMPLATE = """\
engine:
  type: ProcessPoolEngine
  max_workers: 2
heartbeat_period: 5
"""


def who_am_i(path=None):
    import os

    caps = [line.split()[1] for line in open("/proc/self/status") if line.startswith("CapEff:")][0]
    if path:
        with open(path, "w") as out:
            out.write("written by a task")
    return {"uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "groups": sorted(os.getgroups()),
            "cap_eff": caps, "home": os.environ.get("HOME"), "user": os.environ.get("USER"), "cwd": os.getcwd(),
            "umask": os.umask(0o077), "pid": os.getpid()}


def nap(seconds):
    import os
    import time

    time.sleep(seconds)
    return os.getuid()


def read_file(path):
    with open(path) as handle:
        return handle.read()


def signal_process(pid):
    import os
    import signal

    try:
        os.kill(pid, signal.SIGTERM)
    except PermissionError as exc:
        return f"refused: {exc.strerror}"
    return "sent"


class Identity(Submitter):
    """A compute-service identity submitting to the endpoint with its own token."""

    def __init__(self, service, name: str, endpoint_id: str):
        self.service, self.name, self.endpoint_id = service, name, endpoint_id
        self.headers = {"Authorization": f"Bearer {service.token(name)}"}
        self._function_ids = {}

    def outcomes(self, task_ids: list[str], timeout: float = 120) -> list[dict]:
        def answered():
            results = requests.post(f"{self.service.url}/v2/batch_status", headers=self.headers,
                                    json={"task_ids": task_ids}, timeout=30).json()["results"]
            done = all(results.get(t, {}).get("status") in ("success", "failed") for t in task_ids)
            return done and results
        results = wait_for(answered, timeout, f"{self.name}'s results")
        return [results[t] for t in task_ids]

    def values(self, fn, arg_lists: list[tuple], timeout: float = 120) -> list:
        outcomes = self.outcomes(self.submit(fn, arg_lists), timeout)
        assert all(o["status"] == "success" for o in outcomes), [o.get("exception") for o in outcomes]
        return [SERIALIZER.deserialize(o["result"]) for o in outcomes]

    def failure(self, fn, args: tuple) -> str:
        [outcome] = self.outcomes(self.submit(fn, [args]), 60)
        assert outcome["status"] == "failed", outcome
        return outcome["exception"]


@pytest.fixture(scope="module")
def installed() -> Path:
    """This checkout, installed where the test users can run it (tests/shared_install.py)."""
    return shared_install()


@pytest.fixture
def start_multi_user(start_service, tmp_path, local_users, installed):
    """Start a multi-user endpoint as root, with high_assurance (the audit log) and, given a
    PAM service name, PAM; stopped, with every test user's process, at the end."""
    started = []

    def start(pam_service: str | None = None) -> EndpointHarness:
        harness = EndpointHarness(start_service(), tmp_path / "gc", "mu", config_text=None, bin_dir=installed)
        made = harness.cli("configure", "--multi-user", "--contact-email", "admin@example.edu", harness.name)
        assert made.returncode == 0, made.stdout + made.stderr
        (harness.directory / "user_config_template.yaml.j2").write_text(TEMPLATE)
        alice, bob = local_users
        (harness.directory / "example_identity_mapping_config.json").write_text(mapping(
            {"alice": alice.pw_name, "bob": bob.pw_name, "mallory": "root", "ghost": "nosuchuser0x"}))
        config = (harness.directory / "config.yaml").read_text() + "high_assurance: true\n"
        if pam_service:
            config = config.replace("  enable: false\n  service_name: globus-compute-endpoint",
                                    f"  enable: true\n  service_name: {pam_service}")
        (harness.directory / "config.yaml").write_text(config)
        result = harness.cli("start", harness.name)
        assert result.returncode == 0, result.stdout + result.stderr + harness.log()
        started.append(harness)
        return harness

    yield start
    for harness in started:
        harness.cli("stop", harness.name, "--timeout", "20")
        harness.kill_everything()
    for user in local_users:
        for process in psutil.process_iter(["uids"]):
            if process.info["uids"] and process.info["uids"].real == user.pw_uid:
                process.kill()


@pytest.fixture
def multi_user(start_multi_user):
    return start_multi_user()


def test_each_identity_runs_as_its_own_user_with_nothing_of_roots(multi_user, local_users):
    alice_user, bob_user = local_users
    alice = Identity(multi_user.service, "alice", multi_user.endpoint_id)
    bob = Identity(multi_user.service, "bob", multi_user.endpoint_id)
    written = Path(alice_user.pw_dir) / "from-a-task.txt"
    [seen_by_alice] = alice.values(who_am_i, [(str(written),)])
    [seen_by_bob] = bob.values(who_am_i, [()])
    for seen, user in ((seen_by_alice, alice_user), (seen_by_bob, bob_user)):
        assert (seen["uid"], seen["euid"], seen["gid"]) == (user.pw_uid, user.pw_uid, user.pw_gid)
        assert seen["groups"] == sorted(os.getgrouplist(user.pw_name, user.pw_gid)), seen
        assert int(seen["cap_eff"], 16) == 0, seen  # no capability of root's
        assert (seen["home"], seen["user"]) == (user.pw_dir, user.pw_name)
        assert seen["umask"] == 0o077
    info = written.stat()
    assert (info.st_uid, info.st_gid) == (alice_user.pw_uid, alice_user.pw_gid)
    # Each user endpoint's files are in its user's home, owned by them.
    for user in local_users:
        [uep_dir] = (Path(user.pw_dir) / ".globus_compute").iterdir()
        assert uep_dir.stat().st_uid == user.pw_uid and (uep_dir / "endpoint.log").stat().st_uid == user.pw_uid
    # ps shows each sub-tree under its user; the manager and its command link under root.
    tree = psutil.Process(multi_user.supervisor().pid)
    by_user: dict[str, set[str]] = {}
    for process in tree.children(recursive=True):
        title = process.cmdline()[0]
        if title.startswith("Globus Compute Endpoint ("):  # not a pool's worker, nor the resource tracker
            by_user.setdefault(process.username(), set()).add(title.rsplit(")", 1)[-1].strip() or "user endpoint")
    for user in local_users:
        assert by_user[user.pw_name] == {"user endpoint", "task link", "result link", "engine"}, by_user
    assert tree.username() == "root" and by_user["root"] == {"command link"}


def test_list_status_and_stop_work_on_it_as_on_any_endpoint(multi_user, local_users):
    alice = Identity(multi_user.service, "alice", multi_user.endpoint_id)
    assert alice.values(nap, [(0,)]) == [local_users[0].pw_uid]
    assert multi_user.status() == "Running"
    view = json.loads(multi_user.cli("status", multi_user.name, "--json").stdout)
    children = view["tree"]["tree"]["children"]
    assert "command link" in children and len(children) == 2, children  # the command link, alice's user endpoint
    stopped = multi_user.cli("stop", multi_user.name, "--timeout", "30")
    assert stopped.returncode == 0 and multi_user.status() == "Stopped", stopped.stdout + stopped.stderr
    audit = (multi_user.directory / "audit.log").read_text().splitlines()
    assert "Begin CEP session" in audit[0] and "End CEP session" in audit[-1], audit
    assert not [p for p in psutil.process_iter(["uids"]) if p.info["uids"]
                and p.info["uids"].real == local_users[0].pw_uid], "alice's sub-tree outlived the stop"


def test_a_users_task_cannot_reach_the_manager_or_another_user(multi_user, local_users):
    alice_user, bob_user = local_users
    alice = Identity(multi_user.service, "alice", multi_user.endpoint_id)
    bob = Identity(multi_user.service, "bob", multi_user.endpoint_id)
    [bob_pid] = [v["pid"] for v in bob.values(who_am_i, [()])]
    for secret in (multi_user.base_dir / "storage.db", multi_user.directory / "config.yaml",
                   Path(bob_user.pw_dir) / ".globus_compute"):
        assert "Permission denied" in alice.failure(read_file, (str(secret),)), secret
    assert alice.values(signal_process, [(multi_user.supervisor().pid,)]) == ["refused: Operation not permitted"]
    assert alice.values(signal_process, [(bob_pid,)]) == ["refused: Operation not permitted"]
    assert multi_user.supervisor().is_running()


def test_bad_identities_start_nothing_and_say_why(multi_user):
    for name, says in (("carol", "Identity failed to map to a local user name"),
                       ("mallory", "mapped to the privileged user (uid 0)"),
                       ("ghost", "mapped to a local user name, but that local user does not exist")):
        identity = Identity(multi_user.service, name, multi_user.endpoint_id)
        error = identity.failure(nap, (0,))
        assert says in error, (name, error)
        assert "nosuchuser0x" not in error and "root" not in error.replace("(uid 0)", "")
    log = multi_user.log()
    assert "refused to start user endpoint" in log and "carol" in log and "mallory" in log
    # Nothing started: the manager's tree is its command link alone (beside multiprocessing's
    # resource tracker, which carries no title).
    titles = [title for child in psutil.Process(multi_user.supervisor().pid).children()
              if (title := (child.cmdline() or [""])[0]).startswith("Globus Compute Endpoint")]
    assert len(titles) == 1 and titles[0].endswith(" command link"), titles


def test_an_edited_mapping_applies_without_a_restart(multi_user, local_users):
    dave = Identity(multi_user.service, "dave", multi_user.endpoint_id)
    assert "failed to map" in dave.failure(nap, (0,))
    mapping_file = multi_user.directory / "example_identity_mapping_config.json"
    rules = json.loads(mapping_file.read_text())
    rules[0]["mappings"].append({"source": "{username}", "match": "dave", "output": local_users[1].pw_name})
    mapping_file.write_text(json.dumps(rules))
    supervisor = multi_user.supervisor().pid
    dave = Identity(multi_user.service, "dave", multi_user.endpoint_id)
    assert dave.values(nap, [(0,)]) == [local_users[1].pw_uid]
    assert multi_user.supervisor().pid == supervisor


def test_killing_one_users_engine_leaves_the_others_tasks_alone_and_all_is_audited(multi_user, local_users):
    alice = Identity(multi_user.service, "alice", multi_user.endpoint_id)
    bob = Identity(multi_user.service, "bob", multi_user.endpoint_id)
    assert alice.values(nap, [(0,)]) == [local_users[0].pw_uid]
    assert bob.values(nap, [(0,)]) == [local_users[1].pw_uid]
    bob_tasks = bob.submit(nap, [(2,)] * 4)
    alice_tasks = alice.submit(nap, [(2,)] * 2)
    time.sleep(0.5)
    [alice_engine] = [p for p in psutil.process_iter(["uids", "cmdline"])
                      if p.info["uids"] and p.info["uids"].real == local_users[0].pw_uid
                      and (p.info["cmdline"] or [""])[0].endswith(" engine")]
    alice_engine.send_signal(signal.SIGKILL)
    assert [o["status"] for o in bob.outcomes(bob_tasks)] == ["success"] * 4
    alice.outcomes(alice_tasks)  # answered, one way or the other
    audit = (multi_user.directory / "audit.log").read_text()
    assert (multi_user.directory / "audit.log").stat().st_mode & 0o777 == 0o600
    assert "Begin CEP session" in audit
    for task_id in bob_tasks:
        lines = [line for line in audit.splitlines() if f"tid={task_id}" in line]
        assert [line.rsplit(" ", 1)[-1] for line in lines] == ["RECEIVED", "RUNNING", "EXEC_END"], lines
        assert all(f"uid={local_users[1].pw_uid} " in line for line in lines)


@pytest.fixture
def pam_service(local_users):
    """A PAM service of the test's own: pam_listfile denies bob's account, pam_permit the rest."""
    suffix = uuid.uuid4().hex[:6]
    service, deny = f"gcmu-test-{suffix}", Path(f"/etc/gcmu-deny-{suffix}")
    deny.write_text(local_users[1].pw_name + "\n")
    rules = Path("/etc/pam.d") / service
    rules.write_text(f"account required pam_listfile.so item=user sense=deny file={deny} onerr=fail\n"
                     "account required pam_permit.so\nsession required pam_permit.so\n")
    yield service
    rules.unlink()
    deny.unlink()


def test_pam_admits_one_user_and_refuses_the_other_with_its_reason(start_multi_user, pam_service, local_users):
    endpoint = start_multi_user(pam_service)
    alice = Identity(endpoint.service, "alice", endpoint.endpoint_id)
    bob = Identity(endpoint.service, "bob", endpoint.endpoint_id)
    assert alice.values(nap, [(0,)]) == [local_users[0].pw_uid]
    error = bob.failure(nap, (0,))
    assert f"PAM ({pam_service}) refused the account" in error and local_users[1].pw_name not in error, error
    assert "refused to start user endpoint" in endpoint.log() and "bob" in endpoint.log()


def test_a_start_command_forged_on_the_broker_is_refused_there(multi_user):
    """Another identity's endpoint (its own broker user, as any registered endpoint has)
    cannot put a start command on the multi-user endpoint's command queue: only the service
    writes there, so no identity set reaches the mapping but the one the service vouches for."""
    import kombu
    from amqp.exceptions import AccessRefused, NotFound

    from compute_endpoint.protocol import commands

    eve = Identity(multi_user.service, "eve", multi_user.endpoint_id)
    registration = requests.post(f"{multi_user.service.url}/v3/endpoints", headers=eve.headers, timeout=30,
                                 json={"endpoint_name": "eves"}).json()
    info = registration["task_queue_info"]
    body, properties = commands.start_endpoint("uep.forged", registration, {}, {}, ["alice-sub"], username="alice")
    with pytest.raises((AccessRefused, NotFound)), kombu.Connection(info["connection_url"]) as connection:
        producer = kombu.Producer(connection.channel())
        producer.publish(body, exchange="", routing_key=f"{multi_user.endpoint_id}.commands", mandatory=True,
                         **properties)
        connection.drain_events(timeout=5)
    assert "uep.forged" not in multi_user.log()
