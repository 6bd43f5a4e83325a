"""SIGTERM sends the unfinished hour; a restart in the same task and hour repeats, never conflicts."""

from __future__ import annotations

import threading
from decimal import Decimal
from pathlib import Path

import pytest

from tests.faketime import FakeClock, epoch
from tests.metering.harness import (
    PYTHON,
    WORKLOAD,
    EmulatorProcess,
    RunProcess,
    base_env,
    emulator,
    metering_env,
    wait_for,
)


def _by_hour(service: EmulatorProcess) -> dict[tuple[str, str], Decimal]:
    return {
        (r["dimension"], f"{(r['hour'] % 86400) // 3600:02d}"): Decimal(r["quantity"])
        for r in service.metered()
    }


def _start(env: dict[str, str], ledger: Path, log: Path, *items: str) -> RunProcess:
    run = RunProcess(env, [PYTHON, WORKLOAD, "fixed", str(ledger), *items], log)
    wait_for(lambda: ledger.exists() and "ready" in ledger.read_text(), 60, "the workload")
    return run


@pytest.mark.clock("2026-12-01 10:40:00", 120)
def test_sigterm_sends_the_partial_hour_and_a_restart_repeats_identically(
    clock: FakeClock, tmp_path: Path, state_dir: Path
) -> None:
    """SIGTERM reports the hour so far; a restart in the same task and hour repeats, never conflicts.

    The hour so far is reported before `run` exits. A second container in the same task and hour
    sends the stored startup record again (identical, same record) instead of a conflicting
    one, and its usage of that already-reported hour is carried into the next hour, exactly.
    """
    env = clock.env(base_env(tmp_path))
    with emulator(env, tmp_path) as service:
        settings = metering_env(env, service.endpoint, state_dir)
        first = _start(
            settings, tmp_path / "ledger1", tmp_path / "run1.log", "requests=7", "gb_scanned=5"
        )
        first.terminate()
        assert first.wait(timeout=60) == 0
        sent = _by_hour(service)
        assert sent == {
            ("requests", "10"): 0,  # the startup record; its hour's 7 units go to 11:00
            ("gb_scanned", "10"): 5,
            ("users", "10"): 0,
        }

        second = _start(
            settings, tmp_path / "ledger2", tmp_path / "run2.log", "gb_scanned=4", "users=2"
        )
        threading.Event().wait(clock.real_seconds_until(epoch("2026-12-01 11:04:00")))
        second.terminate()
        assert second.wait(timeout=60) == 0
        assert service.meter_usage_errors() == []
        assert _by_hour(service) == {
            **sent,
            ("requests", "11"): 7,
            ("gb_scanned", "11"): 4,
            ("users", "11"): 2,
        }
        startup = [
            r["body"]
            for r in service.control("GET", "requests?operation=MeterUsage")
            if r["body"]["UsageDimension"] == "requests" and r["body"].get("UsageQuantity") == 0
        ]
        assert len(startup) == 2
        assert startup[0] == startup[1]  # byte-identical repeat: the same MeteringRecordId
