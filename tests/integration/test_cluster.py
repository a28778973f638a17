"""The endpoint on a real two-node Slurm cluster: the host is the login node (endpoint,
interchange), and each compute node is a network and UTS namespace of its own with its own
address on a bridge and its own slurmd (.ci/start-slurm-cluster). A worker pool on a node
can reach the login node only over that bridge, as on a real cluster; functions are
submitted through the official SDK's Executor."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from compute_endpoint.endpoint.exit_codes import Exit
from tests.clusters import BRIDGE, LOGIN_ADDRESS, NODE_ADDRESSES
from tests.endpoint_harness import EndpointHarness

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).parents[2] / "examples" / "configs" / "slurm-two-node.yaml"


def where_am_i():
    import os
    import socket

    return socket.gethostname(), os.environ.get("SLURM_JOB_ID")


def nap(seconds):
    import socket
    import time

    time.sleep(seconds)
    return socket.gethostname()


def noop():
    return None


def interchange_of(endpoint: EndpointHarness) -> psutil.Process:
    engine = psutil.Process(endpoint.children()["engine"])
    for process in engine.children(recursive=True):
        try:
            if "interchange" in " ".join(process.cmdline()):
                return process
        except psutil.NoSuchProcess:
            continue
    raise AssertionError("no HTEX interchange under the engine")


def worker_peers(interchange: psutil.Process) -> set[str]:
    """Where the interchange's connections come from, leaving out its own loopback ones to
    the engine (IPv4-mapped IPv6 addresses as IPv4)."""
    peers = {c.raddr.ip.removeprefix("::ffff:") for c in interchange.net_connections("tcp")
             if c.status == psutil.CONN_ESTABLISHED and c.raddr}
    return peers - {"127.0.0.1"}


def test_default_address_reaches_pools_on_both_compute_nodes(cluster_endpoint):
    """(a) with no address, a pool on a compute node reaches the interchange over the
    cluster network; (b) nodes_per_block 2 with SrunLauncher runs functions on both nodes.
    The config is the README's example, with this cluster's partition and environment."""
    venv = Path(sys.executable).parent.parent
    example = EXAMPLE.read_text().replace("partition: compute", "partition: cluster").replace(
        "worker_init: source ~/venvs/compute/bin/activate", f"worker_init: source {venv}/bin/activate")
    assert "partition: cluster" in example and str(venv) in example
    endpoint = cluster_endpoint(config=example)
    interchange = interchange_of(endpoint)
    listening = {c.laddr.ip.removeprefix("::ffff:") for c in interchange.net_connections("tcp")
                 if c.status == psutil.CONN_LISTEN}
    assert listening - {"127.0.0.1"}, f"the interchange listens on loopback alone: {listening}"
    with endpoint.executor() as executor:
        started = time.monotonic()
        host, job_id = executor.submit(where_am_i).result(timeout=120)
        first_result_s = time.monotonic() - started
        assert host in NODE_ADDRESSES, f"ran on {host}, not on a compute node"
        assert job_id and job_id.isdigit()
        hosts = {f.result(timeout=120) for f in [executor.submit(nap, 0.5) for _ in range(8)]}
        assert hosts == set(NODE_ADDRESSES), f"functions ran on {hosts}, not on both nodes"
        started = time.monotonic()
        futures = [executor.submit(noop) for _ in range(2000)]
        assert [f.result(timeout=300) for f in futures] == [None] * 2000
        throughput = 2000 / (time.monotonic() - started)
    assert worker_peers(interchange) <= set(NODE_ADDRESSES.values())
    assert worker_peers(interchange) == set(NODE_ADDRESSES.values()), "no pool connected from a node's address"
    print(f"\ntwo-node cluster: submit to first result {first_result_s:.2f} s; "
          f"2,000 no-op tasks across both nodes: {throughput:.0f} tasks/s")


def test_named_interface_works_and_a_worker_without_the_certificate_gets_nothing(cluster_endpoint, tmp_path):
    """(c) address: {type: address_by_interface, ifname: <bridge>}; (d) with encryption on, a
    worker pool started on a node without the endpoint's certificate is never given a task
    and the endpoint's own pool runs every task."""
    endpoint = cluster_endpoint(extra=f"  address: {{type: address_by_interface, ifname: {BRIDGE}}}\n")
    assert "worker pools will connect to 10.231.7.1 (encrypted with CurveZMQ)" in endpoint.log()
    with endpoint.executor() as executor:
        assert executor.submit(where_am_i).result(timeout=120)[0] in NODE_ADDRESSES
        command = next(c for c in (p.info["cmdline"] or [] for p in psutil.process_iter(["cmdline"]))
                       if any(a.endswith("process_worker_pool.py") for a in c) and "--cert_dir" in c)
        assert f"{LOGIN_ADDRESS}" in " ".join(command)
        # The same pool command, but with no certificates, from the other node's namespace.
        cert_at = command.index("--cert_dir")
        rogue_command = [*command[:cert_at + 1], "None", *command[cert_at + 2:]]
        rogue_command = [a.replace("--block_id=0", "--block_id=rogue") for a in rogue_command]
        rogue_log = tmp_path / "rogue"
        rogue_command = [a if not a.startswith("--logdir=") else f"--logdir={rogue_log}" for a in rogue_command]
        rogue = subprocess.Popen(
            ["nsenter", "--net=/var/run/netns/gcn2", "unshare", "--uts", "sh", "-c",
             'hostname rogue; exec "$@"', "sh", *rogue_command],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            time.sleep(3)  # it connects, or tries to
            assert rogue.poll() is None or rogue.returncode != 0
            hosts = [f.result(timeout=120) for f in [executor.submit(nap, 0.2) for _ in range(20)]]
        finally:
            os.killpg(rogue.pid, signal.SIGKILL)  # the pool and the workers it started
            rogue.wait()
    assert set(hosts) <= set(NODE_ADDRESSES), f"a pool without the certificate ran tasks: {hosts}"
    assert "rogue" not in hosts


def test_a_wrong_interface_fails_start_with_a_clear_message(cluster_endpoint):
    endpoint = cluster_endpoint(extra="  address: {type: address_by_interface, ifname: ib9}\n", expect_start=False)
    result = endpoint.cli("start", endpoint.name)
    assert result.returncode == Exit.CONFIG, result.stdout + result.stderr
    assert "address_by_interface ifname='ib9': this host has no interface 'ib9'" in result.stderr
    assert BRIDGE in result.stderr  # the interfaces that do exist are listed
    assert "Traceback" not in result.stderr
    assert endpoint.status() != "Running"


def test_killing_the_interchange_mid_run_loses_no_task(cluster_endpoint):
    """(e) kill -9 of the interchange during 500 tasks: the engine notices and exits, the
    supervisor starts a new one, and every task gets exactly one result at the SDK."""
    endpoint = cluster_endpoint(nodes=2, workers=2)
    with endpoint.executor() as executor:
        assert executor.submit(where_am_i).result(timeout=120)[0] in NODE_ADDRESSES
        old_engine = endpoint.children()["engine"]
        futures = [executor.submit(nap, 0.05) for _ in range(500)]
        deadline = time.monotonic() + 60
        while sum(f.done() for f in futures) < 50:
            assert time.monotonic() < deadline, "tasks did not start"
            time.sleep(0.05)
        interchange_of(endpoint).kill()
        outcomes = []
        for future in futures:
            try:
                outcomes.append(future.result(timeout=240))
            except Exception as exc:  # an error result must name the failure
                outcomes.append(exc)
    errors = [o for o in outcomes if isinstance(o, Exception)]
    print(f"\ninterchange killed during 500 tasks: {500 - len(errors)} results, {len(errors)} error results")
    # Each task has its own outcome: the compute node it ran on, or an error that names the failure.
    assert all(o in NODE_ADDRESSES for o in outcomes if not isinstance(o, Exception)), outcomes[:5]
    assert all("fail" in str(e).lower() or "died" in str(e).lower() for e in errors), errors[:3]
    assert len(errors) < 50, f"{len(errors)} tasks failed instead of being retried: {errors[:3]}"
    log = endpoint.log()
    assert "the HTEX interchange" in log and "exiting so that it is replaced" in log
    assert endpoint.wait_for_child("engine", other_than=old_engine, timeout=5)[0] != old_engine
    # The service keeps one result per task, and the SDK saw each task complete once.
    assert len({f.task_id for f in futures}) == 500
