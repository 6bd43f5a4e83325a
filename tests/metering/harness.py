"""Processes for the metering tests: the emulator and `run`, on a shared fake clock or the real one."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

PYTHON = sys.executable
WORKLOAD = str(Path(__file__).with_name("workload.py"))
PRODUCT = "prod-metered1"


def free_port() -> int:
    """A loopback TCP port free right now (the kernel's choice)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class EmulatorProcess:
    """``marketplace-entitlement emulator`` as a child process, read and driven over loopback."""

    def __init__(self, env: Mapping[str, str], args: Sequence[str], log: Path) -> None:
        self._log = log.open("wb")
        self.process = subprocess.Popen(
            [PYTHON, "-m", "marketplace_entitlement", "emulator", "--port", "0", *args],
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=self._log,
        )
        assert self.process.stdout is not None
        ready = json.loads(self.process.stdout.readline())
        self.endpoint: str = ready["endpoint"]
        self.control_url: str = ready["control_url"].rstrip("/")

    def control(self, method: str, path: str, body: Any = None) -> Any:
        """Call the control API (``path`` below ``/_emulator/``); return the decoded answer."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 (the emulator's loopback URL)
            f"{self.control_url}/{path}", data=data, method=method,
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 (loopback URL)
            return json.load(answer)

    def metered(self) -> list[dict[str, Any]]:
        """Every accepted MeterUsage record."""
        result: list[dict[str, Any]] = self.control("GET", "metered")
        return result

    def totals(self) -> dict[str, Decimal]:
        """Accepted quantity per dimension, over every hour and task."""
        out: dict[str, Decimal] = {}
        for record in self.metered():
            out[record["dimension"]] = out.get(record["dimension"], Decimal(0)) + Decimal(
                record["quantity"]
            )
        return out

    def meter_usage_errors(self) -> list[str]:
        """The error codes of every MeterUsage answered with an error (faults excluded)."""
        requests = self.control("GET", "requests?operation=MeterUsage")
        return [r["error_code"] for r in requests if r["error_code"] and not r["fault"]]

    def stop(self) -> None:
        """Terminate and wait."""
        with contextlib.suppress(ProcessLookupError):
            self.process.terminate()
        self.process.wait(timeout=10)
        self._log.close()


def base_env(tmp_path: Path, *, task: str = "AKIDTASK0001") -> dict[str, str]:
    """An environment with nothing from this machine's AWS or MARKETPLACE_ settings."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "MARKETPLACE_", "FAKETIME", "LD_PRELOAD"))
    }
    env.update(
        AWS_ACCESS_KEY_ID=task,
        AWS_SECRET_ACCESS_KEY="secret",
        AWS_REGION="us-east-1",
        AWS_CONFIG_FILE=str(tmp_path / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-aws-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    return env


def metering_env(
    base: Mapping[str, str],
    endpoint: str,
    state_dir: Path,
    *,
    dimensions: str = "requests,gb_scanned,users",
    **extra: str,
) -> dict[str, str]:
    """``base`` plus the settings of `run` in custom pricing against ``endpoint``."""
    env = dict(base)
    env.update(
        AWS_ENDPOINT_URL_MARKETPLACE_METERING=endpoint,
        MARKETPLACE_PRODUCT_CODE=PRODUCT,
        MARKETPLACE_PRICING="custom",
        MARKETPLACE_DIMENSIONS=dimensions,
        MARKETPLACE_METERING_STATE_DIR=str(state_dir),
        MARKETPLACE_STATUS_FILE=str(state_dir.parent / "status.json"),
        MARKETPLACE_METERING_HTTP=f"127.0.0.1:{free_port()}",
        MARKETPLACE_METERING_SEND_WINDOW="2m",
        MARKETPLACE_LOG_FORMAT="json",
    )
    env.update(extra)
    return env


class RunProcess:
    """``marketplace-entitlement run -- CMD`` in its own session (its group is "the container")."""

    def __init__(self, env: Mapping[str, str], command: Sequence[str], log: Path) -> None:
        self.log = log
        self._log = log.open("ab")
        self.process = subprocess.Popen(
            [PYTHON, "-m", "marketplace_entitlement", "run", "--", *command],
            env=dict(env),
            stdout=self._log,
            stderr=self._log,
            start_new_session=True,
        )

    def kill_container(self) -> None:
        """SIGKILL every process of the container (run, CMD and CMD's children) at once."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self._log.close()

    def terminate(self) -> None:
        """SIGTERM to `run`, as the orchestrator sends on stop."""
        self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        """Wait for `run` to exit; its exit status."""
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self._log.close()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)

    def events(self) -> list[dict[str, Any]]:
        """The JSON log lines `run` wrote so far."""
        lines = []
        for line in self.log.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                lines.append(json.loads(line))
        return [line for line in lines if isinstance(line, dict)]


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll ``condition`` (real time) until truthy; fail the test naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        threading.Event().wait(interval)


def ledger_totals(path: Path) -> tuple[dict[str, int], dict[str, int]]:
    """(started, done) quantities per dimension from a workload ledger."""
    started: dict[str, int] = {}
    done: dict[str, int] = {}
    if not path.exists():
        return started, done
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) != 3:
            continue  # a line cut by kill -9
        kind, dimension, quantity = parts
        if kind not in ("start", "done"):
            continue
        target = started if kind == "start" else done
        target[dimension] = target.get(dimension, 0) + int(quantity)
    return started, done


@contextmanager
def emulator(env: Mapping[str, str], tmp_path: Path, *args: str) -> Iterator[EmulatorProcess]:
    """An emulator process declaring the test product's dimensions."""
    process = EmulatorProcess(
        env,
        [
            "--dimensions",
            f"{PRODUCT}=requests,gb_scanned,users",
            "--rate-limit",
            "MeterUsage=0",
            *args,
        ],
        tmp_path / "emulator.log",
    )
    try:
        yield process
    finally:
        process.stop()
