"""The Compute HTTP API that the endpoint and the official SDK speak.

Every route but the version and the OpenAPI document needs ``Authorization: Bearer
<token>`` with a token from ``compute-service token create``. Errors are JSON
``{"error": "..."}`` naming what was wrong.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from contextlib import asynccontextmanager
from typing import Annotated, Any
from urllib.parse import parse_qs, unquote

import attrs
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..protocol import messages
from ..protocol.serialize import SerializationError, unpack_buffers
from ..protocol.urls import is_embedded
from .broker import Broker, OutgoingTask, ResultConsumer, queue_prefix
from .broker_users import BrokerUsers
from .results import ResultRecorder
from .store import PENDING, Store

log = logging.getLogger(__name__)

API_VERSION = "1.0.0"
MAX_BODY_BYTES = messages.MAX_MESSAGE_BYTES
LOCK_SECONDS = 300
DEFAULT_MAX_TASKS_PER_SUBMIT = 10_000
MAX_METADATA_DEPTH = 16


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def not_found(kind: str, ident: object) -> ApiError:
    return ApiError(404, f"{kind} {ident} not found")


CLIENT_TOKEN_LIFETIME_S = 3600.0
# Identities are names here; userinfo gives each a stable UUID, as Globus Auth does.
IDENTITY_NAMESPACE = uuid.UUID("6f6c8a0e-4b1f-5d7e-9c3a-2e8b7d1f0a95")


def basic_credentials(request: Request) -> tuple[str, str]:
    """(user, password) from an HTTP Basic Authorization header; ("", "") when absent or garbled."""
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return "", ""
    try:
        user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return "", ""
    return unquote(user), unquote(password)


class ErrorBody(BaseModel):
    error: str


# ---------------------------------------------------------------- request bodies


class _Body(BaseModel):
    # Newer SDKs may send fields we do not use; ignore them rather than fail.
    model_config = ConfigDict(extra="ignore")


class EndpointRegistration(_Body):
    endpoint_name: str = Field(min_length=1, max_length=256)
    display_name: str | None = Field(default=None, max_length=256)
    metadata: dict[str, Any] | None = None
    multi_user: bool | None = None
    public: bool | None = None
    high_assurance: bool | None = None
    allowed_functions: list[uuid.UUID] | None = None


class FunctionRegistration(_Body):
    function_name: str = Field(min_length=1, max_length=512)
    function_code: str = Field(min_length=1)
    description: str | None = None
    meta: dict[str, Any] | None = None
    public: bool | None = None


class Submission(_Body):
    tasks: dict[uuid.UUID, list[str]]
    create_queue: bool = False
    task_group_id: uuid.UUID | None = None
    resource_specification: dict[str, Any] | None = None
    user_endpoint_config: dict[str, Any] | None = None
    user_runtime: dict[str, Any] | None = None
    result_serializers: list[str] | None = None


class BatchStatusRequest(_Body):
    task_ids: list[uuid.UUID] = Field(max_length=10000)


# ---------------------------------------------------------------- authentication

bearer = HTTPBearer(auto_error=False, description="A token from `compute-service token create`")


def caller_identity(request: Request,
                    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> str:
    if credentials is None:
        raise ApiError(401, "missing 'Authorization: Bearer <token>' header")
    who = request.app.state.store.identity_for_token(credentials.credentials)
    if who is None:
        raise ApiError(401, "invalid or revoked token")
    return who


Identity = Annotated[str, Depends(caller_identity)]


# ---------------------------------------------------------------- the application


@attrs.frozen
class ServiceSettings:
    db_url: str
    broker_url: str
    public_broker_url: str | None = None
    heartbeat_grace_s: float = 60.0
    # False: every endpoint and SDK client is handed the service's own broker credentials
    # (an explicit opt-in for trusted single-user machines); True: each gets a broker user of
    # its own, which needs RabbitMQ's management API.
    endpoint_broker_users: bool = True
    max_tasks_per_submit: int = DEFAULT_MAX_TASKS_PER_SUBMIT
    management_url: str | None = None  # RabbitMQ's management API [default: port 15672 of the broker's host]


class ServiceConfigError(Exception):
    """The service cannot serve safely as configured; str() says what to change."""


class BodyLimit:
    """ASGI middleware: refuse bodies over the limit before anything parses them."""

    def __init__(self, app, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared and declared.isdigit() and int(declared) > self.limit:
            return await self._refuse(send)
        if declared is not None:
            return await self.app(scope, receive, send)  # the server holds it to its length
        # No length given (chunked): read it all here, up to the limit, and hand it on whole,
        # so an oversized body is a 413 before any route's parser sees a part of it.
        chunks, seen = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            seen += len(chunks[-1])
            if seen > self.limit:
                return await self._refuse(send)
            if not message.get("more_body"):
                break
        body, delivered = b"".join(chunks), False

        async def whole():
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await self.app(scope, whole, send)

    async def _refuse(self, send):
        body = json.dumps({"error": f"request body over the {self.limit} byte limit"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})


def create_app(settings: ServiceSettings, store: Store | None = None) -> FastAPI:
    store = store or Store(settings.db_url)
    users = None
    if settings.endpoint_broker_users and not is_embedded(settings.broker_url):
        candidate = BrokerUsers(settings.broker_url, settings.management_url)
        if not candidate.available():
            raise ServiceConfigError(
                f"RabbitMQ's management API does not answer at {candidate.api} (or the service's broker user "
                "may not manage users), so endpoints and SDK clients cannot get broker users of their own, and "
                "handing them the service's credentials would let any of them read and forge everyone's tasks. "
                "Enable it (rabbitmq-plugins enable rabbitmq_management), or, on a machine whose only user is "
                "you, start with --shared-broker-credentials.")
        users = candidate
    elif not is_embedded(settings.broker_url):
        log.warning("--shared-broker-credentials: every endpoint and SDK client gets the service's own broker "
                    "credentials, and can read and publish any endpoint's tasks and results")
    broker = Broker(settings.broker_url, settings.public_broker_url, users)
    consumer = ResultConsumer(settings.broker_url, ResultRecorder(store))

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        broker.declare_topology()
        consumer.start()
        yield
        consumer.stop()
        consumer.join(timeout=5)
        broker.close()

    error_responses: dict[int | str, dict[str, Any]] = {
        code: {"model": ErrorBody} for code in (400, 401, 403, 404, 413, 422, 423, 501, 503)
    }
    app = FastAPI(title="compute-service", version=API_VERSION, lifespan=lifespan,
                  description=__doc__, responses=error_responses)
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    app.state.store = store
    app.state.broker = broker
    app.state.consumer = consumer

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError):
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        return JSONResponse({"error": f"invalid request: {problems}"}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException):
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)


    # ---------------------------------------------------------------- version

    @app.get("/v2/version")
    def version(service: str | None = None) -> dict:
        info = {"api": API_VERSION, "min_sdk_version": "2.0.0", "min_ep_version": "2.0.0"}
        return info if service == "all" else {"api": API_VERSION}

    # ---------------------------------------------------------------- OAuth2 (client identities)

    @app.post("/v2/oauth2/token", openapi_extra={"requestBody": {"required": True, "content": {
        "application/x-www-form-urlencoded": {"schema": {"type": "object", "required": ["grant_type"], "properties": {
            "grant_type": {"type": "string", "enum": ["client_credentials"]}, "scope": {"type": "string"}}}}}}})
    async def oauth2_token(request: Request) -> dict:
        """The client-credentials grant for client identities (`compute-service client create`),
        with the client id and secret as HTTP Basic credentials, as Globus Auth takes them."""
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        grant = (form.get("grant_type") or [""])[0]
        if grant != "client_credentials":
            raise ApiError(400, f"unsupported grant_type {grant!r}; accepted: client_credentials")
        client_id, secret = basic_credentials(request)
        identity = store.identity_for_client(client_id, secret) if client_id else None
        if identity is None:
            raise ApiError(401, "invalid client credentials (HTTP Basic client id and secret)")
        token = store.create_token(identity, lifetime_s=CLIENT_TOKEN_LIFETIME_S)
        scope = (form.get("scope") or [""])[0]
        return {"access_token": token, "expires_in": int(CLIENT_TOKEN_LIFETIME_S), "token_type": "Bearer",
                "resource_server": "funcx_service", "scope": scope, "other_tokens": []}

    @app.get("/v2/oauth2/userinfo")
    def userinfo(owner: Identity) -> dict:
        """Who the bearer token speaks for, in OpenID Connect's shape."""
        sub = str(uuid.uuid5(IDENTITY_NAMESPACE, owner))
        return {"sub": sub, "preferred_username": owner, "identity_set": [{"sub": sub, "username": owner}]}

    # ---------------------------------------------------------------- endpoints

    def register(owner: str, endpoint_id: str, body: EndpointRegistration) -> dict:
        existing = store.get_endpoint_row(endpoint_id)
        if existing is not None and existing.owner != owner:
            # Another identity's endpoint, live or deleted, looks absent, as everything of theirs does.
            raise not_found("endpoint", endpoint_id)
        if body.metadata is not None and _depth(body.metadata) > MAX_METADATA_DEPTH:
            raise ApiError(400, f"metadata is nested deeper than {MAX_METADATA_DEPTH} levels")
        if existing is not None and (existing.locked_until or 0) > time.time():
            raise ApiError(423, f"endpoint {endpoint_id} is locked until "
                                f"{time.ctime(existing.locked_until)}")
        store.upsert_endpoint(owner, endpoint_id, body.endpoint_name, body.display_name,
                              bool(body.public), body.metadata)
        try:
            connection_url = broker.declare_endpoint(endpoint_id)
        except Exception as exc:
            raise ApiError(503, f"the message broker is unavailable: {exc}") from None
        return broker.queue_info(endpoint_id, connection_url)

    @app.post("/v3/endpoints")
    def register_endpoint(body: EndpointRegistration, owner: Identity) -> dict:
        return register(owner, str(uuid.uuid4()), body)

    @app.put("/v3/endpoints/{endpoint_id}")
    def reregister_endpoint(endpoint_id: uuid.UUID, body: EndpointRegistration, owner: Identity) -> dict:
        return register(owner, str(endpoint_id), body)

    def owned_endpoint(owner: str, endpoint_id: uuid.UUID):
        row = store.endpoint(owner, str(endpoint_id))
        if row is None:
            raise not_found("endpoint", endpoint_id)
        return row

    def describe_endpoint(row) -> dict:
        return {"uuid": row.id, "name": row.name, "display_name": row.display_name,
                "owner": row.owner, "public": row.public, "metadata": row.meta or {}}

    @app.get("/v2/endpoints")
    def list_endpoints(owner: Identity, role: str = "any") -> list[dict]:
        return [describe_endpoint(row) for row in store.list_endpoints(owner)]

    @app.get("/v2/endpoints/{endpoint_id}")
    def get_endpoint(endpoint_id: uuid.UUID, owner: Identity) -> dict:
        return describe_endpoint(owned_endpoint(owner, endpoint_id))

    @app.get("/v2/endpoints/{endpoint_id}/status")
    def endpoint_status(endpoint_id: uuid.UUID, owner: Identity) -> dict:
        row = owned_endpoint(owner, endpoint_id)
        report = row.report or {}
        period = report.get("heartbeat_period") or 30
        fresh = row.last_report is not None and (
            time.time() - row.last_report < max(2 * period, settings.heartbeat_grace_s))
        online = fresh and report.get("active", True) is not False
        return {"status": "online" if online else "offline", "details": report}

    @app.delete("/v2/endpoints/{endpoint_id}")
    def delete_endpoint(endpoint_id: uuid.UUID, owner: Identity) -> dict:
        owned_endpoint(owner, endpoint_id)
        failed = store.delete_endpoint(owner, str(endpoint_id),
                                       f"endpoint {endpoint_id} was deleted before this task ran")
        if failed:
            log.info("endpoint %s deleted; %d pending task(s) failed", endpoint_id, failed)
        try:
            broker.delete_endpoint(str(endpoint_id))
        except Exception as exc:  # the record is gone; a stale queue is harmless
            log.warning("could not delete the task queue of %s: %s", endpoint_id, exc)
        return {"result": 302}

    @app.post("/v3/endpoints/{endpoint_id}/lock")
    def lock_endpoint(endpoint_id: uuid.UUID, owner: Identity) -> dict:
        owned_endpoint(owner, endpoint_id)
        until = time.time() + LOCK_SECONDS
        store.lock_endpoint(owner, str(endpoint_id), until)
        return {"endpoint_id": str(endpoint_id), "lock_expiration": until}

    @app.get("/v3/endpoints/{endpoint_id}/allowed_functions")
    def allowed_functions(endpoint_id: uuid.UUID, owner: Identity) -> dict:
        owned_endpoint(owner, endpoint_id)
        return {"endpoint_id": str(endpoint_id), "functions": []}

    # ---------------------------------------------------------------- functions

    @app.post("/v3/functions")
    def register_function(body: FunctionRegistration, owner: Identity) -> dict:
        try:
            buffers = unpack_buffers(body.function_code)
        except SerializationError as exc:
            raise ApiError(400, f"function_code is not a packed buffer: {exc}") from None
        if len(buffers) != 1:
            raise ApiError(400, f"function_code must pack exactly one serialized function, "
                                f"got {len(buffers)}")
        function_id = store.create_function(owner, body.function_name, body.function_code,
                                            body.description, body.meta)
        return {"function_uuid": function_id}

    @app.get("/v2/functions/{function_id}")
    def get_function(function_id: uuid.UUID, owner: Identity) -> dict:
        row = store.functions_by_id(owner, [str(function_id)]).get(str(function_id))
        if row is None:
            raise not_found("function", function_id)
        return {"function_uuid": row.id, "function_name": row.name, "function_code": row.code,
                "description": row.description, "metadata": row.meta or {}}

    @app.delete("/v2/functions/{function_id}")
    def delete_function(function_id: uuid.UUID, owner: Identity) -> dict:
        if not store.delete_function(owner, str(function_id)):
            raise not_found("function", function_id)
        return {"result": 302, "function_uuid": str(function_id)}

    # ---------------------------------------------------------------- tasks

    @app.post("/v3/endpoints/{endpoint_id}/submit")
    def submit(endpoint_id: uuid.UUID, body: Submission, owner: Identity) -> dict:
        owned_endpoint(owner, endpoint_id)
        if not any(body.tasks.values()):
            raise ApiError(400, "tasks has no task to submit: give {function_uuid: [payload, ...]}")
        count = sum(len(payloads) for payloads in body.tasks.values())
        if count > settings.max_tasks_per_submit:
            raise ApiError(413, f"{count} tasks in one submit; the limit is {settings.max_tasks_per_submit} "
                                "(send them in several submits)")
        function_rows = store.functions_by_id(owner, [str(f) for f in body.tasks])
        for function_id in body.tasks:
            if str(function_id) not in function_rows:
                raise not_found("function", function_id)
        for function_id, payloads in body.tasks.items():
            for index, payload in enumerate(payloads):
                try:
                    count = len(unpack_buffers(payload))
                except SerializationError as exc:
                    raise ApiError(400, f"tasks.{function_id}.{index}: {exc}") from None
                if count != 2:
                    raise ApiError(400, f"tasks.{function_id}.{index}: the payload must pack "
                                        f"args and kwargs (2 buffers), got {count}")
        task_group_id = store.ensure_task_group(
            owner, str(body.task_group_id) if body.task_group_id else None)
        if task_group_id is None:
            raise not_found("task group", body.task_group_id)

        spec = json.dumps(body.resource_specification)
        outgoing, ids_by_function, function_of_task = [], {}, {}
        for function_id, payloads in body.tasks.items():
            code = function_rows[str(function_id)].code
            ids = ids_by_function.setdefault(str(function_id), [])
            for payload in payloads:
                task_id = str(uuid.uuid4())
                ids.append(task_id)
                function_of_task[task_id] = str(function_id)
                task = messages.Task(task_id=uuid.UUID(task_id), task_buffer=code + payload)
                outgoing.append(OutgoingTask(task_id, str(function_id), messages.pack(task), spec,
                                             body.result_serializers))
        store.create_tasks(owner, str(endpoint_id), task_group_id, function_of_task)
        try:
            if body.create_queue:
                broker.declare_task_group(owner, task_group_id)
            broker.publish_tasks(str(endpoint_id), outgoing)
        except Exception as exc:
            store.complete_tasks([{"id": t, "status": "failed", "completion_t": str(time.time()),
                                   "exception": f"the task could not be queued: {exc}"}
                                  for t in function_of_task])
            raise ApiError(503, f"the message broker is unavailable: {exc}") from None
        return {"request_id": str(uuid.uuid4()), "task_group_id": task_group_id,
                "endpoint_id": str(endpoint_id), "tasks": ids_by_function}

    @app.get("/v2/tasks/{task_id}")
    def get_task(task_id: uuid.UUID, owner: Identity) -> dict:
        row = store.tasks_by_id(owner, [str(task_id)]).get(str(task_id))
        if row is None:
            raise not_found("task", task_id)
        return describe_task(row)

    @app.post("/v2/batch_status")
    def batch_status(body: BatchStatusRequest, owner: Identity) -> dict:
        rows = store.tasks_by_id(owner, [str(t) for t in body.task_ids])
        return {"response": "batch", "results": {tid: describe_task(row) for tid, row in rows.items()}}

    @app.get("/v2/taskgroup/{task_group_id}")
    def task_group(task_group_id: uuid.UUID, owner: Identity) -> dict:
        ids = store.task_group_tasks(owner, str(task_group_id))
        if ids is None:
            raise not_found("task group", task_group_id)
        return {"taskgroup_id": str(task_group_id), "tasks": [{"id": t} for t in ids]}

    @app.get("/v2/get_amqp_result_connection_url")
    def amqp_result_url(owner: Identity) -> dict:
        if broker.embedded:
            raise ApiError(501, "this service runs the embedded broker, which the SDK Executor cannot use: "
                                "wait for results with Client.get_task / get_batch_result, or serve with RabbitMQ "
                                "(compute-service serve --broker amqp://...)")
        if broker.users is None:  # the operator chose --shared-broker-credentials
            return {"connection_url": broker.public_url, "queue_prefix": queue_prefix(owner)}
        try:
            url = broker.users.grant_client(owner, broker.public_url, queue_prefix(owner))
        except Exception as exc:
            raise ApiError(503, f"the message broker cannot make a user for you now: {exc}") from None
        return {"connection_url": url, "queue_prefix": queue_prefix(owner)}

    return app


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


def _depth(value: object, level: int = 1) -> int:
    """How deeply a JSON value nests, counted without recursion (a deep one must not overflow)."""
    deepest, stack = level, [(value, level)]
    while stack:
        item, at = stack.pop()
        deepest = max(deepest, at)
        if deepest > MAX_METADATA_DEPTH:
            return deepest
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, at + 1) for child in children)
    return deepest
