"""Reaping never takes the exit status of a child another thread waits for.

botocore runs a profile's ``credential_process`` helper from the thread that signs the request (the
gate and re-registration threads) and waits for it with ``Popen.communicate``. A supervisor reaping
with ``waitpid(-1)`` could collect that status first (botocore then saw 0 instead of 3). Reaping is
limited to the main thread's children (CMD and orphans) with ``__WNOTHREAD``.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from marketplace_entitlement.emulator import Emulator
from tests.supervisor.supervised import PYTHON, Supervised, child, wait_until

ROUNDS = 12
# CMD: make an orphan every few milliseconds, so SIGCHLD keeps waking the supervisor's reaper.
CHURN = "while :; do (sleep 0.01 &); sleep 0.005; done"


@pytest.mark.pid1
def test_credential_process_statuses_are_not_stolen_while_orphans_churn(
    service: Emulator, aws_env: dict[str, str], tmp_path: Path
) -> None:
    """Once the helper exits 3, re-registrations fail with its message; none sees a stolen 0.

    The helper prints valid credentials either way, so a stolen status would let botocore sign
    and send RegisterUsage: the emulator would record it.
    """
    fail = tmp_path / "fail-from-now-on"
    config = tmp_path / "aws-config"
    config.write_text(
        f"[default]\ncredential_process = {PYTHON} {child('credential_helper.py')[1]} {fail}\n"
    )
    env = {
        name: value
        for name, value in aws_env.items()
        if name not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    }
    env.update(
        AWS_CONFIG_FILE=str(config),
        MARKETPLACE_LOG_FORMAT="text",
        MARKETPLACE_REREGISTER_INTERVAL="100ms",
    )
    with Supervised(["sh", "-c", CHURN], env=env) as supervised:
        supervised.expect_log("started ['sh'")
        fail.touch()
        # At most one round can be past its helper call now, its request still to be recorded.
        registered = len(service.requests("RegisterUsage"))
        wait_until(
            lambda: supervised.stderr.count("helper-exit-3") >= ROUNDS,
            f"{ROUNDS} re-registrations failing with the helper's exit 3",
        )
        supervised.send(signal.SIGTERM)
        assert supervised.wait() == 128 + signal.SIGTERM
    # A stolen status (0) would have made botocore use the helper's credentials and send a request.
    assert len(service.requests("RegisterUsage")) <= registered + 1
