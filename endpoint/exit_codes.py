"""What each exit status of globus-compute-endpoint means: BSD's sysexits.h numbers
(``os.EX_*``), as the official endpoint uses them, so scripts can tell a retry from a fix."""

from __future__ import annotations

import enum
import os


class Exit(enum.IntEnum):
    OK = os.EX_OK
    FAILED = 1  # anything else; the message says what
    USAGE = os.EX_USAGE  # 64: the command line asks for something that cannot be
    BAD_REQUEST = os.EX_DATAERR  # 65: the service refused what was sent as invalid (HTTP 400, 422)
    UNAVAILABLE = os.EX_UNAVAILABLE  # 69: the service or broker does not answer, or refuses for now
    SOFTWARE = os.EX_SOFTWARE  # 70: an answer that cannot be right (another endpoint's id)
    TRY_AGAIN = os.EX_TEMPFAIL  # 75: the network failed on the way; the same command may work later
    PROTOCOL = os.EX_PROTOCOL  # 76: the service's answer lacks what it must hold
    NO_PERMISSION = os.EX_NOPERM  # 77: no credentials, or ones the service does not accept
    CONFIG = os.EX_CONFIG  # 78: the configuration is wrong
