"""Tasks: submit (stored, then published to the endpoint's queue), status, task groups, and
the broker URL the SDK Executor reads results with."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from fastapi import APIRouter

from ...protocol import messages
from ...protocol.commands import user_options_problem
from ...protocol.serialize import SerializationError, unpack_buffers
from ..broker import OutgoingTask, queue_prefix
from ..broker_users import ForeignBrokerUser
from ..http import ApiError, BrokerDep, Identity, SettingsDep, StoreDep, not_found
from ..schemas import BatchStatusRequest, Submission
from ..store import PENDING, Store
from ..user_endpoints import route_to_user_endpoint
from .endpoints import submittable_endpoint

router = APIRouter()


@router.post("/v3/endpoints/{endpoint_id}/submit")
def submit(endpoint_id: uuid.UUID, body: Submission, owner: Identity, store: StoreDep, broker: BrokerDep,
           settings: SettingsDep) -> dict:
    endpoint = submittable_endpoint(store, owner, endpoint_id)
    function_code = _checked_functions(store, owner, body, settings.max_tasks_per_submit)
    # A user endpoint is bound by its manager's list as it is now (its id is in every task's
    # details: a submit straight to it must not escape the manager's allowed_functions).
    parent_id = (endpoint.settings or {}).get("parent")
    parent = store.get_endpoint_row(parent_id) if parent_id else None  # the manager may be another identity's
    for allowed in (endpoint.allowed_functions, parent.allowed_functions if parent else None):
        if allowed is None:
            continue
        for function_id in body.tasks:
            if str(function_id) not in allowed:
                raise ApiError(403, f"function {function_id} is not allowed on endpoint {endpoint_id}: its "
                                    "configuration lists the functions it runs (allowed_functions)")
    target = str(endpoint_id)
    if (endpoint.settings or {}).get("template_capable"):
        for what, options in (("user_endpoint_config", body.user_endpoint_config or {}),
                              ("user_runtime", body.user_runtime or {})):
            problem = user_options_problem(options, what)
            if problem:  # the endpoint would refuse to start it: say so now, not by a task that never runs
                raise ApiError(413 if problem.too_big else 400, problem.text)
        try:  # to the user endpoint of these options (started if need be)
            target = route_to_user_endpoint(store, broker, owner, endpoint, body.user_endpoint_config or {},
                                            body.user_runtime, settings.heartbeat_grace_s)
        except Exception as exc:
            raise ApiError(503, f"the message broker is unavailable: {exc}") from None
    task_group_id = store.ensure_task_group(owner, str(body.task_group_id) if body.task_group_id else None)
    if task_group_id is None:
        raise not_found("task group", body.task_group_id)
    spec = json.dumps(body.resource_specification)
    outgoing: list[OutgoingTask] = []
    ids_by_function: dict[str, list[str]] = {}
    function_of_task: dict[str, str] = {}
    for function_id, payloads in body.tasks.items():
        ids = ids_by_function.setdefault(str(function_id), [])
        for payload in payloads:
            task_id = str(uuid.uuid4())
            ids.append(task_id)
            function_of_task[task_id] = str(function_id)
            task = messages.Task(task_id=uuid.UUID(task_id), task_buffer=function_code[str(function_id)] + payload)
            outgoing.append(OutgoingTask(task_id, str(function_id), messages.pack(task), spec,
                                         body.result_serializers))
    store.create_tasks(owner, target, task_group_id, function_of_task)
    try:
        if body.create_queue:
            broker.declare_task_group(owner, task_group_id)
        broker.publish_tasks(target, outgoing)
    except Exception as exc:
        store.complete_tasks([{"id": t, "status": "failed", "completion_t": str(time.time()),
                               "exception": f"the task could not be queued: {exc}"} for t in function_of_task])
        raise ApiError(503, f"the message broker is unavailable: {exc}") from None
    return {"request_id": str(uuid.uuid4()), "task_group_id": task_group_id,
            "endpoint_id": str(endpoint_id), "tasks": ids_by_function}


def _checked_functions(store: Store, owner: str, body: Submission, max_tasks: int) -> dict[str, str]:
    """The code of each function the submission names, once every part of it checked out."""
    if not any(body.tasks.values()):
        raise ApiError(400, "tasks has no task to submit: give {function_uuid: [payload, ...]}")
    count = sum(len(payloads) for payloads in body.tasks.values())
    if count > max_tasks:
        raise ApiError(413, f"{count} tasks in one submit; the limit is {max_tasks} (send them in several submits)")
    rows = store.functions_by_id(owner, [str(f) for f in body.tasks])
    for function_id, payloads in body.tasks.items():
        if str(function_id) not in rows:
            raise not_found("function", function_id)
        for index, payload in enumerate(payloads):
            try:
                buffers = len(unpack_buffers(payload))
            except SerializationError as exc:
                raise ApiError(400, f"tasks.{function_id}.{index}: {exc}") from None
            if buffers != 2:
                raise ApiError(400, f"tasks.{function_id}.{index}: the payload must pack args and kwargs "
                                    f"(2 buffers), got {buffers}")
    return {function_id: row.code for function_id, row in rows.items()}


@router.get("/v2/tasks/{task_id}")
def get_task(task_id: uuid.UUID, owner: Identity, store: StoreDep) -> dict:
    row = store.tasks_by_id(owner, [str(task_id)]).get(str(task_id))
    if row is None:
        raise not_found("task", task_id)
    return describe_task(row)


@router.post("/v2/batch_status")
def batch_status(body: BatchStatusRequest, owner: Identity, store: StoreDep) -> dict:
    rows = store.tasks_by_id(owner, [str(t) for t in body.task_ids])
    return {"response": "batch", "results": {tid: describe_task(row) for tid, row in rows.items()}}


@router.get("/v2/taskgroup/{task_group_id}")
def task_group(task_group_id: uuid.UUID, owner: Identity, store: StoreDep) -> dict:
    ids = store.task_group_tasks(owner, str(task_group_id))
    if ids is None:
        raise not_found("task group", task_group_id)
    return {"taskgroup_id": str(task_group_id), "tasks": [{"id": t} for t in ids]}


@router.get("/v2/get_amqp_result_connection_url")
def amqp_result_url(owner: Identity, broker: BrokerDep) -> dict:
    if broker.embedded:
        raise ApiError(501, "this service runs the embedded broker, which the SDK Executor cannot use: "
                            "wait for results with Client.get_task / get_batch_result, or serve with RabbitMQ "
                            "(compute-service serve --broker amqp://...)")
    if broker.users is None:  # the operator chose --shared-broker-credentials
        return {"connection_url": broker.public_url, "queue_prefix": queue_prefix(owner)}
    try:
        url = broker.users.grant_client(owner, broker.public_url, queue_prefix(owner))
    except ForeignBrokerUser as exc:
        raise ApiError(409, f"{exc}; this service will not hand it out (ask the broker's operator)") from None
    except Exception as exc:
        raise ApiError(503, f"the message broker cannot make a user for you now: {exc}") from None
    return {"connection_url": url, "queue_prefix": queue_prefix(owner)}


def describe_task(row) -> dict:
    out: dict[str, Any] = {"task_id": row.id, "status": row.status, "task_group_id": row.task_group_id}
    if row.status == "success":
        out["result"] = row.result
    elif row.status == "failed":
        out["exception"] = row.exception
    if row.status != PENDING:
        out["completion_t"] = row.completion_t
    if row.details:
        out["details"] = row.details
    return out
