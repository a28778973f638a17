"""A multi-user endpoint's user endpoint becomes its user before it runs anything of theirs:
PAM's account check and session (when the configuration enables PAM), then the groups, gid
and uid, no new privileges, umask 077, an environment rebuilt from the passwd entry and the
working directory the user's home. Root's supplementary groups, capabilities and
environment do not survive it: the three ids are set, saved ones too, so nothing can
switch back.

PAM goes through pamela (a ctypes binding of libpam, so no compiler on the login node):
its handle API gives the account stage (pam_acct_mgmt) and sessions, which python-pam's
password-centred API does not."""

from __future__ import annotations

import ctypes
import logging
import os
from collections.abc import Mapping

from ..supervisor.pipe import set_parent_death_signal
from .identity_map import LocalUser

log = logging.getLogger(__name__)

_PR_SET_NO_NEW_PRIVS = 38


class PamRefused(Exception):
    """PAM said no to this user (str(): PAM's reason, which names no account)."""


def pam_check_account(user: LocalUser, service: str) -> None:
    """PAM's account stage (an expired account, a pam_listfile deny...), as root."""
    import pamela

    try:
        pamela.check_account(user.name, service)
    except pamela.PAMError as exc:
        raise PamRefused(f"PAM ({service}) refused the account: {exc.message or exc}") from None


class PamSession:
    """A PAM session for the user, opened as root before the drop; closed when the user
    endpoint stops, as far as the user's own rights let it (modules that need root to close
    log it)."""

    def __init__(self, user: LocalUser, service: str):
        import pamela

        self._pamela = pamela
        self.handle = pamela.pam_start(service, user.name)
        try:
            self.handle.open_session()
        except pamela.PAMError as exc:
            pamela.pam_end(self.handle)
            raise PamRefused(f"PAM ({service}) refused a session: {exc.message or exc}") from None

    def close(self) -> None:
        try:
            self.handle.close_session()
        except self._pamela.PAMError as exc:
            log.info("PAM session not closed cleanly: %s", exc.message or exc)
        finally:
            self._pamela.pam_end(self.handle)


def become(user: LocalUser, environment: Mapping[str, str]) -> None:
    """Drop from root to user for good, in this process; os.environ becomes ``environment``
    (LocalUser.environment). Raises OSError when any step fails: nothing runs half-dropped."""
    os.initgroups(user.name, user.gid)
    os.setresgid(user.gid, user.gid, user.gid)
    os.setresuid(user.uid, user.uid, user.uid)
    if os.getresuid() != (user.uid,) * 3 or os.getresgid() != (user.gid,) * 3:
        raise OSError(f"the process still holds other ids after dropping to {user.name}")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:  # no setuid program gives root back
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
    set_parent_death_signal()  # the id change cleared it
    os.umask(0o077)
    os.environ.clear()
    os.environ.update(environment)
    os.chdir(user.home)
