"""The ``marketplace-entitlement`` command line: ``run``, ``check``, ``probe``, ``record``, ``emulator``.

Every option of ``run`` and ``check`` comes from the settings table (``_settings.OPTIONS``), so each
has its environment variable and default in ``--help``; an explicit option wins over the
environment, which wins over the default.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from marketplace_entitlement import _env, _exit_codes
from marketplace_entitlement._entrypoint import log_refusal, run_check, run_entrypoint
from marketplace_entitlement._errors import ConfigurationError, EntitlementError
from marketplace_entitlement._logging import configure_logging
from marketplace_entitlement._settings import (
    OPTIONS,
    OPTIONS_BY_NAME,
    load_settings,
    resolve_option,
)
from marketplace_entitlement._status import probe
from marketplace_entitlement._version import __version__
from marketplace_entitlement.entitlement._pin import add_pin_command, run_pin_command
from marketplace_entitlement.metering._cli import add_record_parser, run_record
from marketplace_entitlement.saas._cli import SAAS_COMMANDS
from marketplace_entitlement.saas._cli import main as saas_main

logger = logging.getLogger(__name__)

EX_SOFTWARE = 70  # an internal error (a bug): logged with its traceback


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error exits 64 (EX_USAGE) instead of 2."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(_exit_codes.USAGE, f"{self.prog}: error: {message}\n")


def _add_setting_options(parser: argparse.ArgumentParser, *, run: bool) -> None:
    group = parser.add_argument_group("settings (each also read from its environment variable)")
    for option in OPTIONS:
        if option.for_run_only and not run:
            continue
        group.add_argument(
            option.flag,
            dest=option.name,
            metavar=option.variable.removeprefix(_env.PREFIX),
            default=None,
            help=f"{option.help} [env {option.variable}; default {option.default_text}]",
        )
    group.add_argument(
        "--region",
        default=None,
        help="AWS region [env AWS_REGION, then AWS_DEFAULT_REGION, then the platform]",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every command but ``emulator`` (which has its own)."""
    parser = _Parser(
        prog="marketplace-entitlement",
        description="Entitlement gate and PID 1 entrypoint for AWS Marketplace container products.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    run = commands.add_parser(
        "run",
        help="register and verify, then run CMD as a supervised child (the container ENTRYPOINT)",
        description="Register and verify; only if entitled, start CMD as a child, supervise it as "
        "PID 1 and re-register in the background. Exits with CMD's status.",
        usage="%(prog)s [OPTIONS] -- CMD [ARG...]",
    )
    _add_setting_options(run, run=True)
    check = commands.add_parser(
        "check",
        help="one registration and verification; the entitlement as JSON on stdout",
        description="Register once, verify, print the entitlement as one JSON object on stdout.",
    )
    _add_setting_options(check, run=False)
    probe = commands.add_parser(
        "probe",
        help="exit 0 only while the status file shows a current entitlement (health checks)",
        description="Read MARKETPLACE_STATUS_FILE; exit 0 only if the last registration succeeded "
        "and is recent enough, else 1 with the reason on stderr.",
    )
    probe.add_argument(
        "--status-file",
        default=None,
        help=f"the status file written by `run` [env {_env.STATUS_FILE}; default "
        f"{OPTIONS_BY_NAME['status_file'].default_text}: nothing to check, exit 78]",
    )
    probe.add_argument(
        "--status-max-age",
        "--max-age",
        dest="status_max_age",
        default=None,
        help=f"maximum age of the last success [env {_env.STATUS_MAX_AGE}; default: "
        "what the writer stored, 2 x interval + register timeout, none when re-registration is off]",
    )
    add_pin_command(commands)
    for name, text in zip(
        SAAS_COMMANDS, ("SaaS: resolve a registration token", "SaaS: usage"), strict=True
    ):
        commands.add_parser(name, help=f"{text} (see `{name} --help`)", add_help=False)
    add_record_parser(commands)
    commands.add_parser(
        "emulator",
        help="a local AWS Marketplace Metering Service on loopback (see `emulator --help`)",
        add_help=False,
    )
    return parser


def _split_command(args: list[str]) -> tuple[list[str], list[str]]:
    """Split ``run`` arguments into its options and CMD.

    CMD starts after a ``--`` that comes where an option could, or else at the first argument that
    is not an option or an option's value (every ``run`` option takes one, as ``--option VALUE`` or
    ``--option=VALUE``), so ``ENTRYPOINT ["marketplace-entitlement", "run"]`` with the image's CMD
    works, and a ``--`` inside CMD stays CMD's.
    """
    index = 1  # after "run"
    while index < len(args) and args[index].startswith("-"):
        if args[index] == "--":
            return args[:index], args[index + 1 :]
        index += 1 if args[index] in ("-h", "--help") or "=" in args[index] else 2
    return args[:index], args[index:]


def _explicit(namespace: argparse.Namespace) -> dict[str, Any]:
    values = {
        name: value
        for name, value in vars(namespace).items()
        if name in OPTIONS_BY_NAME and value is not None
    }
    if namespace.region:
        values["region"] = namespace.region
    return values


def _logging_from(explicit: dict[str, Any], environ: dict[str, str]) -> None:
    """Configure log output before the rest of the settings, falling back on bad values.

    A bad log setting is then reported by ``load_settings`` as a configuration error like any other.
    """

    def lenient(name: str) -> str:
        try:
            return str(resolve_option(name, explicit.get(name), environ, command_line=True))
        except ConfigurationError:
            return str(OPTIONS_BY_NAME[name].default)

    chosen = {name: lenient(name) for name in ("log_format", "log_level")}
    configure_logging(chosen["log_format"], chosen["log_level"])


def console_main() -> NoReturn:
    """The console script and ``python -m``: run ``main``, flush, and exit without teardown.

    Tearing down an interpreter that holds a botocore client costs ~40 ms (bench/entrypoint.py),
    which every container start would pay after CMD has already exited. Everything we write is
    flushed first, and the status file is fsynced when written. Under coverage measurement (which
    saves its data at exit) the normal exit is kept.
    """
    code = main()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        # None: the fd was closed when Python started (``2>&-``); that is not CMD's status.
        with contextlib.suppress(OSError, ValueError, AttributeError):
            stream.flush()
    if "coverage" in sys.modules:
        sys.exit(code)
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the chosen command, return its exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "emulator":
        from marketplace_entitlement.emulator._cli import main as emulator_main  # noqa: PLC0415

        return emulator_main(args[1:])
    environ = dict(os.environ)
    command: list[str] = []
    if args and args[0] == "run":
        options, command = _split_command(args)
    else:
        options = args
    parser = build_parser()
    saas = bool(args) and args[0] in SAAS_COMMANDS
    namespace = argparse.Namespace(command=args[0]) if saas else parser.parse_args(options)
    try:
        if saas:
            _logging_from({}, environ)
            return saas_main(args)
        standalone = _STANDALONE.get(namespace.command)
        if standalone is not None:
            return standalone(namespace, environ)
        explicit = _explicit(namespace)
        _logging_from(explicit, environ)
        if namespace.command == "run" and not command:
            parser.error(
                "run needs a command: marketplace-entitlement run [OPTIONS] -- CMD [ARG...]"
            )
        return _dispatch(namespace.command, explicit, environ, command)
    except EntitlementError as error:
        log_refusal(error)
        return error.exit_code
    except Exception:
        logger.exception("internal error; please report it", extra={"event": "internal_error"})
        return EX_SOFTWARE


def _pin(namespace: argparse.Namespace, environ: dict[str, str]) -> int:
    return run_pin_command(namespace)


def _dispatch(name: str, explicit: dict[str, Any], environ: dict[str, str], cmd: list[str]) -> int:
    settings = load_settings(environ, command_line=True, **explicit)
    if name == "check":
        return run_check(settings, sys.stdout)
    return run_entrypoint(settings, cmd)


def _probe(namespace: argparse.Namespace, environ: dict[str, str]) -> int:
    def say(line: str, *, healthy: bool = False) -> None:
        print(f"marketplace-entitlement probe: {line}", file=sys.stdout if healthy else sys.stderr)

    try:
        path = resolve_option("status_file", namespace.status_file, environ, command_line=True)
        max_age = resolve_option(
            "status_max_age", namespace.status_max_age, environ, command_line=True
        )
    except ConfigurationError as error:
        say(error.refusal_line())
        return _exit_codes.CONFIGURATION
    if path is None:
        say(f"{_env.STATUS_FILE} is not set; nothing to check")
        return _exit_codes.CONFIGURATION
    result = probe(path, max_age=max_age)
    say(result.reason, healthy=result.healthy)
    return 0 if result.healthy else 1


# Commands that do not go through the gate's settings: each reads what it needs itself.
_STANDALONE: dict[str, Callable[[argparse.Namespace, dict[str, str]], int]] = {
    "probe": _probe,
    "pin": _pin,
    "record": run_record,
}
