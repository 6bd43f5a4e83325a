"""The emulator's MeterUsage for custom metering: declared dimensions, the per-task hour rule.

Also the accepted records a test can read back.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import botocore.session
import pytest
from botocore.exceptions import ClientError

from marketplace_entitlement.emulator import Emulator
from marketplace_entitlement.emulator._cli import main as emulator_main


@pytest.fixture
def service() -> Iterator[Emulator]:
    """An emulator whose product declares two dimensions."""
    with Emulator(
        dimensions={"prod-m": ["requests", "users"]}, products={"prod-m": "entitled"}
    ) as emulator:
        yield emulator


def _client(service: Emulator, task: str) -> Any:
    return botocore.session.get_session().create_client(
        "meteringmarketplace", region_name="us-east-1", endpoint_url=service.endpoint,
        aws_access_key_id=task, aws_secret_access_key="secret",
    )  # fmt: skip


def _meter(client: Any, quantity: int, dimension: str = "requests") -> str:
    answer = client.meter_usage(
        ProductCode="prod-m", Timestamp=int(time.time()), UsageDimension=dimension,
        UsageQuantity=quantity,
    )  # fmt: skip
    return str(answer["MeteringRecordId"])


def test_hour_rule_is_kept_per_task_identity(service: Emulator) -> None:
    """MeterUsage's once-per-hour rule is per task: the SigV4 access key id stands in for it.

    One task gets the same record for an identical repeat and DuplicateRequestException for
    another quantity in the same hour; another task (other credentials) reports its own hour.
    """
    task_a, task_b = _client(service, "AKIDTASKA"), _client(service, "AKIDTASKB")
    first = _meter(task_a, 5)
    assert _meter(task_a, 5) == first
    with pytest.raises(ClientError) as caught:
        _meter(task_a, 6)
    assert caught.value.response["Error"]["Code"] == "DuplicateRequestException"
    assert _meter(task_b, 6) != first
    accepted = [(r["task"], r["quantity"]) for r in service.metered()]
    assert accepted == [("AKIDTASKA", "5"), ("AKIDTASKB", "6")]


def test_undeclared_dimension_is_refused(service: Emulator) -> None:
    """A dimension the product does not declare gets InvalidUsageDimensionException."""
    with pytest.raises(ClientError) as caught:
        _meter(_client(service, "AKIDTASKA"), 1, dimension="gigabytes")
    assert caught.value.response["Error"]["Code"] == "InvalidUsageDimensionException"
    assert service.metered() == []


def test_cli_dimensions_flag_is_checked(capsys: pytest.CaptureFixture[str]) -> None:
    """`emulator --dimensions` needs CODE=DIM,...; a malformed value is a usage error (64)."""
    assert emulator_main(["--dimensions", "prod-m"], environ={}) == 64
    assert "--dimensions" in capsys.readouterr().err
