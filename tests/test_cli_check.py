"""``marketplace-entitlement check`` as a user runs it: a real process against the emulator."""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from marketplace_entitlement.emulator import Emulator, TokenFactory
from tests.keys import JWT_IO_DEMO_PUBLIC_KEY_PEM

CLI = [sys.executable, "-m", "marketplace_entitlement"]


def run_check(
    env: dict[str, str], *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``check`` with ``env``; capture stdout and stderr as text."""
    return subprocess.run(
        [*CLI, "check", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def log_events(stderr: str) -> list[dict[str, object]]:
    """The JSON log events on stderr, one object per line."""
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def test_entitled_check_prints_one_json_object(service: Emulator, aws_env: dict[str, str]) -> None:
    """Entitled: exit 0, exactly one JSON object on stdout, JSON log events on stderr."""
    result = run_check(aws_env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    entitlement = json.loads(lines[0])
    assert entitlement["entitled"] is True
    assert entitlement["product_code"] == "prod-test123"
    assert entitlement["verified"] is True
    events = log_events(result.stderr)
    assert any(e.get("event") == "entitlement.granted" for e in events)
    assert any(e.get("event") == "register_usage.attempt" for e in events)


def test_text_log_format(service: Emulator, aws_env: dict[str, str]) -> None:
    """MARKETPLACE_LOG_FORMAT=text writes plain lines instead of JSON."""
    result = run_check({**aws_env, "MARKETPLACE_LOG_FORMAT": "text"})
    assert result.returncode == 0
    assert "marketplace-entitlement: info: entitled to prod-test123" in result.stderr
    assert not log_events(result.stderr)


def test_option_wins_over_environment(service: Emulator, aws_env: dict[str, str]) -> None:
    """--product-code on the command line beats MARKETPLACE_PRODUCT_CODE."""
    result = run_check(aws_env, "--product-code", "prod-from-option")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["product_code"] == "prod-from-option"


@pytest.mark.parametrize(
    ("setup", "exit_code", "phrase"),
    [
        ("not_entitled", 77, "no active subscription"),
        ("platform_not_supported", 77, "emulator"),
        ("unknown_product", 78, "MARKETPLACE_PRODUCT_CODE"),
        ("wrong_region", 78, "AWS_REGION"),
        ("disabled", 78, "Seller"),
        ("bad_token", 65, "nonce"),
    ],
)
def test_refusals_exit_with_the_contract_code_and_an_actionable_line(
    service: Emulator, aws_env: dict[str, str], setup: str, exit_code: int, phrase: str
) -> None:
    """Each refusal exits with CONTRACT.md's code and logs one line saying what to do."""
    if setup in ("not_entitled", "platform_not_supported"):
        service.set_product("prod-test123", setup)
    elif setup == "unknown_product":
        service.set_product("prod-test123", "invalid")
    elif setup == "wrong_region":
        service.set_region("eu-west-1")
    elif setup == "disabled":
        service.set_disabled_operations(["RegisterUsage"])
    else:
        service.set_token_factory(_replaying_factory())
    result = run_check(aws_env)
    assert result.returncode == exit_code, result.stderr
    assert result.stdout == ""
    (refusal,) = [e for e in log_events(result.stderr) if e.get("event") == "entitlement.refused"]
    assert refusal["exit_code"] == exit_code
    assert phrase in str(refusal["message"])


def _replaying_factory() -> TokenFactory:
    """A token factory answering a genuine token minted for another nonce (a replay)."""

    def factory(claims: dict[str, object], key: rsa.RSAPrivateKey) -> str:
        return jwt.encode({**claims, "nonce": "captured-earlier"}, key, algorithm="PS256")

    return factory


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MARKETPLACE_PRODUCT_CODE", "bad code!"),
        ("MARKETPLACE_REGISTER_TIMEOUT", "forever"),
        ("MARKETPLACE_REREGISTER_INTERVAL", "1d"),
        ("MARKETPLACE_VERIFY_SIGNATURE", "perhaps"),
        ("MARKETPLACE_PUBLIC_KEY_VERSION", "0"),
        ("MARKETPLACE_LOG_FORMAT", "yaml"),
    ],
)
def test_configuration_errors_exit_78_naming_the_variable(
    service: Emulator, aws_env: dict[str, str], variable: str, value: str
) -> None:
    """A bad setting exits 78, names the variable, and sends no request."""
    result = run_check({**aws_env, variable: value})
    assert result.returncode == 78
    assert variable in result.stderr
    assert service.requests() == []


def test_no_key_exits_78(service: Emulator, aws_env: dict[str, str]) -> None:
    """Verification on (the default) without a key: exit 78 and the variables to set."""
    env = {k: v for k, v in aws_env.items() if k != "MARKETPLACE_PUBLIC_KEY_FILE"}
    result = run_check(env)
    assert result.returncode == 78
    assert "MARKETPLACE_PUBLIC_KEY_FILE" in result.stderr
    assert service.requests() == []


def test_demo_key_exits_78_explaining_the_trap(
    service: Emulator, aws_env: dict[str, str], tmp_path: Path
) -> None:
    """The jwt.io demo key from AWS's sample is refused with 78 and the trap explained."""
    path = tmp_path / "demo.pem"
    path.write_bytes(JWT_IO_DEMO_PUBLIC_KEY_PEM)
    result = run_check({**aws_env, "MARKETPLACE_PUBLIC_KEY_FILE": str(path)})
    assert result.returncode == 78
    assert "jwt.io demo key" in result.stderr


def test_usage_error_exits_64(aws_env: dict[str, str]) -> None:
    """An unknown option is a usage error: exit 64."""
    result = run_check(aws_env, "--no-such-option")
    assert result.returncode == 64
    assert "unrecognized arguments" in result.stderr


def test_help_documents_each_option_with_variable_and_default(aws_env: dict[str, str]) -> None:
    """``check --help`` shows every setting's environment variable and default."""
    result = run_check(aws_env, "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for variable, default in [
        ("MARKETPLACE_PRODUCT_CODE", "required"),
        ("MARKETPLACE_PUBLIC_KEY_VERSION", "1"),
        ("MARKETPLACE_REGISTER_TIMEOUT", "30m"),
        ("MARKETPLACE_REREGISTER_INTERVAL", "1h"),
        ("MARKETPLACE_STATUS_FILE", "none"),
    ]:
        assert f"env {variable}; default {default}" in text


def test_throttling_is_retried_with_the_real_schedule(
    service: Emulator, aws_env: dict[str, str]
) -> None:
    """Two throttled answers, then success: exit 0 after three calls with one nonce."""
    service.inject_fault("RegisterUsage", "error", error="ThrottlingException", count=2)
    result = run_check(aws_env)
    assert result.returncode == 0, result.stderr
    requests = service.requests("RegisterUsage")
    assert [r.error_code for r in requests] == ["ThrottlingException", "ThrottlingException", None]
    assert len({r.body["Nonce"] for r in requests if r.body}) == 1


def test_budget_exhausted_exits_69_in_about_the_budget(
    service: Emulator, aws_env: dict[str, str]
) -> None:
    """Throttled throughout a 3 s register timeout: exit 69 after about 3 s, not much more."""
    service.inject_fault(
        "RegisterUsage", "error", error="InternalServiceErrorException", status=500
    )
    started = time.monotonic()
    result = run_check({**aws_env, "MARKETPLACE_REGISTER_TIMEOUT": "3s"})
    elapsed = time.monotonic() - started
    assert result.returncode == 69, result.stderr
    assert "InternalServiceErrorException" in result.stderr
    assert 3.0 <= elapsed < 3.0 + 10.0  # the budget, plus interpreter start-up and one request
    assert len(service.requests("RegisterUsage")) >= 2


def test_sigterm_during_retry_wait_ends_check_at_once(
    service: Emulator, aws_env: dict[str, str]
) -> None:
    """SIGTERM while waiting to retry ends ``check`` with 143, with no further request sent."""
    service.inject_fault("RegisterUsage", "error", error="ThrottlingException")
    process = subprocess.Popen(
        [*CLI, "check"], env=aws_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 30
    while not service.requests("RegisterUsage") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert service.requests("RegisterUsage"), "check never called RegisterUsage"
    time.sleep(0.2)  # now inside the first retry wait (at least 1.25 s long)
    sent_at = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    took = time.monotonic() - sent_at
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert len(service.requests("RegisterUsage")) == 1
    assert took < 1.0, f"check took {took:.2f}s to stop after SIGTERM"


def test_sigterm_during_a_hung_request_ends_check_at_once(
    service: Emulator, aws_env: dict[str, str]
) -> None:
    """SIGTERM while RegisterUsage hangs (a 30 s delay fault) ends ``check`` promptly with 143."""
    service.inject_fault("RegisterUsage", "delay", delay=30)
    process = subprocess.Popen(
        [*CLI, "check"], env=aws_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    # The emulator records a delayed request only once it answers, so give the process time to
    # start and send it (about a second here), then interrupt it mid-request.
    time.sleep(2.0)
    assert service.requests() == []  # nothing answered yet: the request is still hanging
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=8)  # far less than the 10 s read timeout or the 30 s delay
    assert process.returncode == 128 + signal.SIGTERM


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"AWS_REGION": "eu-west-3", "AWS_DEFAULT_REGION": "us-east-1"}, "eu-west-3"),
        ({"AWS_DEFAULT_REGION": "ap-northeast-1"}, "ap-northeast-1"),
    ],
)
def test_region_resolution_reaches_the_wire(
    service: Emulator, aws_env: dict[str, str], variables: dict[str, str], expected: str
) -> None:
    """The request is signed for AWS_REGION first (which botocore ignores), then AWS_DEFAULT_REGION."""
    env = {k: v for k, v in aws_env.items() if k not in ("AWS_REGION", "AWS_DEFAULT_REGION")}
    result = run_check({**env, **variables})
    assert result.returncode == 0, result.stderr
    (request,) = service.requests("RegisterUsage")
    assert request.region == expected


def test_no_region_anywhere_is_a_configuration_error(
    service: Emulator, aws_env: dict[str, str]
) -> None:
    """No region in the environment, config or platform: exit 78 naming AWS_REGION."""
    env = {k: v for k, v in aws_env.items() if k not in ("AWS_REGION", "AWS_DEFAULT_REGION")}
    result = run_check(env)
    assert result.returncode == 78
    assert "AWS_REGION" in result.stderr
    assert service.requests() == []


def test_status_file_written_by_check(
    service: Emulator, aws_env: dict[str, str], tmp_path: Path
) -> None:
    """``check`` with MARKETPLACE_STATUS_FILE records the entitled state there."""
    status = tmp_path / "status.json"
    result = run_check({**aws_env, "MARKETPLACE_STATUS_FILE": str(status)})
    assert result.returncode == 0
    state = json.loads(status.read_text())
    assert state["entitled"] is True
    assert state["state"] == "entitled"


def test_module_and_script_are_the_same_command(aws_env: dict[str, str]) -> None:
    """The console script and ``python -m marketplace_entitlement`` print the same version."""
    script = Path(sys.executable).parent / "marketplace-entitlement"
    by_script = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, check=False, env=os.environ
    )
    by_module = subprocess.run([*CLI, "--version"], capture_output=True, text=True, check=False)
    assert by_script.returncode == by_module.returncode == 0
    assert by_script.stdout == by_module.stdout
    assert "marketplace-entitlement" in by_script.stdout


class _TaskMetadata(http.server.BaseHTTPRequestHandler):
    """ECS task metadata v4 stand-in: answers ``/task`` with a task ARN in eu-north-1."""

    def do_GET(self) -> None:
        """Serve the task document (only ``TaskARN`` matters to the region fallback)."""
        body = json.dumps(
            {"TaskARN": "arn:aws:ecs:eu-north-1:123456789012:task/cluster/0123456789abcdef"}
        ).encode()
        status = 200 if self.path == "/v4/abc/task" else 404
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Stay quiet."""


def test_region_falls_back_to_ecs_task_metadata(service: Emulator, aws_env: dict[str, str]) -> None:
    """With no region variable or config, the region comes from the ECS task metadata's task ARN."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _TaskMetadata)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = {k: v for k, v in aws_env.items() if k not in ("AWS_REGION", "AWS_DEFAULT_REGION")}
        env["ECS_CONTAINER_METADATA_URI_V4"] = f"http://127.0.0.1:{server.server_port}/v4/abc"
        result = run_check(env)
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 0, result.stderr
    (request,) = service.requests("RegisterUsage")
    assert request.region == "eu-north-1"


def test_a_bad_option_value_is_reported_under_the_option(aws_env: dict[str, str]) -> None:
    """A bad value given as ``--verify-signature`` is reported under the option, not the variable.

    The variable is named only when the bad value came from the environment (exit 78 either way).
    """
    given = run_check(aws_env, "--verify-signature", "maybe")
    assert given.returncode == 78
    assert "--verify-signature='maybe' is not a boolean" in given.stderr
    assert "MARKETPLACE_VERIFY_SIGNATURE='maybe'" not in given.stderr
    from_env = run_check({**aws_env, "MARKETPLACE_VERIFY_SIGNATURE": "maybe"})
    assert from_env.returncode == 78
    assert "MARKETPLACE_VERIFY_SIGNATURE='maybe' is not a boolean" in from_env.stderr
    duration = run_check(aws_env, "--register-timeout", "soon")
    assert duration.returncode == 78
    assert "--register-timeout='soon' is not a duration" in duration.stderr


def test_probe_reports_a_bad_option_under_the_option_and_shows_defaults(tmp_path: Path) -> None:
    """``probe --status-max-age soon`` names the option; ``probe --help`` shows each default."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARKETPLACE_")}
    bad = subprocess.run(
        [*CLI, "probe", "--status-file", str(tmp_path / "s.json"), "--status-max-age", "soon"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert bad.returncode == 78
    assert "--status-max-age='soon' is not a duration" in bad.stderr
    shown = subprocess.run(
        [*CLI, "probe", "--help"], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    text = " ".join(shown.stdout.split())
    assert "[env MARKETPLACE_STATUS_FILE; default none" in text
    assert "[env MARKETPLACE_STATUS_MAX_AGE; default:" in text
