"""Custom pricing's startup gate: a real MeterUsage call, with the hourly gate's exit codes."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from marketplace_entitlement import start_metering
from marketplace_entitlement.emulator import Emulator
from tests.metering.harness import PRODUCT, PYTHON, base_env, metering_env

DIMENSIONS = ["requests", "gb_scanned", "users"]


@pytest.fixture
def metered_service() -> Iterator[Emulator]:
    """An in-process emulator that knows the test product's dimensions."""
    with Emulator(
        products={PRODUCT: "entitled"}, dimensions={PRODUCT: DIMENSIONS},
        rate_limits={"MeterUsage": None},
    ) as emulator:  # fmt: skip
        yield emulator


def _check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "marketplace_entitlement", "check"],
        env=env, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip


def test_check_in_custom_pricing_sends_the_startup_record(
    metered_service: Emulator, tmp_path: Path
) -> None:
    """`check` in custom pricing sends the startup MeterUsage; a second one repeats it identically.

    `check` with MARKETPLACE_PRICING=custom calls MeterUsage (a zero for the first dimension)
    and prints the entitlement with the MeteringRecordId; a second `check` on the same state
    directory in the same hour repeats that record instead of conflicting with it.
    """
    env = metering_env(base_env(tmp_path), metered_service.endpoint, tmp_path / "state")
    first = _check(env)
    assert first.returncode == 0, first.stderr
    printed = json.loads(first.stdout)
    assert printed["pricing"] == "custom"
    assert printed["dimension"] == "requests"
    second = _check(env)
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["metering_record_id"] == printed["metering_record_id"]
    (accepted,) = metered_service.metered()
    assert (accepted["dimension"], accepted["quantity"]) == ("requests", "0")
    assert accepted["metering_record_id"] == printed["metering_record_id"]
    assert [r.error_code for r in metered_service.requests("MeterUsage")] == [None, None]


def test_require_entitlement_in_custom_pricing_starts_the_app(
    metered_service: Emulator, tmp_path: Path
) -> None:
    """``require_entitlement()`` in custom pricing returns once the startup MeterUsage is accepted.

    There is no token to verify in custom pricing, so the application is not refused as
    "unverified" (which it was, with 78) and needs no ``allow_unverified``.
    """
    env = metering_env(base_env(tmp_path), metered_service.endpoint, tmp_path / "state")
    script = (
        "from marketplace_entitlement import require_entitlement\n"
        "entitlement = require_entitlement()\n"
        "print(type(entitlement).__name__, entitlement.metering_record_id)\n"
    )
    result = subprocess.run(
        [PYTHON, "-c", script], env=env, capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, result.stderr
    name, record_id = result.stdout.split()
    assert name == "MeteringEntitlement"
    (accepted,) = metered_service.metered()
    assert accepted["metering_record_id"] == record_id


@pytest.mark.parametrize(
    ("change", "code", "message"),
    [
        ({"MARKETPLACE_DIMENSIONS": "bogus,requests"}, 78, "InvalidUsageDimensionException"),
        ({"MARKETPLACE_PRODUCT_CODE": "prod-other"}, 78, "InvalidProductCodeException"),
        ({"AWS_REGION": "eu-west-1"}, 78, "InvalidEndpointRegionException"),
        ({"MARKETPLACE_PRODUCT_CODE": "prod-unpaid"}, 77, "CustomerNotEntitledException"),
        ({"MARKETPLACE_REGISTER_TIMEOUT": "1s", "THROTTLE": "1"}, 69, "MeterUsage kept failing"),
    ],
)
def test_startup_refusals_exit_with_the_gate_codes(
    metered_service: Emulator, tmp_path: Path, change: dict[str, str], code: int, message: str
) -> None:
    """Each refusal of the startup MeterUsage exits with its documented code and one clear line."""
    metered_service.set_product("prod-unpaid", "not_entitled")
    metered_service.set_region("us-east-1")
    if change.pop("THROTTLE", None):
        metered_service.inject_fault("MeterUsage", "error", error="ThrottlingException")
    env = {
        **metering_env(base_env(tmp_path), metered_service.endpoint, tmp_path / "state"),
        **change,
    }
    result = _check(env)
    assert result.returncode == code
    assert message in result.stderr
    assert result.stdout == ""
    if code == 78 and "Dimension" in message:
        assert "MARKETPLACE_DIMENSIONS" in result.stderr


def test_import_api_gate_refuses_without_custom_pricing(tmp_path: Path) -> None:
    """start_metering is for custom pricing only, and says so naming the variable."""
    from marketplace_entitlement import ConfigurationError  # noqa: PLC0415

    with pytest.raises(ConfigurationError, match="MARKETPLACE_PRICING=custom") as caught:
        start_metering(
            environ={"MARKETPLACE_PRODUCT_CODE": PRODUCT, "MARKETPLACE_VERIFY_SIGNATURE": "false"}
        )
    assert caught.value.variable == "MARKETPLACE_PRICING"
