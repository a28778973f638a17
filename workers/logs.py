"""Logging for every process of the tree into one endpoint.log, each line naming its role.

The supervisor owns rotation (RotatingFileHandler); children append with a
WatchedFileHandler, which reopens the file once the supervisor has rotated it.
"""

from __future__ import annotations

import logging
import logging.handlers
import os

MAX_BYTES = 10 * 1024 * 1024
BACKUPS = 5


def setup_logging(log_file: str, role: str, debug: bool = False, rotating: bool = False) -> logging.Handler:
    if rotating:
        handler: logging.Handler = logging.handlers.RotatingFileHandler(
            log_file, maxBytes=MAX_BYTES, backupCount=BACKUPS)
    else:
        handler = logging.handlers.WatchedFileHandler(log_file)
    os.chmod(log_file, 0o600)
    handler.setFormatter(logging.Formatter(
        f"%(asctime)s %(levelname)s {role} %(process)d %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    for noisy in ("amqp", "kombu", "urllib3", "parsl"):
        logging.getLogger(noisy).setLevel(logging.INFO if debug else logging.WARNING)
    return handler
