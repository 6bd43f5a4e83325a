"""Hostile input, each refused cleanly with its documented exit code (never a traceback, 70 or a hang).

Tokens come from the emulator (a real server over loopback, signed with the session key by a token
factory), settings from real environments, files from the real filesystem.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from marketplace_entitlement import (
    ConfigurationError,
    EntitlementError,
    ServiceUnavailableError,
    VerificationError,
    check_entitlement,
    load_settings,
)
from marketplace_entitlement._status import StatusFile, probe
from marketplace_entitlement.emulator import Emulator
from marketplace_entitlement.entitlement._gate import Gate
from marketplace_entitlement.entitlement._reregister import Reregistration

CLI = [sys.executable, "-m", "marketplace_entitlement"]


def signed(payload: bytes, key: rsa.RSAPrivateKey, header: dict[str, Any] | None = None) -> str:
    """A PS256 JWS over ``payload`` exactly as given (raw bytes, so any JSON text can be sent)."""
    return jwt.api_jws.encode(payload, key, algorithm="PS256", headers=header)


def claims_text(claims: dict[str, object], **raw: str) -> bytes:
    """The claims as JSON, with ``raw`` members spliced in as literal JSON text (NaN, 1e400...)."""
    body = json.dumps(claims)[:-1]
    for name, text in raw.items():
        body += f', "{name}": {text}'
    return (body + "}").encode()


def nested(depth: int) -> str:
    """A JSON array nested ``depth`` deep."""
    return "[" * depth + "]" * depth


# --- tokens ------------------------------------------------------------------------------------


def test_deeply_nested_payload_is_malformed_not_a_crash(
    service: Emulator, aws_env: dict[str, str]
) -> None:
    """A signed payload whose JSON nests thousands deep is a MalformedTokenError (65), not 70."""
    service.set_token_factory(
        lambda claims, key: signed(claims_text(claims, deep=nested(5000)), key)
    )
    with pytest.raises(VerificationError, match="nested too deeply") as caught:
        check_entitlement()
    assert caught.value.exit_code == 65


def test_deeply_nested_header_is_malformed_not_a_crash(
    service: Emulator, aws_env: dict[str, str]
) -> None:
    """A header nested thousands deep is refused as a malformed token (65)."""
    import base64  # noqa: PLC0415

    header = base64.urlsafe_b64encode(('{"alg":"PS256","x":' + nested(5000) + "}").encode()).rstrip(
        b"="
    )
    service.set_token_factory(lambda claims, key: header.decode() + ".e30.AAAA")
    with pytest.raises(VerificationError) as caught:
        check_entitlement()
    assert caught.value.exit_code == 65


@pytest.mark.parametrize(("digits", "refused"), [(19, False), (20, True)])
def test_json_integers_longer_than_19_digits_are_refused_while_parsing(
    service: Emulator, aws_env: dict[str, str], digits: int, refused: bool
) -> None:
    """A validly signed token with a 20-digit integer anywhere is refused (65); 19 digits pass.

    The bound is on the JSON text, so no long number reaches int(), float() or a comparison.
    """
    number = "1" + "0" * (digits - 1)
    service.set_token_factory(lambda claims, key: signed(claims_text(claims, big=number), key))
    if refused:
        with pytest.raises(VerificationError, match="integer too long") as caught:
            check_entitlement()
        assert caught.value.exit_code == 65
    else:
        assert check_entitlement().verified


@pytest.mark.parametrize("iat", ["NaN", "Infinity", "-Infinity", "1e400", "1" + "0" * 400])
def test_iat_that_is_not_a_finite_number_is_refused(
    service: Emulator, aws_env: dict[str, str], iat: str
) -> None:
    """``iat`` NaN, Infinity or 10**400 in a validly signed token: refused with 65, no crash."""

    def factory(claims: dict[str, object], key: rsa.RSAPrivateKey) -> str:
        rest = {k: v for k, v in claims.items() if k != "iat"}
        return signed(claims_text(rest, iat=iat), key)

    service.set_token_factory(factory)
    with pytest.raises(VerificationError) as caught:
        check_entitlement()
    assert caught.value.exit_code == 65


@pytest.mark.parametrize(
    "version", ['"\u0661"', '"\uff11"', '"\u00b2"', '"' + "1" * 5000 + '"', "1" * 5000]
)
def test_key_version_claim_in_other_digits_or_huge_is_refused(
    service: Emulator, aws_env: dict[str, str], version: str
) -> None:
    """The publicKeyVersion claim as Arabic-Indic, full-width or superscript 1, or 5000 digits: 65."""

    def factory(claims: dict[str, object], key: rsa.RSAPrivateKey) -> str:
        rest = {k: v for k, v in claims.items() if k != "publicKeyVersion"}
        return signed(claims_text(rest, publicKeyVersion=version), key)

    service.set_token_factory(factory)
    with pytest.raises(VerificationError) as caught:
        check_entitlement()
    assert caught.value.exit_code == 65


def test_rotation_timestamp_beyond_any_date_is_a_service_fault_not_a_crash(
    service: Emulator, aws_env: dict[str, str]
) -> None:
    """A PublicKeyRotationTimestamp past year 9999 is an odd answer: retried, then 69 (not 70)."""
    service.expire_key(1, at=1e300)
    with pytest.raises(ServiceUnavailableError) as caught:
        check_entitlement(register_timeout="1s")
    assert caught.value.exit_code == 69


# --- settings ----------------------------------------------------------------------------------

BASE = {"MARKETPLACE_PRODUCT_CODE": "p", "MARKETPLACE_VERIFY_SIGNATURE": "false"}


@pytest.mark.parametrize("value", ["\u0661", "\uff11", "\u00b2", "1" * 5000, "2147483648"])
def test_key_version_variable_in_other_digits_or_huge_is_refused(value: str) -> None:
    """MARKETPLACE_PUBLIC_KEY_VERSION outside ASCII 1..2**31-1 is refused, naming the variable."""
    with pytest.raises(ConfigurationError) as caught:
        load_settings({**BASE, "MARKETPLACE_PUBLIC_KEY_VERSION": value})
    assert caught.value.variable == "MARKETPLACE_PUBLIC_KEY_VERSION"


@pytest.mark.parametrize(
    "variable",
    [
        "MARKETPLACE_REREGISTER_INTERVAL",
        "MARKETPLACE_REGISTER_TIMEOUT",
        "MARKETPLACE_STOP_GRACE_PERIOD",
        "MARKETPLACE_TERM_DELAY",
        "MARKETPLACE_STATUS_MAX_AGE",
    ],
)
@pytest.mark.parametrize("value", ["9" * 400, "9" * 30, "32d", "745h", "\u0661\u0662s"])
def test_durations_out_of_range_are_refused(variable: str, value: str) -> None:
    """A duration that overflows, exceeds 31 days or uses non-ASCII digits is refused, named."""
    with pytest.raises(ConfigurationError) as caught:
        load_settings({**BASE, variable: value})
    assert caught.value.variable == variable
    assert variable in caught.value.refusal_line()


def test_duration_given_in_code_is_bounded_too() -> None:
    """An explicit float (infinity) or huge int from code is refused like the variable."""
    for value in (float("inf"), float("nan"), 10**400):
        with pytest.raises(ConfigurationError, match="MARKETPLACE_REREGISTER_INTERVAL"):
            load_settings(BASE, reregister_interval=value)


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "huge", "directory"])
def test_key_file_must_be_a_small_regular_file(tmp_path: Path, kind: str) -> None:
    """/dev/zero, a FIFO (no writer: would hang), a 10 MiB file or a directory: refused (78)."""
    path = tmp_path / "key"
    if kind == "dev-zero":
        path = Path("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "huge":
        path.write_bytes(b"-----BEGIN PUBLIC KEY-----\n" + b"A" * (10 << 20))
    else:
        path.mkdir()
    with pytest.raises(ConfigurationError) as caught:
        load_settings({"MARKETPLACE_PRODUCT_CODE": "p", "MARKETPLACE_PUBLIC_KEY_FILE": str(path)})
    assert caught.value.variable == "MARKETPLACE_PUBLIC_KEY_FILE"
    assert caught.value.exit_code == 78


# --- a server that trickles ---------------------------------------------------------------------


def test_register_timeout_bounds_a_trickled_answer(
    service: Emulator, aws_env: dict[str, str]
) -> None:
    """An answer trickled a byte every 0.5 s (no read ever times out) ends at the budget: 69.

    Without a wall-clock bound the ~700-byte answer would take minutes (pytest's timeout).
    """
    service.add_fault("RegisterUsage:trickle=0.5")
    with pytest.raises(ServiceUnavailableError) as caught:
        check_entitlement(register_timeout="2s")
    assert caught.value.exit_code == 69
    assert caught.value.aws_error_code == "AttemptTimeoutError"


def collect_rounds(
    gate: Gate, interval: float, rounds: int
) -> tuple[list[EntitlementError], Reregistration]:
    """Run re-registration until ``rounds`` failures are reported; return them."""
    failures: list[EntitlementError] = []
    reported = threading.Event()

    def on_failure(error: EntitlementError) -> None:
        failures.append(error)
        if len(failures) >= rounds:
            reported.set()

    handle = Reregistration(gate, interval=interval, on_failure=on_failure).start()
    assert reported.wait(60), "no failure was reported"
    handle.stop()
    return failures, handle


def test_a_hung_reregistration_round_ends_and_counts_as_a_failure(
    service: Emulator, aws_env: dict[str, str]
) -> None:
    """A round whose answer trickles forever ends within its budget and is reported as a failure."""
    gate = Gate(load_settings(register_timeout="1s"))
    service.add_fault("RegisterUsage:trickle=5")
    failures, _ = collect_rounds(gate, interval=1.0, rounds=1)
    assert isinstance(failures[0], ServiceUnavailableError)
    assert failures[0].exit_code == 69


def test_a_nested_token_in_reregistration_is_a_verification_failure(
    service: Emulator, aws_env: dict[str, str], tmp_path: Path
) -> None:
    """A deeply nested token in a round is a verification failure (65), reported, not a crash.

    The round hands the failure to the policy callback; recording that failure marks the status
    file not entitled (``run`` does exactly this with its callback).
    """
    gate = Gate(load_settings())
    status = StatusFile(tmp_path / "status.json", product_code="p", max_age=None).create()
    status.record_success(registered_at=0.0, next_attempt=None)
    service.set_token_factory(
        lambda claims, key: signed(claims_text(claims, deep=nested(5000)), key)
    )
    failures, _ = collect_rounds(gate, interval=1.0, rounds=1)
    assert failures[0].exit_code == 65
    status.record_failure(failures[0], at=1.0, next_attempt=None)
    state = json.loads((tmp_path / "status.json").read_text())
    assert (state["state"], state["entitled"]) == ("not_entitled", False)


class ExplodingGate(Gate):
    """A gate whose check raises a non-EntitlementError.

    A stand-in (not the real gate) because every failure the real gate meets is now mapped to an
    EntitlementError; this proves the thread's outermost level still counts anything else.
    """

    def check(self, stop: threading.Event | None = None, *, timeout: float | None = None) -> Any:
        """Fail as a bug would."""
        raise RecursionError("maximum recursion depth exceeded")


def test_any_exception_in_a_round_is_a_counted_failure(aws_env: dict[str, str]) -> None:
    """An unexpected exception in a round reaches on_failure (policy, status file); the thread lives."""
    failures, handle = collect_rounds(ExplodingGate(load_settings()), interval=0.5, rounds=2)
    assert all(isinstance(error, ServiceUnavailableError) for error in failures)
    assert "RecursionError" in failures[0].message
    assert handle.rounds >= 2


# --- text logs, probe and status file ---------------------------------------------------------

FORGED = (
    "\nmarketplace-entitlement: info: entitled to prod-test123 (public key version 1, verified)"
)


def test_text_logs_escape_control_characters_from_the_service(
    service: Emulator, aws_env: dict[str, str]
) -> None:
    """A newline in a service error message cannot forge an ``entitled ... verified`` log line."""
    service.inject_fault(
        "RegisterUsage", "error", error="CustomerNotEntitledException", message=FORGED
    )
    result = subprocess.run(
        [*CLI, "check"],
        env={**aws_env, "MARKETPLACE_LOG_FORMAT": "text"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 77
    assert not any(
        line.startswith("marketplace-entitlement: info: entitled")
        for line in result.stderr.splitlines()
    )
    assert "\\nmarketplace-entitlement: info: entitled" in result.stderr


def test_probe_output_is_one_line_whatever_the_status_file_says(tmp_path: Path) -> None:
    """Control characters in the stored error message come out escaped, on one line."""
    path = tmp_path / "status.json"
    path.write_text(
        json.dumps(
            {
                "entitled": False,
                "state": "not_entitled",
                "last_error": {"message": FORGED + "\x1b[2J"},
            }
        )
    )
    result = subprocess.run(
        [*CLI, "probe", "--status-file", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1
    assert "\x1b" not in result.stderr
    assert "\\x1b[2J" in result.stderr


def test_probe_refuses_a_fifo_instead_of_hanging(tmp_path: Path) -> None:
    """A FIFO at the status path (nobody writing) is reported unreadable; the probe does not hang."""
    path = tmp_path / "status.json"
    os.mkfifo(path)
    result = probe(path)
    assert not result.healthy
    assert "not a regular file" in result.reason


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"{" + b" " * 100_000 + b"}", "larger than"), (b"not json", "")],
    ids=["huge", "not-json"],
)
def test_probe_refuses_a_huge_or_garbled_status_file(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    """A status file over the size bound, or not JSON, fails the probe with a reason, never a crash.

    The size refusal is bounded reading, not a parse of 100 kB, and says nothing about keys.
    """
    path = tmp_path / "status.json"
    path.write_bytes(content)
    result = probe(path)
    assert not result.healthy
    assert reason in result.reason
    assert "PEM" not in result.reason


def test_status_file_mode_is_set_through_the_descriptor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mode is set with fchmod on the new file, never chmod by path; it is 0644 under any umask.

    ``os.chmod`` is replaced by one that fails: a race on a path cannot be staged reliably, so the
    test proves instead that no path-based chmod happens at all.
    """

    def no_chmod(*args: object, **kwargs: object) -> None:
        raise AssertionError("chmod by path")

    monkeypatch.setattr(os, "chmod", no_chmod)
    previous = os.umask(0o077)
    try:
        StatusFile(tmp_path / "status.json", product_code="p", max_age=None).create()
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "status.json").stat().st_mode) == 0o644


def test_status_file_replaces_a_planted_symlink_instead_of_following_it(tmp_path: Path) -> None:
    """A symlink planted at the status path (shared /tmp) is replaced; its target is untouched."""
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / "status.json").symlink_to(victim)
    StatusFile(tmp_path / "status.json", product_code="p", max_age=None).create()
    assert victim.read_text() == "precious"
    assert not (tmp_path / "status.json").is_symlink()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".status-")] == []
