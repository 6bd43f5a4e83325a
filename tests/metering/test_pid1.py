"""Custom metering with `run` as a real PID 1 (a new PID namespace): a container's stop and its crash.

The other metering tests start `run` in a session of its own; these run it exactly as a container
runtime does, as PID 1 of its own PID namespace, where a SIGKILL of PID 1 takes every process of
the container with it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest

from tests.faketime import FakeClock
from tests.metering.harness import (
    PYTHON,
    WORKLOAD,
    EmulatorProcess,
    base_env,
    emulator,
    metering_env,
    wait_for,
)

UNSHARE = shutil.which("unshare")

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or UNSHARE is None,
    reason="PID 1 tests need root and unshare(1) to create a PID namespace",
)


class Container:
    """``run -- workload.py fixed ...`` as PID 1 of a new PID namespace, logging to a file."""

    def __init__(self, env: dict[str, str], ledger: Path, log: Path, *items: str) -> None:
        assert UNSHARE is not None
        self.ledger = ledger
        self._log = log.open("ab")
        # --kill-child: when unshare dies, PID 1 gets SIGKILL, and with it the whole namespace.
        self.process = subprocess.Popen(
            [UNSHARE, "--pid", "--fork", "--mount-proc", "--kill-child", PYTHON, "-m",
             "marketplace_entitlement", "run", "--", PYTHON, WORKLOAD, "fixed", str(ledger),
             *items],
            env=env, stdout=self._log, stderr=self._log,
        )  # fmt: skip
        wait_for(lambda: ledger.exists() and "ready" in ledger.read_text(), 60, "the workload")

    def pid1(self) -> int:
        """The host pid of the namespace's PID 1 (`run`): unshare's only child."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return int(children.read_text().split()[0])

    def stop(self) -> int:
        """SIGTERM to PID 1, as the orchestrator stops a task; `run`'s exit status."""
        os.kill(self.pid1(), signal.SIGTERM)
        return self._wait()

    def crash(self) -> None:
        """SIGKILL of the container: PID 1 and every process in its namespace die at once."""
        self.process.kill()
        self._wait()

    def _wait(self) -> int:
        try:
            return self.process.wait(timeout=60)
        finally:
            self._log.close()
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()


def by_hour(service: EmulatorProcess) -> dict[tuple[str, str], Decimal]:
    """Accepted quantity per (dimension, hour of day)."""
    return {
        (r["dimension"], f"{(r['hour'] % 86400) // 3600:02d}"): Decimal(r["quantity"])
        for r in service.metered()
    }


@pytest.mark.clock("2026-12-01 10:40:00", 10)
def test_as_pid1_sigterm_reports_the_unfinished_hour(
    clock: FakeClock, tmp_path: Path, state_dir: Path
) -> None:
    """As PID 1, SIGTERM makes `run` report the hour so far before it exits with CMD's status."""
    env = clock.env(base_env(tmp_path))
    with emulator(env, tmp_path) as service:
        settings = metering_env(env, service.endpoint, state_dir)
        container = Container(
            settings, tmp_path / "ledger", tmp_path / "run.log", "requests=7", "gb_scanned=5"
        )
        assert container.stop() == 0  # the workload exits 0 on the forwarded SIGTERM
        assert service.meter_usage_errors() == []
        assert by_hour(service) == {
            ("requests", "10"): 0,  # the startup record; this hour's 7 units go to 11:00
            ("gb_scanned", "10"): 5,
            ("users", "10"): 0,
        }


@pytest.mark.clock("2026-12-01 10:40:00", 10)
def test_as_pid1_a_killed_container_restarted_in_the_same_task_loses_and_repeats_nothing(
    clock: FakeClock, tmp_path: Path, state_dir: Path
) -> None:
    """SIGKILL of the whole container, then a restart on the task's volume in the same hour.

    The usage the first container recorded (durable before it was killed) is reported by the
    second one; the startup record is sent again byte for byte and accepted as the same record,
    so the service never answers DuplicateRequestException.
    """
    env = clock.env(base_env(tmp_path))
    with emulator(env, tmp_path) as service:
        settings = metering_env(env, service.endpoint, state_dir)
        Container(settings, tmp_path / "ledger1", tmp_path / "run1.log", "gb_scanned=5").crash()
        second = Container(settings, tmp_path / "ledger2", tmp_path / "run2.log", "users=2")
        assert second.stop() == 0
        assert service.meter_usage_errors() == []
        assert by_hour(service) == {
            ("requests", "10"): 0,
            ("gb_scanned", "10"): 5,
            ("users", "10"): 2,
        }
        startup = [
            r["body"]
            for r in service.control("GET", "requests?operation=MeterUsage")
            if r["body"]["UsageDimension"] == "requests" and r["body"].get("UsageQuantity") == 0
        ]
        assert len(startup) == 2
        assert startup[0] == startup[1]
