"""The console script's and ``python -m``'s first code: hold signals before anything heavy loads.

Loading the interpreter's modules, botocore and the settings takes ~100-200 ms. A signal sent to
PID 1 in that time, before handlers exist, would be dropped by the kernel (PID 1 has no default
actions), so a SIGTERM at 50 ms let CMD start anyway. As tini and dumb-init do first thing in
``main()``, ``run`` and ``check`` block every signal the wrapper forwards before importing the rest
of the package; the signal pipe unblocks them once its handlers are installed, and the kernel then
delivers what arrived meanwhile (one of each kind, as for any pending signal).

This module imports only :mod:`signal`, :mod:`sys` and the tiny table of signal sets; the package's
``__init__`` loads nothing eagerly, so importing this module is cheap.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import NoReturn

from marketplace_entitlement.supervision._signal_sets import FORWARDED

# The parent's pid when the console script started (None: started otherwise), so that a parent
# that died before ``run`` asked for a parent-death signal is noticed (see set_parent_death_signal).
parent_at_start: int | None = None

# The commands that install the signal pipe; the others (emulator, probe, --help) keep the defaults.
_COMMANDS_HOLDING_SIGNALS = frozenset({"run", "check"})


def hold_signals(argv: list[str]) -> None:
    """Block every forwarded signal when ``argv`` (without the program name) is ``run``/``check``."""
    if argv[:1] and argv[0] in _COMMANDS_HOLDING_SIGNALS:
        signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)


def hold_closed_standard_fds() -> None:
    """Put /dev/null (close-on-exec) on any of fds 0-2 that we were started without.

    Otherwise the next file the wrapper opens (its signal pipe, a socket) would take that number
    and log lines meant for stderr would go into it. Close-on-exec keeps CMD's view exact: the
    placeholder is gone in CMD, which starts with the same fds closed as the wrapper was given.
    """
    for fd in (0, 1, 2):
        if not _is_open(fd):
            # The lowest free number is ``fd`` itself: the lower ones are open by now.
            os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def console_main() -> NoReturn:
    """The ``marketplace-entitlement`` console script: hold signals, then load and run the CLI."""
    global parent_at_start  # recorded once, first thing, for _entrypoint
    parent_at_start = os.getppid()
    hold_signals(sys.argv[1:])
    hold_closed_standard_fds()
    from marketplace_entitlement._cli import console_main as cli_main  # noqa: PLC0415  (after blocking)

    cli_main()
