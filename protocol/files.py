"""Files the processes of an endpoint (and the service) hand each other: written whole or not
at all, readable by the owner only."""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_FILE_MODE = 0o600


def write_private_file(path: Path | str, data: bytes | str, temporary: Path | str | None = None) -> None:
    """Write data to path atomically (a reader sees the old file or the whole new one), 0600.
    The data goes first to ``temporary`` (by default a dot-file beside path), then is renamed."""
    path = Path(path)
    temporary = Path(temporary) if temporary else path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
