"""Where the endpoint finds the Compute service and the token it presents there.

Service URL, as the official endpoint chooses it: ``GLOBUS_SDK_SERVICE_URL_COMPUTE``
if set; else ``local_compute_services: true`` (or environment ``local``) means
http://localhost:5000; else the named ``environment`` (config, or
``GLOBUS_SDK_ENVIRONMENT``); production by default.

Tokens live in ``<config dir>/credentials.json`` (0600), one per service URL.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .directory import DIR_MODE, write_private_file

SERVICE_URL_ENV = "GLOBUS_SDK_SERVICE_URL_COMPUTE"
ENVIRONMENT_ENV = "GLOBUS_SDK_ENVIRONMENT"
LOCAL_URL = "http://localhost:5000"
ENVIRONMENT_URLS = {
    "production": "https://compute.api.globus.org",
    "preview": "https://compute.api.preview.globus.org",
    "dev": "https://api.dev.funcx.org",
    "local": LOCAL_URL,
    **{env: f"https://compute.api.{env}.globuscs.info" for env in ("sandbox", "test", "integration", "staging")},
}
CREDENTIALS_FILE = "credentials.json"


def service_url(environment: str | None = None, local_compute_services: bool = False) -> str:
    explicit = os.environ.get(SERVICE_URL_ENV)
    if explicit:
        return explicit.rstrip("/")
    if local_compute_services:
        return LOCAL_URL
    name = environment or os.environ.get(ENVIRONMENT_ENV) or "production"
    return ENVIRONMENT_URLS.get(name, ENVIRONMENT_URLS["production"])


def is_hosted(url: str) -> bool:
    return url.startswith("https://") and (".globus.org" in url or ".globuscs.info" in url or "funcx.org" in url)


class TokenStore:
    def __init__(self, base_dir: Path):
        self.path = base_dir / CREDENTIALS_FILE
        self.base_dir = base_dir

    def _read(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise CredentialsError(f"{self.path} is unreadable ({exc}); remove it and log in again") from None

    def token_for(self, url: str) -> str | None:
        entry = self._read().get(url)
        return entry.get("access_token") if isinstance(entry, dict) else None

    def store(self, url: str, token: str) -> None:
        self.base_dir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        data = self._read()
        data[url] = {"access_token": token}
        write_private_file(self.path, json.dumps(data, indent=1))

    def forget(self, url: str | None = None) -> list[str]:
        data = self._read()
        removed = list(data) if url is None else [u for u in data if u == url]
        for u in removed:
            data.pop(u)
        if data:
            write_private_file(self.path, json.dumps(data, indent=1))
        else:
            self.path.unlink(missing_ok=True)
        return removed


class CredentialsError(Exception):
    pass
