"""kill -9 at random moments, during recording and during sending: nothing lost, nothing twice."""

from __future__ import annotations

import contextlib
import os
import random
import signal
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
)

# Fake moments (UTC, 2026-12-01) of each kill: inside hours, and just after the top of the hour,
# while the closed hour is being frozen and sent (the send window is 2 minutes).
KILLS = ["10:41", "11:00:20", "11:01:10", "11:25", "12:00:30", "12:01:40", "12:15"]


def _children(pid: int) -> list[int]:
    with contextlib.suppress(OSError):
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return []


@pytest.mark.clock("2026-12-01 10:30:00", 240)
def test_kill_9_then_restart_reports_everything_exactly_once(
    clock: FakeClock, tmp_path: Path, state_dir: Path
) -> None:
    """After kill -9 and restarts, the service holds every durable record once and nothing refused.

    Containers killed with SIGKILL (all processes, or only the recording one) and restarted on
    the same state directory in the same task: the emulator's totals lie between what the workload
    finished recording and what it started to, every MeterUsage was accepted (no
    DuplicateRequestException), and each dimension's hour was reported once.
    """
    rng = random.Random(10)
    env = clock.env(base_env(tmp_path))
    ledger = tmp_path / "ledger"
    with emulator(env, tmp_path) as service:
        settings = metering_env(env, service.endpoint, state_dir)
        for index, moment in enumerate(KILLS):
            run = RunProcess(
                settings, [PYTHON, WORKLOAD, "continuous", str(ledger)], tmp_path / "run.log"
            )
            at = epoch(f"2026-12-01 {moment}" + (":00" if moment.count(":") == 1 else ""))
            at += rng.uniform(0, 30)
            threading.Event().wait(clock.real_seconds_until(at))
            if index == 3:  # only the recording process dies; `run` exits with its status
                for child in _children(run.process.pid):
                    os.kill(child, signal.SIGKILL)
                assert run.wait(timeout=60) == 128 + signal.SIGKILL
            else:
                run.kill_container()
        until = epoch("2026-12-01 13:04:00")
        last = RunProcess(
            settings,
            [PYTHON, WORKLOAD, "continuous", str(ledger), str(until)],
            tmp_path / "run.log",
        )
        assert last.wait(timeout=120) == 0
        started, done = ledger_totals(ledger)
        totals = service.totals()
        for dimension in ("requests", "gb_scanned", "users"):
            assert done[dimension] <= totals[dimension] <= started[dimension], dimension
        assert sum(started.values()) - sum(done.values()) <= 4 * len(KILLS)  # the cut-short ones
        assert service.meter_usage_errors() == []
        keys = [(r["dimension"], r["hour"], r["task"]) for r in service.metered()]
        assert len(keys) == len(set(keys))
        hours = {r["hour"] for r in service.metered() if r["dimension"] == "gb_scanned"}
        assert {(h % 86400) // 3600 for h in hours} == {10, 11, 12, 13}
