"""Who a Globus identity runs as on a multi-user endpoint: the identity mapping (the same JSON
the official reads, through the same library, globus-identity-mapping), then the local
account it names. Refusals come in two texts: one for the submitting user (no local name of
anyone else's in it), one for the administrator's log."""

from __future__ import annotations

import json
import logging
import os
import pwd
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

log = logging.getLogger(__name__)

# Globus Connect Server's id of the POSIX connector, as the official passes it to the mappers.
POSIX_CONNECTOR_ID = "145812c8-decc-41f1-83cf-bb2a85a2a70b"
DEFAULT_PATH = "/usr/bin:/bin"


def describe_identities(identity_set: Iterable[Mapping[str, Any]]) -> str:
    """Who asked, for the administrator's log: each identity's username, else its id."""
    return ", ".join(str(i.get("username") or i.get("sub")) for i in identity_set) or "(no identity)"


class MappingRefused(Exception):
    """str(): what the submitting user is told; ``detail``: what the administrator's log says."""

    def __init__(self, told: str, detail: str):
        super().__init__(told)
        self.detail = detail


@attrs.frozen
class LocalUser:
    """The account a user endpoint runs as: what the privilege drop and the environment need."""

    name: str
    uid: int
    gid: int
    home: str
    shell: str

    @classmethod
    def named(cls, name: str) -> LocalUser:
        record = pwd.getpwnam(name)  # KeyError: no such user
        return cls(record.pw_name, record.pw_uid, record.pw_gid, record.pw_dir, record.pw_shell or "/bin/sh")

    def environment(self, configured: Mapping[str, str]) -> dict[str, str]:
        """The environment rebuilt for this user, as a login would set it, with the
        template's user_environment.yaml on top (it may set PATH, not who the user is)."""
        environment = {"PATH": DEFAULT_PATH, **configured}
        environment.update(HOME=self.home, USER=self.name, LOGNAME=self.name, SHELL=self.shell)
        return environment


class IdentityMap:
    """The mapping file's mappers, read again whenever the file changes (its inode, size or
    times), so an administrator's edit applies to the next start without a restart."""

    def __init__(self, path: Path, endpoint_id: str):
        self.path, self.endpoint_id = path, endpoint_id
        self._stamp: tuple | None = None
        self._mappers: list[Any] = []
        self._load()  # a broken file at start is the administrator's to fix now: it raises

    def local_user(self, identity_set: Iterable[Mapping[str, Any]]) -> LocalUser:
        """The account of the first identity of the set that maps, as the official picks it."""
        identities = [dict(identity) for identity in identity_set]
        who = describe_identities(identities)
        self._reload_if_changed()
        name = self._first_mapped(identities)
        if name is None:
            raise MappingRefused("Identity failed to map to a local user name on this endpoint.",
                                 f"no mapping in {self.path} matches {who}")
        try:
            user = LocalUser.named(name)
        except KeyError:
            raise MappingRefused("Identity mapped to a local user name, but that local user does not exist.",
                                 f"{who} maps to {name!r}, which is not a local user") from None
        if user.uid == 0:
            raise MappingRefused("Identity mapped to the privileged user (uid 0); this endpoint runs nothing as it.",
                                 f"{who} maps to {name!r}, uid 0: refused (no user endpoint runs as root)")
        if user.uid == os.geteuid() and user.uid != 0:
            raise MappingRefused("Identity mapped to the endpoint's own account; this endpoint runs nothing as it.",
                                 f"{who} maps to {name!r}, the account the endpoint runs as: refused")
        return user

    def _first_mapped(self, identities: list[dict]) -> str | None:
        for index, mapper in enumerate(self._mappers, start=1):
            try:
                for mapping in mapper.map_identities(identities):
                    for usernames in (mapping or {}).values():
                        if usernames:
                            return str(usernames[0])
            except Exception as exc:  # one broken mapper (an external program failing) leaves the others
                log.warning("identity mapper %d of %d (%s) failed: %s", index, len(self._mappers),
                            type(mapper).__name__, exc)
        return None

    def _reload_if_changed(self) -> None:
        try:
            if self._stat() != self._stamp:
                self._load()
                log.info("identity mapping %s changed: read again", self.path)
        except (OSError, ValueError) as exc:  # a half-written edit: keep the mapping that worked
            log.error("cannot read the identity mapping %s (%s); the previous one stays in use", self.path, exc)

    def _stat(self) -> tuple:
        info = self.path.stat()
        return info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns

    def _load(self) -> None:
        from globus_identity_mapping.loader import load_mappers

        stamp = self._stat()
        documents = json.loads(self.path.read_bytes())
        if not isinstance(documents, list):
            raise ValueError(f"{self.path}: an identity mapping is a JSON list of mapping documents")
        self._mappers = load_mappers(documents, POSIX_CONNECTOR_ID, self.endpoint_id)
        self._stamp = stamp
