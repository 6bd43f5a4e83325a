"""How many signed RegisterUsage answers per second the emulator gives 1, 4 and 16 clients.

Run: ``.venv/bin/python bench/emulator.py [--seconds N]``. Rate limits are off; each thread has its
own botocore client; every answer is a fresh PS256 (RSA-3072) token.
"""

from __future__ import annotations

import argparse
import threading
import time
from typing import Any

import botocore.session
from botocore.config import Config

from marketplace_entitlement.emulator import Emulator

CONCURRENCY = (1, 4, 16)


def call(client: Any) -> bool:
    """One signed RegisterUsage; False if it failed in any way."""
    try:
        client.register_usage(ProductCode="bench", PublicKeyVersion=1, Nonce="n")
    except Exception:  # noqa: BLE001  (a benchmark counts failures rather than stopping)
        return False
    return True


def measure(emulator: Emulator, clients: int, seconds: float) -> tuple[int, int, float]:
    """Run ``clients`` threads for ``seconds``; return (successes, errors, elapsed)."""
    session = botocore.session.get_session()
    made: list[Any] = [
        session.create_client(
            "meteringmarketplace",
            region_name="us-east-1",
            endpoint_url=emulator.endpoint,
            aws_access_key_id="AKIDBENCH",
            aws_secret_access_key="bench",  # noqa: S106  (a dummy the emulator accepts)
            config=Config(retries={"total_max_attempts": 1}, max_pool_connections=2),
        )
        for _ in range(clients)
    ]
    for client in made:  # warm each connection outside the measurement
        client.register_usage(ProductCode="bench", PublicKeyVersion=1)
    counts = [0, 0]
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)
    deadline = [0.0]

    def run(client: Any) -> None:
        ok = failed = 0
        start.wait()
        while time.monotonic() < deadline[0]:
            if call(client):
                ok += 1
            else:
                failed += 1
        with lock:
            counts[0] += ok
            counts[1] += failed

    threads = [threading.Thread(target=run, args=(client,)) for client in made]
    for thread in threads:
        thread.start()
    began = time.monotonic()
    deadline[0] = began + seconds
    start.wait()
    for thread in threads:
        thread.join()
    return counts[0], counts[1], time.monotonic() - began


def main() -> None:
    """Print a small table of signed RegisterUsage answers per second."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each run")
    args = parser.parse_args()
    rate_limits: dict[str, float | None] = {"RegisterUsage": None}
    with Emulator(rate_limits=rate_limits) as emulator:
        emulator.public_key_pem()  # generate the key before measuring
        print(f"{'clients':>7}  {'answers/s':>9}  {'answers':>7}  {'errors':>6}")
        for clients in CONCURRENCY:
            ok, failed, elapsed = measure(emulator, clients, args.seconds)
            print(f"{clients:>7}  {ok / elapsed:>9.0f}  {ok:>7}  {failed:>6}")


if __name__ == "__main__":
    main()
