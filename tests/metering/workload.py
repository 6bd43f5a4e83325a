"""CMD for the metering tests: records usage the ways a seller's app does, keeping a ledger.

Each usage is written to the ledger as ``start DIM Q`` before it is recorded and ``done DIM Q`` once
the recording call returned (durable), so a test can bound what a ``kill -9`` may have cut short.

    workload.py continuous LEDGER [UNTIL_EPOCH]   record_usage, HTTP and the CLI in turn
    workload.py burst LEDGER START_EPOCH          threads, processes, HTTP and the CLI at once
    workload.py fixed LEDGER DIM=Q ...            record once each, then wait for SIGTERM
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable

from marketplace_entitlement import record_usage

stopping = threading.Event()
ledger_lock = threading.Lock()


def note(ledger: str, kind: str, dimension: str, quantity: int) -> None:
    """Append one ledger line."""
    with ledger_lock, open(ledger, "a") as handle:
        handle.write(f"{kind} {dimension} {quantity}\n")


def recorded(ledger: str, dimension: str, quantity: int, record: Callable[[], None]) -> None:
    """Run ``record`` between the ledger's start and done lines."""
    note(ledger, "start", dimension, quantity)
    record()
    note(ledger, "done", dimension, quantity)


def post(records: list[dict[str, object]]) -> None:
    """POST a batch to `run`'s ingestion endpoint; it must answer 200."""
    address = os.environ["MARKETPLACE_METERING_HTTP"]
    body = json.dumps({"records": records}).encode()
    request = urllib.request.Request(
        f"http://{address}/v1/usage", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 (loopback)
        assert answer.status == 200


def cli(dimension: str, quantity: int, *tags: str) -> None:
    """Record with the `record` command; it must exit 0."""
    command = [sys.executable, "-m", "marketplace_entitlement", "record", dimension, str(quantity)]
    for tag in tags:
        command += ["--tag", tag]
    subprocess.run(command, check=True)


def continuous(ledger: str, until: float | None) -> None:
    """Record in turn through record_usage, HTTP and the CLI until stopped or ``until``."""
    step = 0
    while not stopping.is_set() and (until is None or time.time() < until):
        step += 1
        if step % 50 == 0:
            recorded(ledger, "users", 3, lambda: cli("users", 3, "tier=pro"))
        elif step % 10 == 0:
            records: list[dict[str, object]] = [
                {"dimension": "requests", "quantity": 2},
                {"dimension": "gb_scanned", "quantity": 1, "tags": {"team": "b"}},
            ]
            note(ledger, "start", "requests", 2)
            note(ledger, "start", "gb_scanned", 1)
            post(records)
            note(ledger, "done", "requests", 2)
            note(ledger, "done", "gb_scanned", 1)
        else:
            team = "a" if step % 2 else "b"
            recorded(ledger, "requests", 1, lambda: record_usage("requests"))
            tags = {"team": team}
            recorded(ledger, "gb_scanned", 2, lambda: record_usage("gb_scanned", 2, tags=tags))  # noqa: B023 (called at once)
        stopping.wait(0.01)


def _process_worker(count: int) -> None:
    for i in range(count):
        record_usage("requests", 1, tags={"worker": f"p{i % 3}"})


def burst(ledger: str, start: float) -> None:
    """At ``start``, record from threads, processes, HTTP and the CLI at once; then exit."""
    while time.time() < start:
        stopping.wait(0.05)
    threads_n, per_thread = 8, 250
    processes_n, per_process = 4, 250
    http_n, per_http = 4, 25
    cli_n = 10

    def from_thread() -> None:
        for _ in range(per_thread):
            record_usage("requests")

    def from_http() -> None:
        for _ in range(per_http):
            post([{"dimension": "gb_scanned", "quantity": 3, "tags": {"team": "x"}}] * 4)

    workers = [threading.Thread(target=from_thread) for _ in range(threads_n)]
    workers += [threading.Thread(target=from_http) for _ in range(http_n)]
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_process_worker, args=(per_process,)) for _ in range(processes_n)
    ]
    for worker in workers:
        worker.start()
    for process in processes:
        process.start()
    for i in range(cli_n):
        cli("users", 7, f"seat={i % 2}")
    for worker in workers:
        worker.join()
    for process in processes:
        process.join()
        assert process.exitcode == 0
    note(ledger, "done", "requests", threads_n * per_thread + processes_n * per_process)
    note(ledger, "done", "gb_scanned", http_n * per_http * 4 * 3)
    note(ledger, "done", "users", cli_n * 7)


def fixed(ledger: str, items: list[str]) -> None:
    """Record each DIM=Q with the CLI, then wait for SIGTERM."""
    for item in items:
        dimension, _, quantity = item.partition("=")
        note(ledger, "start", dimension, int(quantity))
        cli(dimension, int(quantity))
        note(ledger, "done", dimension, int(quantity))
    note(ledger, "ready", "-", 0)
    stopping.wait()


def main() -> None:
    """Dispatch on the mode (see the module docstring)."""
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.set())
    mode, ledger = sys.argv[1], sys.argv[2]
    if mode == "continuous":
        continuous(ledger, float(sys.argv[3]) if len(sys.argv) > 3 else None)
    elif mode == "burst":
        burst(ledger, float(sys.argv[3]))
    else:
        fixed(ledger, sys.argv[3:])


if __name__ == "__main__":
    main()
