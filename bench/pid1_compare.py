"""Run the same PID 1 cases under ``marketplace-entitlement run``, tini and dumb-init; print a table.

The figures behind the side-by-side table of docs/supervision.md: each case runs each wrapper as
PID 1 of a new PID namespace (``unshare``, root) and reports what came out (exit status, what CMD
saw). ``run`` registers against an in-process emulator first. tini and dumb-init come from Debian
(``apt-get install tini dumb-init``); a missing one is reported, not fatal.

    .venv/bin/python -m bench.pid1_compare
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from marketplace_entitlement.emulator import Emulator

AS_PID1 = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]
TIMEOUT = 30.0
Wrapper = list[str]
Case = Callable[[Wrapper, dict[str, str], Path], str]


def _run(argv: Sequence[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv), env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )


def _pid1_of(unshare: subprocess.Popen[str]) -> int:
    """The wrapper's pid (unshare's child) as seen from here."""
    children = Path(f"/proc/{unshare.pid}/task/{unshare.pid}/children")
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        found = children.read_text().split()
        if found:
            return int(found[0])
        time.sleep(0.01)
    raise RuntimeError("the wrapper never started")


def exit_status(wrapper: Wrapper, env: dict[str, str], tmp: Path) -> str:
    """CMD exits 7."""
    return str(_run([*AS_PID1, *wrapper, "sh", "-c", "exit 7"], env).returncode)


def not_found(wrapper: Wrapper, env: dict[str, str], tmp: Path) -> str:
    """CMD is not on PATH."""
    return str(_run([*AS_PID1, *wrapper, "no-such-command-here"], env).returncode)


def no_shebang(wrapper: Wrapper, env: dict[str, str], tmp: Path) -> str:
    """CMD is an executable script without a #! line that exits 4."""
    script = tmp / "no-shebang"
    script.write_text("exit 4\n")
    script.chmod(0o755)
    return str(_run([*AS_PID1, *wrapper, str(script)], env).returncode)


def environment(wrapper: Wrapper, env: dict[str, str], tmp: Path) -> str:
    """No locale set: does CMD see an LC_CTYPE?"""
    bare = {k: v for k, v in env.items() if not k.startswith(("LC_", "LANG"))}
    result = _run([*AS_PID1, *wrapper, "sh", "-c", 'echo "${LC_CTYPE-unset}"'], bare)
    return f"LC_CTYPE {result.stdout.strip()}"


def closed_stderr(wrapper: Wrapper, env: dict[str, str], tmp: Path) -> str:
    """Started with fd 2 closed; CMD exits 7."""
    argv = [*AS_PID1, "sh", "-c", 'exec "$@" 2>&-', "sh", *wrapper, "sh", "-c", "exit 7"]
    return str(_run(argv, env).returncode)


def pending_sigterm(wrapper: Wrapper, env: dict[str, str], tmp: Path) -> str:
    """SIGTERM pending when the wrapper's program starts (sent before its handlers exist)."""
    marker = tmp / "ran"
    launcher = (
        "import os, signal, sys; signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM]); "
        "os.kill(os.getpid(), signal.SIGTERM); os.execvp(sys.argv[1], sys.argv[1:])"
    )
    command = ["sh", "-c", f"touch {marker}; sleep 0.5"]
    result = _run([*AS_PID1, sys.executable, "-c", launcher, *wrapper, *command], env)
    return f"{result.returncode}, CMD {'started' if marker.exists() else 'never started'}"


def _forward_and_report(wrapper: Wrapper, env: dict[str, str], signum: int, **kw: object) -> str:
    echo = (
        "import signal, sys, os\n"
        "for s in (signal.SIGSEGV, signal.SIGUSR1, signal.SIGPIPE, signal.SIGTERM):\n"
        "    signal.signal(s, lambda n, f: (os.write(1, f'got {n}\\n'.encode()), "
        "n == signal.SIGTERM and os._exit(0)))\n"
        "os.write(1, b'ready\\n')\n"
        "while True: signal.pause()\n"
    )
    streams: dict[str, object] = {"stderr": subprocess.DEVNULL, **kw}
    process = subprocess.Popen(
        [*AS_PID1, *wrapper, sys.executable, "-c", echo],
        env=env, stdout=subprocess.PIPE, text=True, **streams,  # type: ignore[call-overload]
    )  # fmt: skip
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        pid1 = _pid1_of(process)
        os.kill(pid1, signum)
        time.sleep(0.3)  # a benchmark may wait; the figure is what arrived in that time
        os.kill(pid1, signal.SIGTERM)
        out, _ = process.communicate(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    got = out.split("\n")
    counts = {name: got.count(f"got {int(s)}") for name, s in (("SEGV", signal.SIGSEGV),
              ("USR1", signal.SIGUSR1), ("PIPE", signal.SIGPIPE))}  # fmt: skip
    seen = ", ".join(f"{n} x{c}" for n, c in counts.items() if c) or "nothing"
    return f"{process.returncode}, CMD got {seen}"


def kill_segv(wrapper: Wrapper, env: dict[str, str], tmp: Path) -> str:
    """``kill -SEGV`` sent to PID 1 from outside, then SIGTERM."""
    return _forward_and_report(wrapper, env, signal.SIGSEGV)


def epipe_stderr(wrapper: Wrapper, env: dict[str, str], tmp: Path) -> str:
    """The reader of stderr is gone; SIGUSR1 is forwarded, then SIGTERM (CMD exits 0 on it)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return _forward_and_report(wrapper, env, signal.SIGUSR1, stderr=write_end)
    finally:
        os.close(write_end)


CASES: list[tuple[str, Case]] = [
    ("CMD exits 7", exit_status),
    ("CMD not found", not_found),
    ("script without #!", no_shebang),
    ("no locale set", environment),
    ("stderr closed, CMD exits 7", closed_stderr),
    ("SIGTERM pending at start", pending_sigterm),
    ("kill -SEGV to PID 1", kill_segv),
    ("stderr EPIPE, SIGUSR1", epipe_stderr),
]


def main() -> int:
    """Print one Markdown table row per case."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        print("needs root and unshare(1)", file=sys.stderr)
        return 1
    with (
        Emulator(rate_limits={"RegisterUsage": None}) as emulator,
        tempfile.TemporaryDirectory() as tmp,
    ):
        base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MARKETPLACE_"))}
        run_env = {
            **base,
            "AWS_ENDPOINT_URL_MARKETPLACE_METERING": emulator.endpoint,
            "AWS_ACCESS_KEY_ID": "AKIDCOMPARE",
            "AWS_SECRET_ACCESS_KEY": "secret",
            "AWS_REGION": "us-east-1",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
            "MARKETPLACE_PRODUCT_CODE": "prod-compare",
            "MARKETPLACE_PUBLIC_KEY_FILE": str(emulator.public_key_file),
            "MARKETPLACE_REREGISTER_INTERVAL": "0",
            "MARKETPLACE_LOG_LEVEL": "debug",
        }
        wrappers: list[tuple[str, Wrapper, dict[str, str]]] = [
            ("run", [sys.executable, "-m", "marketplace_entitlement", "run", "--"], run_env)
        ]
        for name in ("tini", "dumb-init"):
            path = shutil.which(name)
            if path is not None:
                wrappers.append((name, [path, "--"], base))
        print("| case | " + " | ".join(name for name, _, _ in wrappers) + " |")
        print("| --- |" + " --- |" * len(wrappers))
        for label, case in CASES:
            cells = []
            for _, wrapper, env in wrappers:
                with tempfile.TemporaryDirectory(dir=tmp) as scratch:
                    try:
                        cells.append(case(wrapper, env, Path(scratch)))
                    except (AssertionError, RuntimeError, subprocess.TimeoutExpired) as error:
                        cells.append(f"failed: {type(error).__name__}")
            print(f"| {label} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
