"""Exact totals: thousands of concurrent records from threads, processes, HTTP and the CLI."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from tests.faketime import FakeClock, epoch
from tests.metering.harness import (
    PYTHON,
    WORKLOAD,
    RunProcess,
    base_env,
    emulator,
    ledger_totals,
    metering_env,
)


@pytest.mark.clock("2026-12-01 10:59:50", 10)
def test_concurrent_records_are_reported_exactly_once(
    clock: FakeClock, tmp_path: Path, state_dir: Path
) -> None:
    """Thousands of records at once under `run` are all reported, once, with exact totals.

    3,000 record_usage calls from 8 threads and 4 processes, 400 records over HTTP and 10 CLI calls:
    the emulator accepts exactly the recorded totals (the partial hour is sent when CMD exits), one
    record per dimension and hour, and no MeterUsage call is refused.
    """
    env = clock.env(base_env(tmp_path))
    ledger = tmp_path / "ledger"
    with emulator(env, tmp_path) as service:
        run = RunProcess(
            metering_env(env, service.endpoint, state_dir),
            [PYTHON, WORKLOAD, "burst", str(ledger), str(epoch("2026-12-01 11:00:05"))],
            tmp_path / "run.log",
        )
        assert run.wait(timeout=120) == 0, run.log.read_text()[-3000:]
        _, done = ledger_totals(ledger)
        assert done == {"requests": 3000, "gb_scanned": 1200, "users": 70}
        assert service.totals() == {name: Decimal(q) for name, q in done.items()}
        assert service.meter_usage_errors() == []
        hours = {(r["dimension"], r["hour"]) for r in service.metered()}
        assert len(hours) == len(service.metered())  # one record per dimension and hour
        assert {r["task"] for r in service.metered()} == {"AKIDTASK0001"}
