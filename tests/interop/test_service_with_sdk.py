"""The official globus-compute-sdk 4.19 against our compute-service over real RabbitMQ."""

from __future__ import annotations

import concurrent.futures
import uuid

import pytest
import requests
from globus_compute_sdk import Client, Executor
from globus_compute_sdk.errors import TaskExecutionFailed

from tests.sdk import sdk_client

from .standin_endpoint import StandInEndpoint

pytestmark = pytest.mark.slow


def square(x):
    return x * x


def fail(message):
    raise ValueError(message)


@pytest.fixture(params=["sqlite", "postgresql"])
def service(request, start_service):
    db_url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    return start_service(db_url=db_url)


def new_executor(registration: dict, client: Client) -> Executor:
    # The SDK keeps its last task group (and that group's result watcher, with its
    # client) for the whole process; each test brings its own group and identity.
    return Executor(endpoint_id=registration["endpoint_id"], client=client, task_group_id=uuid.uuid4())


def register_endpoint(service, token: str, name: str = "standin") -> dict:
    response = requests.post(f"{service.url}/v3/endpoints", json={"endpoint_name": name},
                             headers={"Authorization": f"Bearer {token}"}, timeout=10)
    response.raise_for_status()
    return response.json()


def wait_for_batch(client: Client, task_ids: list[str], timeout: float = 60) -> dict:
    import time

    deadline = time.monotonic() + timeout
    while True:
        results = client.get_batch_result(task_ids)
        if all(not r["pending"] for r in results.values()) and len(results) == len(task_ids):
            return results
        assert time.monotonic() < deadline, "results did not arrive in time"
        time.sleep(0.2)


def test_client_batch_of_100_and_executor_futures(service):
    token = service.token("alice")
    registration = register_endpoint(service, token)
    with StandInEndpoint(registration):
        client = sdk_client(service.url, token)
        function_id = client.register_function(square)
        batch = client.create_batch()
        for i in range(100):
            batch.add(function_id, args=(i,))
        response = client.batch_run(registration["endpoint_id"], batch)
        task_ids = response["tasks"][function_id]
        assert len(task_ids) == 100

        results = wait_for_batch(client, task_ids)
        assert [results[t]["result"] for t in task_ids] == [i * i for i in range(100)]
        assert client.get_result(task_ids[7]) == 49

        with new_executor(registration, client) as executor:
            futures = [executor.submit(square, i) for i in range(20)]
            failing = executor.submit(fail, "boom")
            assert [f.result(timeout=60) for f in futures] == [i * i for i in range(20)]
            with pytest.raises(TaskExecutionFailed, match="ValueError: boom"):
                failing.result(timeout=60)

        # Another identity sees none of it.
        other = service.token("mallory")
        headers = {"Authorization": f"Bearer {other}"}
        assert requests.get(f"{service.url}/v2/tasks/{task_ids[0]}", headers=headers).status_code == 404
        batch_other = requests.post(f"{service.url}/v2/batch_status", json={"task_ids": task_ids},
                                    headers=headers).json()
        assert batch_other["results"] == {}
        endpoint_url = f"{service.url}/v2/endpoints/{registration['endpoint_id']}"
        assert requests.get(endpoint_url, headers=headers).status_code == 404
        submit = requests.post(f"{service.url}/v3/endpoints/{registration['endpoint_id']}/submit",
                               json={"tasks": {function_id: []}}, headers=headers)
        assert submit.status_code == 404
        assert "not found" in submit.json()["error"]


def test_executor_results_survive_many_concurrent_futures(service):
    token = service.token("bob")
    registration = register_endpoint(service, token)
    with StandInEndpoint(registration), new_executor(registration, sdk_client(service.url, token)) as executor:
        futures = {executor.submit(square, i): i for i in range(200)}
        done, not_done = concurrent.futures.wait(futures, timeout=90)
        assert not not_done
        assert all(f.result() == futures[f] ** 2 for f in done)
