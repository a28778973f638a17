"""Functions: registration (the serialized code, checked to be one packed buffer), get, delete."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from ...protocol.serialize import SerializationError, pack_buffers, unpack_buffers
from ..http import ApiError, Identity, StoreDep, not_found
from ..schemas import FunctionRegistration

PURE_SOURCE_IDENTIFIER = "st\n"  # the SDK's PureSourceTextInspect

router = APIRouter()


@router.post("/v3/functions")
def register_function(body: FunctionRegistration, owner: Identity, store: StoreDep) -> dict:
    """A public function is runnable by every identity; a group-shared one is kept as such, but
    with no Globus groups here it runs for its owner only."""
    code = body.function_code if body.serialized else source_as_serialized(body.function_name, body.function_code)
    try:
        buffers = unpack_buffers(code)
    except SerializationError as exc:
        raise ApiError(400, f"function_code is not a packed buffer: {exc} (send serialized: false with plain "
                            "source text)") from None
    if len(buffers) != 1:
        raise ApiError(400, f"function_code must pack exactly one serialized function, got {len(buffers)}")
    function_id = store.create_function(owner, body.function_name, code, body.description, body.meta,
                                        public=bool(body.public), group_id=str(body.group) if body.group else None)
    return {"function_uuid": function_id}


def source_as_serialized(function_name: str, source: str) -> str:
    """Plain source text as the hosted service stores it: the SDK's PureSourceTextInspect
    serialization of the named function, packed."""
    if not function_name.isidentifier():
        raise ApiError(400, f"function_name {function_name[:80]!r} must name the function the source defines")
    try:
        compile(source, function_name, "exec")
    except (SyntaxError, ValueError) as exc:
        raise ApiError(400, f"function_code is not Python source: {exc}") from None
    return pack_buffers([f"{PURE_SOURCE_IDENTIFIER}{function_name}:{source}"])


@router.get("/v2/functions/{function_id}")
def get_function(function_id: uuid.UUID, owner: Identity, store: StoreDep) -> dict:
    row = store.functions_by_id(owner, [str(function_id)]).get(str(function_id))
    if row is None:
        raise not_found("function", function_id)
    return {"function_uuid": row.id, "function_name": row.name, "function_code": row.code,
            "description": row.description, "metadata": row.meta or {}, "public": bool(row.public)}


@router.delete("/v2/functions/{function_id}")
def delete_function(function_id: uuid.UUID, owner: Identity, store: StoreDep) -> dict:
    if not store.delete_function(owner, str(function_id)):
        raise not_found("function", function_id)
    return {"result": 302, "function_uuid": str(function_id)}
