"""The service survives its own death: kill -9 of compute-service in the middle of a 5,000-task
SDK Executor run, then `compute-service serve` again on the same data, and every task gets
exactly one result at the SDK (counted where the SDK receives them)."""

from __future__ import annotations

import time
import uuid

import pytest

from tests.conftest import RunningService, free_port
from tests.endpoint_harness import EndpointHarness
from tests.sdk import sdk_client

pytestmark = pytest.mark.slow
TASKS = 5000


def inc(x):
    return x + 1


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_kill_9_of_the_service_mid_run_loses_and_duplicates_nothing(database, request, broker_url,
                                                                   rabbitmq_management, tmp_path,
                                                                   deliveries_to_the_sdk):
    from globus_compute_sdk import Executor
    from globus_compute_sdk.serialize import PureSourceDill

    db_url = request.getfixturevalue("postgres_url") if database == "postgresql" else None
    data_dir = tmp_path / "service"
    data_dir.mkdir()
    port = free_port()
    service = RunningService(data_dir, db_url, broker_url, port)
    endpoint = None
    try:
        endpoint = EndpointHarness(service, tmp_path / "gc")
        endpoint.start()
        client = sdk_client(service.url, endpoint.token, code_serialization_strategy=PureSourceDill())
        with Executor(endpoint_id=endpoint.endpoint_id, client=client, task_group_id=uuid.uuid4(),
                      batch_size=256) as executor:
            futures = [executor.submit(inc, i) for i in range(TASKS)]
            deadline = time.monotonic() + 60
            while sum(f.done() for f in futures) < TASKS // 4:
                assert time.monotonic() < deadline, "results did not start flowing"
                time.sleep(0.01)
            service.process.kill()  # kill -9, in the middle of the run
            service.process.wait()
            killed_at = sum(f.done() for f in futures)
            service = RunningService(data_dir, db_url, broker_url, port)  # the same data, the same port
            results = [f.result(timeout=180) for f in futures]
            time.sleep(2)  # a duplicate would arrive by now
    finally:
        if endpoint is not None:
            endpoint.stop()
            endpoint.kill_everything()
        service.stop()
    assert results == [i + 1 for i in range(TASKS)]
    ids = [f.task_id for f in futures]
    assert len(set(ids)) == TASKS
    duplicated = {t: n for t, n in deliveries_to_the_sdk.items() if t in set(ids) and n > 1}
    print(f"\nservice killed with {killed_at} of {TASKS} results in: 0 lost, {len(duplicated)} duplicated")
    assert not duplicated, f"results delivered to the SDK more than once: {list(duplicated.items())[:5]}"
