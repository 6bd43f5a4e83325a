"""A fake wall clock shared by several processes: libfaketime (PyPI ``libfaketime``) preloaded.

``fake_clock(start, speed)`` starts a small holder process under the preload; it creates the
shared clock (``FAKETIME_SHARED``) and keeps it alive. Every process started with
``clock.env(...)`` then sees the same wall clock: ``start`` at the holder's start, running ``speed``
times faster than real time. The monotonic clock stays real (``DONT_FAKE_MONOTONIC=1``): Python's
waits would hang otherwise, so waiting code must re-read the wall clock at bounded intervals.
The pytest process itself is not under the preload; ``clock.now()`` computes the fake time from
the real monotonic clock, which every process shares.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import libfaketime  # type: ignore[import-untyped]  # ships no type information

HOLDER = (
    "import json, os, sys, time; "
    "print(json.dumps({'shared': os.environ.get('FAKETIME_SHARED'), 'time': time.time(), "
    "'monotonic': time.monotonic()}), flush=True); sys.stdin.read()"
)


def library() -> str:
    """The path of the ``libfaketime.so.1`` the PyPI package bundles."""
    path = Path(libfaketime.__file__).parent / "vendor" / "libfaketime" / "src" / "libfaketime.so.1"
    if not path.exists():  # pragma: no cover (a packaging change of libfaketime)
        raise FileNotFoundError(path)
    return str(path)


def epoch(text: str) -> float:
    """``"2026-12-01 10:58:00"`` (UTC) as epoch seconds."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc).timestamp()


@dataclass(frozen=True)
class FakeClock:
    """The shared fake clock: its variables for child processes and its current time."""

    start: str
    speed: float
    shared: str
    fake_at_start: float
    monotonic_at_start: float

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """``base`` (default ``os.environ``) plus what puts a process on this clock."""
        env = dict(os.environ if base is None else base)
        env.update(
            LD_PRELOAD=library(),
            FAKETIME=f"@{self.start} x{self.speed:g}",
            FAKETIME_SHARED=self.shared,
            FAKETIME_DONT_RESET="1",
            DONT_FAKE_MONOTONIC="1",
            TZ="UTC",
        )
        return env

    def now(self) -> float:
        """The fake wall clock now (epoch seconds)."""
        return self.fake_at_start + (time.monotonic() - self.monotonic_at_start) * self.speed

    def real_seconds_until(self, fake_epoch: float) -> float:
        """How long (real seconds) until the fake clock reaches ``fake_epoch``."""
        return max(0.0, (fake_epoch - self.now()) / self.speed)


def remove_stale_segments(directory: Path = Path("/dev/shm")) -> None:
    """Delete libfaketime's shared clocks whose creating process is gone.

    libfaketime names a shared clock after its creator's pid and is not always able to remove it
    (a process ended by SIGKILL or ``os._exit`` leaves it behind). A later process that is given
    the same pid then cannot create its own, and libfaketime silently runs unshared.
    """
    for pattern in ("faketime_shm_*", "sem.faketime_sem_*"):
        for path in directory.glob(pattern):
            pid = path.name.rsplit("_", 1)[-1]
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                path.unlink(missing_ok=True)


@contextmanager
def fake_clock(start: str, speed: float) -> Iterator[FakeClock]:
    """A shared fake clock starting at ``start`` (UTC) and running ``speed`` times real time."""
    env = dict(os.environ)
    env.update(
        LD_PRELOAD=library(),
        FAKETIME=f"@{start} x{speed:g}",
        DONT_FAKE_MONOTONIC="1",
        TZ="UTC",
    )
    env.pop("FAKETIME_SHARED", None)
    remove_stale_segments()
    for _attempt in range(3):  # a pid still held by a live process's clock: another pid
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
        )
        assert holder.stdout is not None
        line = json.loads(holder.stdout.readline())
        if line["shared"]:
            break
        _stop(holder)
    else:  # pragma: no cover (libfaketime built without shared memory)
        raise RuntimeError("libfaketime did not set FAKETIME_SHARED")
    try:
        yield FakeClock(start, speed, line["shared"], line["time"], line["monotonic"])
    finally:
        _stop(holder)


def _stop(holder: subprocess.Popen[bytes]) -> None:
    """End the holder (it exits when its stdin closes)."""
    assert holder.stdin is not None
    holder.stdin.close()
    holder.wait(timeout=10)
