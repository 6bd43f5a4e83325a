"""Which signals the wrapper forwards, and which it leaves alone: importable with ``signal`` only.

The console script's boot module blocks :data:`FORWARDED` before any heavy import, so this module
must stay cheap to import (it imports nothing but :mod:`signal`).
"""

from __future__ import annotations

import signal
from typing import Final

__all__ = ["FAULTS", "FORWARDED", "JOB_CONTROL_TTY", "SHUTDOWN", "UNCATCHABLE", "UNHANDLED"]

UNCATCHABLE: Final = frozenset({signal.SIGKILL, signal.SIGSTOP})

# Synchronous fault signals keep their default action (as in tini): a real crash of the wrapper
# then ends the wrapper with a core dump instead of a handler that returns to the faulting
# instruction forever (or forwards thousands of SIGSEGVs to a healthy CMD). The price: a
# `kill -SEGV` sent from outside is not forwarded either (Python's handlers cannot see si_code,
# which is what would tell the two apart).
FAULTS: Final = frozenset(
    {signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL, signal.SIGABRT, signal.SIGTRAP,
     signal.SIGSYS}
)  # fmt: skip

# The wrapper's own SIGPIPE (a write to a log reader that went away) must never reach CMD: it stays
# ignored, as Python sets it, so a broken log stream is an EPIPE error and nothing else.
UNHANDLED: Final = UNCATCHABLE | FAULTS | frozenset({signal.SIGPIPE})

# Every signal the wrapper catches (and forwards to CMD, except SIGCHLD which it acts on).
FORWARDED: Final = frozenset(s for s in signal.valid_signals() if s not in UNHANDLED)

# Signals that ask a process to end: during registration they end the wrapper (CMD never starts).
SHUTDOWN: Final = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT})

# What a terminal sends a background process group that reads or writes it.
JOB_CONTROL_TTY: Final = frozenset({signal.SIGTTIN, signal.SIGTTOU})
