"""``marketplace-entitlement record DIMENSION [QUANTITY] [--tag K=V ...]``: usage from a shell.

Exit 0 only once the usage is durable in the store ``run`` uses (the command inherits
``MARKETPLACE_METERING_STATE_DIR`` and ``MARKETPLACE_DIMENSIONS`` from it); 64 and a message for a
bad record (nothing recorded); 78 when no store is configured.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any

from marketplace_entitlement import _env, _exit_codes
from marketplace_entitlement._errors import ConfigurationError
from marketplace_entitlement.metering._recorder import Recorder, recorder_for
from marketplace_entitlement.metering._records import UsageRecordError


def add_record_parser(commands: Any) -> None:
    """Add the ``record`` subcommand to the CLI's subparsers."""
    record = commands.add_parser(
        "record",
        help="record usage of a dimension (custom pricing); durable on exit 0",
        description="Record QUANTITY (default 1) units of DIMENSION into the usage store that "
        "`run` sends with MeterUsage. Exit 0 once durable, 64 for a bad record, 78 without a store.",
    )
    record.add_argument("dimension", metavar="DIMENSION", help="one of MARKETPLACE_DIMENSIONS")
    record.add_argument("quantity", metavar="QUANTITY", nargs="?", default="1",
                        help="a whole number 0..2147483647 (default 1)")  # fmt: skip
    record.add_argument("--tag", action="append", default=[], metavar="K=V",
                        help="a tag of this usage (repeatable, at most 5)")  # fmt: skip
    record.add_argument("--metering-state-dir", dest="state_dir", default=None,
                        help=f"the usage store's directory [env {_env.METERING_STATE_DIR}; "
                        "default: none, which is refused (78); run sets it for CMD]")  # fmt: skip
    record.add_argument("--dimensions", default=None,
                        help=f"the declared dimensions [env {_env.DIMENSIONS}; default: the "
                        "image's pinned dimensions, else none (78); run sets it for CMD]")  # fmt: skip


def _tags(items: list[str]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageRecordError(f"--tag {item!r} is not K=V")
        if key in tags:
            raise UsageRecordError(f"--tag {key!r} is given twice")
        tags[key] = value
    return tags


def _recorder(namespace: argparse.Namespace, environ: Mapping[str, str]) -> Recorder:
    return recorder_for(namespace.state_dir, namespace.dimensions, environ, command_line=True)


def run_record(namespace: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Record the usage the command line names; return the exit code."""

    def fail(message: str, code: int) -> int:
        sys.stderr.write(f"marketplace-entitlement record: {message}\n")
        return code

    try:
        tags = _tags(namespace.tag)
        recorder = _recorder(namespace, environ)
        try:
            recorder.record(namespace.dimension, namespace.quantity, tags=tags or None)
        finally:
            recorder.store.close()
    except UsageRecordError as error:
        return fail(error.message, _exit_codes.USAGE)
    except ConfigurationError as error:
        return fail(error.refusal_line(), _exit_codes.CONFIGURATION)
    return 0
