"""Three sender processes on one PostgreSQL store, killed with SIGKILL at random moments."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

from tests.saas.usage_helpers import accepted_totals, customer_name, license_customer, previous_hour

from marketplace_entitlement import UsageReporter
from marketplace_entitlement.emulator import Emulator

ROOT = Path(__file__).resolve().parents[2]


def start_sender(url: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A sender process (tests/saas/sender_process.py) on ``url``."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.saas.sender_process", url],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def test_kill_9_of_senders_never_loses_nor_doubles_a_record(
    postgres_url: str, saas_emulator: Emulator, saas_env: dict[str, str]
) -> None:
    """Senders killed mid-work at random: every record is accepted exactly once, all 'sent'."""
    customers = [license_customer(saas_emulator, f"40000000{i:04d}") for i in range(150)]
    hour = previous_hour()
    expected = {}
    with UsageReporter(postgres_url, environ={}) as usage:
        for index, customer in enumerate(customers):
            for dimension in ("api_calls", "users"):
                usage.report(customer, dimension, index + 1, timestamp=hour)
                expected[(customer_name(customer), dimension, hour)] = Decimal(index + 1)
    saas_emulator.set_rate_limit("BatchMeterUsage", 2)  # slow enough to be killed mid-work
    saas_emulator.inject_fault("BatchMeterUsage", "delay", delay=0.3, probability=0.5, seed=3)
    saas_emulator.inject_fault("BatchMeterUsage", "unprocessed", probability=0.2, seed=4)
    env = {**saas_env, "PYTHONPATH": str(ROOT)}
    dice = random.Random(11)
    senders = [start_sender(postgres_url, env) for _ in range(3)]
    kills = 0
    watcher = UsageReporter(postgres_url, environ={})
    try:
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            time.sleep(dice.uniform(0.2, 0.8))
            if not watcher.backlog():  # all sent: nothing left to kill a sender over
                break
            victim = dice.randrange(3)
            os.kill(senders[victim].pid, signal.SIGKILL)
            senders[victim].wait()
            kills += 1
            senders[victim] = start_sender(postgres_url, env)
        with UsageReporter(postgres_url, environ={}) as usage:
            drained = time.monotonic() + 90
            while usage.backlog() and time.monotonic() < drained:
                time.sleep(0.5)
            assert usage.backlog() == []
            states = {record.state for record in usage.store.records()}
    finally:
        watcher.close()
        for sender in senders:
            sender.send_signal(signal.SIGKILL)
            sender.wait()
    assert kills >= 5  # each while records were still to be sent
    assert states == {"sent"}
    assert accepted_totals(saas_emulator) == expected
