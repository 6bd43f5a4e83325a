"""The messages a seller reads when something is wrong say where, how long, and what to change."""

from __future__ import annotations

import itertools
import json
import logging
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from marketplace_entitlement import _env
from marketplace_entitlement._errors import ConfigurationError, ServiceUnavailableError
from marketplace_entitlement._retry import call_with_retries, format_duration
from marketplace_entitlement._settings import (
    OPTIONS,
    known_variables,
    load_settings,
    unknown_variables,
)
from marketplace_entitlement.emulator import Emulator
from marketplace_entitlement.entitlement._gate import Gate

CLI = [sys.executable, "-m", "marketplace_entitlement"]


def short_delays() -> Iterator[float]:
    """Retry every 0.2 s, so a one-second budget gives a few attempts."""
    return itertools.repeat(0.2)


def closed_port_url() -> str:
    """A loopback URL where nothing listens (connections are refused at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run the command line with ``env``; capture stdout and stderr."""
    return subprocess.run(
        [*CLI, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def events(stderr: str) -> list[dict[str, object]]:
    """The JSON log events on stderr."""
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def attempt_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The text of the retry warnings the gate logged."""
    return [
        record.getMessage()
        for record in caplog.records
        if getattr(record, "event", None) == "register_usage.attempt"
        and record.levelno == logging.WARNING
    ]


def test_unreachable_endpoint_warnings_name_the_url_and_the_time_left(
    aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Each retry warning for an unreachable endpoint names its URL and the budget left."""
    url = closed_port_url()
    monkeypatch.setenv("AWS_ENDPOINT_URL_MARKETPLACE_METERING", url)
    caplog.set_level(logging.INFO, logger="marketplace_entitlement")
    gate = Gate(load_settings(register_timeout="1s"), retry_delays=short_delays)
    with pytest.raises(ServiceUnavailableError) as caught:
        gate.check()
    warnings = attempt_warnings(caplog)
    assert len(warnings) >= 2
    first = warnings[0]
    assert first.startswith("RegisterUsage attempt 1: EndpointConnectionError: ")
    assert url in first
    assert "retrying in 0.2s, " in first
    assert first.endswith(" of MARKETPLACE_REGISTER_TIMEOUT left")
    assert warnings[-2].endswith(
        (" left", "the last attempt at the end of MARKETPLACE_REGISTER_TIMEOUT")
    )
    assert warnings[-1].endswith("MARKETPLACE_REGISTER_TIMEOUT used up")
    assert url in caught.value.refusal_line()


def test_throttling_warnings_name_the_endpoint(
    service: Emulator, aws_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """A throttled attempt's warning names the endpoint although the error message does not."""
    service.inject_fault("RegisterUsage", "error", error="ThrottlingException", count=1)
    caplog.set_level(logging.INFO, logger="marketplace_entitlement")
    Gate(load_settings(), retry_delays=short_delays).check()
    (warning,) = attempt_warnings(caplog)
    assert warning.startswith("RegisterUsage attempt 1: ThrottlingException: ")
    assert f"(endpoint {service.endpoint})" in warning
    assert "of MARKETPLACE_REGISTER_TIMEOUT left" in warning


def test_the_wait_cut_to_the_deadline_announces_the_last_attempt(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With 10 s of budget and waits of 4 s: 6 s left, 2 s left, then the last attempt at the end.

    A fake clock (advanced by each wait) makes the schedule exact; the Event is never set.
    """
    from botocore.exceptions import EndpointConnectionError  # noqa: PLC0415

    now = [0.0]

    class AdvancingStop(threading.Event):
        """An Event whose wait advances the fake clock instead of sleeping."""

        def wait(self, timeout: float | None = None) -> bool:
            now[0] += timeout or 0.0
            return False

    def unreachable() -> dict[str, Any]:
        raise EndpointConnectionError(endpoint_url="http://127.0.0.1:9/")

    caplog.set_level(logging.INFO, logger="marketplace_entitlement")
    with pytest.raises(ServiceUnavailableError):
        call_with_retries(
            unreachable,
            timeout=10,
            stop=AdvancingStop(),
            delays=itertools.repeat(4.0),
            clock=lambda: now[0],
            endpoint="http://127.0.0.1:9",
        )
    warnings = [record.getMessage() for record in caplog.records]
    assert [w.split("; ", 1)[1] for w in warnings] == [
        "retrying in 4s, 6s of MARKETPLACE_REGISTER_TIMEOUT left",
        "retrying in 4s, 2s of MARKETPLACE_REGISTER_TIMEOUT left",
        "retrying in 2s, the last attempt at the end of MARKETPLACE_REGISTER_TIMEOUT",
        "MARKETPLACE_REGISTER_TIMEOUT used up",
    ]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(4.1, "4.1s"), (2.0, "2s"), (1671.2, "27m51s"), (3600, "1h"), (5400, "1h30m")],
)
def test_durations_read_as_the_settings_spell_them(seconds: float, text: str) -> None:
    """Time left is printed in the units the duration settings accept."""
    assert format_duration(seconds) == text


def test_missing_credentials_say_none_were_found_and_send_nothing(
    service: Emulator, aws_env: dict[str, str]
) -> None:
    """No credentials anywhere: exit 78 saying none were found and where botocore looked.

    No attempt is logged, and no request reaches the service.
    """
    env = {
        name: value
        for name, value in aws_env.items()
        if name not in {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
        and not name.startswith("AWS_CONTAINER_")
        and name not in {"AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"}
    }
    result = run_cli(env, "check")
    assert result.returncode == 78, result.stderr
    logged = events(result.stderr)
    assert not [e for e in logged if e.get("event") == "register_usage.attempt"]
    (refusal,) = [e for e in logged if e.get("event") == "entitlement.refused"]
    message = str(refusal["message"])
    assert "no AWS credentials found" in message
    assert "refused" not in message.split(";", maxsplit=1)[0]
    assert "no RegisterUsage request was sent" in message
    for source in ("AWS_ACCESS_KEY_ID", "~/.aws/credentials", "IRSA", "ECS", "instance metadata"):
        assert source in message
    assert service.requests("RegisterUsage") == []


def test_warn_is_accepted_as_a_log_level(service: Emulator, aws_env: dict[str, str]) -> None:
    """MARKETPLACE_LOG_LEVEL=warn means warning, as Python's logging spells it too."""
    assert load_settings(environ={**aws_env, _env.LOG_LEVEL: "WARN"}).log_level == "warning"
    result = run_cli({**aws_env, _env.LOG_LEVEL: "warn"}, "check")
    assert result.returncode == 0, result.stderr
    assert not [e for e in events(result.stderr) if e.get("level") == "info"]


def test_an_invalid_log_level_is_still_refused(aws_env: dict[str, str]) -> None:
    """A log level Python does not know is a configuration error naming the variable."""
    with pytest.raises(ConfigurationError) as caught:
        load_settings(environ={**aws_env, _env.LOG_LEVEL: "loud"})
    assert caught.value.variable == _env.LOG_LEVEL


def test_unknown_variable_is_warned_about_once_with_the_closest_name(
    service: Emulator, aws_env: dict[str, str]
) -> None:
    """A misspelt MARKETPLACE_* variable is named in one warning with the variable it resembles."""
    env = {**aws_env, "MARKETPLACE_REGISTER_TIMEOUTS": "5m"}
    result = run_cli(env, "check")
    assert result.returncode == 0, result.stderr
    warned = [e for e in events(result.stderr) if e.get("event") == "settings.unknown_variable"]
    assert len(warned) == 1
    assert warned[0]["variable"] == "MARKETPLACE_REGISTER_TIMEOUTS"
    assert warned[0]["closest"] == "MARKETPLACE_REGISTER_TIMEOUT"
    assert "did you mean MARKETPLACE_REGISTER_TIMEOUT?" in str(warned[0]["message"])


def test_every_setting_and_emulator_variable_is_known() -> None:
    """Variables in the settings table (whoever adds them) and the emulator's are never warned."""
    environ = {option.variable: "x" for option in OPTIONS}
    environ["MARKETPLACE_EMULATOR_PORT"] = "0"
    assert unknown_variables(environ) == []
    assert {option.variable for option in OPTIONS} <= known_variables()
    assert unknown_variables({"MARKETPLACE_ZZZ_UNRELATED": "1"}) == [
        ("MARKETPLACE_ZZZ_UNRELATED", None)
    ]


def test_partial_credentials_say_what_is_missing_and_send_nothing(
    service: Emulator, aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An access key id without its secret: a configuration error naming the gap, no request."""
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(ConfigurationError) as caught:
        Gate(load_settings(), retry_delays=short_delays).check()
    assert caught.value.exit_code == 78
    line = caught.value.refusal_line()
    assert "missing: AWS_SECRET_ACCESS_KEY" in line
    assert "set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or neither" in line
    assert service.requests("RegisterUsage") == []
