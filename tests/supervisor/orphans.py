"""Test child: makes COUNT orphans that exit, then reports whether its supervisor reaped them.

Each orphan is double-forked, waits until it has been re-parented (to PID 1, or to a subreaper),
reports ``<pid> <new parent>`` through a pipe and exits. This prints ``adopted A/COUNT`` (how many
were adopted by our own parent, the supervisor) and ``zombies Z`` (how many of them are still
zombies once every orphan has left /proc, or after a generous deadline), then exits 0.
"""

from __future__ import annotations

import os
import sys
import time

DEADLINE_SECONDS = 20.0


def _state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return None


def _make_orphan(write_fd: int) -> int:
    middle = os.fork()
    if middle == 0:
        parent = os.getpid()
        if os.fork() == 0:
            while os.getppid() == parent:
                time.sleep(0.001)
            os.write(write_fd, f"{os.getpid()} {os.getppid()}\n".encode())
            os._exit(0)
        os._exit(0)
    return middle


def main() -> int:
    """Make the orphans, wait for them to vanish, print the counts."""
    count = int(sys.argv[1])
    read_fd, write_fd = os.pipe()
    for _ in range(count):
        os.waitpid(_make_orphan(write_fd), 0)
    os.close(write_fd)
    with os.fdopen(read_fd) as reports:
        orphans = [tuple(map(int, line.split())) for line in reports]
    supervisor = os.getppid()
    adopted = sum(1 for _, parent in orphans if parent == supervisor)
    print(f"adopted {adopted}/{count}", flush=True)
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        states = [_state(pid) for pid, _ in orphans]
        if all(state is None for state in states):
            break
        time.sleep(0.01)
    print(f"zombies {sum(1 for state in states if state == 'Z')}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
