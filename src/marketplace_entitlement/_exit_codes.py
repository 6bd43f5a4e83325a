"""The exit codes of ``run`` and ``check``, named once (docs/exit-codes.md; sysexits.h values)."""

from __future__ import annotations

from typing import Final

USAGE: Final = 64  # EX_USAGE: bad command line
VERIFICATION_FAILED: Final = 65  # EX_DATAERR: the Signature could not be verified
SERVICE_UNAVAILABLE: Final = 69  # EX_UNAVAILABLE: the service stayed unavailable for the budget
NOT_ENTITLED: Final = 77  # EX_NOPERM: not entitled, or not on a supported platform
CONFIGURATION: Final = 78  # EX_CONFIG: a missing or invalid setting, or the service says so
CANNOT_EXECUTE: Final = 126  # CMD exists but could not be executed
NOT_FOUND: Final = 127  # CMD was not found
SIGNAL_BASE: Final = 128  # a child killed by signal N exits 128 + N


def for_signal(signum: int) -> int:
    """Return the shell convention exit status for death by signal ``signum``."""
    return SIGNAL_BASE + signum
