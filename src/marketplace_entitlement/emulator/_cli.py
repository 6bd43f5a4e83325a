"""``marketplace-entitlement emulator``: run the emulator until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Final, NoReturn

from marketplace_entitlement.emulator._emulator import Emulator
from marketplace_entitlement.emulator._faults import FaultSpecError, parse_fault_spec
from marketplace_entitlement.emulator._model import OPERATIONS
from marketplace_entitlement.emulator._operations import ENTITLEMENT_CHECKS
from marketplace_entitlement.emulator._types import CLAIM_CASINGS

ENV_PREFIX: Final = "MARKETPLACE_EMULATOR_"
EXIT_OK: Final = 0
EXIT_USAGE: Final = 64


class UsageError(Exception):
    """A bad option or environment variable; the message says which and why."""


@dataclass(frozen=True)
class _Option:
    flags: tuple[str, ...]
    dest: str
    env: str
    default: Any
    help: str
    repeatable: bool = False
    metavar: str | None = None
    choices: tuple[str, ...] | None = None


# Every option, its variable and its default, named once. Repeatable options read a
# comma-separated list from the environment (faults: semicolon-separated, specs hold commas).
OPTIONS: Final = (
    _Option(("--host",), "host", "HOST", "127.0.0.1", "address to listen on"),
    _Option(("--port",), "port", "PORT", "0", "TCP port; 0 picks a free one"),
    _Option(
        ("--product-code",), "product_code", "PRODUCT_CODES", [],
        "entitled product code (repeatable); with no product configured every code is "
        "entitled, otherwise RegisterUsage answers other codes CustomerNotEntitledException",
        repeatable=True, metavar="CODE",
    ),
    _Option(
        ("--not-entitled",), "not_entitled", "NOT_ENTITLED", [],
        "product code answered CustomerNotEntitledException (repeatable)",
        repeatable=True, metavar="CODE",
    ),
    _Option(
        ("--platform-not-supported",), "platform_not_supported", "PLATFORM_NOT_SUPPORTED", [],
        "product code answered PlatformNotSupportedException (repeatable)",
        repeatable=True, metavar="CODE",
    ),
    _Option(
        ("--invalid-product-code",), "invalid_product_code", "INVALID_PRODUCT_CODES", [],
        "product code answered InvalidProductCodeException (repeatable)",
        repeatable=True, metavar="CODE",
    ),
    _Option(
        ("--dimensions",), "dimensions", "DIMENSIONS", [],
        "CODE=DIM1,DIM2: the product's dimensions; MeterUsage of any other gets "
        "InvalidUsageDimensionException (repeatable; the product is entitled unless listed "
        "otherwise; environment: ';'-separated)",
        repeatable=True, metavar="CODE=DIMS",
    ),
    _Option(
        ("--region",), "region", "REGION", None,
        "the emulator's region: RegisterUsage signed for another one gets InvalidRegionException",
    ),
    _Option(
        ("--claim-casing",), "claim_casing", "CLAIM_CASING", "camel",
        "token claim names: camel (productCode) or pascal (ProductCode)", choices=CLAIM_CASINGS,
    ),
    _Option(
        ("--key-dir",), "key_dir", "KEY_DIR", None,
        "directory for public-key-vN.pem files (default: a temporary one removed at exit)",
        metavar="DIR",
    ),
    _Option(
        ("--private-key-file",), "private_key_file", "PRIVATE_KEY_FILE", None,
        "PEM RSA private key to sign version 1 tokens with (default: generate RSA-3072)",
        metavar="PEM",
    ),
    _Option(
        ("--rate-limit",), "rate_limit", "RATE_LIMITS", [],
        "OPERATION=PER_SECOND (repeatable; 0 = unlimited); default AWS's quotas",
        repeatable=True, metavar="OP=N",
    ),
    _Option(
        ("--fault",), "fault", "FAULTS", [],
        "fault spec OPERATION:KIND[=VALUE][:KEY=VALUE]..., e.g. "
        "RegisterUsage:error=ThrottlingException:count=3 (repeatable)",
        repeatable=True, metavar="SPEC",
    ),
    _Option(
        ("--credential",), "credential", "CREDENTIALS", [],
        "ACCESS_KEY_ID=SECRET (repeatable): verify SigV4 signatures against these keys",
        repeatable=True, metavar="AKID=SECRET",
    ),
    _Option(
        ("--disable-operation",), "disable_operation", "DISABLED_OPERATIONS", [],
        "operation answered DisabledApiException (repeatable)",
        repeatable=True, metavar="OPERATION", choices=OPERATIONS,
    ),
    _Option(("--seed",), "seed", "SEED", None, "seed for faults given a probability"),
    _Option(
        ("--entitlement-check",), "entitlement_check", "ENTITLEMENT_CHECK", "first-call",
        "when RegisterUsage and MeterUsage answer CustomerNotEntitled/PlatformNotSupported: "
        "first-call (as AWS: only until a task, told apart by its access key id, has made a "
        "successful RegisterUsage or MeterUsage call for the product) or every-call",
        choices=ENTITLEMENT_CHECKS,
    ),
)  # fmt: skip


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; ``--help`` shows every option's variable and default."""
    parser = _Parser(
        prog="marketplace-entitlement emulator",
        description="A local AWS Marketplace Metering Service (JSON 1.1, SigV4, PS256 tokens). "
        "Prints one JSON line when ready; stops on SIGTERM or SIGINT. Each option can also be "
        "set through its environment variable; an explicit option wins.",
    )
    for option in OPTIONS:
        default = ",".join(option.default) if option.repeatable else option.default
        parser.add_argument(
            *option.flags,
            dest=option.dest,
            action="append" if option.repeatable else "store",
            default=None,
            metavar=option.metavar,
            choices=option.choices,
            help=f"{option.help} [env {ENV_PREFIX}{option.env}; default: {default or 'none'}]",
        )
    return parser


def _resolve(namespace: argparse.Namespace, environ: Mapping[str, str]) -> dict[str, Any]:
    """Apply the order: explicit option, then environment variable, then default."""
    values: dict[str, Any] = {}
    for option in OPTIONS:
        given = getattr(namespace, option.dest)
        raw = environ.get(ENV_PREFIX + option.env)
        if given is not None:
            values[option.dest] = given
        elif raw is not None and raw != "":
            separator = ";" if option.dest in ("fault", "dimensions") else ","
            values[option.dest] = (
                [item.strip() for item in raw.split(separator) if item.strip()]
                if option.repeatable
                else raw
            )
        else:
            values[option.dest] = option.default
        if option.choices is not None:
            items = values[option.dest] if option.repeatable else [values[option.dest]]
            for item in items:
                if item not in option.choices:
                    choices = ", ".join(option.choices)
                    raise UsageError(f"{ENV_PREFIX}{option.env}: {item!r} is not one of {choices}")
    return values


def _pairs(items: Sequence[str], what: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{what}: expected KEY=VALUE, got {item!r}")
        pairs[key.strip()] = value.strip()
    return pairs


def _integer(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"{what} must be an integer, not {text!r}") from None


def build_emulator(values: Mapping[str, Any]) -> Emulator:
    """Turn resolved option values into an (unstarted) ``Emulator``; raise ``UsageError``."""
    port = _integer(str(values["port"]), "--port")
    if not 0 <= port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535, not {port}")
    seed = None if values["seed"] is None else _integer(str(values["seed"]), "--seed")
    products: dict[str, str] = {}
    for dest, status in (
        ("product_code", "entitled"),
        ("not_entitled", "not_entitled"),
        ("platform_not_supported", "platform_not_supported"),
        ("invalid_product_code", "invalid"),
    ):
        products.update(dict.fromkeys(values[dest], status))
    dimensions: dict[str, list[str]] = {}
    for code, names in _pairs(values["dimensions"], "--dimensions").items():
        dimensions[code] = [name.strip() for name in names.split(",") if name.strip()]
        if not dimensions[code]:
            raise UsageError(f"--dimensions {code}: name at least one dimension")
        products.setdefault(code, "entitled")
    rate_limits: dict[str, float | None] = {}
    for operation, rate in _pairs(values["rate_limit"], "--rate-limit").items():
        if operation not in OPERATIONS:
            raise UsageError(f"--rate-limit: unknown operation {operation!r}")
        try:
            per_second = float(rate)
        except ValueError:
            raise UsageError(f"--rate-limit {operation}: {rate!r} is not a number") from None
        if per_second < 0:
            raise UsageError(f"--rate-limit {operation}: must be >= 0")
        rate_limits[operation] = per_second
    try:
        faults = [parse_fault_spec(spec, default_seed=seed) for spec in values["fault"]]
    except FaultSpecError as error:
        raise UsageError(f"--fault: {error}") from None
    keys = None
    if values["private_key_file"]:
        try:
            keys = {1: Path(values["private_key_file"]).read_bytes()}
        except OSError as error:
            raise UsageError(f"--private-key-file: {error}") from None
    credentials = _pairs(values["credential"], "--credential") or None
    try:
        return Emulator(
            products=products,
            region=values["region"],
            claim_casing=values["claim_casing"],
            rate_limits=rate_limits,
            keys=keys,
            credentials=credentials,
            disabled_operations=values["disable_operation"],
            dimensions=dimensions,
            faults=faults,
            seed=seed,
            host=values["host"],
            port=port,
            key_dir=values["key_dir"],
            entitlement_check=values["entitlement_check"],
        )
    except (ValueError, TypeError) as error:
        raise UsageError(str(error)) from None


def _install_stop_handlers(stop: threading.Event) -> Callable[[], None]:
    """Make SIGTERM and SIGINT set ``stop`` (and nothing else); return a function to undo it."""

    def record(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, record) for sig in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore


def _is_loopback(address: str) -> bool:
    """Whether the bound ``address`` (an IP literal) is reachable from this host only."""
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run the emulator until SIGTERM or SIGINT; return the exit code (0, or 64 for bad usage)."""
    try:
        namespace = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
        emulator = build_emulator(_resolve(namespace, os.environ if environ is None else environ))
    except UsageError as error:
        print(f"marketplace-entitlement emulator: {error}", file=sys.stderr)  # noqa: T201
        print("try: marketplace-entitlement emulator --help", file=sys.stderr)  # noqa: T201
        return EXIT_USAGE
    except SystemExit as exit_:  # --help
        return int(exit_.code or 0)
    stop = threading.Event()
    restore = _install_stop_handlers(stop)
    try:
        try:
            emulator.start()
        except OSError as error:
            print(f"marketplace-entitlement emulator: cannot listen: {error}", file=sys.stderr)  # noqa: T201
            return EXIT_USAGE
        if not _is_loopback(emulator.host):
            print(  # noqa: T201  (the command's own stderr, like its other messages)
                f"marketplace-entitlement emulator: warning: listening on {emulator.host}, not "
                "loopback: anyone who can reach this port can use the unauthenticated control "
                f"API ({emulator.control_url}) and request signed tokens; use it only in an "
                "isolated test network",
                file=sys.stderr,
            )
        try:
            ready = {
                "endpoint": emulator.endpoint,
                "control_url": emulator.control_url,
                "public_key_file": str(emulator.public_key_file),
                "region": emulator.region,
                "key_versions": list(emulator.key_versions),
                "pid": os.getpid(),
            }
            sys.stdout.write(json.dumps(ready) + "\n")
            sys.stdout.flush()
            stop.wait()
        finally:
            emulator.stop()
    finally:
        restore()
    return EXIT_OK
