"""Service replicas: two `compute-service serve` processes on one PostgreSQL database and one
RabbitMQ vhost serve the same endpoints and clients. An endpoint registers through one, the
official SDK submits through the other; results are stored and forwarded once whichever
replica consumes them, and kill -9 of a replica mid-run loses and duplicates nothing at the
SDK (counted where the SDK receives them)."""

from __future__ import annotations

import time

import pytest
import requests

from tests.conftest import RunningService
from tests.endpoint_harness import EndpointHarness

pytestmark = pytest.mark.slow
TASKS = 5000


def inc(x):
    return x + 1


@pytest.fixture
def replicas(postgres_url, broker_url, rabbitmq_management, tmp_path):
    """Replicas, each on a port of its own."""
    started: list[RunningService] = []

    def start(index: int) -> RunningService:
        data_dir = tmp_path / f"replica{index}"
        data_dir.mkdir(exist_ok=True)
        service = RunningService(data_dir, postgres_url, broker_url)
        started.append(service)
        return service

    yield start
    for service in started:
        if service.process.poll() is None:
            service.stop()


def sdk_executor(endpoint: EndpointHarness, replica: RunningService):
    """The harness's SDK Executor through this replica, submitting in batches of 256 as a busy
    client does."""
    executor = endpoint.executor(through=replica)
    executor.batch_size = 256
    return executor


def test_an_endpoint_registered_through_one_replica_serves_the_sdk_through_the_other(replicas, tmp_path):
    first, second = replicas(0), replicas(1)
    endpoint = EndpointHarness(first, tmp_path / "gc")  # its token, made on the first, is good on both
    endpoint.start()
    try:
        executor = sdk_executor(endpoint, second)
        with executor:
            futures = [executor.submit(inc, i) for i in range(300)]
            assert [f.result(timeout=120) for f in futures] == [i + 1 for i in range(300)]
        # One view from both: the endpoint's status reports, its tasks, its owner's endpoints.
        task_id = futures[0].task_id
        for replica in (first, second):
            status = requests.get(f"{replica.url}/v2/endpoints/{endpoint.endpoint_id}/status",
                                  headers=endpoint.headers, timeout=10).json()
            assert status["status"] == "online", status
            task = requests.get(f"{replica.url}/v2/tasks/{task_id}", headers=endpoint.headers, timeout=10).json()
            assert task["status"] == "success"
        assert executor.client.get_endpoint_status(endpoint.endpoint_id)["status"] == "online"
        # Neither replica met an error on the way.
        logs = [replica.log.read_text() for replica in (first, second)]
        assert all("Traceback" not in log for log in logs), logs
    finally:
        endpoint.stop()
        endpoint.kill_everything()


def test_kill_9_of_a_replica_mid_run_loses_and_duplicates_nothing(replicas, tmp_path, deliveries_to_the_sdk):
    first, second = replicas(0), replicas(1)
    endpoint = EndpointHarness(first, tmp_path / "gc")
    endpoint.start()
    try:
        executor = sdk_executor(endpoint, second)
        with executor:
            futures = [executor.submit(inc, i) for i in range(TASKS)]
            deadline = time.monotonic() + 60
            while sum(f.done() for f in futures) < TASKS // 4:
                assert time.monotonic() < deadline, "results did not start flowing"
                time.sleep(0.01)
            first.process.kill()  # kill -9 of the replica the endpoint registered through
            first.process.wait()
            killed_at = sum(f.done() for f in futures)
            results = [f.result(timeout=180) for f in futures]
            time.sleep(2)  # a duplicate would arrive by now
    finally:
        endpoint.stop()
        endpoint.kill_everything()
    assert results == [i + 1 for i in range(TASKS)]
    assert second.process.poll() is None, "the other replica served on"
    ids = {f.task_id for f in futures}
    assert len(ids) == TASKS
    duplicated = {t: n for t, n in deliveries_to_the_sdk.items() if t in ids and n > 1}
    print(f"\nreplica killed with {killed_at} of {TASKS} results in: 0 lost, {len(duplicated)} duplicated")
    assert not duplicated, f"results delivered to the SDK more than once: {list(duplicated.items())[:5]}"


def test_two_services_on_one_sqlite_database_are_refused_with_the_way_to_replicas(tmp_path, broker_url):
    data_dir = tmp_path / "service"
    data_dir.mkdir()
    first = RunningService(data_dir, None, broker_url, extra_args=["--shared-broker-credentials"])
    try:
        with pytest.raises(RuntimeError) as refused:
            RunningService(data_dir, None, broker_url, extra_args=["--shared-broker-credentials"])
        message = str(refused.value)
        assert "another compute-service already serves the SQLite database" in message
        assert "PostgreSQL database (--db postgresql://...)" in message and "Traceback" not in message
    finally:
        first.stop()


def test_one_endpoint_id_registered_at_once_through_two_replicas_never_answers_500(replicas):
    """Finding: concurrent registration of one endpoint id across two PostgreSQL replicas
    answered 500 (UniqueViolation) to 19 of 200 requests."""
    import concurrent.futures
    import uuid

    import requests

    first, second = replicas(1), replicas(2)
    token = first.token("racer")
    headers = {"Authorization": f"Bearer {token}"}
    statuses = []
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        for _ in range(10):
            endpoint_id = str(uuid.uuid4())
            calls = [pool.submit(requests.put, f"{service.url}/v3/endpoints/{endpoint_id}", headers=headers,
                                 json={"endpoint_name": "race"}, timeout=60)
                     for service in (first, second) * 10]
            answers = [call.result() for call in calls]
            statuses += [answer.status_code for answer in answers]
            refused = [answer.text for answer in answers if answer.status_code != 200]
            assert not refused, refused[:3]
    assert statuses.count(200) == len(statuses) == 200
