"""The one error a command's step raises: str() says what failed and what to do, and
``exit_code`` (a sysexits number, exit_codes.py) is what the CLI exits with."""

from __future__ import annotations

from .exit_codes import Exit


class EndpointError(Exception):
    exit_code: int = Exit.FAILED

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

    def __reduce__(self):  # crosses the throwaway process's pipe (supervisor/throwaway.py)
        return type(self), (str(self), self.exit_code)


class LifecycleError(EndpointError):
    """A start or stop step failed; str() says which and what to do."""
