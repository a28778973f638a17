"""Our messagepack envelope against globus-compute-common 1.0, byte for byte."""

from __future__ import annotations

import uuid

import pytest
from globus_compute_common import messagepack as theirs
from globus_compute_common.messagepack import message_types as their_types

from compute_endpoint.protocol import messages as ours

TASK_ID = uuid.UUID("359e2ec3-caef-4258-a149-a67767af0ee8")
EP_ID = uuid.UUID("ee138b83-fd62-4b57-b31b-55e460569fd2")

OUR_MESSAGES = [
    ours.Task(task_id=TASK_ID, task_buffer="10\n00\nabc12\nüñï"),
    ours.Task(task_id=TASK_ID, container_id=EP_ID, task_buffer=""),
    ours.Result(task_id=TASK_ID, data="00\ngASVBQ=="),
    ours.Result(
        task_id=TASK_ID, data="Traceback ...\nZeroDivisionError: division by zero",
        details={"os": "Linux", "python_version": "3.11.7"},
        error_details=ours.ResultErrorDetails(code="RemoteExecutionError", user_message="boom"),
        task_statuses=[ours.TaskTransition(timestamp=1_700_000_000_000_000_000,
                                           state="execution-start", actor="worker")],
    ),
    ours.EPStatusReport(endpoint_id=EP_ID, global_state={"active": True, "heartbeat_period": 30},
                        task_statuses={str(TASK_ID): [ours.TaskTransition(1, "running", "endpoint")]}),
]


@pytest.mark.parametrize("message", OUR_MESSAGES, ids=lambda m: type(m).__name__)
def test_ours_packs_exactly_as_theirs_and_both_read_each_other(message):
    packed = ours.pack(message)
    their_message = theirs.unpack(packed)
    assert theirs.pack(their_message) == packed
    assert ours.unpack(theirs.pack(their_message)) == message


def test_verified_wire_sample_matches():
    packed = ours.pack(ours.Result(task_id=TASK_ID, data="x"))
    assert packed == (b'\x01{"message_type":"result","data":{"task_id":"' + str(TASK_ID).encode()
                      + b'","data":"x","details":null,"error_details":null,"task_statuses":null}}')


def test_status_report_alias_and_unknown_fields_are_accepted():
    body = (b'\x01{"message_type":"ep_status_report","data":{"endpoint_id":"' + str(EP_ID).encode()
            + b'","ep_status_report":{"a":1},"task_statuses":{},"new_field":7},"extra":1}')
    report = ours.unpack(body)
    assert report == ours.EPStatusReport(endpoint_id=EP_ID, global_state={"a": 1})


def test_their_task_reads_as_ours():
    packed = theirs.pack(their_types.Task(task_id=TASK_ID, task_buffer="buf"))
    assert ours.unpack(packed) == ours.Task(task_id=TASK_ID, task_buffer="buf")


@pytest.mark.parametrize("buf, phrase", [
    (b"", "unsupported protocol version"),
    (b"\x02{}", "unsupported protocol version"),
    (b"\x01not json", "not UTF-8 JSON"),
    (b"\x01\xff\xfe", "not UTF-8 JSON"),
    (b'\x01{"message_type":"task"}', "envelope must be an object"),
    (b'\x01{"message_type":"nope","data":{}}', "unknown message_type 'nope'"),
    (b'\x01{"message_type":"task","data":{"task_buffer":"x"}}', "task_id: missing required field"),
    (b'\x01{"message_type":"task","data":{"task_id":"not-a-uuid","task_buffer":"x"}}', "task_id:"),
    (b'\x01{"message_type":"task","data":{"task_id":5,"task_buffer":"x"}}', "expected a UUID string"),
    (b'\x01{"message_type":"result","data":{"task_id":"' + str(TASK_ID).encode() + b'","data":3}}',
     "data: expected a string"),
    (b'\x01{"message_type":"task_transition","data":{"timestamp":1,"state":"bogus","actor":"worker"}}',
     "state 'bogus' is not one of"),
])
def test_malformed_messages_raise_message_error_naming_the_problem(buf, phrase):
    with pytest.raises(ours.MessageError) as caught:
        ours.unpack(buf)
    assert phrase in str(caught.value)
