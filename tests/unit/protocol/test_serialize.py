"""Our SDK serialization against globus-compute-sdk 4.19, in both directions."""

from __future__ import annotations

import pytest
from globus_compute_sdk.serialize import ComputeSerializer
from globus_compute_sdk.serialize import concretes as sdk

from compute_endpoint.protocol import serialize as ours


def add(a, b=2):
    return a + b


DATA = [1, "text", {"k": [1, 2.5, None]}, (1, 2), b"bytes", {1, 2}]


@pytest.mark.parametrize("value", DATA, ids=repr)
def test_default_data_serialization_is_identical(value):
    assert ours.serialize(value) == ComputeSerializer().serialize(value)
    assert ComputeSerializer().deserialize(ours.serialize(value)) == value


def test_default_code_serialization_reads_both_ways():
    theirs = ComputeSerializer().serialize(add)
    assert theirs.startswith("01\n")
    assert ours.deserialize(theirs)(1) == 3
    assert ComputeSerializer().deserialize(ours.serialize(add))(1, b=5) == 6


@pytest.mark.parametrize("strategy", [
    sdk.DillCode(), sdk.DillCodeSource(), sdk.DillCodeTextInspect(), sdk.PureSourceDill(),
    sdk.PureSourceTextInspect(), sdk.CombinedCode(), sdk.AllCodeStrategies(),
], ids=lambda s: type(s).__name__)
def test_every_sdk_code_strategy_loads_here(strategy):
    assert ours.deserialize(strategy.serialize(add))(40) == 42


@pytest.mark.parametrize("strategy", [sdk.JSONData(), sdk.DillDataBase64(), sdk.AllDataStrategies()],
                         ids=lambda s: type(s).__name__)
def test_every_sdk_data_strategy_round_trips(strategy):
    value = {"a": [1, 2, 3]}
    ours_strategy = ours.STRATEGIES_BY_HEADER[strategy.identifier]
    assert ours_strategy.serialize(value) == strategy.serialize(value)
    assert ours.deserialize(strategy.serialize(value)) == value


def test_pack_buffers_matches_the_sdk():
    buffers = ["01\nabc", "", "00\nünï\n"]
    packed = ours.pack_buffers(buffers)
    assert packed == ComputeSerializer.pack_buffers(buffers)
    assert ours.unpack_buffers(packed) == buffers


def test_submitted_task_buffer_unpacks_to_function_args_kwargs():
    """The service concatenates function code and the SDK's payload: three buffers."""
    s = ComputeSerializer()
    function_code = s.pack_buffers([s.serialize(add)])
    payload = s.pack_buffers([s.serialize((1,)), s.serialize({"b": 10})])
    fn, args, kwargs = (ours.deserialize(b) for b in ours.unpack_buffers(function_code + payload))
    assert fn(*args, **kwargs) == 11


def test_result_serializers_pick_the_first_that_works():
    paths = ["globus_compute_sdk.serialize.JSONData", "globus_compute_sdk.serialize.DillDataBase64"]
    assert ours.serialize_from_list({"a": 1}, paths) == '11\n{"a": 1}'
    assert ours.serialize_from_list({1, 2}, paths).startswith("00\n")  # a set is not JSON
    assert ours.serialize_from_list(5, None) == ComputeSerializer().serialize(5)


@pytest.mark.parametrize("packed, phrase", [
    ("5", "missing a length line"),
    ("x\nabc", "invalid length 'x'"),
    ("10\nabc", "truncated"),
])
def test_bad_packed_buffers_are_reported(packed, phrase):
    with pytest.raises(ours.SerializationError, match=phrase):
        ours.unpack_buffers(packed)


def test_unknown_header_and_strategy_are_reported():
    with pytest.raises(ours.SerializationError, match="unknown serialization header"):
        ours.deserialize("zz\nabc")
    with pytest.raises(ours.SerializationError, match="unknown serialization strategy"):
        ours.serialize_from_list(1, ["a.b.Nope"])


@pytest.mark.parametrize("value", [None, True, 0, -7, 2**70, 1.5, float("inf"), "", "é" * 5000, b"\x00" * 70000])
def test_plain_results_are_byte_identical_to_the_sdks(value):
    """Plain values skip dill's slow pickler; the bytes must not change."""
    assert ours.serialize(value) == sdk.DillDataBase64().serialize(value)


def test_source_functions_run_in_a_fresh_namespace_each_time():
    """The compiled source is cached; the function's globals are not shared between tasks."""
    payload = ours.STRATEGIES_BY_NAME["PureSourceDill"].header + "counter:" + (
        "calls = []\ndef counter():\n    calls.append(1)\n    return len(calls)\n")
    first, second = ours.deserialize(payload), ours.deserialize(payload)
    assert (first(), first(), second()) == (1, 2, 1)
