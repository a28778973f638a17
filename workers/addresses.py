"""Where worker pools reach the engine's interchange: the host's addresses, or the one a
config names (a string, or one of Parsl's address finders by name).

Parsl's own "every address" also asks a public web service for this host's internet
address; a login node's pools never need that one, so it is left out here and only
used when a config names ``address_by_query`` itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class AddressError(ValueError):
    """The configured address could not be found; the message names the finder and why."""


def resolve_address(spec: str | Mapping[str, Any] | None) -> str | None:
    """The address a config names, found now; None when it names none."""
    if spec is None or isinstance(spec, str):
        return spec
    import parsl.addresses

    options = dict(spec)
    finder = options.pop("type")
    described = finder + "".join(f" {k}={v!r}" for k, v in options.items())
    try:
        return getattr(parsl.addresses, finder)(**options)
    except OSError as exc:
        if finder == "address_by_interface":
            raise AddressError(f"address {described}: this host has no interface {options.get('ifname')!r} "
                               f"with an IPv4 address ({exc.strerror or exc}); interfaces here: "
                               f"{', '.join(interface_names())}") from None
        raise AddressError(f"address {described} failed: {exc}") from None
    except Exception as exc:
        raise AddressError(f"address {described} failed: {exc}") from None


def interface_names() -> list[str]:
    import psutil

    return sorted(psutil.net_if_addrs())


def host_addresses() -> list[str]:
    """Every IPv4 address of this host's interfaces, plus what its hostname resolves to,
    loopback last (it serves pools on this host only)."""
    import socket

    import psutil

    found = {a.address for addresses in psutil.net_if_addrs().values() for a in addresses
             if a.family == socket.AF_INET}
    try:
        found.add(socket.gethostbyname(socket.gethostname()))
    except OSError:
        pass  # a hostname that does not resolve adds nothing
    return sorted(found, key=lambda a: (a.startswith("127."), a))
