"""``marketplace-entitlement emulator``: the ready line, real calls, clean stops, options and env."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from marketplace_entitlement.emulator._cli import _resolve as resolve_options
from marketplace_entitlement.emulator._cli import build_emulator, build_parser, main


def outcome(client: Any, product_code: str) -> str:
    """Register ``product_code``: "ok" or the error code."""
    try:
        client.register_usage(ProductCode=product_code, PublicKeyVersion=1)
    except client.exceptions.ClientError as error:
        return str(error.response["Error"]["Code"])
    return "ok"


@pytest.fixture
def key_file(tmp_path: Path, metering_emulator_private_key: bytes) -> Path:
    """The session's private key in a PEM file, so the subprocess need not generate one."""
    path = tmp_path / "private.pem"
    path.write_bytes(metering_emulator_private_key)
    return path


@pytest.fixture
def run_emulator(key_file: Path) -> Iterator[Any]:
    """Start the CLI as a subprocess and answer (process, ready line); kill leftovers afterwards."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], Any]:
        command = [sys.executable, "-m", "marketplace_entitlement", "emulator", "--port", "0"]
        process = subprocess.Popen(
            [*command, "--private-key-file", str(key_file), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        started.append(process)
        assert process.stdout is not None
        return process, json.loads(process.stdout.readline())

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_ready_line_serves_botocore_and_stops_cleanly(
    run_emulator: Any, make_client: Any, signum: signal.Signals
) -> None:
    """The ready line names a working endpoint and key file; SIGTERM and SIGINT exit 0."""
    process, ready = run_emulator("--region", "us-west-2", "--claim-casing", "pascal")
    assert ready["endpoint"].startswith("http://127.0.0.1:")
    assert ready["control_url"] == ready["endpoint"] + "/_emulator"
    assert ready["region"] == "us-west-2"

    class Endpoint:
        endpoint = ready["endpoint"]

    client = make_client(Endpoint, region="us-west-2")
    token = client.register_usage(ProductCode="prod", PublicKeyVersion=1)["Signature"]
    public_key = Path(ready["public_key_file"]).read_bytes()
    assert jwt.decode(token, public_key, algorithms=["PS256"])["ProductCode"] == "prod"
    process.send_signal(signum)
    assert process.wait(timeout=30) == 0
    assert not Path(ready["public_key_file"]).exists()  # the temporary key dir is removed


def test_options_configure_products_faults_and_key_dir(
    run_emulator: Any, make_client: Any, tmp_path: Path
) -> None:
    """--product-code, --not-entitled, --fault and --key-dir shape what the emulator answers."""
    process, ready = run_emulator(
        "--product-code", "good", "--not-entitled", "bad",
        "--fault", "RegisterUsage:error=ThrottlingException:count=1",
        "--key-dir", str(tmp_path / "keys"),
    )  # fmt: skip

    class Endpoint:
        endpoint = ready["endpoint"]

    client = make_client(Endpoint)
    codes = [outcome(client, code) for code in ("good", "good", "bad", "other")]
    assert codes == [
        "ThrottlingException",
        "ok",
        "CustomerNotEntitledException",
        "CustomerNotEntitledException",  # not listed by --product-code: not entitled
    ]
    assert Path(ready["public_key_file"]).parent == tmp_path / "keys"
    process.terminate()
    assert process.wait(timeout=30) == 0
    assert Path(ready["public_key_file"]).exists()  # a given key dir is kept


def test_product_code_leaves_other_codes_not_entitled(run_emulator: Any, make_client: Any) -> None:
    """With --product-code prod-yes, registering prod-no answers CustomerNotEntitledException."""
    process, ready = run_emulator("--product-code", "prod-yes")

    class Endpoint:
        endpoint = ready["endpoint"]

    client = make_client(Endpoint)
    assert [outcome(client, code) for code in ("prod-yes", "prod-no")] == [
        "ok",
        "CustomerNotEntitledException",
    ]
    process.terminate()
    assert process.wait(timeout=30) == 0


def test_invalid_product_code_option_and_variable(run_emulator: Any, make_client: Any) -> None:
    """--invalid-product-code and its variable make codes answer InvalidProductCodeException."""
    process, ready = run_emulator(
        "--invalid-product-code", "prod-bad",
        env={"MARKETPLACE_EMULATOR_PRODUCT_CODES": "prod-yes"},
    )  # fmt: skip

    class Endpoint:
        endpoint = ready["endpoint"]

    client = make_client(Endpoint)
    assert [outcome(client, code) for code in ("prod-yes", "prod-bad", "prod-no")] == [
        "ok",
        "InvalidProductCodeException",
        "CustomerNotEntitledException",
    ]
    process.terminate()
    assert process.wait(timeout=30) == 0


def test_invalid_product_codes_variable_is_comma_separated() -> None:
    """MARKETPLACE_EMULATOR_INVALID_PRODUCT_CODES lists codes configured as invalid."""
    environ = {"MARKETPLACE_EMULATOR_INVALID_PRODUCT_CODES": "x, y"}
    values = resolve_options(build_parser().parse_args([]), environ)
    assert values["invalid_product_code"] == ["x", "y"]
    assert build_emulator(values).products() == {
        "x": {"status": "invalid", "dimensions": None},
        "y": {"status": "invalid", "dimensions": None},
    }


def test_environment_configures_when_no_option_is_given(run_emulator: Any) -> None:
    """MARKETPLACE_EMULATOR_* variables apply; an explicit option wins over them."""
    process, ready = run_emulator(
        "--region", "eu-north-1",
        env={"MARKETPLACE_EMULATOR_REGION": "us-east-2", "MARKETPLACE_EMULATOR_CLAIM_CASING": "pascal"},
    )  # fmt: skip
    assert ready["region"] == "eu-north-1"
    process.terminate()
    assert process.wait(timeout=30) == 0


@pytest.mark.parametrize(
    "argv",
    [
        ["--bogus"],
        ["--port", "70000"],
        ["--port", "x"],
        ["--claim-casing", "snake"],
        ["--rate-limit", "RegisterUsage"],
        ["--rate-limit", "Nope=3"],
        ["--fault", "RegisterUsage:explode"],
        ["--private-key-file", "/does/not/exist.pem"],
    ],
)
def test_bad_options_exit_64_with_a_message(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad options or values exit 64 and say what is wrong on stderr."""
    assert main(argv, environ={}) == 64
    assert "marketplace-entitlement emulator:" in capsys.readouterr().err


def test_bad_environment_value_exits_64(capsys: pytest.CaptureFixture[str]) -> None:
    """A bad value in a variable names the variable."""
    assert main([], environ={"MARKETPLACE_EMULATOR_CLAIM_CASING": "snake"}) == 64
    assert "MARKETPLACE_EMULATOR_CLAIM_CASING" in capsys.readouterr().err


def test_precedence_option_then_environment_then_default() -> None:
    """An explicit option wins over its variable, which wins over the default."""
    parser = build_parser()
    environ = {
        "MARKETPLACE_EMULATOR_REGION": "us-east-2",
        "MARKETPLACE_EMULATOR_PRODUCT_CODES": "a,b",
        "MARKETPLACE_EMULATOR_FAULTS": "MeterUsage:drop;RegisterUsage:error=X:count=1",
    }
    values = resolve_options(parser.parse_args(["--region", "eu-west-3"]), environ)
    assert values["region"] == "eu-west-3"
    assert values["product_code"] == ["a", "b"]
    assert values["fault"] == ["MeterUsage:drop", "RegisterUsage:error=X:count=1"]
    assert values["claim_casing"] == "camel"
    emulator = build_emulator(values)
    assert emulator.products() == {
        "a": {"status": "entitled", "dimensions": None},
        "b": {"status": "entitled", "dimensions": None},
    }
    assert len(emulator.faults()) == 2


def test_help_shows_every_variable_and_default(capsys: pytest.CaptureFixture[str]) -> None:
    """--help exits 0 and documents each option's environment variable and default."""
    assert main(["--help"], environ={}) == 0
    text = " ".join(capsys.readouterr().out.split())
    for name in (
        "HOST",
        "PORT",
        "PRODUCT_CODES",
        "INVALID_PRODUCT_CODES",
        "NOT_ENTITLED",
        "PLATFORM_NOT_SUPPORTED",
        "REGION",
        "CLAIM_CASING",
        "KEY_DIR",
        "FAULTS",
        "SEED",
    ):
        assert f"MARKETPLACE_EMULATOR_{name}" in text
    assert "default: 127.0.0.1" in text


@pytest.mark.parametrize(("host", "warned"), [("0.0.0.0", True), ("127.0.0.1", False)])
def test_a_non_loopback_host_is_warned_about(run_emulator: Any, host: str, warned: bool) -> None:
    """``--host 0.0.0.0`` serves the control API on every interface: one warning line on stderr."""
    process, ready = run_emulator("--host", host)
    assert ready["endpoint"].startswith(f"http://{host}:")
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0
    lines = [line for line in stderr.splitlines() if "not loopback" in line]
    assert len(lines) == (1 if warned else 0)
    if warned:
        assert lines[0].startswith(
            "marketplace-entitlement emulator: warning: listening on 0.0.0.0"
        )
        assert "control API" in lines[0]
