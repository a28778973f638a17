"""allowed_serializers, end to end with the official SDK: a site that allows only JSON data
and function source runs such a task, and refuses a pickled one with an error that names the
strategy and the allowed ones, without unpickling anything."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

ONLY_JSON_AND_SOURCE = """\
engine:
  type: {engine}
  max_workers: 2
  allowed_serializers:
    - globus_compute_sdk.serialize.JSONData
    - globus_compute_sdk.serialize.PureSourceTextInspect
"""


def total(numbers):
    return sum(numbers)


class Tripwire:
    """Unpickling this on the endpoint would leave a file behind: proof that it was deserialized."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("engine", ["ThreadPoolEngine", "ProcessPoolEngine"])
def test_a_json_only_endpoint_runs_json_tasks_and_refuses_pickled_ones_unopened(sdk_endpoint, tmp_path, engine):
    from globus_compute_sdk.serialize import ComputeSerializer, JSONData, PureSourceTextInspect

    endpoint = sdk_endpoint(ONLY_JSON_AND_SOURCE.format(engine=engine))
    with endpoint.executor() as executor:
        executor.serializer = ComputeSerializer(strategy_code=PureSourceTextInspect(), strategy_data=JSONData())
        assert executor.submit(total, [1, 2, 3]).result(timeout=60) == 6

    tripwire = tmp_path / "unpickled"
    with endpoint.executor() as executor:
        executor.serializer = ComputeSerializer()  # the SDK's default: DillCode and DillDataBase64
        with pytest.raises(Exception) as refused:
            executor.submit(total, Tripwire(str(tripwire))).result(timeout=60)
    text = str(refused.value)
    assert "Code serializer DillCode disabled by current configuration" in text, text
    assert "Allowed serializers: JSONData, PureSourceTextInspect" in text, text
    assert not tripwire.exists(), "the arguments were unpickled on the endpoint"

    with endpoint.executor() as executor:  # allowed code, pickled arguments
        executor.serializer = ComputeSerializer(strategy_code=PureSourceTextInspect())
        with pytest.raises(Exception) as refused:
            executor.submit(total, Tripwire(str(tripwire))).result(timeout=60)
    assert "Data serializer DillDataBase64 disabled by current configuration" in str(refused.value)
    assert "*arguments*" in str(refused.value) and not tripwire.exists()
