"""The endpoint directory on disk: where it is, what it is called, what files it holds.

    <base>/                  ~/.globus_compute, $GLOBUS_COMPUTE_USER_DIR or --config-dir
    <base>/<name>/           one endpoint (0700)
        config.yaml          the user's configuration
        endpoint.json        {"endpoint_id": "<uuid>", "identity": {"id", "username"}} once
                             registered (0600): the identity that registered it is the only
                             one that may run it
        daemon.pid           {"pid", "hostname", "start_time"} while running (0600)
        endpoint.log         the log of every process of the tree
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from pathlib import Path
from typing import Any

import attrs

from ..protocol.files import PRIVATE_FILE_MODE, write_private_file

USER_DIR_ENV = "GLOBUS_COMPUTE_USER_DIR"
DIR_MODE = 0o700
SECRET_FILE_MODE = PRIVATE_FILE_MODE
MAX_NAME_LENGTH = 128

CONFIG_FILE = "config.yaml"
ENDPOINT_JSON = "endpoint.json"
PID_FILE = "daemon.pid"
LOG_FILE = "endpoint.log"


class EndpointDirectoryError(Exception):
    """A problem with an endpoint directory that the user can fix; str() says how."""


def _owner_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def untrusted_path(path: Path) -> str | None:
    """Why path (a file or folder of the endpoint's, or its credentials) must not be used, as
    ssh refuses its own files: owned by another user (root excepted) or writable by group or
    others, itself or, for a symlink, where it points. None when it is safe or absent. Such a
    file lets another user run commands as this one (endpoint_setup, worker_init) or read the
    tokens written into it."""
    try:
        link = path.lstat()
    except OSError:
        return None
    checks = [(path, link)]
    if path.is_symlink():
        try:
            checks.append((path.resolve(), path.stat()))
        except OSError:
            return None
    me = os.geteuid()
    for where, info in checks:
        if where.is_symlink():
            if info.st_uid not in (me, 0):  # a link's own mode means nothing; its owner does
                return (f"{path} is a symlink owned by {_owner_name(info.st_uid)}, not by you "
                        f"({_owner_name(me)}): refusing to follow it")
            continue
        shown = path if where == path else f"{path} (a symlink to {where})"
        mode = info.st_mode & 0o777
        if info.st_uid not in (me, 0):
            return (f"{shown} is owned by {_owner_name(info.st_uid)} (mode {mode:04o}), not by you "
                    f"({_owner_name(me)}): refusing to use it; use a directory of your own")
        if mode & 0o022:
            return (f"{shown} is writable by group or others (mode {mode:04o}): refusing to use it "
                    f"(chmod go-w {where})")
    return None


def default_base_dir() -> Path:
    env = os.environ.get(USER_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".globus_compute"


_FORBIDDEN_NAME_CHARS = re.compile(r"[/\\\s'\"]")


def validate_name(name: str) -> str:
    """Return the name if it can name an endpoint directory, else raise with the rule broken."""
    if not name:
        raise EndpointDirectoryError("Endpoint name must not be empty.")
    if len(name) > MAX_NAME_LENGTH:
        raise EndpointDirectoryError(
            f"Endpoint name is {len(name)} characters long; at most {MAX_NAME_LENGTH} are accepted."
        )
    if name.startswith("."):
        raise EndpointDirectoryError(f"Endpoint name {name!r} must not start with a dot.")
    bad = _FORBIDDEN_NAME_CHARS.search(name)
    if bad:
        raise EndpointDirectoryError(
            f"Endpoint name {name!r} contains {bad.group()!r}; names may not contain "
            "slashes, backslashes, whitespace or quotes."
        )
    return name


@attrs.frozen
class PidRecord:
    """Who runs the endpoint: enough to tell our process from a reused pid or another host."""

    pid: int
    hostname: str
    start_time: float | None  # psutil create_time; None for a legacy plain-pid file

    def to_json(self) -> str:
        return json.dumps(attrs.asdict(self))

    @classmethod
    def parse(cls, text: str) -> PidRecord:
        text = text.strip()
        if text.isdigit():  # the official endpoint's format: just the pid
            return cls(pid=int(text), hostname="", start_time=None)
        data = json.loads(text)
        return cls(pid=int(data["pid"]), hostname=str(data["hostname"]),
                   start_time=None if data.get("start_time") is None else float(data["start_time"]))


@attrs.frozen
class EndpointDirectory:
    """One endpoint's directory. Cheap to make: touches the disk only when asked."""

    base: Path
    name: str

    @property
    def path(self) -> Path:
        return self.base / self.name

    @property
    def config_file(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def endpoint_json(self) -> Path:
        return self.path / ENDPOINT_JSON

    @property
    def pid_file(self) -> Path:
        return self.path / PID_FILE

    @property
    def log_file(self) -> Path:
        return self.path / LOG_FILE

    def exists(self) -> bool:
        """A config.yaml; or, as the official reads a directory without one, a template-capable
        endpoint's template (its config then takes every default)."""
        return self.config_file.is_file() or any(
            (self.path / name).is_file() for name in ("user_config_template.yaml.j2", "user_config_template.yaml"))

    def create(self, config_text: str) -> None:
        """Make the directory (0700) with its config; refuse to touch an existing endpoint."""
        self.base.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        try:
            self.path.mkdir(mode=DIR_MODE)
        except FileExistsError:
            raise EndpointDirectoryError(
                f"Endpoint {self.name!r} already exists at {self.path}; "
                f"delete it first with: globus-compute-endpoint delete {self.name}"
            ) from None
        os.chmod(self.path, DIR_MODE)  # mkdir's mode is masked by the umask
        write_private_file(self.config_file, config_text)

    def read_endpoint_id(self) -> uuid.UUID | None:
        """The registered id, or None when never registered (or the file is unreadable)."""
        try:
            data = json.loads(self.endpoint_json.read_text())
            return uuid.UUID(str(data["endpoint_id"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def read_owner(self) -> dict | None:
        """The identity that registered the endpoint ({"id", "username"}), when recorded."""
        try:
            owner = json.loads(self.endpoint_json.read_text()).get("identity")
        except (OSError, ValueError, AttributeError):
            return None
        return owner if isinstance(owner, dict) and owner.get("id") else None

    def write_endpoint_id(self, endpoint_id: uuid.UUID, owner: dict | None = None) -> None:
        record: dict[str, Any] = {"endpoint_id": str(endpoint_id)}
        if owner:
            record["identity"] = owner
        write_private_file(self.endpoint_json, json.dumps(record))

    def trusted_files(self) -> list[Path]:
        """What another user must not own or be able to write: the folders, the config and
        template files (they hold commands the endpoint runs) and the credentials."""
        names = (CONFIG_FILE, ENDPOINT_JSON, "user_config_template.yaml.j2", "user_config_template.yaml",
                 "user_config_schema.json", "user_environment.yaml")
        return [self.base, self.path, self.base / "storage.db", *(self.path / name for name in names)]

    def refuse_untrusted(self, *more: Path) -> None:
        """Raise EndpointDirectoryError naming the first of trusted_files (and of more, files its
        config points at) that must not be used."""
        for path in (*self.trusted_files(), *more):
            problem = untrusted_path(path)
            if problem:
                raise EndpointDirectoryError(problem)

    def loose_permissions(self) -> list[str]:
        """Files and folders of this endpoint (and the credentials beside it) that others may read."""
        found = []
        checked = ((self.base, DIR_MODE), (self.path, DIR_MODE), (self.base / "storage.db", SECRET_FILE_MODE),
                   (self.config_file, SECRET_FILE_MODE), (self.endpoint_json, SECRET_FILE_MODE))
        for path, limit in checked:
            try:
                mode = path.stat().st_mode & 0o777
            except OSError:
                continue
            if mode & 0o077:
                found.append(f"{path} is readable by group or others (mode {mode:04o}; chmod {limit:04o} {path})")
        return found

    def read_pid_record(self) -> PidRecord | None:
        """The pid file's record; None when absent. A garbled file reads as pid 0 (never alive)."""
        try:
            text = self.pid_file.read_text()
        except FileNotFoundError:
            return None
        try:
            return PidRecord.parse(text)
        except (ValueError, KeyError, TypeError):
            return PidRecord(pid=0, hostname="", start_time=None)

    def write_pid_record(self, record: PidRecord) -> None:
        write_private_file(self.pid_file, record.to_json())

    def remove_pid_file(self) -> None:
        self.pid_file.unlink(missing_ok=True)

    @property
    def last_stop_file(self) -> Path:
        return self.path / "last_stop.json"

    def write_last_stop(self, reason: str, exit_code: int) -> None:
        """Why the last run ended, for list (and status) to say."""
        write_private_file(self.last_stop_file, json.dumps({"reason": reason, "exit_code": exit_code,
                                                            "time": time.time()}))

    def read_last_stop(self) -> dict | None:
        try:
            record = json.loads(self.last_stop_file.read_text())
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) and isinstance(record.get("reason"), str) else None

    def forget_last_stop(self) -> None:
        self.last_stop_file.unlink(missing_ok=True)


def list_endpoint_dirs(base: Path) -> list[EndpointDirectory]:
    """Every endpoint under base (a folder with a config.yaml), sorted by name."""
    if not base.is_dir():
        return []
    found = (EndpointDirectory(base, child.name) for child in base.iterdir())
    return sorted((d for d in found if d.exists()), key=lambda d: d.name)
