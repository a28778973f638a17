"""Endpoints: registration (which declares their queues), listing, status, lock, delete."""

from __future__ import annotations

import logging
import time
import uuid

from fastapi import APIRouter

from ...protocol.json_depth import json_depth
from ..broker import Broker
from ..broker_users import ForeignBrokerUser
from ..http import ApiError, BrokerDep, Identity, SettingsDep, StoreDep, not_found
from ..schemas import EndpointRegistration
from ..store import EndpointIdTaken, Store

log = logging.getLogger(__name__)

LOCK_SECONDS = 300
MAX_METADATA_DEPTH = 16

router = APIRouter()


def owned_endpoint(store: Store, owner: str, endpoint_id: uuid.UUID):
    """The caller's endpoint; another identity's, live or deleted, looks absent, as everything of theirs does."""
    row = store.endpoint(owner, str(endpoint_id))
    if row is None:
        raise not_found("endpoint", endpoint_id)
    return row


def submittable_endpoint(store: Store, caller: str, endpoint_id: uuid.UUID):
    """The caller's endpoint, or a multi-user one of any identity: each identity's tasks go to
    a user endpoint of its own, run as the local user the endpoint's identity mapping names."""
    row = store.endpoint(caller, str(endpoint_id))
    if row is None:
        row = store.get_endpoint_row(str(endpoint_id))
        if row is None or row.deleted or not (row.settings or {}).get("multi_user") \
                or not (row.settings or {}).get("template_capable"):
            raise not_found("endpoint", endpoint_id)
    return row


def describe_endpoint(row) -> dict:
    return {"uuid": row.id, "name": row.name, "display_name": row.display_name,
            "owner": row.owner, "public": row.public, "metadata": row.meta or {}}


def register(store: Store, broker: Broker, owner: str, endpoint_id: str, body: EndpointRegistration) -> dict:
    existing = store.get_endpoint_row(endpoint_id)
    if existing is not None and existing.owner != owner:
        raise not_found("endpoint", endpoint_id)
    if body.metadata is not None and json_depth(body.metadata, MAX_METADATA_DEPTH) > MAX_METADATA_DEPTH:
        raise ApiError(400, f"metadata is nested deeper than {MAX_METADATA_DEPTH} levels")
    if existing is not None and (existing.locked_until or 0) > time.time():
        raise ApiError(423, f"endpoint {endpoint_id} is locked until {time.ctime(existing.locked_until)}")
    allowed = [str(f) for f in body.allowed_functions] if body.allowed_functions is not None else None
    settings = body.settings()
    # A template-capable endpoint sends its template, as the official manager does.
    settings["template_capable"] = bool(body.metadata and "user_config_template" in body.metadata)
    try:
        store.upsert_endpoint(owner, endpoint_id, body.endpoint_name, body.display_name,
                              bool(body.public), body.metadata, allowed, settings)
    except EndpointIdTaken:  # by another identity, at the same moment, through another replica
        raise ApiError(409, f"endpoint {endpoint_id} is registered by another identity") from None
    try:
        connection_url = broker.declare_endpoint(endpoint_id)
    except ForeignBrokerUser as exc:
        raise ApiError(409, f"{exc}; this service will not hand it out (ask the broker's operator)") from None
    except Exception as exc:
        raise ApiError(503, f"the message broker is unavailable: {exc}") from None
    return broker.queue_info(endpoint_id, connection_url)


@router.post("/v3/endpoints")
def register_endpoint(body: EndpointRegistration, owner: Identity, store: StoreDep, broker: BrokerDep) -> dict:
    return register(store, broker, owner, str(uuid.uuid4()), body)


@router.put("/v3/endpoints/{endpoint_id}")
def reregister_endpoint(endpoint_id: uuid.UUID, body: EndpointRegistration, owner: Identity, store: StoreDep,
                        broker: BrokerDep) -> dict:
    return register(store, broker, owner, str(endpoint_id), body)


ROLES = ("owner", "any")


@router.get("/v2/endpoints")
def list_endpoints(owner: Identity, store: StoreDep, role: str = "owner") -> list[dict]:
    """The caller's endpoints (role owner, the default), or those and every public one (any)."""
    if role not in ROLES:
        raise ApiError(400, f"role {role[:40]!r} is not accepted; accepted: {', '.join(ROLES)}")
    return [describe_endpoint(row) for row in store.list_endpoints(owner, public_too=role == "any")]


@router.get("/v2/endpoints/{endpoint_id}")
def get_endpoint(endpoint_id: uuid.UUID, owner: Identity, store: StoreDep) -> dict:
    return describe_endpoint(owned_endpoint(store, owner, endpoint_id))


@router.get("/v2/endpoints/{endpoint_id}/status")
def endpoint_status(endpoint_id: uuid.UUID, owner: Identity, store: StoreDep, settings: SettingsDep) -> dict:
    row = owned_endpoint(store, owner, endpoint_id)
    online = is_online(row, settings.heartbeat_grace_s)
    return {"status": "online" if online else "offline", "details": row.report or {}}


def is_online(row, grace_s: float) -> bool:
    """A fresh status report (within two of its periods) that does not say it stopped."""
    report = row.report or {}
    period = report.get("heartbeat_period") or 30
    fresh = row.last_report is not None and time.time() - row.last_report < max(2 * period, grace_s)
    return fresh and report.get("active", True) is not False


@router.delete("/v2/endpoints/{endpoint_id}")
def delete_endpoint(endpoint_id: uuid.UUID, owner: Identity, store: StoreDep, broker: BrokerDep) -> dict:
    owned_endpoint(store, owner, endpoint_id)
    failed = store.delete_endpoint(owner, str(endpoint_id), f"endpoint {endpoint_id} was deleted before this task ran")
    if failed:
        log.info("endpoint %s deleted; %d pending task(s) failed", endpoint_id, failed)
    try:
        broker.delete_endpoint(str(endpoint_id))
    except Exception as exc:  # the record is gone; a stale queue is harmless
        log.warning("could not delete the task queue of %s: %s", endpoint_id, exc)
    return {"result": 302}


@router.post("/v3/endpoints/{endpoint_id}/lock")
def lock_endpoint(endpoint_id: uuid.UUID, owner: Identity, store: StoreDep, broker: BrokerDep) -> dict:
    """Stop the endpoint wherever it runs: it is told on its command queue, and its
    registration is refused until the lock expires."""
    owned_endpoint(store, owner, endpoint_id)
    until = time.time() + LOCK_SECONDS
    store.lock_endpoint(owner, str(endpoint_id), until)
    try:
        broker.send_stop(str(endpoint_id), f"stop requested by {owner}")
    except Exception as exc:
        raise ApiError(503, f"the endpoint is locked, but the message broker could not tell it to stop: {exc}") \
            from None
    return {"endpoint_id": str(endpoint_id), "lock_expiration": until}


@router.get("/v3/endpoints/{endpoint_id}/allowed_functions")
def allowed_functions(endpoint_id: uuid.UUID, owner: Identity, store: StoreDep) -> dict:
    """The functions the endpoint runs (its config's allowed_functions); empty: any."""
    row = owned_endpoint(store, owner, endpoint_id)
    return {"endpoint_id": str(endpoint_id), "functions": list(row.allowed_functions or [])}

