"""Functions: registration (the serialized code, checked to be one packed buffer), get, delete."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from ...protocol.serialize import SerializationError, unpack_buffers
from ..http import ApiError, Identity, StoreDep, not_found
from ..schemas import FunctionRegistration

router = APIRouter()


@router.post("/v3/functions")
def register_function(body: FunctionRegistration, owner: Identity, store: StoreDep) -> dict:
    try:
        buffers = unpack_buffers(body.function_code)
    except SerializationError as exc:
        raise ApiError(400, f"function_code is not a packed buffer: {exc}") from None
    if len(buffers) != 1:
        raise ApiError(400, f"function_code must pack exactly one serialized function, got {len(buffers)}")
    function_id = store.create_function(owner, body.function_name, body.function_code, body.description, body.meta)
    return {"function_uuid": function_id}


@router.get("/v2/functions/{function_id}")
def get_function(function_id: uuid.UUID, owner: Identity, store: StoreDep) -> dict:
    row = store.functions_by_id(owner, [str(function_id)]).get(str(function_id))
    if row is None:
        raise not_found("function", function_id)
    return {"function_uuid": row.id, "function_name": row.name, "function_code": row.code,
            "description": row.description, "metadata": row.meta or {}}


@router.delete("/v2/functions/{function_id}")
def delete_function(function_id: uuid.UUID, owner: Identity, store: StoreDep) -> dict:
    if not store.delete_function(owner, str(function_id)):
        raise not_found("function", function_id)
    return {"result": 302, "function_uuid": str(function_id)}
