"""Stand-in for ``marketplace-entitlement run``: the supervisor alone, driven by command-line flags.

Usage: ``harness.py [--signal-group] [--term-delay S] [--stop-grace-period S]
[--leftover-grace-period S] [--rewrite FROM:TO]
[--no-kill-group] [--request-stop-when PATH] [--crash-when PATH] -- CMD [ARG...]``.
``--request-stop-when`` calls ``request_stop()`` from another thread once PATH exists (the child
creates it when ready); ``--crash-when`` makes a thread of the harness dereference NULL then (a
real SIGSEGV in the supervisor's process). Logs go through the CLI's own log output (text, debug).
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence

from marketplace_entitlement._logging import configure_logging
from marketplace_entitlement.supervision._signals import SignalPipe, signal_from_name
from marketplace_entitlement.supervision._supervisor import (
    CommandError,
    Supervisor,
    SupervisorOptions,
)


def _parse(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    args = list(argv)
    if "--" not in args:
        raise SystemExit("usage: harness.py [OPTIONS] -- CMD [ARG...]")
    split = args.index("--")
    parser = argparse.ArgumentParser(prog="harness.py")
    parser.add_argument("--signal-group", action="store_true")
    parser.add_argument("--term-delay", type=float, default=0.0)
    parser.add_argument("--stop-grace-period", type=float, default=10.0)
    parser.add_argument("--leftover-grace-period", type=float)
    parser.add_argument("--rewrite", action="append", default=[])
    parser.add_argument("--no-kill-group", action="store_true")
    parser.add_argument("--request-stop-when")
    parser.add_argument("--crash-when")
    return parser.parse_args(args[:split]), args[split + 1 :]


def _when_exists(path: str, action: Callable[[], object], done: threading.Event) -> None:
    """Test helper thread: poll for ``path`` (test code may poll), then run ``action``."""
    while not done.wait(0.02):
        if os.path.exists(path):
            action()
            return


def _crash() -> None:
    """Read address 0: a genuine SIGSEGV, raised by the kernel in this thread."""
    ctypes.string_at(0)


def main(argv: Sequence[str]) -> int:
    """Supervise CMD like ``run`` will; exit with its status, or 127/126 when it cannot start."""
    configure_logging("text", "debug")
    flags, command = _parse(argv)
    rewrite = {}
    for item in flags.rewrite:
        received, _, delivered = item.partition(":")
        rewrite[signal_from_name(received)] = 0 if delivered == "0" else signal_from_name(delivered)
    # Only when given: the harness also runs against older versions of the supervisor.
    leftovers = {}
    if flags.leftover_grace_period is not None:
        leftovers["leftover_grace_period"] = flags.leftover_grace_period
    options = SupervisorOptions(
        signal_group=flags.signal_group,
        term_delay=flags.term_delay,
        stop_grace_period=flags.stop_grace_period,
        rewrite=rewrite,
        kill_group_on_exit=not flags.no_kill_group,
        **leftovers,
    )
    done = threading.Event()
    with SignalPipe() as signals:
        supervisor = Supervisor(command, options, signals)
        try:
            supervisor.start()
        except CommandError as error:
            print(f"harness: {error.refusal_line()}", file=sys.stderr)
            return error.exit_code
        hooks: list[tuple[str, Callable[[], object]]] = []
        if flags.request_stop_when:
            path = flags.request_stop_when
            hooks.append((path, lambda: supervisor.request_stop(f"{path} appeared")))
        if flags.crash_when:
            hooks.append((flags.crash_when, _crash))
        for path, action in hooks:
            threading.Thread(target=_when_exists, args=(path, action, done), daemon=True).start()
        try:
            return supervisor.run()
        finally:
            done.set()


if __name__ == "__main__":
    code = main(sys.argv[1:])
    logging.shutdown()
    sys.exit(code)
