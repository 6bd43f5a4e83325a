"""The ``marketplace-entitlement`` command line: ``run``, ``check``, ``probe`` and ``emulator``."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``) and run the chosen command; return its exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "emulator":
        from marketplace_entitlement.emulator._cli import main as emulator_main  # noqa: PLC0415

        return emulator_main(args[1:])
    print("usage: marketplace-entitlement {run,check,probe,emulator} ...", file=sys.stderr)  # noqa: T201
    return 64
