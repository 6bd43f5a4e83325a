"""Custom metering figures: record_usage rate, a fleet against one MeterUsage quota, run's footprint.

Run: ``.venv/bin/python bench/metering.py [--seconds N] [--pods N]``. Prints:

1. durable ``record_usage`` calls per second from 1 and 8 threads and from 4 processes, and records
   per second through `run`'s HTTP endpoint (one record per request, 4 keep-alive clients);
2. a fleet: N pods (default 200) x 5 dimensions send one closed hour against one account's
   MeterUsage quota of 10/s on the emulator, each pod with its own task identity, state directory
   and sender, sends spread over the default 10-minute window (and, for comparison, no spread).
   The senders' clock runs SPEEDUP times real time and the emulator's quota is scaled alike, so the
   window passes in seconds while calls per quota-second stay as they would be (retry waits are
   real seconds, so the figures are pessimistic). Prints calls per record, whether every record
   was accepted within the hour after the hour it reports, and the longest wait;
3. `run`'s resident memory and idle CPU with metering on (CMD sleeping, nothing recorded).
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import botocore.session
from botocore.config import Config

from marketplace_entitlement.emulator import Emulator

DIMENSIONS = ("requests", "gb_scanned", "users", "seats", "jobs")
PRODUCT = "prod-bench"
SPEEDUP = 30.0
HOUR = 3600


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _record_env(state: Path) -> None:
    os.environ["MARKETPLACE_METERING_STATE_DIR"] = str(state)
    os.environ["MARKETPLACE_DIMENSIONS"] = ",".join(DIMENSIONS)


def _record_loop(seconds: float, counts: list[int], index: int) -> None:
    from marketplace_entitlement import record_usage  # noqa: PLC0415 (after the environment)

    deadline = time.perf_counter() + seconds
    done = 0
    while time.perf_counter() < deadline:
        for _ in range(100):
            record_usage("requests")
        done += 100
    counts[index] = done


def _process_main(state: str, seconds: float, queue: Any) -> None:
    _record_env(Path(state))
    counts = [0]
    _record_loop(seconds, counts, 0)
    queue.put(counts[0])


def bench_record_usage(seconds: float, base: Path) -> None:
    """Durable record_usage calls per second: 1 and 8 threads, 4 processes."""
    for threads in (1, 8):
        state = base / f"threads-{threads}"
        _record_env(state)
        counts = [0] * threads
        workers = [
            threading.Thread(target=_record_loop, args=(seconds, counts, i)) for i in range(threads)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        print(f"record_usage, {threads} thread(s): {sum(counts) / seconds:,.0f} calls/s")
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    state = base / "processes"
    processes = [
        context.Process(target=_process_main, args=(str(state), seconds, queue)) for _ in range(4)
    ]
    for process in processes:
        process.start()
    total = sum(queue.get() for _ in processes)
    for process in processes:
        process.join()
    print(f"record_usage, 4 processes: {total / seconds:,.0f} calls/s")


def bench_http_and_footprint(seconds: float, base: Path) -> None:
    """Records per second through run's HTTP endpoint; run's memory and idle CPU."""
    with Emulator(
        products={PRODUCT: "entitled"}, dimensions={PRODUCT: list(DIMENSIONS)},
        rate_limits={"MeterUsage": None},
    ) as service:  # fmt: skip
        port = _free_port()
        env = {
            **os.environ,
            "AWS_ENDPOINT_URL_MARKETPLACE_METERING": service.endpoint,
            "AWS_ACCESS_KEY_ID": "AKIDBENCHRUN",
            "AWS_SECRET_ACCESS_KEY": "secret",
            "AWS_REGION": "us-east-1",
            "MARKETPLACE_PRODUCT_CODE": PRODUCT,
            "MARKETPLACE_PRICING": "custom",
            "MARKETPLACE_DIMENSIONS": ",".join(DIMENSIONS),
            "MARKETPLACE_METERING_STATE_DIR": str(base / "run-state"),
            "MARKETPLACE_METERING_HTTP": f"127.0.0.1:{port}",
            "MARKETPLACE_LOG_LEVEL": "warning",
        }
        run = subprocess.Popen(
            [sys.executable, "-m", "marketplace_entitlement", "run", "--", "sleep", "600"],
            env=env,
        )
        try:
            _wait_port(port)
            time.sleep(1.0)  # let startup settle before measuring idle
            rss, cpu = _footprint(run.pid, seconds)
            print(
                f"run (custom metering, idle): RSS {rss / 1024:.1f} MiB, CPU {cpu:.2f}% over {seconds:g}s"
            )
            for batch in (1, 100):
                rate = _http_rate(port, seconds, batch)
                print(
                    f"HTTP ingestion, {batch} record(s) per request, 4 clients: {rate:,.0f} records/s"
                )
        finally:
            run.terminate()
            run.wait(timeout=60)


def _wait_port(port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:  # noqa: PERF203 (polling a port that is not up yet)
            time.sleep(0.1)
        else:
            return
    raise RuntimeError("run's HTTP endpoint never came up")


def _footprint(pid: int, seconds: float) -> tuple[int, float]:
    def cpu_ticks() -> int:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])

    start = cpu_ticks()
    time.sleep(seconds)
    used = (cpu_ticks() - start) / os.sysconf("SC_CLK_TCK")
    rss = next(
        int(line.split()[1])
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("VmRSS:")
    )
    return rss, 100 * used / seconds


def _http_rate(port: int, seconds: float, batch: int) -> float:
    body = json.dumps({"records": [{"dimension": "requests", "quantity": 1}] * batch}).encode()
    counts = [0] * 4

    def client(index: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            connection.request("POST", "/v1/usage", body, {"Content-Type": "application/json"})
            answer = connection.getresponse()
            answer.read()
            if answer.status == 200:
                counts[index] += batch
        connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / seconds


def bench_fleet(pods: int, window: float, base: Path) -> None:
    """``pods`` senders x 5 dimensions against one quota of 10/s (scaled by SPEEDUP)."""
    from decimal import Decimal  # noqa: PLC0415

    from marketplace_entitlement._client import LazyClient  # noqa: PLC0415 (bench-only internals)
    from marketplace_entitlement._settings import load_settings  # noqa: PLC0415
    from marketplace_entitlement.metering._sender import Sender  # noqa: PLC0415
    from marketplace_entitlement.store import Usage, open_store, sqlite_url  # noqa: PLC0415

    with Emulator(
        products={PRODUCT: "entitled"}, rate_limits={"MeterUsage": 10 * SPEEDUP}
    ) as service:
        real_top = time.time() // HOUR * HOUR  # the closed hour is the one before this
        start_real = time.monotonic()
        wall_at_start = time.time()
        fake_now_at_start = real_top  # the senders' clock starts at the top of the hour

        def clock() -> float:
            return fake_now_at_start + (time.monotonic() - start_real) * SPEEDUP

        settings = load_settings(
            {"MARKETPLACE_PRODUCT_CODE": PRODUCT, "MARKETPLACE_PRICING": "custom",
             "MARKETPLACE_DIMENSIONS": ",".join(DIMENSIONS), "AWS_REGION": "us-east-1"}
        )  # fmt: skip
        session = botocore.session.get_session()
        stop = threading.Event()
        senders = []
        for pod in range(pods):
            client = session.create_client(
                "meteringmarketplace", region_name="us-east-1", endpoint_url=service.endpoint,
                aws_access_key_id=f"AKIDPOD{pod:05d}", aws_secret_access_key="secret",  # noqa: S106 (the emulator's fake key)
                config=Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=10),
            )  # fmt: skip
            store = open_store(sqlite_url(str(base / f"fleet-{window:g}" / f"pod{pod}.sqlite3")))
            closed = int(real_top) - HOUR
            store.add(Usage(d, closed, Decimal(pod + 1)) for d in DIMENSIONS)
            sender = Sender(
                store, LazyClient(settings, client), product_code=PRODUCT, dimensions=DIMENSIONS,
                send_window=window, owner=f"pod{pod}", stop=stop, clock=clock,
            )  # fmt: skip
            senders.append(sender)
        for sender in senders:
            sender.start()
        expected = pods * len(DIMENSIONS)
        deadline = time.monotonic() + HOUR / SPEEDUP
        while time.monotonic() < deadline:
            accepted = [r for r in service.metered() if r["hour"] == int(real_top) - HOUR]
            if len(accepted) >= expected:
                break
            time.sleep(0.5)
        stop.set()
        for sender in senders:
            sender.join(timeout=30)
        calls = len(service.requests("MeterUsage"))
        throttled = sum(
            r.error_code == "ThrottlingException" for r in service.requests("MeterUsage")
        )
        waits = [(r["accepted_at"] - wall_at_start) * SPEEDUP for r in accepted]
        print(
            f"fleet, {pods} pods x {len(DIMENSIONS)} dimensions, window {window:g}s: "
            f"{len(accepted)}/{expected} accepted within the hour after, "
            f"{calls / max(len(accepted), 1):.2f} calls per record ({throttled} throttled), "
            f"longest wait {max(waits, default=0):.0f}s after the top of the hour"
        )
        for sender in senders:
            sender.store.close()


def main() -> None:
    """Parse arguments and print every figure."""
    import logging  # noqa: PLC0415

    logging.getLogger("marketplace_entitlement").setLevel(logging.ERROR)  # the figures only
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--pods", type=int, default=200)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-metering-"))
    try:
        bench_record_usage(args.seconds, base)
        bench_http_and_footprint(args.seconds, base)
        for window in (600.0, 0.0):
            bench_fleet(args.pods, window, base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
