"""Parsers of the metering settings that are not plain durations or choices (listen addresses)."""

from __future__ import annotations

import ipaddress

from marketplace_entitlement._errors import ConfigurationError

# The settings documented in docs/metering.md's table rather than the README's.
SETTING_NAMES = frozenset(
    {
        "pricing",
        "dimensions",
        "metering_state_dir",
        "metering_http",
        "metering_statsd",
        "metering_send_window",
        "metering_stop_timeout",
        "metering_backlog_policy",
    }
)

DEFAULT_HTTP = "127.0.0.1:9811"  # the ingestion endpoint `run` serves for CMD (loopback only)


def parse_listen(value: str, variable: str) -> tuple[str, int] | None:
    """``HOST:PORT`` on loopback (``127.0.0.1:9811``, ``[::1]:9811``, ``localhost:9811``) or ``off``.

    Anything that is not a loopback address is refused: the ingestion endpoints take usage without
    authentication, so only processes of the container itself may reach them.
    """
    text = value.strip()
    if text.lower() in ("off", "false", "0", "no"):
        return None
    host, sep, port_text = text.rpartition(":")
    host = host.strip("[]")
    hint = "use HOST:PORT on loopback, e.g. 127.0.0.1:9811, or off"
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigurationError(
            f"{variable}={value!r} is not HOST:PORT or off", variable=variable, hint=hint
        )
    if host != "localhost":
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ConfigurationError(
                f"{variable}={value!r} is not a loopback address: usage could be recorded from "
                "outside the container",
                variable=variable,
                hint=hint,
            )
    return ("127.0.0.1" if host == "localhost" else host), int(port_text)
