"""A fake Globus Auth (OAuth2) server for the login tests: Globus Auth cannot be reached
from these machines. It answers the calls globus-sdk makes for the native-app flow,
refresh, client credentials, revocation and userinfo, and records each grant."""

from __future__ import annotations

import base64
import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

COMPUTE_SCOPE = "https://auth.globus.org/scopes/facd7ccc-c5f4-42aa-916b-a0e270e2c2a9/all"


class FakeGlobusAuth:
    def __init__(self, good_code: str = "good-code", username: str = "alice@example.org",
                 clients: dict[str, str] | None = None, lifetime_s: int = 3600):
        self.good_code, self.username, self.lifetime_s = good_code, username, lifetime_s
        self.clients = clients or {}
        self.identity_id = "11111111-2222-4333-8444-555555555555"
        # Identities linked to this one (Globus Auth's identity set), as {"sub", "username"}.
        self.linked = [{"sub": "66666666-7777-4888-9999-000000000000", "username": "alice@campus.edu"}]
        self.grants: list[str] = []  # grant types seen, in order
        self.revoked: list[str] = []
        self.access_tokens: set[str] = set()
        self.refresh_tokens: dict[str, str] = {}  # refresh token -> its resource server
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()

    def issued(self) -> set[str]:
        return self.access_tokens | set(self.refresh_tokens)

    def _one(self, resource_server: str, scope: str, with_refresh: bool) -> dict:
        access = secrets.token_urlsafe(16)
        self.access_tokens.add(access)
        token = {"access_token": access, "expires_in": self.lifetime_s, "resource_server": resource_server,
                 "scope": scope, "token_type": "Bearer"}
        if with_refresh:
            token["refresh_token"] = secrets.token_urlsafe(16)
            self.refresh_tokens[token["refresh_token"]] = resource_server
        return token

    def _tokens(self, with_refresh: bool) -> dict:
        """Globus Auth's shape: one resource server's tokens on top, the others in other_tokens."""
        main = self._one("funcx_service", COMPUTE_SCOPE, with_refresh)
        main["other_tokens"] = [self._one("auth.globus.org", "openid profile email", with_refresh)]
        return main

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_):
                pass

            def _answer(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                form = parse_qs(self.rfile.read(int(self.headers.get("Content-Length", 0))).decode())
                field = lambda name: (form.get(name) or [""])[0]  # noqa: E731
                if self.path == "/v2/oauth2/token/revoke":
                    fake.revoked.append(field("token"))
                    return self._answer(200, {"active": False})
                if self.path != "/v2/oauth2/token":
                    return self._answer(404, {"error": "not_found"})
                grant = field("grant_type")
                fake.grants.append(grant)
                if grant == "authorization_code":
                    if field("code") != fake.good_code:
                        return self._answer(401, {"error": "invalid_grant", "error_description": "bad code"})
                    return self._answer(200, fake._tokens(with_refresh=True))
                if grant == "refresh_token":
                    refresh = field("refresh_token")
                    if refresh not in fake.refresh_tokens or refresh in fake.revoked:
                        return self._answer(401, {"error": "invalid_grant", "error_description": "revoked"})
                    token = fake._one(fake.refresh_tokens[refresh], "refreshed", with_refresh=False)
                    return self._answer(200, token | {"refresh_token": refresh, "other_tokens": []})
                if grant == "client_credentials":
                    user, _, secret = base64.b64decode(self.headers.get("Authorization", " ").split(" ", 1)[1]
                                                       or b"").decode().partition(":")
                    if fake.clients.get(user) != secret:
                        return self._answer(401, {"error": "invalid_client", "error_description": "unknown client"})
                    return self._answer(200, fake._tokens(with_refresh=False))
                return self._answer(400, {"error": "unsupported_grant_type"})

            def do_GET(self):
                token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                if self.path != "/v2/oauth2/userinfo":
                    return self._answer(404, {"error": "not_found"})
                if token not in fake.access_tokens:
                    return self._answer(401, {"error": "invalid_token"})
                return self._answer(200, {"sub": fake.identity_id, "preferred_username": fake.username,
                                          "identity_set": [{"sub": fake.identity_id, "username": fake.username},
                                                           *fake.linked]})

        return Handler
