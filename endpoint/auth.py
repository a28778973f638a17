"""Who the endpoint is to the Compute service, and the tokens that prove it.

Three kinds of identity, as the official endpoint has them:

- a user of the hosted service: Globus Auth's native-app login (a link to open, a code
  to paste back), tokens refreshed when they expire;
- a client identity: ``GLOBUS_COMPUTE_CLIENT_ID`` and ``GLOBUS_COMPUTE_CLIENT_SECRET``,
  a client-credentials grant (against Globus Auth for the hosted service, against the
  service's own ``/v2/oauth2/token`` for a local compute-service);
- a user of a local compute-service: the token it issued (``compute-service token create``).

Tokens live in ``<config dir>/storage.db`` (0600), globus-sdk's SQLite token storage, in
one namespace per service and identity kind. ``GLOBUS_SDK_SERVICE_URL_AUTH`` points
Globus Auth elsewhere (the tests use a fake OAuth2 server).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import attrs

from .directory import untrusted_path
from .errors import EndpointError
from .exit_codes import Exit
from .service_urls import is_hosted

CLIENT_ID_ENV = "GLOBUS_COMPUTE_CLIENT_ID"
CLIENT_SECRET_ENV = "GLOBUS_COMPUTE_CLIENT_SECRET"
SCOPE_ENV = "GLOBUS_COMPUTE_SCOPE"
AUTH_URL_ENV = "GLOBUS_SDK_SERVICE_URL_AUTH"
DEFAULT_COMPUTE_SCOPE = "https://auth.globus.org/scopes/facd7ccc-c5f4-42aa-916b-a0e270e2c2a9/all"
NATIVE_CLIENT_ID = "4cf29807-cf21-49ec-9443-ff9a3fb9f81c"  # the Globus Compute SDK's native app
COMPUTE_RESOURCE_SERVER = "funcx_service"
AUTH_RESOURCE_SERVER = "auth.globus.org"
IDENTITY_SCOPES = ("openid", "profile", "email")
STORAGE_FILE = "storage.db"
REFRESH_MARGIN_S = 60
TIMEOUT_S = 30


class AuthError(EndpointError):
    """Cannot prove who we are; str() says what to do."""

    exit_code = Exit.NO_PERMISSION


class NotLoggedIn(AuthError):
    pass


class ServiceUnreachable(AuthError):
    """The Compute service does not answer: nothing is wrong with the credentials."""

    exit_code = Exit.UNAVAILABLE


@attrs.frozen
class Identity:
    id: str
    username: str
    linked: tuple[Identity, ...] = ()  # the identity set it belongs to (userinfo's identity_set)

    def __str__(self) -> str:
        return f"{self.username} ({self.id})"


def client_credentials() -> tuple[str, str] | None:
    client_id, secret = os.environ.get(CLIENT_ID_ENV), os.environ.get(CLIENT_SECRET_ENV)
    if bool(client_id) != bool(secret):
        raise AuthError(f"set both {CLIENT_ID_ENV} and {CLIENT_SECRET_ENV} to run as a client identity, "
                        "or neither to run as a user")
    return (client_id, secret) if client_id and secret else None


def compute_scope() -> str:
    return os.environ.get(SCOPE_ENV) or DEFAULT_COMPUTE_SCOPE


class Credentials:
    """The identity and tokens for one Compute service URL."""

    def __init__(self, base_dir: Path, service_url: str, environment: str = "production"):
        self.base_dir = base_dir
        self.service_url = service_url.rstrip("/")
        self.hosted = is_hosted(self.service_url)
        self.environment = environment
        self.client = client_credentials()
        self._client_tokens: dict | None = None

    # ------------------------------------------------------------------ where

    @property
    def storage_path(self) -> Path:
        return self.base_dir / STORAGE_FILE

    @property
    def namespace(self) -> str:
        where = self.environment if self.hosted else self.service_url
        if self.client:
            return f"clientprofile/{where}/{self.client[0]}"
        return f"user/{where}"

    def _auth_base_url(self) -> str | None:
        """Globus Auth (globus-sdk's default, or GLOBUS_SDK_SERVICE_URL_AUTH); a local
        service answers OAuth2 itself unless the variable says otherwise."""
        explicit = os.environ.get(AUTH_URL_ENV)
        if explicit:
            return explicit.rstrip("/") + "/"
        return None if self.hosted else self.service_url + "/"

    def _storage(self):
        from globus_sdk.token_storage import SQLiteTokenStorage

        self.base_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        problem = untrusted_path(self.base_dir) or untrusted_path(self.storage_path)
        if problem:  # another user could read the tokens written there, or plant their own
            raise AuthError(problem)
        if self.storage_path.exists() and self.storage_path.stat().st_size == 0:
            self.storage_path.unlink()  # an empty file holds no tokens; globus-sdk makes its tables only in a new one
        storage = SQLiteTokenStorage(self.storage_path, namespace=self.namespace)
        try:
            storage.get_token_data_by_resource_server()
        except sqlite3.DatabaseError as exc:
            raise AuthError(f"{self.storage_path} is not a token store ({exc}); move it away and log in "
                            "again") from None
        return storage

    # ------------------------------------------------------------------ tokens

    def compute_token(self) -> str:
        """A valid access token for the Compute service; refreshed or re-granted as needed."""
        return self._token(COMPUTE_RESOURCE_SERVER)

    def _token(self, resource_server: str) -> str:
        if self.client:
            # Granted afresh by each command, never stored: a wrong secret must fail at once.
            self._client_tokens = self._client_tokens or self._grant_client_tokens()
            if resource_server not in self._client_tokens:
                raise AuthError(f"the client-credentials grant gave no token for {resource_server}")
            return self._client_tokens[resource_server]["access_token"]
        storage = self._storage()
        try:
            data = storage.get_token_data(resource_server)
            fresh = data is not None and (data.expires_at_seconds or 0) > time.time() + REFRESH_MARGIN_S
            if fresh:
                return data.access_token
            if data is not None and data.refresh_token:
                self._refresh(storage, data.refresh_token)
            elif data is not None and not self.hosted:
                return data.access_token  # a local service's token: it says itself when it is revoked
            else:
                raise NotLoggedIn(self.not_logged_in_message())
            data = storage.get_token_data(resource_server)
            if data is None:
                raise AuthError(f"the token response had no token for {resource_server}")
            return data.access_token
        finally:
            storage.close()

    def not_logged_in_message(self) -> str:
        if self.hosted:
            how = "globus-compute-endpoint login"
        else:
            how = (f"globus-compute-endpoint login --service {self.service_url} --token TOKEN "
                   "(compute-service token create --identity NAME issues one)")
        message = (f"No credentials for the Compute service at {self.service_url}. Log in first: {how}; "
                   f"or set {CLIENT_ID_ENV} and {CLIENT_SECRET_ENV} to run as a client identity.")
        elsewhere = self.services_logged_in()
        if elsewhere:
            message += (f" (You are logged in to {', '.join(elsewhere)}: to use that service, set "
                        "`local_compute_services: true` in the endpoint's config.yaml for http://localhost:5000, "
                        "or GLOBUS_SDK_SERVICE_URL_COMPUTE to its URL.)")
        return message

    def services_logged_in(self) -> list[str]:
        """The other services this storage holds a user's credentials for."""
        if not self.storage_path.exists():
            return []
        from globus_sdk.token_storage import SQLiteTokenStorage

        storage = SQLiteTokenStorage(self.storage_path, namespace=self.namespace)
        try:
            found = [n.removeprefix("user/") for n in storage.iter_namespaces() if n.startswith("user/")]
        finally:
            storage.close()
        return [n for n in found if f"user/{n}" != self.namespace]

    def _native_client(self):
        import globus_sdk

        return globus_sdk.NativeAppAuthClient(NATIVE_CLIENT_ID, base_url=self._auth_base_url())

    def _grant_client_tokens(self) -> dict:
        import globus_sdk

        assert self.client is not None  # only called for a client identity
        client_id, secret = self.client
        auth = globus_sdk.ConfidentialAppAuthClient(client_id, secret, base_url=self._auth_base_url())
        scopes = [compute_scope(), *IDENTITY_SCOPES] if self.hosted else [compute_scope()]
        try:
            response = auth.oauth2_client_credentials_tokens(requested_scopes=scopes)
        except globus_sdk.GlobusAPIError as exc:
            raise AuthError(f"the client credentials in {CLIENT_ID_ENV}/{CLIENT_SECRET_ENV} were refused "
                            f"({exc.http_status}: {_api_message(exc)})") from None
        except globus_sdk.NetworkError as exc:
            raise AuthError(f"cannot reach the authorization server: {exc}") from None
        return response.by_resource_server

    def _refresh(self, storage, refresh_token: str) -> None:
        import globus_sdk

        try:
            response = self._native_client().oauth2_refresh_token(refresh_token)
        except globus_sdk.GlobusAPIError as exc:
            raise NotLoggedIn(f"the stored login has expired or was revoked ({exc.http_status}: "
                              f"{_api_message(exc)}); log in again: globus-compute-endpoint login --force") from None
        except globus_sdk.NetworkError as exc:
            raise AuthError(f"cannot reach Globus Auth to refresh the login: {exc}") from None
        storage.store_token_response(response)

    # ------------------------------------------------------------------ login / logout

    def is_logged_in(self) -> bool:
        if self.client:
            return True
        storage = self._storage()
        try:
            return storage.get_token_data(COMPUTE_RESOURCE_SERVER) is not None
        finally:
            storage.close()

    def store_service_token(self, token: str) -> None:
        """A local compute-service's token (it does not expire on its own)."""
        from globus_sdk.token_storage import TokenStorageData

        storage = self._storage()
        try:
            storage.store_token_data_by_resource_server({COMPUTE_RESOURCE_SERVER: TokenStorageData(
                resource_server=COMPUTE_RESOURCE_SERVER, identity_id=None, scope=compute_scope(),
                access_token=token, refresh_token=None, expires_at_seconds=2**62, token_type="Bearer")})
        finally:
            storage.close()

    def native_login(self, show: Callable[[str], None], ask_code: Callable[[], str],
                     open_browser: bool = False) -> None:
        """Globus Auth's native-app flow: show the link, read the code, keep the tokens."""
        import socket

        import globus_sdk

        client = self._native_client()
        client.oauth2_start_flow(requested_scopes=[compute_scope(), *IDENTITY_SCOPES], refresh_tokens=True,
                                 prefill_named_grant=f"compute-endpoint on {socket.gethostname()}")
        url = client.oauth2_get_authorize_url()
        show(f"Please authenticate with Globus here:\n------------------------------------\n{url}\n"
             "------------------------------------\n")
        if open_browser:
            import webbrowser

            webbrowser.open(url, new=1)
        code = ask_code().strip()
        if not code:
            raise AuthError("no authorization code was given; nothing was stored")
        try:
            response = client.oauth2_exchange_code_for_tokens(code)
        except globus_sdk.GlobusAPIError as exc:
            raise AuthError(f"Globus Auth refused the code ({exc.http_status}: {_api_message(exc)}); "
                            "run login again and paste the newest code") from None
        except globus_sdk.NetworkError as exc:
            raise AuthError(f"cannot reach Globus Auth: {exc}") from None
        storage = self._storage()
        try:
            storage.store_token_response(response)
        finally:
            storage.close()

    def logout(self) -> bool:
        """Forget (and, for Globus Auth tokens, revoke) what is stored; False when nothing was."""
        storage = self._storage()
        try:
            stored = storage.get_token_data_by_resource_server()
            if self.hosted and not self.client:
                client = self._native_client()
                for data in stored.values():
                    for token in (data.access_token, data.refresh_token):
                        if token:
                            try:
                                client.oauth2_revoke_token(token)
                            except Exception:  # forgetting locally is what matters; revocation is courtesy
                                pass
            for resource_server in stored:
                storage.remove_token_data(resource_server)
            return bool(stored)
        finally:
            storage.close()

    # ------------------------------------------------------------------ who

    def identity(self) -> Identity:
        """Who the tokens speak for: OpenID userinfo from Globus Auth, or from a local service."""
        if self.hosted:
            return self._userinfo((self._auth_base_url() or "https://auth.globus.org/") + "v2/oauth2/userinfo",
                                  self._token(AUTH_RESOURCE_SERVER))
        return self.identity_of_service_token(self.compute_token())

    def identity_of_service_token(self, token: str) -> Identity:
        """Who a local compute-service says this token speaks for (stored or not)."""
        return self._userinfo(self.service_url + "/v2/oauth2/userinfo", token)

    def _userinfo(self, url: str, token: str) -> Identity:
        import requests

        try:
            response = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=TIMEOUT_S)
        except requests.RequestException as exc:
            hint = "" if self.hosted else " Is it running? Start it with: compute-service serve"
            raise ServiceUnreachable(f"cannot reach the Compute service at {self.service_url} ({type(exc).__name__}: "
                                     f"{exc}).{hint}") from None
        if response.status_code == 401:
            raise NotLoggedIn(f"{url} did not accept the credentials; log in again: "
                              "globus-compute-endpoint login --force")
        if not response.ok:
            raise AuthError(f"{url} answered {response.status_code}: {response.text[:200]}")
        info = response.json()
        linked = tuple(Identity(id=str(one.get("sub")), username=str(one.get("username") or one.get("sub")))
                       for one in info.get("identity_set") or () if isinstance(one, dict))
        return Identity(id=str(info.get("sub")), username=str(info.get("preferred_username") or info.get("sub")),
                        linked=linked)


def _api_message(exc) -> str:
    try:
        body = exc.raw_json or {}
        return str(body.get("error_description") or body.get("error") or exc.message)
    except Exception:
        return str(getattr(exc, "message", exc))
