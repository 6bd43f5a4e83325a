"""SaaS usage: ``report`` calls per second, and draining an hour of 10,000 customers x 3 dimensions.

Run: ``PYTHONPATH=. .venv/bin/python bench/saas.py [--seconds N] [--customers N] [--quota N]``
(it starts PostgreSQL with ``tests/postgres.py``).

1. ``report`` throughput on SQLite (a file in a temporary directory) and on PostgreSQL (a server
   started for the run from Debian's package, default durability: fsync and synchronous_commit on),
   with 1 and 8 writer processes, each reporting for ``--seconds``.
2. An hour of ``--customers`` x 3 dimensions sent to the emulator. AWS's quota is 10 calls/s; to
   keep the run short the emulator's BatchMeterUsage limit and the senders' rate are both scaled to
   ``--quota`` (default 100/s, 10 x AWS's): calls made versus the minimum (records / 25) and
   records per request do not depend on the scale; at AWS's 10/s the drain is bound by the quota
   (minimum calls / 10 seconds). SQLite with one sender; PostgreSQL with three senders sharing the
   quota through the store.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.loopback import emulator_client
from tests.postgres import start_server, stop_server

from marketplace_entitlement import SaasCustomer, UsageReporter
from marketplace_entitlement.emulator import Emulator
from marketplace_entitlement.saas._rate import LocalRateGate, RateGate, StoreRateGate
from marketplace_entitlement.saas._sender import UsageSender
from marketplace_entitlement.store import HOUR, hour_of, open_store

DIMENSIONS = ("api_calls", "storage_gb", "users")


def _writer(url: str, seconds: float, counter: Any, index: int) -> None:
    # Each writer reports for its own customer (as a web app's workers serve different buyers).
    customer = SaasCustomer(
        "bench", aws_account_id="123456789012", license_arn=f"arn:aws:x:::l/{index}"
    )
    usage = UsageReporter(url, environ={})
    done = 0
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            usage.report(customer, DIMENSIONS[done % 3], 1)
            done += 1
    finally:
        usage.close()
    with counter.get_lock():
        counter.value += done


def report_rate(url: str, writers: int, seconds: float) -> float:
    """``report`` calls per second of ``writers`` processes on one store."""
    context = multiprocessing.get_context("spawn")
    counter = context.Value("q", 0)
    open_store(url).close()  # create the schema before the writers race to
    processes = [
        context.Process(target=_writer, args=(url, seconds, counter, n)) for n in range(writers)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    return float(counter.value) / seconds


def client_for(emulator: Emulator) -> Any:
    """A botocore client for the emulator (one attempt: the sender retries)."""
    return emulator_client(
        emulator.endpoint,
        access_key_id="AKIDBENCH",
        secret="bench",  # noqa: S106  (a dummy the emulator accepts)
        max_pool_connections=16,
    )


def drain(url: str, customers: int, quota: float, senders: int) -> dict[str, float]:
    """Report an hour of ``customers`` x 3 dimensions, then send it; the figures."""
    with Emulator(rate_limits={"BatchMeterUsage": quota}) as emulator:
        hour = hour_of(time.time()) - HOUR
        store = open_store(url)
        usage = UsageReporter(store, environ={})
        for index in range(customers):
            made = emulator.create_customer(
                "bench", aws_account_id=f"{100000000000 + index}", new_integration=True
            )
            customer = SaasCustomer(
                "bench", aws_account_id=made.aws_account_id, license_arn=made.license_arn
            )
            for dimension in DIMENSIONS:
                usage.report(customer, dimension, index % 7 + 1, timestamp=hour + 60)
        client = client_for(emulator)
        workers = []
        for _ in range(senders):
            gate: RateGate = (
                StoreRateGate(store, name="bench", rate=quota)  # type: ignore[arg-type]
                if hasattr(store, "take_token")
                else LocalRateGate(quota)
            )
            workers.append(UsageSender(store, lambda: client, rate_gate=gate))
        started = time.monotonic()
        threads = [threading.Thread(target=sender.send_once) for sender in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        while store.backlog():  # records another sender released (throttled) are sent here
            workers[0].send_once()
        elapsed = time.monotonic() - started
        requests = emulator.requests("BatchMeterUsage")
        accepted = len(emulator.batch_metered())
        usage.close()
    sizes = [len(r.body["UsageRecords"]) for r in requests if r.status == 200 and r.body]
    minimum = math.ceil(customers * len(DIMENSIONS) / 25)
    return {
        "records": customers * len(DIMENSIONS),
        "accepted": accepted,
        "calls": len(requests),
        "minimum": minimum,
        "throttled": sum(1 for r in requests if r.error_code == "ThrottlingException"),
        "records_per_request": sum(sizes) / max(1, len(sizes)),
        "seconds": elapsed,
    }


def main() -> None:
    """Run both measurements and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--quota", type=float, default=100.0)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-saas-"))
    pg_base = Path(tempfile.mkdtemp(prefix="bench-saas-pg-"))  # owned by the server's user
    server = start_server(pg_base, fast=False)
    try:
        stores: dict[str, Callable[[str], str]] = {
            "sqlite": lambda name: f"sqlite:///{base}/{name}.sqlite3",
            "postgresql": lambda name: _database(server, name),
        }
        print("report() calls per second")
        for backend, make in stores.items():
            for writers in (1, 8):
                rate = report_rate(make(f"w{writers}"), writers, args.seconds)
                print(f"  {backend:<10} {writers} writer(s): {rate:10.0f}/s")
        print(
            f"drain: {args.customers} customers x {len(DIMENSIONS)} dimensions, "
            f"quota {args.quota:g}/s (AWS: 10/s)"
        )
        for backend, senders in (("sqlite", 1), ("postgresql", 3)):
            figures = drain(stores[backend](f"drain{senders}"), args.customers, args.quota, senders)
            print(
                f"  {backend:<10} {senders} sender(s): {figures['accepted']}/{figures['records']} "
                f"accepted, {figures['calls']} calls (minimum {figures['minimum']}: "
                f"{figures['calls'] / figures['minimum']:.3f}x, {figures['throttled']} throttled), "
                f"{figures['records_per_request']:.1f} records/request, drained in "
                f"{figures['seconds']:.1f}s (the quota allows {figures['minimum'] / args.quota:.0f}s;"
                f" at AWS's 10/s at least {figures['minimum'] / 10:.0f}s)"
            )
    finally:
        stop_server(server)
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(pg_base, ignore_errors=True)


def _database(server: Any, name: str) -> str:
    import psycopg  # noqa: PLC0415  (only this backend needs it)

    with psycopg.connect(server.url(), autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    return str(server.url(name))


if __name__ == "__main__":
    main()
