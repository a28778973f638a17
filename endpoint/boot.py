"""Starting an endpoint at boot: a systemd unit (Type=notify) that runs it in the foreground.

systemd restarts the supervisor if it ever exits; the supervisor restarts its children.
"""

from __future__ import annotations

import getpass
import shutil
import sys
from pathlib import Path

SYSTEM_UNIT_DIR = Path("/etc/systemd/system")


class BootError(Exception):
    pass


def unit_name(name: str) -> str:
    return f"globus-compute-endpoint-{name}.service"


def default_unit_dir(user: bool) -> Path:
    return Path.home() / ".config" / "systemd" / "user" if user else SYSTEM_UNIT_DIR


def executable() -> str:
    found = shutil.which("globus-compute-endpoint", path=str(Path(sys.executable).parent))
    found = found or shutil.which("globus-compute-endpoint")
    if not found:
        raise BootError("cannot find the globus-compute-endpoint executable to put in the unit")
    return str(Path(found).resolve())


def unit_text(name: str, base_dir: Path, user: bool) -> str:
    service_user = "" if user else f"User={getpass.getuser()}\n"
    return f"""\
[Unit]
Description=Globus Compute Endpoint "{name}"
After=network-online.target
Wants=network-online.target
StartLimitIntervalSec=0

[Service]
# start stays in the foreground under systemd, says READY=1 once every child is ready and
# STOPPING=1 when it begins to stop (sd_notify).
Type=notify
NotifyAccess=main
{service_user}Environment=GLOBUS_COMPUTE_USER_DIR={base_dir}
ExecStart={executable()} start {name}
# Registration, the broker check and the children's start; a cluster's first block takes longer.
TimeoutStartSec=300
# SIGTERM to the supervisor, which stops its tree; whatever is left is killed after the timeout.
KillMode=mixed
TimeoutStopSec=60
Restart=always
RestartSec=5

[Install]
WantedBy={"default.target" if user else "multi-user.target"}
"""


def install(name: str, base_dir: Path, unit_dir: Path, user: bool) -> Path:
    if not user and not unit_dir.is_dir():
        raise BootError(f"this system has no {unit_dir} directory: is systemd its init system?")
    path = unit_dir / unit_name(name)
    if path.exists():
        raise BootError(f"{path} exists already; remove it first (globus-compute-endpoint disable-on-boot {name} "
                        "says how)")
    unit_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(unit_text(name, base_dir, user))
    path.chmod(0o644)
    return path


def enable_instructions(name: str, user: bool) -> str:
    if user:
        return (f"Systemd user service installed. Run\n"
                f"   systemctl --user enable {unit_name(name)} --now\n"
                f"to enable the service and start the endpoint; and, so that it runs while you are logged out,\n"
                f"   loginctl enable-linger {getpass.getuser()}")
    return (f"Systemd service installed. Run\n"
            f"   sudo systemctl enable {unit_name(name)} --now\n"
            f"to enable the service and start the endpoint.")


def disable_instructions(name: str, unit_dir: Path, user: bool) -> str:
    systemctl = "systemctl --user" if user else "systemctl"
    service = unit_name(name).removesuffix(".service")
    return (f"Run the following to disable on-boot-persistence:\n"
            f"   {systemctl} stop {service}\n"
            f"   {systemctl} disable {service}\n"
            f"   rm {unit_dir / unit_name(name)}")
