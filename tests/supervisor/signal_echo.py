"""Test child: prints ``<label> <signum>`` for every signal it receives, exits at end of stdin.

Options: ``--label L`` (default ``child``); ``--grandchild`` starts a copy labelled ``grandchild``
in the same process group first; ``--ready-file PATH`` is created once handlers are installed;
``--exit-on SIG:CODE`` exits with CODE after printing SIG; ``--stop-self`` stops itself with
SIGSTOP once ready (it prints ``<label> stopping`` first and ``<label> resumed`` after).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from types import FrameType

_SKIP = {signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD}


def _say(text: str) -> None:
    os.write(1, f"{text}\n".encode())


def main() -> int:
    """Echo signals until stdin closes."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--label", default="child")
    parser.add_argument("--grandchild", action="store_true")
    parser.add_argument("--ready-file")
    parser.add_argument("--exit-on", action="append", default=[])
    parser.add_argument("--stop-self", action="store_true")
    args = parser.parse_args()
    exits = {}
    for item in args.exit_on:
        name, _, code = item.partition(":")
        exits[int(signal.Signals[name])] = int(code)

    def echo(signum: int, frame: FrameType | None) -> None:
        _say(f"{args.label} {signum}")
        if signum in exits:
            os._exit(exits[signum])

    for signum in range(1, signal.NSIG):
        if signum not in _SKIP and signum in signal.valid_signals():
            signal.signal(signum, echo)

    grandchild = None
    if args.grandchild:
        grandchild = subprocess.Popen([sys.executable, __file__, "--label", "grandchild"])
    if args.ready_file:
        with open(args.ready_file, "w"):
            pass
    _say(f"{args.label} ready")
    if args.stop_self:
        _say(f"{args.label} stopping")
        os.kill(os.getpid(), signal.SIGSTOP)
        _say(f"{args.label} resumed")
    while sys.stdin.buffer.readline():
        pass
    if grandchild is not None:
        grandchild.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
