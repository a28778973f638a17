"""Who is asking: the API version, tokens for client identities, and userinfo."""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs

from fastapi import APIRouter, Request

from ..http import ApiError, Identity, StoreDep, basic_credentials

API_VERSION = "1.0.0"
CLIENT_TOKEN_LIFETIME_S = 3600.0
# Identities are names here; userinfo gives each a stable UUID, as Globus Auth does.
IDENTITY_NAMESPACE = uuid.UUID("6f6c8a0e-4b1f-5d7e-9c3a-2e8b7d1f0a95")

router = APIRouter()


@router.get("/v2/version")
def version(service: str | None = None) -> dict:
    info = {"api": API_VERSION, "min_sdk_version": "2.0.0", "min_ep_version": "2.0.0"}
    return info if service == "all" else {"api": API_VERSION}


@router.post("/v2/oauth2/token", openapi_extra={"requestBody": {"required": True, "content": {
    "application/x-www-form-urlencoded": {"schema": {"type": "object", "required": ["grant_type"], "properties": {
        "grant_type": {"type": "string", "enum": ["client_credentials"]}, "scope": {"type": "string"}}}}}}})
async def oauth2_token(request: Request, store: StoreDep) -> dict:
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
    # As Globus Auth answers: one token per resource server the scopes belong to, the first on
    # top and the others in other_tokens (a client asking only for identity scopes gets one).
    by_server: dict[str, list[str]] = {}
    for scope in (form.get("scope") or [""])[0].split() or [""]:
        by_server.setdefault(_resource_server(scope), []).append(scope)
    tokens = [_token(store, identity, server, " ".join(dict.fromkeys(s for s in scopes if s)))
              for server, scopes in sorted(by_server.items(), key=lambda item: item[0] != "funcx_service")]
    return {**tokens[0], "other_tokens": tokens[1:]}


def _resource_server(scope: str) -> str:
    if scope in ("openid", "profile", "email") or scope.startswith("urn:globus:auth:scope:auth.globus.org:"):
        return "auth.globus.org"
    return "funcx_service"


def _token(store, identity: str, resource_server: str, scope: str) -> dict:
    return {"access_token": store.create_token(identity, lifetime_s=CLIENT_TOKEN_LIFETIME_S),
            "expires_in": int(CLIENT_TOKEN_LIFETIME_S), "token_type": "Bearer", "resource_server": resource_server,
            "scope": scope}


@router.get("/v2/oauth2/userinfo")
def userinfo(owner: Identity) -> dict:
    """Who the bearer token speaks for, in OpenID Connect's shape."""
    sub = str(uuid.uuid5(IDENTITY_NAMESPACE, owner))
    return {"sub": sub, "preferred_username": owner, "identity_set": [{"sub": sub, "username": owner}]}
