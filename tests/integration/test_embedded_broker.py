"""The embedded broker: compute-service and an endpoint on one machine with no RabbitMQ
between them, only kombu's filesystem transport in the service's data folder."""

from __future__ import annotations

import socket
import stat
import time
from pathlib import Path

import pytest
import requests

from compute_endpoint.service.cli import choose_broker
from tests.conftest import RunningService
from tests.endpoint_harness import EndpointHarness
from tests.sdk import sdk_client

pytestmark = pytest.mark.slow


def add(a, b):
    return a + b


def fail(message):
    raise ValueError(message)


@pytest.fixture
def embedded_service(request, tmp_path):
    data_dir = tmp_path / "service"
    data_dir.mkdir()
    service = RunningService(data_dir, None, f"filesystem://{tmp_path / 'broker'}")
    yield service
    service.stop()


@pytest.fixture
def endpoint(embedded_service, tmp_path):
    harness = EndpointHarness(embedded_service, tmp_path / "endpoints")
    harness.start()
    yield harness
    harness.stop()


def test_tasks_run_through_the_embedded_broker(endpoint, tmp_path):
    assert endpoint.status() == "Running"
    assert endpoint.run(add, [(i, i) for i in range(300)]) == [2 * i for i in range(300)]
    status = requests.get(f"{endpoint.service.url}/v2/endpoints/{endpoint.endpoint_id}/status",
                          headers=endpoint.headers, timeout=10).json()
    assert status["status"] == "online"  # heartbeats arrive through the embedded broker too
    # Nothing is left behind in the broker's folder once every result is in.
    assert not [p for p in (tmp_path / "broker").iterdir() if p.name.endswith(".msg")]


def test_sdk_client_polls_results_and_executor_is_refused_clearly(endpoint):
    from globus_compute_sdk.errors import TaskExecutionFailed
    from globus_compute_sdk.serialize import PureSourceDill

    # The endpoint cannot import this test module: send the functions' source.
    client = sdk_client(endpoint.service.url, endpoint.token, code_serialization_strategy=PureSourceDill())
    function_id = client.register_function(add)
    batch = client.create_batch()
    for i in range(20):
        batch.add(function_id, args=(i, 1))
    task_ids = [t for ids in client.batch_run(endpoint.endpoint_id, batch)["tasks"].values() for t in ids]
    results = {}
    for _ in range(300):
        results = client.get_batch_result(task_ids)
        if all(not r["pending"] for r in results.values()):
            break
        time.sleep(0.1)
    assert sorted(r["result"] for r in results.values()) == [i + 1 for i in range(20)]

    failing_task = client.run("no", endpoint_id=endpoint.endpoint_id, function_id=client.register_function(fail))

    def finished(task_id: str) -> dict:
        for _ in range(300):
            task = client.get_task(task_id)  # raises the task's own error once it failed
            if not task["pending"]:
                return task
            time.sleep(0.1)
        raise AssertionError(f"task {task_id} never finished")

    with pytest.raises(TaskExecutionFailed, match="ValueError: no"):
        finished(failing_task)

    response = requests.get(f"{endpoint.service.url}/v2/get_amqp_result_connection_url",
                            headers=endpoint.headers, timeout=10)
    assert response.status_code == 501
    assert "embedded broker" in response.json()["error"] and "get_batch_result" in response.json()["error"]


def test_service_falls_back_to_the_embedded_broker_only_when_nothing_answers(tmp_path, monkeypatch, capsys):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    port = closed.getsockname()[1]
    monkeypatch.setattr("compute_endpoint.service.cli.DEFAULT_BROKER_URL", f"amqp://guest:guest@127.0.0.1:{port}/%2F")
    url = choose_broker(None, tmp_path)
    assert url == f"filesystem://{tmp_path / 'broker'}"
    assert stat.S_IMODE(Path(tmp_path / "broker" / "control").stat().st_mode) == 0o700
    said = capsys.readouterr().err
    assert "embedded broker" in said and "no SDK Executor" in said
    closed.close()


def test_a_named_broker_that_does_not_answer_is_an_error(tmp_path):
    import click

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    with pytest.raises(click.ClickException, match="does not answer"):
        choose_broker(f"amqp://guest:guest@127.0.0.1:{closed.getsockname()[1]}/%2F", tmp_path)
    closed.close()
