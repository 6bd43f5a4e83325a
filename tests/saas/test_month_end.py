"""The month-end cutoff under a shifted clock: libfaketime under both the package and the emulator.

The emulator and every ``marketplace-entitlement`` process run on one fake wall clock (from
2026-12-01 04:30 UTC, 600 times real time), so November's usage meets the 06:00 UTC cutoff on
December 1 within seconds of real time.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from tests.faketime import FakeClock, epoch, fake_clock

from marketplace_entitlement import SaasCustomer, UsageReporter

START = "2026-12-01 04:30:00"  # 80 fake minutes (8 s) of slack before the 10-minute margin
SPEED = 600.0
NOVEMBER_HOUR = epoch("2026-11-30 23:00:00")
CUTOFF = epoch("2026-12-01 06:00:00")
DECEMBER_HOUR = epoch("2026-12-01 06:00:00")

DIRECT_SEND = """
import json, os, sys
import botocore.session
from botocore.config import Config
client = botocore.session.get_session().create_client(
    "meteringmarketplace", region_name=os.environ["AWS_REGION"],
    config=Config(retries={"total_max_attempts": 1}))
try:
    client.batch_meter_usage(UsageRecords=[json.loads(sys.argv[1])])
except client.exceptions.ClientError as error:
    print(error.response["Error"]["Code"])
else:
    print("accepted")
"""


@pytest.fixture
def shifted(tmp_path: Path, saas_env: dict[str, str]) -> Iterator[tuple[FakeClock, dict[str, Any]]]:
    """The fake clock, and an emulator on it (its ready line: endpoint, control URL)."""
    with fake_clock(START, SPEED) as clock:
        emulator = subprocess.Popen(
            [sys.executable, "-m", "marketplace_entitlement", "emulator", "--port", "0"],
            env=clock.env(saas_env), stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert emulator.stdout is not None
            ready = json.loads(emulator.stdout.readline())
            yield clock, ready
        finally:
            emulator.terminate()
            emulator.wait(timeout=30)


def control(endpoint: str, method: str, path: str, body: object = None) -> Any:
    """Call the emulator's control API."""
    request = urllib.request.Request(  # noqa: S310  (a loopback URL built by the test)
        f"{endpoint}/_emulator/{path}",
        data=None if body is None else json.dumps(body).encode(),
        method=method,
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return json.loads(response.read() or b"null")


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a Python command line under ``env``."""
    return subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_november_usage_missing_the_cutoff_is_carried_into_december(
    shifted: tuple[FakeClock, dict[str, Any]], saas_env: dict[str, str], tmp_path: Path
) -> None:
    """Unsent at 06:00 UTC on the 1st (an outage): November's record is carried, sent in December.

    The emulator itself refuses a November record after the cutoff, though it is within 24 hours.
    """
    clock, ready = shifted
    endpoint = ready["endpoint"]
    made = control(
        endpoint, "POST", "customers", {"product_code": "saas-prod", "new_integration": True}
    )
    customer = SaasCustomer(
        "saas-prod", aws_account_id=made["aws_account_id"], license_arn=made["license_arn"]
    )
    store = f"sqlite:///{tmp_path}/usage.sqlite3"
    with UsageReporter(store, environ={}) as usage:
        usage.report(customer, "api_calls", 5, timestamp=NOVEMBER_HOUR + 600)
    env = clock.env(
        {
            **saas_env,
            "AWS_ENDPOINT_URL_MARKETPLACE_METERING": endpoint,
            "MARKETPLACE_USAGE_STORE": store,
        }
    )
    control(endpoint, "POST", "faults", {"operation": "BatchMeterUsage", "kind": "error",
                                         "error": "InternalServiceErrorException"})  # fmt: skip
    outage = run(["-m", "marketplace_entitlement", "usage", "send", "--retry-timeout", "0.5"], env)
    assert clock.now() < CUTOFF
    assert outage.returncode == 69, outage.stderr
    time.sleep(clock.real_seconds_until(CUTOFF + 60))
    control(endpoint, "DELETE", "faults")
    record = {
        "Timestamp": NOVEMBER_HOUR + 3599,
        **customer.identity(),
        "Dimension": "x",
        "Quantity": 1,
    }
    direct = run(["-c", DIRECT_SEND, json.dumps(record)], env)
    assert direct.stdout.strip() == "TimestampOutOfBoundsException", direct.stderr
    after = run(["-m", "marketplace_entitlement", "usage", "send"], env)
    assert after.returncode == 0, after.stderr
    assert json.loads(after.stdout)["carried"] == 1
    time.sleep(clock.real_seconds_until(DECEMBER_HOUR + 3600 + 60))
    december = run(["-m", "marketplace_entitlement", "usage", "send"], env)
    assert json.loads(december.stdout)["sent"] == 1, december.stderr
    accepted = control(endpoint, "GET", "batch-metered")
    assert [(a["timestamp"], Decimal(a["quantity"])) for a in accepted] == [
        (DECEMBER_HOUR, Decimal(5))
    ]
