"""Test child: leaves a grandchild in its process group, then exits with status 5.

``leftover.py PIDFILE [--ignore-term]``: the grandchild writes its pid to PIDFILE and sleeps;
with ``--ignore-term`` it ignores SIGTERM, so only SIGKILL ends it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

GRANDCHILD = """
import os, signal, sys, time
if sys.argv[2] == "ignore":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
while True:
    time.sleep(3600)
"""


def main() -> int:
    """Start the grandchild, wait for its pid file, exit 5 without waiting for it."""
    pidfile = sys.argv[1]
    mode = "ignore" if "--ignore-term" in sys.argv[2:] else "default"
    # No inherited stdio: a grandchild that outlives us must not hold the test's pipes open.
    subprocess.Popen(
        [sys.executable, "-c", GRANDCHILD, pidfile, mode],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while not os.path.exists(pidfile) and time.monotonic() < deadline:
        time.sleep(0.01)
    return 5


if __name__ == "__main__":
    sys.exit(main())
