"""The SaaS commands: ``resolve-customer TOKEN``, ``usage send`` and ``usage status``."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any, NoReturn

from marketplace_entitlement import _env, _exit_codes
from marketplace_entitlement._parsers import parse_duration
from marketplace_entitlement._retry import format_duration
from marketplace_entitlement._settings import Settings, load_settings

SAAS_COMMANDS = ("resolve-customer", "usage")
REGION_HELP = "AWS region [env AWS_REGION, then AWS_DEFAULT_REGION, then the platform]"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error exits 64 (EX_USAGE) instead of 2."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(_exit_codes.USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The parser of the SaaS commands."""
    # Imported here: the top-level command line imports this module on every start.
    from marketplace_entitlement.saas._sender import RETRY_TIMEOUT_SECONDS  # noqa: PLC0415

    parser = _Parser(prog="marketplace-entitlement")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    resolve = commands.add_parser(
        "resolve-customer",
        help="resolve a SaaS registration token; print the customer as one JSON object",
        description="Call ResolveCustomer for TOKEN (the x-amzn-marketplace-token a buyer's "
        "browser posts to your fulfillment URL) and print the customer as one JSON object.",
    )
    resolve.add_argument("token", metavar="TOKEN")
    resolve.add_argument("--region", default=None, help=REGION_HELP)
    usage = commands.add_parser(
        "usage",
        help="SaaS usage: `usage send` (one sending round, for cron) or `usage status`",
        description="Send the SaaS usage kept in MARKETPLACE_USAGE_STORE, or show its backlog.",
    )
    actions = usage.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    actions.required = True
    send = actions.add_parser(
        "send",
        help="freeze closed hours and send every record once (exit 0 when nothing is left to "
        "retry, 69 when the service stayed unavailable)",
    )
    status = actions.add_parser(
        "status",
        help="print the backlog per customer, dimension and hour, and what was carried or held, "
        "as one JSON object",
    )
    for sub in (send, status):
        sub.add_argument(
            "--usage-store",
            default=None,
            help=f"the store URL [env {_env.USAGE_STORE}; default sqlite:///marketplace-usage.sqlite3]",
        )
        sub.add_argument("--region", default=None, help=REGION_HELP)
    send.add_argument(
        "--retry-timeout",
        default=None,
        metavar="DURATION",
        help="how long records are retried through throttling, server errors and "
        "UnprocessedRecords, in seconds (90) or units (2m, 1m30s) "
        f"[default {format_duration(RETRY_TIMEOUT_SECONDS)}]",
    )
    return parser


def _token_as_positional(args: list[str]) -> list[str]:
    """``resolve-customer TOKEN`` where TOKEN starts with ``-`` (tokens are base64url): add ``--``."""
    if len(args) >= 2 and args[0] == "resolve-customer" and "--" not in args:
        last = args[-1]
        after_region = len(args) >= 3 and args[-2] == "--region"
        if last.startswith("-") and last not in ("-h", "--help") and not after_region:
            return [*args[:-1], "--", last]
    return args


def main(argv: Sequence[str]) -> int:
    """Run one SaaS command; return its exit code (errors are logged by the caller's handler)."""
    namespace = build_parser().parse_args(_token_as_positional(list(argv)))
    environ = dict(os.environ)
    explicit: dict[str, Any] = {"region": namespace.region} if namespace.region else {}
    if getattr(namespace, "usage_store", None):
        explicit["usage_store"] = namespace.usage_store
    settings = load_settings(environ, for_saas=True, command_line=True, **explicit)
    if namespace.command == "resolve-customer":
        from marketplace_entitlement.saas._resolve import CustomerResolver  # noqa: PLC0415

        customer = CustomerResolver(settings=settings).resolve(namespace.token)
        json.dump(customer.to_json(), sys.stdout, sort_keys=True)
        sys.stdout.write("\n")
        return 0
    if namespace.action == "status":
        return _status(settings)
    retry_timeout = (
        None
        if namespace.retry_timeout is None
        else parse_duration(namespace.retry_timeout, "--retry-timeout")
    )
    return _send(settings, retry_timeout)


def _send(settings: Settings, retry_timeout: float | None) -> int:
    from marketplace_entitlement.saas._reporter import UsageReporter, open_usage_store  # noqa: PLC0415

    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with UsageReporter(
            open_usage_store(settings), settings=settings, retry_timeout=retry_timeout
        ) as reporter:
            result = reporter.send_until_settled(stop)
    finally:
        signal.signal(signal.SIGTERM, previous)
    summary = {
        "frozen": result.frozen, "calls": result.calls, "sent": result.sent,
        "carried": result.carried, "held": result.held, "retry": result.retry,
    }  # fmt: skip
    json.dump(summary, sys.stdout, sort_keys=True)
    sys.stdout.write("\n")
    return _exit_codes.SERVICE_UNAVAILABLE if result.retry else 0


def _status(settings: Settings) -> int:
    from marketplace_entitlement.saas._reporter import open_usage_store  # noqa: PLC0415
    from marketplace_entitlement.saas._status import usage_status  # noqa: PLC0415

    store = open_usage_store(settings)
    try:
        json.dump(usage_status(store), sys.stdout, sort_keys=True, indent=1)
    finally:
        store.close()
    sys.stdout.write("\n")
    return 0
