"""The one frozen Settings object, built from explicit values, then the environment, then defaults.

Nothing else in the package reads ``os.environ`` for a ``MARKETPLACE_*`` variable: the option table
``OPTIONS`` below is the single description of every setting (its variable, CLI flag, default and
help), used to build ``Settings``, the CLI, the unknown-variable warning and the documentation's
table test.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from marketplace_entitlement import _env
from marketplace_entitlement._errors import ConfigurationError
from marketplace_entitlement._parsers import (
    check_duration,
    parse_bool,
    parse_choice,
    parse_duration,
    parse_exit_codes,
    parse_positive_int,
    parse_product_code,
    parse_public_key,
    parse_signal,
    parse_signal_rewrite,
    read_public_key_file,
)
from marketplace_entitlement.metering._config import DEFAULT_HTTP, parse_listen
from marketplace_entitlement.metering._records import parse_dimensions

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

    from marketplace_entitlement.entitlement._pin import Pin

LOG_FORMATS = ("json", "text")
LOG_LEVELS = ("debug", "info", "warning", "error")
# Level names Python's logging also accepts, spelled as the variable may be.
LOG_LEVEL_ALIASES = {"warn": "warning"}
FAILURE_POLICIES = ("keep-running", "stop")
PRICING_MODELS = ("hourly", "custom")
BACKLOG_POLICIES = ("warn", "stop")

Parser = Callable[[str, str], Any]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Option:
    """One setting: its attribute, environment variable, CLI flag, parser, default and help."""

    name: str
    variable: str
    parse: Parser
    default: Any
    default_text: str
    help: str
    for_run_only: bool = False

    @property
    def flag(self) -> str:
        """The long command-line option, e.g. ``--product-code``."""
        return "--" + self.name.replace("_", "-")


def _choice(choices: tuple[str, ...]) -> Parser:
    def parse(value: str, variable: str) -> str:
        return parse_choice(value, variable, choices)

    return parse


def _log_level(value: str, variable: str) -> str:
    lowered = value.strip().lower()
    return parse_choice(LOG_LEVEL_ALIASES.get(lowered, lowered), variable, LOG_LEVELS)


def _optional_path(value: str, variable: str) -> Path | None:
    return Path(value) if value.strip() else None


def _text(value: str, variable: str) -> str | None:
    return value if value.strip() else None


STORE_SCHEMES = ("sqlite://", "postgresql://", "postgres://")


def _store_url(value: str, variable: str) -> str | None:
    value = value.strip()
    if not value:
        return None
    if not value.startswith(STORE_SCHEMES):
        raise ConfigurationError(
            f"{variable} must be a sqlite:///PATH or postgresql://... URL (the value is not "
            "shown: it may hold a password)",
            variable=variable,
        )
    return value


OPTIONS: tuple[Option, ...] = (
    Option("product_code", _env.PRODUCT_CODE, parse_product_code, None, "required",
           "the product code to register"),
    Option("public_key_version", _env.PUBLIC_KEY_VERSION, parse_positive_int, 1, "1",
           "the PublicKeyVersion sent and expected in the token"),
    Option("public_key", _env.PUBLIC_KEY, _text, None, "none",
           "the product's public key: PEM text, or base64 of the PEM"),
    Option("public_key_file", _env.PUBLIC_KEY_FILE, _text, None, "none",
           "path of a PEM file holding the product's public key"),
    Option("verify_signature", _env.VERIFY_SIGNATURE, parse_bool, True, "true",
           "`false` skips signature verification, loudly"),
    Option("register_timeout", _env.REGISTER_TIMEOUT, parse_duration, 1800.0, "30m",
           "how long startup keeps retrying retryable failures"),
    Option("reregister_interval", _env.REREGISTER_INTERVAL, parse_duration, 3600.0, "1h",
           "period of background re-registration; `0` turns it off"),
    Option("log_format", _env.LOG_FORMAT, _choice(LOG_FORMATS), "json", "json",
           "`json` (one object per line) or `text`"),
    Option("log_level", _env.LOG_LEVEL, _log_level, "info", "info",
           "`debug`, `info`, `warning` (or `warn`), `error`"),
    Option("status_file", _env.STATUS_FILE, _optional_path, None, "none",
           "where the current entitlement state is kept, atomically, as JSON"),
    Option("reregister_failure_policy", _env.REREGISTER_FAILURE_POLICY,
           _choice(FAILURE_POLICIES), "keep-running", "keep-running",
           "what a failed background re-registration does: `keep-running` or `stop` CMD",
           for_run_only=True),
    Option("stop_grace_period", _env.STOP_GRACE_PERIOD, parse_duration, 10.0, "10s",
           "when `run` stops CMD itself (failure policy `stop`): time between SIGTERM and SIGKILL",
           for_run_only=True),
    Option("term_delay", _env.TERM_DELAY, parse_duration, 0.0, "0",
           "delay before SIGTERM is forwarded to CMD (load balancer deregistration)",
           for_run_only=True),
    Option("signal_group", _env.SIGNAL_GROUP, parse_bool, False, "false",
           "forward signals to CMD's whole process group, not only CMD", for_run_only=True),
    Option("signal_rewrite", _env.SIGNAL_REWRITE, parse_signal_rewrite, (), "none",
           "rewrite signals before forwarding, by name: `TERM:QUIT,INT:TERM`; `FROM:0` drops FROM",
           for_run_only=True),
    Option("status_max_age", _env.STATUS_MAX_AGE, parse_duration, None,
           "2 x interval + register timeout",
           "how old the last successful registration may be for `probe` to pass"),
    Option("leftover_grace_period", _env.LEFTOVER_GRACE_PERIOD, parse_duration, 0.0, "0",
           "after CMD exits, how long the rest of its process group gets after SIGTERM before "
           "SIGKILL; `0` sends SIGTERM and exits at once", for_run_only=True),
    Option("success_exit_codes", _env.SUCCESS_EXIT_CODES, parse_exit_codes, (), "none",
           "CMD exit statuses to report as 0, comma-separated (`143` for an app that exits 143 "
           "on SIGTERM), like tini -e", for_run_only=True),
    Option("parent_death_signal", _env.PARENT_DEATH_SIGNAL, parse_signal, None, "none",
           "signal `run` gets (and forwards to CMD) when the process that started it dies, like "
           "tini -p: `TERM`", for_run_only=True),
    Option("pricing", _env.PRICING, _choice(PRICING_MODELS), "hourly", "hourly",
           "`hourly` (RegisterUsage) or `custom` (MeterUsage per dimension)"),
    Option("dimensions", _env.DIMENSIONS, parse_dimensions, (), "none",
           "comma-separated dimension names of the product (`custom` only)"),
    Option("metering_state_dir", _env.METERING_STATE_DIR, _optional_path, None, "none",
           "directory of the durable usage store (a task/pod-scoped volume)"),
    Option("metering_http", _env.METERING_HTTP, parse_listen, parse_listen(DEFAULT_HTTP, ""),
           DEFAULT_HTTP, "`HOST:PORT` of `run`'s loopback HTTP ingestion endpoint, or `off`",
           for_run_only=True),
    Option("metering_statsd", _env.METERING_STATSD, parse_listen, None, "off",
           "`HOST:PORT` of `run`'s loopback StatsD/DogStatsD UDP listener, or `off`",
           for_run_only=True),
    Option("metering_send_window", _env.METERING_SEND_WINDOW, parse_duration, 600.0, "10m",
           "sends of a closed hour are spread at random over this long after the hour"),
    Option("metering_stop_timeout", _env.METERING_STOP_TIMEOUT, parse_duration, 20.0, "20s",
           "on stop, how long `run` tries to send the unfinished hour after CMD exited",
           for_run_only=True),
    Option("metering_backlog_policy", _env.METERING_BACKLOG_POLICY, _choice(BACKLOG_POLICIES),
           "warn", "warn",
           "unsent usage nearing the 6-hour window: `warn`, or `stop` CMD", for_run_only=True),
    Option("usage_store", _env.USAGE_STORE, _store_url, None, "the project's choice (SQLite)",
           "SaaS: where usage is kept until sent: `sqlite:///PATH` or `postgresql://...`"),
)  # fmt: skip

OPTIONS_BY_NAME: Mapping[str, Option] = {option.name: option for option in OPTIONS}


@dataclass(frozen=True)
class Settings:
    """Every setting, parsed and validated. Build it with ``load_settings``."""

    product_code: str
    public_key_version: int = 1
    public_key: RSAPublicKey | None = dataclasses.field(default=None, compare=False, repr=False)
    verify_signature: bool = True
    register_timeout: float = 1800.0
    reregister_interval: float = 3600.0
    log_format: str = "json"
    log_level: str = "info"
    status_file: Path | None = None
    reregister_failure_policy: str = "keep-running"
    stop_grace_period: float = 10.0
    term_delay: float = 0.0
    signal_group: bool = False
    signal_rewrite: tuple[tuple[int, int], ...] = ()
    status_max_age: float | None = None
    leftover_grace_period: float = 0.0
    success_exit_codes: tuple[int, ...] = ()
    parent_death_signal: int | None = None
    pricing: str = "hourly"
    dimensions: tuple[str, ...] = ()
    metering_state_dir: Path | None = None
    metering_http: tuple[str, int] | None = ("127.0.0.1", 9811)
    metering_statsd: tuple[str, int] | None = None
    metering_send_window: float = 600.0
    metering_stop_timeout: float = 20.0
    metering_backlog_policy: str = "warn"
    usage_store: str | None = None
    region: str | None = None
    ecs_metadata_uri: str | None = None
    pinned_by: str | None = None

    @property
    def effective_status_max_age(self) -> float | None:
        """How old a successful registration may be before the probe fails (None: any age).

        By default two intervals plus the register timeout: one missed round is tolerated. With
        re-registration off, the one registration at startup never gets older in any useful sense.
        """
        if self.status_max_age is not None:
            return self.status_max_age
        if self.reregister_interval <= 0 or self.pricing == "custom":
            # Custom pricing does not re-register: an outage shows as the metering backlog (and its
            # policy), not as a stale registration that would restart the container.
            return None
        return 2 * self.reregister_interval + self.register_timeout


def resolve_region(environ: Mapping[str, str]) -> str | None:
    """``AWS_REGION`` (set by ECS and EKS), then ``AWS_DEFAULT_REGION``; None: ask botocore."""
    for variable in (_env.AWS_REGION, _env.AWS_DEFAULT_REGION):
        value = environ.get(variable, "").strip()
        if value:
            return value
    return None


def _source_name(option: Option, explicit: Any, *, command_line: bool) -> str:
    """The name a bad value is reported under: the option when it came from the command line."""
    return option.flag if command_line and explicit is not None else option.variable


def _resolve(
    option: Option, explicit: Any, environ: Mapping[str, str], *, command_line: bool = False
) -> Any:
    """Explicit value (parsed if a string), then the environment, then the default.

    A bad explicit value is reported under the option (``--verify-signature``) when
    ``command_line``, else under the variable.
    """
    if explicit is not None:
        if not isinstance(explicit, str):
            return explicit
        return option.parse(explicit, _source_name(option, explicit, command_line=command_line))
    raw = environ.get(option.variable)
    if raw is not None and raw.strip() != "":
        return option.parse(raw, option.variable)
    return option.default


def resolve_option(
    name: str, explicit: Any, environ: Mapping[str, str], *, command_line: bool = False
) -> Any:
    """One setting alone (for ``probe``), by the same rule as ``load_settings``."""
    return _resolve(OPTIONS_BY_NAME[name], explicit, environ, command_line=command_line)


# Variables of this prefix belong to `marketplace-entitlement emulator`, which checks its own.
_EMULATOR_PREFIX = _env.PREFIX + "EMULATOR_"
_warned_unknown: set[str] = set()  # each unknown variable is warned about once per process


def known_variables() -> frozenset[str]:
    """Every ``MARKETPLACE_*`` variable the package reads: the settings table and ``_env``'s names."""
    named = {
        value
        for name, value in vars(_env).items()
        if name.isupper() and isinstance(value, str) and value.startswith(_env.PREFIX)
    }
    return frozenset(named - {_env.PREFIX} | {option.variable for option in OPTIONS})


def unknown_variables(environ: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """The ``MARKETPLACE_*`` variables in ``environ`` this package does not read, sorted.

    Each comes with the closest known name, or None when nothing is close.
    """
    known = known_variables()
    return [
        (name, _closest(name, known))
        for name in sorted(environ)
        if name.startswith(_env.PREFIX)
        and name not in known
        and not name.startswith(_EMULATOR_PREFIX)
    ]


def _closest(name: str, known: frozenset[str]) -> str | None:
    """The known name most like ``name``, compared without the shared prefix (None if none is)."""
    suffixes = {variable.removeprefix(_env.PREFIX): variable for variable in known}
    matches = difflib.get_close_matches(name.removeprefix(_env.PREFIX), suffixes, n=1, cutoff=0.6)
    return suffixes[matches[0]] if matches else None


def warn_unknown_variables(environ: Mapping[str, str]) -> None:
    """Log one warning per unknown ``MARKETPLACE_*`` variable (a misspelt one is otherwise ignored)."""
    for name, closest in unknown_variables(environ):
        if name in _warned_unknown:
            continue
        _warned_unknown.add(name)
        suggestion = f"; did you mean {closest}?" if closest else ""
        logger.warning(
            "%s is set but marketplace-entitlement does not read it%s",
            name,
            suggestion,
            extra={"event": "settings.unknown_variable", "variable": name, "closest": closest},
        )


def load_settings(
    environ: Mapping[str, str] | None = None,
    *,
    pin: Pin | None = None,
    for_saas: bool = False,
    command_line: bool = False,
    **explicit: Any,
) -> Settings:
    """Build Settings: keyword arguments, then ``environ`` (default ``os.environ``), then defaults.

    Keyword arguments use the attribute names of ``Settings`` (``product_code=...``); string values
    are parsed exactly like the environment variable, other values are taken as they are. ``region``
    may also be given explicitly. Raises ConfigurationError naming the variable at fault.

    ``pin`` is what the application's code fixed (see ``entitlement/_pin.py``); it is combined
    with the image's pin file. Keyword arguments here are the command line's (the buyer's), so a
    pinned value they or the environment contradict is refused like any other.

    ``for_saas`` loads for the SaaS operations: a SaaS seller's product code comes from each
    resolved customer and no token is verified, so neither the product code (``""`` when unset)
    nor a public key is required.

    ``command_line``: the keyword arguments are command-line options, so a bad one is reported
    under its option (``--verify-signature``) instead of its variable.
    """
    from marketplace_entitlement.entitlement import _pin  # noqa: PLC0415  (no cycle at import)

    env = os.environ if environ is None else environ
    warn_unknown_variables(env)
    unknown = set(explicit) - set(OPTIONS_BY_NAME) - {"region"}
    if unknown:
        raise TypeError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    pinned = _pin.combine(pin, _pin.read_pin_file())
    values = {
        option.name: _resolve(option, explicit.get(option.name), env, command_line=command_line)
        for option in OPTIONS
    }

    def name_of(name: str) -> str:
        option = OPTIONS_BY_NAME[name]
        return _source_name(option, explicit.get(name), command_line=command_line)

    for name in (
        "register_timeout",
        "reregister_interval",
        "stop_grace_period",
        "term_delay",
        "leftover_grace_period",
        "metering_send_window",
        "metering_stop_timeout",
    ):
        values[name] = check_duration(values[name], name_of(name))
    if values["status_max_age"] is not None:
        values["status_max_age"] = check_duration(
            values["status_max_age"], name_of("status_max_age")
        )
    pinned_key = None
    if pinned is not None:
        # What the command line or the environment set (already parsed in ``values``), else None.
        supplied = {
            name: values[name]
            if explicit.get(name) is not None
            or (env.get(OPTIONS_BY_NAME[name].variable) or "").strip()
            else None
            for name in _pin.PINNABLE
        }
        pinned_key = _pin.enforce(pinned, supplied, values, _load_key)
    if values["product_code"] is None and for_saas:
        values["product_code"] = ""
    if values["product_code"] is None:
        raise ConfigurationError(
            f"{_env.PRODUCT_CODE} is not set", variable=_env.PRODUCT_CODE,
            hint="set it to the product code of your AWS Marketplace listing",
        )  # fmt: skip
    _check_pricing(values)
    key_text, key_path = values.pop("public_key"), values.pop("public_key_file")
    if explicit.get("public_key") is not None or explicit.get("public_key_file") is not None:
        # An explicit key replaces whatever the environment names, in either form.
        key_text, key_path = explicit.get("public_key"), explicit.get("public_key_file")
    key = pinned_key if pinned_key is not None else _load_key(key_text, key_path)
    if (
        values["verify_signature"]
        and key is None
        and values["pricing"] == "hourly"
        and not for_saas
    ):
        raise ConfigurationError(
            f"no public key configured to verify the Signature: set {_env.PUBLIC_KEY_FILE} "
            f"or {_env.PUBLIC_KEY}",
            variable=_env.PUBLIC_KEY_FILE,
            hint="use the public key AWS Marketplace issued for your product, or set "
            f"{_env.VERIFY_SIGNATURE}=false to skip verification (not recommended)",
        )
    return Settings(
        public_key=key,
        region=explicit.get("region") or resolve_region(env),
        ecs_metadata_uri=env.get(_env.ECS_CONTAINER_METADATA_URI_V4) or None,
        pinned_by=None if pinned is None else pinned.source,
        **values,
    )


def _check_pricing(values: Mapping[str, Any]) -> None:
    """Custom pricing needs its dimensions; hourly pricing has none (a likely mistake otherwise)."""
    if values["pricing"] == "custom" and not values["dimensions"]:
        raise ConfigurationError(
            f"{_env.PRICING}=custom needs {_env.DIMENSIONS}", variable=_env.DIMENSIONS,
            hint="list the dimension API names of your listing, comma-separated",
        )  # fmt: skip
    if values["pricing"] == "hourly" and values["dimensions"]:
        raise ConfigurationError(
            f"{_env.DIMENSIONS} is set but {_env.PRICING} is hourly", variable=_env.PRICING,
            hint=f"set {_env.PRICING}=custom for a product priced by dimensions",
        )  # fmt: skip


def _load_key(text: Any, path: Any) -> RSAPublicKey | None:
    """Load the key from exactly one of the two variables (both set is ambiguous)."""
    if text is not None and path is not None:
        raise ConfigurationError(
            f"both {_env.PUBLIC_KEY} and {_env.PUBLIC_KEY_FILE} are set",
            variable=_env.PUBLIC_KEY, hint="set only one of them",
        )  # fmt: skip
    if text is not None and not isinstance(text, str):
        from marketplace_entitlement.entitlement._pin import load_key_object  # noqa: PLC0415

        return load_key_object(text, _env.PUBLIC_KEY)  # a key object or bytes from the import API
    if text is not None:
        return parse_public_key(text, _env.PUBLIC_KEY)
    if path is not None:
        return read_public_key_file(str(path), _env.PUBLIC_KEY_FILE)
    return None
