"""Where the endpoint finds the Compute service and the token it presents there.

Service URL, as the official endpoint chooses it: ``GLOBUS_SDK_SERVICE_URL_COMPUTE``
if set; else ``local_compute_services: true`` (or environment ``local``) means
http://localhost:5000; else the named ``environment`` (config, or
``GLOBUS_SDK_ENVIRONMENT``); production by default.

The tokens themselves are auth.py's.
"""

from __future__ import annotations

import os

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


def service_url(environment: str | None = None, local_compute_services: bool = False) -> str:
    explicit = os.environ.get(SERVICE_URL_ENV)
    if explicit:
        return explicit.rstrip("/")
    if local_compute_services:
        return LOCAL_URL
    return ENVIRONMENT_URLS.get(environment_name(environment), ENVIRONMENT_URLS["production"])


def environment_name(environment: str | None = None, local_compute_services: bool = False) -> str:
    if local_compute_services:
        return "local"
    return environment or os.environ.get(ENVIRONMENT_ENV) or "production"


def is_hosted(url: str) -> bool:
    return url.startswith("https://") and (".globus.org" in url or ".globuscs.info" in url or "funcx.org" in url)
