"""Every public call of the official SDK 4.19 Client against compute-service, with our
endpoint running the tasks, and no environment warning at the SDK."""

from __future__ import annotations

import time
import uuid
import warnings

import globus_sdk
import pytest
import requests
from globus_compute_sdk import Client, Executor
from globus_compute_sdk.serialize import PureSourceDill

from tests.endpoint_harness import SERIALIZER, THREAD_POOL_CONFIG, EndpointHarness

pytestmark = pytest.mark.slow

SOURCE = '''
def greet(name):
    return f"hello {name}"
'''


def cube(x):
    return x ** 3


def sdk_client(token: str) -> Client:
    # Test functions live in a test module the endpoint cannot import: send their source.
    return Client(local_compute_services=True, authorizer=globus_sdk.AccessTokenAuthorizer(token),
                  do_version_check=False, code_serialization_strategy=PureSourceDill())


def wait_result(client: Client, task_id: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return client.get_result(task_id)
        except Exception as exc:  # the SDK raises TaskPending until it is done
            if type(exc).__name__ != "TaskPending":
                raise
        assert time.monotonic() < deadline, f"task {task_id} pending after {timeout} s"
        time.sleep(0.2)


@pytest.fixture
def endpoint(sdk_port, start_service, tmp_path):
    harness = EndpointHarness(start_service(port=sdk_port), tmp_path / "gc", "ep",
                              THREAD_POOL_CONFIG + "heartbeat_period: 5\n")
    harness.start()
    yield harness
    harness.cli("stop", harness.name, "--timeout", "10")
    harness.kill_everything()


def test_every_client_call_works_against_compute_service(endpoint):
    endpoint_id = endpoint.endpoint_id
    client = sdk_client(endpoint.token)
    warnings.simplefilter("error")  # "Environment differences detected ..." would fail the test
    try:
        client.version_check()
        # functions: an SDK-serialized one, and plain source (register_source_code)
        function_id = client.register_function(cube)
        source_id = client.register_source_code(SOURCE, "greet")
        assert client.get_function(source_id)["function_name"] == "greet"
        # running them: run, batches, task and result lookups
        task_id = client.run(3, endpoint_id=endpoint_id, function_id=function_id)
        assert wait_result(client, task_id) == 27
        assert wait_result(client, client.run("there", endpoint_id=endpoint_id, function_id=source_id)) \
            == "hello there"
        batch = client.create_batch()
        for i in range(5):
            batch.add(function_id, args=(i,))
        task_ids = client.batch_run(endpoint_id, batch)["tasks"][function_id]
        for tid in task_ids:
            wait_result(client, tid)
        batch_results = client.get_batch_result(task_ids)
        assert [batch_results[tid]["result"] for tid in task_ids] == [i ** 3 for i in range(5)]
        assert client.get_task(task_ids[2])["result"] == 8
        assert client.get_result_amqp_url()["connection_url"].startswith("amqp")
        with Executor(endpoint_id=endpoint_id, client=client, task_group_id=uuid.uuid4()) as executor:
            executor.serializer = SERIALIZER
            assert executor.submit(cube, 4).result(timeout=60) == 64
        # The SDK's own function, pickled by reference to its module: the SDK is where it runs.
        stock = Client(local_compute_services=True, do_version_check=False,
                       authorizer=globus_sdk.AccessTokenAuthorizer(endpoint.token))
        report = wait_result(stock, stock.get_worker_hardware_details(endpoint_id))
        assert "lscpu" in report or "CPU" in report, report[:500]
        # endpoints: metadata, status, listing by role, allow-list, registration by the SDK
        assert client.get_endpoint_metadata(endpoint_id)["uuid"] == endpoint_id
        assert client.get_endpoint_status(endpoint_id)["status"] == "online"
        assert [e["uuid"] for e in client.get_endpoints()] == [endpoint_id]
        assert client.get_allowed_functions(endpoint_id)["functions"] == []
        registered = client.register_endpoint("sdk-made", None, allowed_functions=[function_id], public=True)
        made_id = registered["endpoint_id"]
        assert client.get_allowed_functions(made_id)["functions"] == [function_id]
        client.delete_function(source_id)
        # stop it wherever it runs, then delete it
        client.stop_endpoint(endpoint_id)
        deadline = time.monotonic() + 15
        while endpoint.status() != "Stopped":
            assert time.monotonic() < deadline, "the endpoint did not stop when the SDK asked"
            time.sleep(0.2)
        client.delete_endpoint(made_id)
        client.logout()
    finally:
        warnings.resetwarnings()


def test_public_functions_and_endpoints_are_shared_and_private_ones_are_not(endpoint):
    service = endpoint.service
    owner = sdk_client(endpoint.token)
    public_id = owner.register_function(cube, public=True)
    private_id = owner.register_function(cube)
    group_id = owner.register_function(cube, group=str(uuid.uuid4()))
    owner.register_endpoint("shared", None, public=True)

    other_token = service.token("colleague")
    other = sdk_client(other_token)
    mine = other.register_endpoint("colleagues", None)["endpoint_id"]
    assert other.get_function(public_id)["function_name"] == "cube"
    for hidden in (private_id, group_id):  # no Globus groups here: shared with a group is private
        assert requests.get(f"{service.url}/v2/functions/{hidden}", timeout=30,
                            headers={"Authorization": f"Bearer {other_token}"}).status_code == 404
    submit = requests.post(f"{service.url}/v3/endpoints/{mine}/submit", timeout=30,
                           headers={"Authorization": f"Bearer {other_token}"},
                           json={"tasks": {public_id: [], private_id: []}})
    assert submit.status_code in (400, 404)
    assert private_id in submit.json()["error"] or "no task" in submit.json()["error"]
    anyone = {e["name"] for e in other.get_endpoints(role="any")}
    assert {"shared", "colleagues"} <= anyone and "ep" not in anyone
    assert {e["name"] for e in other.get_endpoints(role="owner")} == {"colleagues"}
    bad_role = requests.get(f"{service.url}/v2/endpoints", params={"role": "admin"}, timeout=30,
                            headers={"Authorization": f"Bearer {other_token}"})
    assert bad_role.status_code == 400 and "accepted: owner, any" in bad_role.json()["error"]
