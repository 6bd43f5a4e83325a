"""The SaaS commands: ``resolve-customer TOKEN``, ``usage send`` and ``usage status``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from marketplace_entitlement import _exit_codes
from marketplace_entitlement._settings import load_settings

SAAS_COMMANDS = ("resolve-customer", "usage")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error exits 64 (EX_USAGE) instead of 2."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(_exit_codes.USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The parser of the SaaS commands."""
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
    resolve.add_argument("--region", default=None, help="AWS region [env AWS_REGION]")
    return parser


def main(argv: Sequence[str]) -> int:
    """Run one SaaS command; return its exit code (errors are logged by the caller's handler)."""
    namespace = build_parser().parse_args(list(argv))
    environ = dict(os.environ)
    explicit = {"region": namespace.region} if namespace.region else {}
    settings = load_settings(environ, for_saas=True, **explicit)
    if namespace.command == "resolve-customer":
        from marketplace_entitlement.saas._resolve import CustomerResolver  # noqa: PLC0415

        customer = CustomerResolver(settings=settings).resolve(namespace.token)
        json.dump(customer.to_json(), sys.stdout, sort_keys=True)
        sys.stdout.write("\n")
        return 0
    raise AssertionError(f"unhandled command {namespace.command}")  # pragma: no cover
