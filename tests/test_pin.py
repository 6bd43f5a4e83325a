"""Pinning: what the seller fixed in code or in the image wins, and contradictions are refused (78).

Image pins are tested on a copy of the installed package with a pin file written by the real
``pin`` command, run as an image would run it (``python -I``), against the emulator over loopback.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

import marketplace_entitlement
from marketplace_entitlement import (
    ConfigurationError,
    Settings,
    VerificationError,
    check_entitlement,
    require_entitlement,
    start_metering,
)
from marketplace_entitlement.emulator import Emulator
from marketplace_entitlement.entitlement._gate import Gate
from marketplace_entitlement.entitlement._pin import check_not_mounted_over
from tests.keys import JWT_IO_DEMO_PUBLIC_KEY_PEM, private_pem, public_pem
from tests.metering.harness import PRODUCT as METERED
from tests.metering.harness import base_env, metering_env

PRODUCT = "prod-test123"  # aws_env's product code


def install_copy(tmp_path: Path) -> Path:
    """A copy of the installed package under ``tmp_path/site`` (an image's site-packages)."""
    site = tmp_path / "site"
    shutil.copytree(
        Path(marketplace_entitlement.__file__).parent,
        site / "marketplace_entitlement",
        ignore=shutil.ignore_patterns("__pycache__", "pin.json"),
    )
    return site


def image_cli(site: Path) -> list[str]:
    """The command line of the copied package's CLI, isolated from PYTHON* variables."""
    launch = (
        f"import sys; sys.path.insert(0, {str(site)!r}); "
        "from marketplace_entitlement._cli import console_main; console_main()"
    )
    return [sys.executable, "-I", "-c", launch]


def run(
    command: list[str], env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``command``; capture text output."""
    return subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture
def pinned_site(tmp_path: Path, service: Emulator) -> Path:
    """A copied package whose pin file pins aws_env's product code and the emulator's key."""
    site = install_copy(tmp_path)
    key_file = tmp_path / "product-key.pem"
    key_file.write_bytes(service.public_key_pem(1))
    result = run(
        [
            *image_cli(site),
            "pin",
            "--product-code",
            PRODUCT,
            "--public-key-file",
            str(key_file),
        ],
        env=dict(os.environ),
    )
    assert result.returncode == 0, result.stderr
    assert (site / "marketplace_entitlement" / "pin.json").is_file()
    return site


def image_env(aws_env: dict[str, str], **changes: str) -> dict[str, str]:
    """aws_env without the settings a pinned image does not need, plus ``changes``."""
    env = {
        k: v
        for k, v in aws_env.items()
        if k not in ("MARKETPLACE_PRODUCT_CODE", "MARKETPLACE_PUBLIC_KEY_FILE")
    }
    return {**env, **changes}


def run_true(site: Path, env: dict[str, str], tmp_path: Path, *options: str) -> tuple[int, str]:
    """``run [options] -- touch MARKER``: the exit code and stderr; the marker says CMD ran."""
    marker = tmp_path / "cmd-ran"
    marker.unlink(missing_ok=True)
    result = run([*image_cli(site), "run", *options, "--", "touch", str(marker)], env)
    assert marker.exists() == (result.returncode == 0), result.stderr
    return result.returncode, result.stderr


# --- the image's pin file ------------------------------------------------------------------------


def test_pinned_image_runs_with_nothing_in_the_environment(
    pinned_site: Path, aws_env: dict[str, str], tmp_path: Path
) -> None:
    """With the product code and key pinned, `run` needs neither variable and starts CMD."""
    code, stderr = run_true(pinned_site, image_env(aws_env), tmp_path)
    assert code == 0, stderr


def test_pinned_image_refuses_verification_off(
    pinned_site: Path, aws_env: dict[str, str], tmp_path: Path
) -> None:
    """MARKETPLACE_VERIFY_SIGNATURE=false in a pinned image: 78, CMD not started, a line says so."""
    env = image_env(aws_env, MARKETPLACE_VERIFY_SIGNATURE="false")
    code, stderr = run_true(pinned_site, env, tmp_path)
    assert code == 78
    assert "refused MARKETPLACE_VERIFY_SIGNATURE=false" in stderr


def test_pinned_image_refuses_an_environment_key(
    pinned_site: Path, aws_env: dict[str, str], tmp_path: Path, other_rsa_key: rsa.RSAPrivateKey
) -> None:
    """MARKETPLACE_PUBLIC_KEY_FILE naming another key (the attacker's) is refused with 78."""
    attacker = tmp_path / "attacker.pem"
    attacker.write_bytes(public_pem(other_rsa_key))
    env = image_env(aws_env, MARKETPLACE_PUBLIC_KEY_FILE=str(attacker))
    code, stderr = run_true(pinned_site, env, tmp_path)
    assert code == 78
    assert "MARKETPLACE_PUBLIC_KEY_FILE" in stderr
    assert "another public key" in stderr


def test_pinned_image_accepts_the_environment_repeating_the_pin(
    pinned_site: Path, aws_env: dict[str, str], tmp_path: Path
) -> None:
    """The same product code and key in the environment are no contradiction."""
    code, stderr = run_true(pinned_site, aws_env, tmp_path)
    assert code == 0, stderr


@pytest.mark.parametrize("where", ["environment", "option"])
def test_pinned_image_refuses_another_product_code(
    pinned_site: Path, aws_env: dict[str, str], tmp_path: Path, where: str
) -> None:
    """Another product code, by variable or by `run --product-code` (the buyer's CMD): 78."""
    if where == "environment":
        code, stderr = run_true(
            pinned_site, image_env(aws_env, MARKETPLACE_PRODUCT_CODE="cheaper"), tmp_path
        )
    else:
        code, stderr = run_true(
            pinned_site, image_env(aws_env), tmp_path, "--product-code", "cheaper"
        )
    assert code == 78
    assert "refused MARKETPLACE_PRODUCT_CODE='cheaper'" in stderr


def test_pinned_image_refuses_a_token_from_a_forging_endpoint(
    pinned_site: Path, aws_env: dict[str, str], tmp_path: Path, other_rsa_key: rsa.RSAPrivateKey
) -> None:
    """An endpoint override to a server signing with its own key cannot pass the pinned key: 65."""
    with Emulator(keys={1: private_pem(other_rsa_key)}) as forger:
        env = image_env(aws_env, AWS_ENDPOINT_URL_MARKETPLACE_METERING=forger.endpoint)
        code, stderr = run_true(pinned_site, env, tmp_path)
    assert code == 65, stderr


def test_pin_command_refuses_the_demo_key(tmp_path: Path) -> None:
    """`pin` applies the runtime's key checks: the jwt.io demo key is refused (78), nothing written."""
    demo = tmp_path / "demo.pem"
    demo.write_bytes(JWT_IO_DEMO_PUBLIC_KEY_PEM)
    output = tmp_path / "pin.json"
    result = run(
        [
            sys.executable,
            "-m",
            "marketplace_entitlement",
            "pin",
            "--product-code",
            "p",
            "--public-key-file",
            str(demo),
            "--output",
            str(output),
        ],
        env=dict(os.environ),
    )
    assert result.returncode == 78
    assert "jwt.io demo key" in result.stderr
    assert not output.exists()


def test_pin_command_output_is_documented_json(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    """`pin --output` writes the format, product code, key version and PEM, readable by all."""
    key = tmp_path / "key.pem"
    key.write_bytes(public_pem(rsa_key))
    output = tmp_path / "out" / "pin.json"
    result = run(
        [
            sys.executable,
            "-m",
            "marketplace_entitlement",
            "pin",
            "--product-code",
            "p",
            "--public-key-file",
            str(key),
            "--public-key-version",
            "2",
            "--output",
            str(output),
        ],
        env=dict(os.environ),
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(output.read_text())
    assert document["format"] == "marketplace-entitlement-pin/1"
    assert (document["product_code"], document["public_key_version"]) == ("p", 2)
    assert document["public_key"].encode() == public_pem(rsa_key)
    assert output.stat().st_mode & 0o777 == 0o644


def test_mountinfo_mount_points_are_unescaped(tmp_path: Path) -> None:
    """A mount over the pin file's directory (octal-escaped space in mountinfo) is refused."""
    pin = tmp_path / "site packages" / "marketplace_entitlement" / "pin.json"
    mountinfo = tmp_path / "mountinfo"
    escaped = str(pin.parent).replace(" ", "\\040")
    mountinfo.write_text(
        f"22 1 8:1 / / rw - ext4 /dev/vda rw\n99 22 0:5 / {escaped} rw - tmpfs tmpfs rw\n"
    )
    with pytest.raises(ConfigurationError, match="volume is mounted over"):
        check_not_mounted_over(pin, str(mountinfo))
    mountinfo.write_text("22 1 8:1 / / rw - ext4 /dev/vda rw\n")
    check_not_mounted_over(pin, str(mountinfo))


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare"
)
def test_a_volume_over_the_pin_file_is_refused(
    pinned_site: Path, aws_env: dict[str, str], tmp_path: Path
) -> None:
    """A file bind-mounted over pin.json (the buyer's volume), in a private mount namespace: 78."""
    fake = tmp_path / "buyer-pin.json"
    fake.write_text("{}")
    pin = pinned_site / "marketplace_entitlement" / "pin.json"
    marker = tmp_path / "cmd-ran"
    script = 'mount --bind "$1" "$2" && shift 2 && exec "$@"'  # mount, then run the image's command
    command = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
        "sh",
        str(fake),
        str(pin),
        *image_cli(pinned_site),
        "run",
        "--",
        "touch",
        str(marker),
    ]
    result = run(command, image_env(aws_env))
    assert result.returncode == 78, result.stderr
    assert "volume is mounted over" in result.stderr
    assert not marker.exists()


# --- pins given in code ---------------------------------------------------------------------------


def test_key_in_code_cannot_be_switched_off_by_the_environment(
    service: Emulator, aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """check_entitlement(public_key=...) with MARKETPLACE_VERIFY_SIGNATURE=false: refused (78)."""
    monkeypatch.setenv("MARKETPLACE_VERIFY_SIGNATURE", "false")
    with pytest.raises(ConfigurationError) as caught:
        check_entitlement(public_key=service.public_key_pem(1))
    assert caught.value.exit_code == 78
    assert caught.value.variable == "MARKETPLACE_VERIFY_SIGNATURE"
    assert "the application's code pins it" in caught.value.message


def test_key_in_code_and_another_key_in_the_environment_is_refused(
    service: Emulator,
    aws_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    other_rsa_key: rsa.RSAPrivateKey,
) -> None:
    """An environment key file naming another key than the code's is refused, never preferred."""
    attacker = tmp_path / "attacker.pem"
    attacker.write_bytes(public_pem(other_rsa_key))
    monkeypatch.setenv("MARKETPLACE_PUBLIC_KEY_FILE", str(attacker))
    with pytest.raises(ConfigurationError, match="another public key"):
        check_entitlement(public_key=service.public_key_pem(1))


def test_product_code_in_code_and_another_in_the_environment_is_refused(
    service: Emulator, aws_env: dict[str, str]
) -> None:
    """A product code given in code is pinned: the environment's other code is refused (78)."""
    with pytest.raises(ConfigurationError, match="refused MARKETPLACE_PRODUCT_CODE"):
        check_entitlement(product_code="prod-other")


def test_key_in_code_with_verification_off_in_code_is_refused(
    service: Emulator, aws_env: dict[str, str]
) -> None:
    """Code passing a key and verify_signature=False contradicts itself: refused."""
    with pytest.raises(ConfigurationError, match="cannot be turned off"):
        check_entitlement(public_key=service.public_key_pem(1), verify_signature=False)


def test_key_in_code_verifies(service: Emulator, aws_env: dict[str, str]) -> None:
    """With the key in code and the same key in the environment, the check passes, verified."""
    entitlement = check_entitlement(public_key=service.public_key_pem(1), product_code=PRODUCT)
    assert entitlement.verified


def test_require_entitlement_refuses_an_unverified_result(
    service: Emulator, aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Verification off (nothing pinned): require_entitlement exits 78 unless the code allows it."""
    monkeypatch.setenv("MARKETPLACE_VERIFY_SIGNATURE", "false")
    with pytest.raises(SystemExit) as exited:
        require_entitlement()
    assert exited.value.code == 78
    assert not require_entitlement(allow_unverified=True).verified


def test_missing_key_fails_closed_even_for_hand_built_settings(
    service: Emulator, aws_env: dict[str, str]
) -> None:
    """Settings built by hand with verification on and no key: the gate refuses (78), never skips."""
    gate = Gate(Settings(product_code=PRODUCT, verify_signature=True, public_key=None))
    with pytest.raises(ConfigurationError) as caught:
        gate.check()
    assert caught.value.exit_code == 78


def test_wrong_key_in_code_is_a_verification_failure(
    service: Emulator,
    aws_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    other_rsa_key: rsa.RSAPrivateKey,
) -> None:
    """A key in code that did not sign the token: 65, with no environment key to fall back on."""
    monkeypatch.delenv("MARKETPLACE_PUBLIC_KEY_FILE")
    with pytest.raises(VerificationError):
        check_entitlement(public_key=other_rsa_key.public_key())


# --- custom pricing: pricing and dimensions pinned, no key needed ---------------------------------

METERED_DIMENSIONS = ("requests", "gb_scanned", "users")


@pytest.fixture
def metered_service() -> Iterator[Emulator]:
    """An in-process emulator that knows the metered product's dimensions (MeterUsage unthrottled)."""
    with Emulator(
        products={METERED: "entitled"}, dimensions={METERED: list(METERED_DIMENSIONS)},
        rate_limits={"MeterUsage": None},
    ) as emulator:  # fmt: skip
        yield emulator


def pin_command(site: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """The copied package's `pin` with ``options`` (as a Dockerfile's RUN line would run it)."""
    return run([*image_cli(site), "pin", *options], env=dict(os.environ))


@pytest.fixture
def custom_site(tmp_path: Path) -> Path:
    """A copied package pinned to custom pricing, its product code and dimensions, with no key."""
    site = install_copy(tmp_path)
    result = pin_command(
        site, "--product-code", METERED, "--pricing", "custom",
        "--dimensions", ",".join(METERED_DIMENSIONS),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return site


def custom_image_env(endpoint: str, tmp_path: Path, **changes: str) -> dict[str, str]:
    """The buyer's environment for a custom-pinned image: no product code, pricing or dimensions."""
    env = metering_env(base_env(tmp_path), endpoint, tmp_path / "state")
    for name in ("MARKETPLACE_PRODUCT_CODE", "MARKETPLACE_PRICING", "MARKETPLACE_DIMENSIONS"):
        del env[name]
    return {**env, **changes}


def check_image(site: Path, env: dict[str, str], *options: str) -> subprocess.CompletedProcess[str]:
    """`check [options]` of the copied package."""
    return run([*image_cli(site), "check", *options], env)


def test_pin_custom_product_without_a_key(custom_site: Path) -> None:
    """`pin --pricing custom --dimensions ...` needs no key and writes pricing and dimensions."""
    document = json.loads((custom_site / "marketplace_entitlement" / "pin.json").read_text())
    assert document["format"] == "marketplace-entitlement-pin/1"
    assert (document["product_code"], document["pricing"]) == (METERED, "custom")
    assert document["dimensions"] == list(METERED_DIMENSIONS)
    assert document["public_key"] is None


def test_custom_pin_alone_meters_at_startup(
    custom_site: Path, metered_service: Emulator, tmp_path: Path
) -> None:
    """`check` with pricing, dimensions and product code from the pin only: MeterUsage, exit 0."""
    result = check_image(custom_site, custom_image_env(metered_service.endpoint, tmp_path))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["pricing"] == "custom"
    (accepted,) = metered_service.metered()
    assert (accepted["dimension"], accepted["quantity"]) == ("requests", "0")
    assert metered_service.requests("RegisterUsage") == []


@pytest.mark.parametrize("where", ["environment", "option"])
def test_custom_pin_refuses_hourly_pricing(
    custom_site: Path, metered_service: Emulator, tmp_path: Path, where: str
) -> None:
    """Hourly pricing against a custom pin (variable or `check --pricing`): 78, nothing called."""
    env = custom_image_env(metered_service.endpoint, tmp_path)
    if where == "environment":
        result = check_image(custom_site, {**env, "MARKETPLACE_PRICING": "hourly"})
    else:
        result = check_image(custom_site, env, "--pricing", "hourly")
    assert result.returncode == 78, result.stderr
    assert "refused MARKETPLACE_PRICING='hourly' (pinned: 'custom'): the image's pin file" in (
        result.stderr
    )
    assert metered_service.requests("MeterUsage") == []
    assert metered_service.requests("RegisterUsage") == []


@pytest.mark.parametrize("dimensions", ["requests", "requests,gb_scanned,users,storage"])
def test_custom_pin_refuses_other_dimensions(
    custom_site: Path, metered_service: Emulator, tmp_path: Path, dimensions: str
) -> None:
    """MARKETPLACE_DIMENSIONS naming another set than the pin's (fewer or more): 78, a line says so."""
    env = custom_image_env(metered_service.endpoint, tmp_path, MARKETPLACE_DIMENSIONS=dimensions)
    result = check_image(custom_site, env)
    assert result.returncode == 78, result.stderr
    assert f"refused MARKETPLACE_DIMENSIONS={dimensions!r}" in result.stderr
    assert "the image's pin file" in result.stderr
    assert metered_service.requests("MeterUsage") == []


@pytest.mark.parametrize("where", ["environment", "option"])
def test_custom_pin_accepts_the_same_values_repeated(
    custom_site: Path, metered_service: Emulator, tmp_path: Path, where: str
) -> None:
    """Repeating the pinned pricing, product code and dimensions (in another order) is accepted."""
    env = custom_image_env(metered_service.endpoint, tmp_path)
    same = {"pricing": "custom", "dimensions": "users,requests,gb_scanned", "product_code": METERED}
    if where == "environment":
        env.update({f"MARKETPLACE_{name.upper()}": value for name, value in same.items()})
        result = check_image(custom_site, env)
    else:
        options = [
            part for name, value in same.items() for part in (f"--{name.replace('_', '-')}", value)
        ]
        result = check_image(custom_site, env, *options)
    assert result.returncode == 0, result.stderr
    (accepted,) = metered_service.metered()
    assert accepted["dimension"] == "requests"  # the pinned order decides the startup record


def test_old_format_pin_file_still_works(
    tmp_path: Path, service: Emulator, aws_env: dict[str, str]
) -> None:
    """A pin file written before pricing could be pinned (no pricing, dimensions): hourly, exit 0."""
    site = install_copy(tmp_path)
    old = {
        "format": "marketplace-entitlement-pin/1",
        "product_code": PRODUCT,
        "public_key_version": None,
        "public_key": service.public_key_pem(1).decode("ascii"),
    }
    (site / "marketplace_entitlement" / "pin.json").write_text(json.dumps(old))
    result = check_image(site, image_env(aws_env))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["verified"] is True
    assert len(service.requests("RegisterUsage")) == 1


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--pricing", "daily", "--dimensions", "requests"], "--pricing='daily' is not one of"),
        (["--pricing", "custom", "--dimensions", "requests,,users"], "--dimensions='requests,,users'"),
        (["--pricing", "custom", "--dimensions", "a,a"], "--dimensions names a more than once"),
        (["--pricing", "custom"], "--pricing custom needs --dimensions"),
        (["--dimensions", "requests"], "--dimensions needs --pricing custom"),
        ([], "--public-key-file is required for --pricing hourly"),
        (["--pricing", "custom", "--dimensions", "requests", "--public-key-file", "DEMO"],
         "jwt.io demo key"),
    ],
)  # fmt: skip
def test_pin_command_refuses_bad_pricing_options(
    tmp_path: Path, options: list[str], named: str
) -> None:
    """Bad --pricing/--dimensions (or a missing or demo key where one applies): 78, option named."""
    demo = tmp_path / "demo.pem"
    demo.write_bytes(JWT_IO_DEMO_PUBLIC_KEY_PEM)
    output = tmp_path / "pin.json"
    options = [str(demo) if option == "DEMO" else option for option in options]
    result = run(
        [sys.executable, "-m", "marketplace_entitlement", "pin", "--product-code", METERED,
         *options, "--output", str(output)],
        env=dict(os.environ),
    )  # fmt: skip
    assert result.returncode == 78, result.stderr
    assert named in result.stderr
    assert not output.exists()


def test_pricing_and_dimensions_in_code_are_pinned(
    metered_service: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """check_entitlement/start_metering(pricing=, dimensions=): the environment may not contradict.

    The same values in the environment are accepted (check_entitlement meters, exit 0 path);
    hourly pricing or another dimension set in the environment is refused naming the variable.
    """
    env = metering_env(base_env(tmp_path), metered_service.endpoint, tmp_path / "state")
    for name in [n for n in os.environ if n.startswith(("MARKETPLACE_", "AWS_"))]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    pinned: dict[str, Any] = {"pricing": "custom", "dimensions": list(METERED_DIMENSIONS)}
    assert check_entitlement(**pinned).verified is False  # MeterUsage returns no token
    assert len(metered_service.metered()) == 1
    monkeypatch.setenv("MARKETPLACE_PRICING", "hourly")
    with pytest.raises(ConfigurationError) as caught:
        check_entitlement(**pinned)
    assert caught.value.variable == "MARKETPLACE_PRICING"
    assert "the application's code pins it" in caught.value.message
    monkeypatch.setenv("MARKETPLACE_PRICING", "custom")
    monkeypatch.setenv("MARKETPLACE_DIMENSIONS", "requests")
    with pytest.raises(ConfigurationError, match="refused MARKETPLACE_DIMENSIONS='requests'"):
        start_metering(**pinned)


def test_record_outside_run_uses_the_pinned_dimensions(custom_site: Path, tmp_path: Path) -> None:
    """`record` without MARKETPLACE_DIMENSIONS in a custom-pinned image checks the pinned names.

    A pinned dimension is recorded (0); one the pin does not declare is refused as a bad record (64).
    """
    env = {**base_env(tmp_path), "MARKETPLACE_METERING_STATE_DIR": str(tmp_path / "state")}
    record = [*image_cli(custom_site), "record"]
    pinned = run([*record, "gb_scanned", "3"], env)
    assert pinned.returncode == 0, pinned.stderr
    undeclared = run([*record, "storage", "3"], env)
    assert undeclared.returncode == 64, undeclared.stderr
    assert "not declared" in undeclared.stderr


def test_hourly_pin_refuses_custom_pricing(
    pinned_site: Path, aws_env: dict[str, str], tmp_path: Path, service: Emulator
) -> None:
    """`pin` without --pricing pins hourly: MARKETPLACE_PRICING=custom is refused (78), CMD not run."""
    document = json.loads((pinned_site / "marketplace_entitlement" / "pin.json").read_text())
    assert (document["pricing"], document["dimensions"]) == ("hourly", None)
    env = image_env(aws_env, MARKETPLACE_PRICING="custom", MARKETPLACE_DIMENSIONS="requests")
    code, stderr = run_true(pinned_site, env, tmp_path)
    assert code == 78
    assert "refused MARKETPLACE_PRICING='custom' (pinned: 'hourly')" in stderr
    assert service.requests("RegisterUsage") == []


def test_pin_command_errors_carry_the_program_prefix(tmp_path: Path) -> None:
    """A refused `pin` option is one `marketplace-entitlement: ...` line on stderr, exit 78."""
    output = tmp_path / "pin.json"
    result = run(
        [sys.executable, "-m", "marketplace_entitlement", "pin", "--product-code", "p",
         "--public-key-version", "0", "--output", str(output)],
        env=dict(os.environ),
    )  # fmt: skip
    assert result.returncode == 78
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("marketplace-entitlement: --public-key-version='0' is not a whole")
    assert not output.exists()
