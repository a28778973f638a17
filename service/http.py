"""The HTTP side every route shares: errors as JSON ``{"error": ...}``, who is asking (the
bearer token), what the routes reach through the application (store, broker, settings),
and the body limit."""

from __future__ import annotations

import base64
import json
from typing import Annotated
from urllib.parse import unquote

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from .broker import Broker
from .settings import ServiceSettings
from .store import Store


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def not_found(kind: str, ident: object) -> ApiError:
    return ApiError(404, f"{kind} {ident} not found")


class ErrorBody(BaseModel):
    error: str


ERROR_RESPONSES: dict[int | str, dict] = {code: {"model": ErrorBody}
                                          for code in (400, 401, 403, 404, 413, 422, 423, 501, 503)}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError):
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError):
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return JSONResponse({"error": f"invalid request: {problems}"}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException):
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)


# ---------------------------------------------------------------- what the routes reach


def _store(request: Request) -> Store:
    return request.app.state.store


def _broker(request: Request) -> Broker:
    return request.app.state.broker


def _settings(request: Request) -> ServiceSettings:
    return request.app.state.settings


StoreDep = Annotated[Store, Depends(_store)]
BrokerDep = Annotated[Broker, Depends(_broker)]
SettingsDep = Annotated[ServiceSettings, Depends(_settings)]


# ---------------------------------------------------------------- who is asking

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


# ---------------------------------------------------------------- the body limit


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
