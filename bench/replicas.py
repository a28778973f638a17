"""One compute-service against two replicas of it, end to end through the official SDK
Executor: both on one PostgreSQL database and one RabbitMQ vhost, our endpoint
(ThreadPoolEngine) running the tasks. The same two SDK client processes submit in both
cases: to the one replica, or one client to each of the two. The figure is tasks/s from
the first submit of either client to the last result of both.

    python -m bench.replicas client URL TOKEN ENDPOINT_ID TASKS     one SDK client (internal)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

from . import quiet_sdk_logs
from .side_by_side import E2E_TASKS, ENGINES, OurEndpoint, Stack, free_port, median, say

POSTGRES_ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
CLIENTS = 2


def noop():
    return None


def client(url: str, token: str, endpoint_id: str, tasks: int) -> None:
    """Warm up, say "ready", wait for "go" on stdin, then submit and wait for every result;
    print when the first submit started and the last result came (wall clock: the parent
    compares two processes)."""
    import globus_sdk
    from globus_compute_sdk import Client, Executor
    from globus_compute_sdk.sdk.client import _ComputeWebClient
    from globus_compute_sdk.serialize import ComputeSerializer, PureSourceDill

    authorizer = globus_sdk.AccessTokenAuthorizer(token)
    sdk = Client(local_compute_services=True, authorizer=authorizer, do_version_check=False,
                 code_serialization_strategy=PureSourceDill())
    # The SDK finds a local service only on port 5000; each client here talks to its replica.
    sdk._compute_web_client = _ComputeWebClient(base_url=url, authorizer=authorizer)
    with Executor(endpoint_id=endpoint_id, client=sdk, task_group_id=uuid.uuid4()) as executor:
        executor.serializer = ComputeSerializer(strategy_code=PureSourceDill())
        executor.submit(noop).result(timeout=120)
        print("ready", flush=True)
        sys.stdin.readline()
        started = time.time()
        futures = [executor.submit(noop) for _ in range(tasks)]
        for future in futures:
            future.result(timeout=600)
        print(json.dumps({"started": started, "ended": time.time()}), flush=True)
    os._exit(0)  # the SDK's result watcher thread would linger


def aggregate_throughput(urls: list[str], token: str, endpoint_id: str, tasks: int) -> float:
    """CLIENTS client processes, client i through urls[i % len(urls)], tasks split evenly."""
    each = tasks // CLIENTS
    processes = [subprocess.Popen([sys.executable, "-m", "bench.replicas", "client", urls[i % len(urls)], token,
                                   endpoint_id, str(each)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True)
                 for i in range(CLIENTS)]
    try:
        for process in processes:
            if process.stdout.readline().strip() != "ready":
                raise RuntimeError("an SDK client of the replica bench did not start")
        for process in processes:
            process.stdin.write("go\n")
            process.stdin.flush()
        spans = [json.loads(process.stdout.readline()) for process in processes]
    finally:
        for process in processes:
            process.kill()
            process.wait()
    return each * CLIENTS / (max(s["ended"] for s in spans) - min(s["started"] for s in spans))


def one_against_two(rounds: int) -> dict[str, float]:
    """Medians of alternating rounds: tasks/s through one replica and through two."""
    import sqlalchemy as sa

    database = f"bench_replicas_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as db:
        db.execute(sa.text(f'CREATE DATABASE "{database}"'))
    stack = Stack(free_port(), db_url=POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{database}")
    figures: dict[str, list[float]] = {"one": [], "two": []}
    endpoint = None
    try:
        stack.start_service()
        second = stack.start_service(free_port())
        endpoint = OurEndpoint(stack, ENGINES["ThreadPoolEngine"], "replicas")
        endpoint.start()
        for round_ in range(rounds):
            for case in (("one", "two") if round_ % 2 == 0 else ("two", "one")):
                urls = [stack.url] if case == "one" else [stack.url, second]
                figures[case].append(aggregate_throughput(urls, stack.token, endpoint.endpoint_id, E2E_TASKS))
                say(f"end to end through {case} replica(s): {figures[case][-1]:,.0f}/s")
    finally:
        if endpoint is not None:
            endpoint.stop()
        stack.close()
        with admin.connect() as db:
            db.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()
    return {case: median(values) for case, values in figures.items()}


if __name__ == "__main__":
    if sys.argv[1:2] == ["client"]:
        quiet_sdk_logs()
        client(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
    else:
        raise SystemExit(__doc__)

