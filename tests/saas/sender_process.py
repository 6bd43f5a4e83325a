"""A sender process for the crash tests: sends rounds from a store until SIGTERM (or kill -9).

Usage: ``python -m tests.saas.sender_process STORE_URL`` with the environment pointing botocore at
the emulator. Short leases (2 s) let a surviving sender take over a killed one's records quickly.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator

from marketplace_entitlement import UsageReporter


def quick() -> Iterator[float]:
    """Retry waits of 50 ms."""
    while True:
        yield 0.05


def main() -> None:
    """Run the sender loop until SIGTERM."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with UsageReporter(
        sys.argv[1], lease_seconds=2.0, retry_timeout=1.0, retry_delays=quick, send_interval=0.1
    ) as usage:
        usage.sender.run(stop, interval=0.1)


if __name__ == "__main__":
    main()
