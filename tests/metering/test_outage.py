"""A service outage of several hours, then recovery: everything reported, late hours carried."""

from __future__ import annotations

import json
import threading
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
    wait_for,
)


def _at(clock: FakeClock, moment: str) -> None:
    threading.Event().wait(clock.real_seconds_until(epoch(f"2026-12-01 {moment}")))


@pytest.mark.clock("2026-12-01 10:30:00", 480)
def test_outage_longer_than_the_window_then_recovery(
    clock: FakeClock, tmp_path: Path, state_dir: Path
) -> None:
    """An outage longer than the 6-hour window loses nothing and counts nothing twice.

    Server errors for 5.5 hours, then dropped connections for 1.5, then recovery: every unit recorded is
    accepted once; hours that left the 6-hour window are carried into a later hour (none of them is
    accepted under its own hour); the status file and the log report the backlog meanwhile.
    """
    env = clock.env(base_env(tmp_path))
    ledger = tmp_path / "ledger"
    with emulator(env, tmp_path) as service:
        settings = metering_env(env, service.endpoint, state_dir)
        until = epoch("2026-12-01 18:20:00")
        run = RunProcess(
            settings,
            [PYTHON, WORKLOAD, "continuous", str(ledger), str(until)],
            tmp_path / "run.log",
        )
        wait_for(
            lambda: any(e.get("event") == "metering.started" for e in run.events()), 60, "the gate"
        )
        service.control(
            "POST", "faults", {"spec": "MeterUsage:error=InternalServiceErrorException"}
        )
        _at(clock, "16:00:00")
        status = json.loads((state_dir.parent / "status.json").read_text())
        assert status["metering"]["oldest_unsent_hour"] == "2026-12-01T10:00:00Z"
        assert status["metering"]["dimensions"]["gb_scanned"]["backlog"] > 0
        _at(clock, "16:30:00")
        service.control("DELETE", "faults")
        service.control("POST", "faults", {"spec": "MeterUsage:drop"})
        _at(clock, "18:00:00")
        service.control("DELETE", "faults")
        assert run.wait(timeout=120) == 0
        started, done = ledger_totals(ledger)
        totals = service.totals()
        for dimension in ("requests", "gb_scanned", "users"):
            assert done[dimension] <= totals[dimension] <= started[dimension], dimension
        assert service.meter_usage_errors() == []
        accepted_hours = {
            (r["hour"] % 86400) // 3600 for r in service.metered() if r["dimension"] == "gb_scanned"
        }
        assert accepted_hours.isdisjoint({10, 11})  # left the window: carried forward
        events = {e.get("event") for e in run.events()}
        assert {"metering.carried", "metering.backlog"} <= events
