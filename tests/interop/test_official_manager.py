"""The official 4.19 endpoint in its manager mode against our compute-service: it registers,
takes the start commands, and each `user_endpoint_config` lands in a user endpoint of its
own; beside it, ours doing the same, each timed from a submit with new options to its first
result (printed for the record: speed is for the benchmarks)."""

from __future__ import annotations

import json
import time
import uuid

import globus_sdk
import pytest
from globus_compute_sdk import Client, Executor
from globus_compute_sdk.serialize import PureSourceDill

from tests.endpoint_harness import SERIALIZER, EndpointHarness
from tests.official_manager import OfficialManager

# The official endpoint runs on the system Python (ours lives under /root, out of its
# user's reach), so the SDK rightly notes the difference of micro versions.
pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings(r"ignore:(?s).*Environment differences detected:UserWarning")]

TEMPLATE = """\
engine:
  type: ThreadPoolEngine
  max_workers: {{ workers|default(1) }}
local_compute_services: true
amqp_port: 5672
"""


def where(x):
    import os

    return (x, os.getpid())


def run_with_options(client: Client, endpoint_id: str, options: dict) -> tuple[float, set[int]]:
    """(seconds from the submit to its first result, pids that ran the tasks)."""
    with Executor(endpoint_id=endpoint_id, client=client, task_group_id=uuid.uuid4(),
                  user_endpoint_config=options) as executor:
        executor.serializer = SERIALIZER
        started = time.monotonic()
        first = executor.submit(where, 0).result(timeout=120)
        first_s = time.monotonic() - started
        rest = [f.result(timeout=60) for f in [executor.submit(where, i) for i in range(1, 4)]]
    assert [first[0], *(r[0] for r in rest)] == [0, 1, 2, 3]
    return first_s, {first[1], *(r[1] for r in rest)}


def sdk_client(token: str) -> Client:
    return Client(local_compute_services=True, authorizer=globus_sdk.AccessTokenAuthorizer(token),
                  code_serialization_strategy=PureSourceDill(), do_version_check=False)


def test_the_official_manager_and_ours_run_each_users_options_in_a_user_endpoint(sdk_port, start_service,
                                                                                  tmp_path, capsys):
    service = start_service(port=sdk_port)
    official = OfficialManager(service, "alice", TEMPLATE)
    ours = EndpointHarness(service, tmp_path / "gc", "ours", "display_name: null\n")
    (ours.directory / "user_config_template.yaml.j2").write_text(TEMPLATE)
    timings: dict[str, list[float]] = {"official": [], "ours": []}
    try:
        official_id = official.start()
        ours.start()
        client = sdk_client(service.token("alice"))
        official_pids = {}
        for workers in (1, 2):
            seconds, official_pids[workers] = run_with_options(client, official_id, {"workers": workers})
            timings["official"].append(seconds)
        assert official_pids[1].isdisjoint(official_pids[2])  # two options, two user endpoints
        assert official.log().count("Creating new user endpoint") == 2

        ours_client = sdk_client(ours.token)
        ours_pids = {}
        for workers in (1, 2):
            seconds, ours_pids[workers] = run_with_options(ours_client, ours.endpoint_id, {"workers": workers})
            timings["ours"].append(seconds)
        assert ours_pids[1].isdisjoint(ours_pids[2])
    finally:
        official.close()
        ours.cli("stop", ours.name, "--timeout", "20")
        ours.kill_everything()
    with capsys.disabled():
        print("\nsubmit with new user_endpoint_config -> first result (s): "
              + json.dumps({k: [round(v, 2) for v in values] for k, values in timings.items()}))
