"""An installation of this checkout that every local user can run, for the multi-user tests:
their user endpoints drop from root to a test user, who must be able to read the Python
and the packages (a checkout's venv on a pyenv Python under /root is closed to them). Made
from the system's Python under /opt; its dependencies are installed once per setup.cfg,
this checkout's code again each session. A lock keeps parallel sessions from racing."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

from filelock import FileLock

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path("/opt/compute-endpoint-tests")
QUIET = ["-qq", "--disable-pip-version-check"]


def system_python() -> str | None:
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if Path(candidate).exists():
            return candidate
    return shutil.which("python3")


def shared_install() -> Path:
    """The bin directory of an installation of this checkout that other users can run."""
    from compute_endpoint.endpoint.preflight import closed_to_others

    requirements = hashlib.sha256((ROOT / "setup.cfg").read_bytes()).hexdigest()[:12]
    venv = SHARED / f"venv-{requirements}"
    SHARED.mkdir(mode=0o755, exist_ok=True)
    with FileLock(str(SHARED / ".lock"), timeout=900):
        if not (venv / ".dependencies-installed").exists():
            python = system_python()
            if python is None or closed_to_others(Path(python).resolve()):
                raise RuntimeError(f"no Python every user can run (tried {python}); the multi-user tests need one")
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([python, "-m", "venv", str(venv)], check=True)
            subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", *QUIET, str(ROOT)], check=True)
            (venv / ".dependencies-installed").touch()
        # This session's code, whatever an earlier session installed.
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", *QUIET, "--no-deps",
                        "--force-reinstall", str(ROOT)], check=True)
    subprocess.run(["chmod", "-R", "a+rX", str(venv)], check=True)
    return venv / "bin"


if __name__ == "__main__":
    print(shared_install(), file=sys.stderr)
