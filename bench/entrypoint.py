"""Does the ``run`` wrapper cost a container no more than AWS's own sample, and nothing while idle?

Against the emulator in a subprocess (rate limits off), this prints, each with its target:

- the wall time of ``marketplace-entitlement run -- true`` over that of AWS's sample
  (``boto3.client("meteringmarketplace").register_usage(...)``: no nonce, no verification),
  medians of interleaved runs; target <= 1.0;
- the wrapper's peak RSS (VmHWM of the wrapper's pid while ``run -- sleep`` runs); <= 45 MiB;
- the CPU the wrapper uses while its child idles a minute with the default re-register interval
  (utime + stime from /proc/PID/stat between t=2 s and t=62 s); <= 0.05 s per minute.

When a target fails (or with ``--profile``) it shows where the time and memory go: the wrapper's
largest imports (``-X importtime``) and its RSS after each stage of a registration.

    .venv/bin/python -m bench.entrypoint [--runs 15] [--quick] [--profile] [--latency 0.05]
"""

from __future__ import annotations

import argparse
import json
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

PRODUCT_CODE = "benchproduct0001"
WALL_RATIO_TARGET = 1.0
PEAK_RSS_TARGET_MIB = 45.0
IDLE_CPU_TARGET_PER_MINUTE = 0.05
READY_TIMEOUT = 60.0
RUN_TIMEOUT = 60.0
MAX_IMPORT_DEPTH = 2  # the profile lists imports this deep (0: imported by the script itself)
IDLE_START = 2.0  # seconds after the wrapper starts: registration is long done by then

# AWS's sample (the Seller Guide's Python example), as a seller would paste it.
AWS_SAMPLE = """\
import os, boto3
client = boto3.client("meteringmarketplace")
client.register_usage(ProductCode=os.environ["MARKETPLACE_PRODUCT_CODE"], PublicKeyVersion=1)
"""

# The wrapper's stages, each followed by its RSS (what ``run`` does, step by step).
RSS_STAGES = """\
import os, sys, time
def rss():
    for line in open("/proc/self/status"):
        if line.startswith(("VmRSS", "VmHWM")):
            yield line.split()[1]
def stage(name):
    print(name, *rss(), flush=True)
stage("python")
import marketplace_entitlement._cli
stage("import marketplace_entitlement._cli")
import marketplace_entitlement._entrypoint
stage("import _entrypoint (supervisor, gate)")
from marketplace_entitlement import load_settings
settings = load_settings()
stage("load_settings (public key parsed)")
import botocore.session
stage("import botocore.session")
from marketplace_entitlement._client import create_metering_client
client = create_metering_client(settings)
stage("botocore client created")
from marketplace_entitlement.entitlement._gate import Gate
Gate(settings, client).check()
stage("RegisterUsage + PS256 verification")
"""


def venv_script(name: str) -> str:
    """A console script next to this interpreter (the venv's bin directory)."""
    return str(Path(sys.executable).parent / name)


class EmulatorProcess:
    """``python -m marketplace_entitlement emulator`` with the RegisterUsage limit off."""

    def __init__(self, latency: float = 0.0) -> None:
        command = [sys.executable, "-m", "marketplace_entitlement", "emulator", "--port", "0"]
        command += ["--rate-limit", "RegisterUsage=0", "--product-code", PRODUCT_CODE]
        if latency > 0:  # the service's round trip, as from a task to the regional endpoint
            command += ["--fault", f"RegisterUsage:delay={latency:g}"]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE)
        assert self.process.stdout is not None
        readable, _, _ = select.select([self.process.stdout], [], [], READY_TIMEOUT)
        line = self.process.stdout.readline() if readable else b""
        try:
            ready = json.loads(line or b"{}")
        except ValueError:
            ready = {}
        if "endpoint" not in ready or "public_key_file" not in ready:
            self.close()
            raise RuntimeError(f"the emulator printed no ready line: {line!r}")
        self.endpoint = str(ready["endpoint"])
        self.public_key_file = str(ready["public_key_file"])

    def close(self) -> None:
        """SIGTERM, then wait (bounded)."""
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def child_environment(emulator: EmulatorProcess, home: str) -> dict[str, str]:
    """The same environment for the wrapper and the sample: the emulator, dummy keys, a region.

    No user AWS config or credentials file is read, and no instance metadata is asked for.
    """
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": home,
        "LANG": "C.UTF-8",
        "MARKETPLACE_PRODUCT_CODE": PRODUCT_CODE,
        "MARKETPLACE_PUBLIC_KEY_FILE": emulator.public_key_file,
        "AWS_ENDPOINT_URL_MARKETPLACE_METERING": emulator.endpoint,
        "AWS_ACCESS_KEY_ID": "AKIDBENCHENTRYPOINT",
        "AWS_SECRET_ACCESS_KEY": "bench-secret-access-key",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",  # boto3's sample reads this one, not AWS_REGION
        "AWS_CONFIG_FILE": os.path.join(home, "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": os.path.join(home, "no-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def timed(command: Sequence[str], env: Mapping[str, str]) -> float:
    """Wall seconds of ``command``; raise if it does not exit 0."""
    started = time.perf_counter()
    completed = subprocess.run(
        command,
        env=dict(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if completed.returncode != 0:
        tail = completed.stderr.decode(errors="replace")[-2000:]
        raise RuntimeError(f"{command[0]} exited {completed.returncode}:\n{tail}")
    return elapsed


@dataclass(frozen=True)
class WallTimes:
    """Interleaved wall times of the wrapper and of AWS's sample."""

    wrapper: list[float]
    sample: list[float]

    @property
    def ratio(self) -> float:
        """Median wrapper time over median sample time."""
        return statistics.median(self.wrapper) / statistics.median(self.sample)


def measure_wall(env: Mapping[str, str], runs: int) -> WallTimes:
    """One warm-up of each, then ``runs`` of each, alternating which goes first."""
    wrapper = [venv_script("marketplace-entitlement"), "run", "--", "true"]
    sample = [sys.executable, "-c", AWS_SAMPLE]
    timed(wrapper, env)
    timed(sample, env)
    times = WallTimes([], [])
    for index in range(runs):
        pair = [(wrapper, times.wrapper), (sample, times.sample)]
        for command, into in pair if index % 2 == 0 else pair[::-1]:
            into.append(timed(command, env))
    return times


def status_kib(pid: int, field: str) -> int:
    """A ``kB`` field of /proc/PID/status (VmHWM, VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def cpu_ticks(pid: int) -> int:
    """Utime + stime of the whole process (all threads), in clock ticks, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def cpu_nanoseconds(pid: int) -> int:
    """CPU time of the process's live threads in ns, from /proc/PID/task/*/schedstat (precise)."""
    return sum(_task_nanoseconds(task) for task in Path(f"/proc/{pid}/task").iterdir())


def _task_nanoseconds(task: Path) -> int:
    try:
        return int((task / "schedstat").read_text().split()[0])
    except (OSError, ValueError, IndexError):  # the thread ended meanwhile
        return 0


def has_child(pid: int) -> bool:
    """Whether the wrapper has started its command (a child listed in /proc/PID/task/PID/children)."""
    try:
        return bool(Path(f"/proc/{pid}/task/{pid}/children").read_text().split())
    except OSError:
        return False


def wait_for_child(process: subprocess.Popen[bytes], timeout: float) -> None:
    """Poll (bounded) until the wrapper has started its command; raise if it exits or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the wrapper exited {process.returncode} before starting CMD")
        if has_child(process.pid):
            return
        time.sleep(0.02)
    raise RuntimeError("the wrapper did not start CMD in time")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the wrapper (it forwards to its child), then wait (bounded)."""
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@dataclass(frozen=True)
class Idle:
    """The wrapper while its child sleeps: peak RSS, RSS, CPU over the idle window."""

    peak_kib: int
    rss_kib: int
    window: float
    cpu_stat_seconds: float
    cpu_schedstat_seconds: float


def measure_idle(env: Mapping[str, str], window: float) -> Idle:
    """``run -- sleep``: CPU between t=2 s and t=2 s + ``window``; VmHWM at the end of the window."""
    command = [venv_script("marketplace-entitlement"), "run", "--", "sleep", f"{window + 5:g}"]
    started = time.monotonic()
    process = subprocess.Popen(
        command, env=dict(env), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_child(process, RUN_TIMEOUT)
        time.sleep(max(0.0, started + IDLE_START - time.monotonic()))
        ticks, nanos = cpu_ticks(process.pid), cpu_nanoseconds(process.pid)
        time.sleep(window)
        ticks, nanos = cpu_ticks(process.pid) - ticks, cpu_nanoseconds(process.pid) - nanos
        if process.poll() is not None or not has_child(process.pid):
            raise RuntimeError("the wrapper or its child ended during the idle window")
        peak, rss = status_kib(process.pid, "VmHWM"), status_kib(process.pid, "VmRSS")
    finally:
        stop(process)
    return Idle(peak, rss, window, ticks / os.sysconf("SC_CLK_TCK"), nanos / 1e9)


def sample_peak_kib(env: Mapping[str, str]) -> int:
    """Peak RSS of AWS's sample (it reports its own ru_maxrss once its call is done)."""
    script = (
        AWS_SAMPLE + "import resource\nprint(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", script],
        env=dict(env),
        capture_output=True,
        timeout=RUN_TIMEOUT,
        check=True,
    )
    return int(output.stdout.split()[-1])


# -- profiling -----------------------------------------------------------------------------------


def import_times(command: Sequence[str], env: Mapping[str, str], top: int) -> list[tuple[int, str]]:
    """The ``top`` largest top-level imports (cumulative microseconds) of a Python command."""
    completed = subprocess.run(
        [sys.executable, "-X", "importtime", *command],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    costs: list[tuple[int, str]] = []
    for line in completed.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line[len("import time:") :].split("|")
        depth = (len(name) - len(name.lstrip()) - 1) // 2  # one space, then two per level
        if depth <= MAX_IMPORT_DEPTH:
            costs.append((int(cumulative), "  " * depth + name.strip()))
    return sorted(costs, reverse=True)[:top]


# What the wrapper imports besides botocore, and what AWS's sample imports instead (boto3).
MARGINAL_IMPORTS = (
    "import backoff",
    "import jwt",
    "from cryptography.hazmat.primitives.asymmetric import padding, rsa",
    "import marketplace_entitlement._entrypoint",
    "import boto3",
)
CLIENT = "botocore.session.get_session().create_client('meteringmarketplace')"
REPORT_AND_EXIT = """
import os
for line in open("/proc/self/status"):
    if line.startswith("VmHWM"):
        print(line.split()[1], flush=True)
"""


def startup_cost(
    code: str, env: Mapping[str, str], runs: int, *, finalize: bool
) -> tuple[float, int]:
    """Median wall ms of ``python -c code`` and its peak RSS (KiB); ``finalize=False``: os._exit."""
    script = code + REPORT_AND_EXIT + ("" if finalize else "os._exit(0)\n")
    times: list[float] = []
    peak = 0
    for _ in range(runs):
        started = time.perf_counter()
        completed = subprocess.run(
            [sys.executable, "-c", script],
            env=dict(env),
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            check=True,
        )
        times.append((time.perf_counter() - started) * 1000)
        peak = int(completed.stdout.split()[-1])
    return statistics.median(times), peak


def marginal_costs(env: Mapping[str, str], runs: int = 9) -> None:
    """Print what each import costs on top of botocore, and what interpreter exit costs."""
    base = "import botocore.session"
    base_ms, base_kib = startup_cost(base, env, runs, finalize=False)
    print(
        f"profile: on top of `{base}` ({base_ms:.0f} ms, {base_kib / 1024:.1f} MiB peak; medians)"
    )
    for extra in MARGINAL_IMPORTS:
        ms, kib = startup_cost(f"{base}\n{extra}", env, runs, finalize=False)
        print(f"  {ms - base_ms:+6.1f} ms {(kib - base_kib) / 1024:+5.1f} MiB  {extra}")
    code = f"{base}\nimport marketplace_entitlement._entrypoint\n{CLIENT}"
    exiting, _ = startup_cost(code, env, runs, finalize=True)
    skipping, _ = startup_cost(code, env, runs, finalize=False)
    print(
        f"profile: interpreter exit after the imports and a client: {exiting - skipping:.0f} ms "
        f"({exiting:.0f} ms with a normal exit, {skipping:.0f} ms with os._exit)"
    )


def profile(env: Mapping[str, str]) -> None:
    """Print where the wrapper's time (imports) and memory (RSS by stage) go."""
    print("\nprofile: largest imports of `run -- true` (cumulative ms, -X importtime)")
    for micros, name in import_times(
        ["-m", "marketplace_entitlement", "run", "--", "true"], env, 12
    ):
        print(f"  {micros / 1000:8.1f} ms  {name}")
    print("profile: largest imports of AWS's sample (cumulative ms)")
    for micros, name in import_times(["-c", AWS_SAMPLE], env, 6):
        print(f"  {micros / 1000:8.1f} ms  {name}")
    print("profile: RSS of the wrapper's stages, in one process (VmRSS / VmHWM, MiB)")
    completed = subprocess.run(
        [sys.executable, "-c", RSS_STAGES],
        env={**env, "MARKETPLACE_LOG_LEVEL": "error"},
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    previous = 0
    for line in completed.stdout.splitlines():
        *words, rss, hwm = line.split()
        print(
            f"  {int(rss) / 1024:6.1f} / {int(hwm) / 1024:6.1f}  "
            f"(+{(int(rss) - previous) / 1024:5.1f})  {' '.join(words)}"
        )
        previous = int(rss)
    if completed.returncode != 0:
        print(completed.stderr[-2000:])
    marginal_costs(env)


# -- report --------------------------------------------------------------------------------------


def verdict(passed: bool) -> str:
    """PASS or FAIL."""
    return "PASS" if passed else "FAIL"


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, print each figure with its target, exit 1 if one fails."""
    parser = argparse.ArgumentParser(prog="python -m bench.entrypoint", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--runs", type=int, default=15, help="timed runs of each (default 15)")
    parser.add_argument("--quick", action="store_true", help="idle 10 s instead of 60, scaled")
    parser.add_argument(
        "--profile", action="store_true", help="profile even if every target passes"
    )
    parser.add_argument(
        "--latency",
        type=float,
        default=0.0,
        help="seconds the emulator waits before answering RegisterUsage, standing in for the "
        "network round trip to the real endpoint (default 0: loopback only)",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.runs <= 200:
        parser.error("--runs must be between 1 and 200")
    window = 10.0 if args.quick else 60.0
    if not 0 <= args.latency <= 5:
        parser.error("--latency must be between 0 and 5 seconds")
    emulator = EmulatorProcess(args.latency)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-entrypoint-") as home:
            env = child_environment(emulator, home)
            return report(env, args.runs, window, always_profile=args.profile)
    finally:
        emulator.close()


def report(env: Mapping[str, str], runs: int, window: float, *, always_profile: bool) -> int:
    """Measure the three figures, print them with their targets, profile if one fails."""
    print(
        f"entrypoint: Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, emulator subprocess"
    )
    times = measure_wall(env, runs)
    wrapper_ms = statistics.median(times.wrapper) * 1000
    sample_ms = statistics.median(times.sample) * 1000
    print(
        f"wall, median of {runs} interleaved: `marketplace-entitlement run -- true` "
        f"{wrapper_ms:.0f} ms (min {min(times.wrapper) * 1000:.0f}, max "
        f"{max(times.wrapper) * 1000:.0f}); AWS's boto3 sample {sample_ms:.0f} ms (min "
        f"{min(times.sample) * 1000:.0f}, max {max(times.sample) * 1000:.0f})"
    )
    wall_ok = times.ratio <= WALL_RATIO_TARGET
    print(f"{verdict(wall_ok)}  wall ratio {times.ratio:.2f} (target <= {WALL_RATIO_TARGET:g})")

    idle = measure_idle(env, window)
    peak_mib = idle.peak_kib / 1024
    rss_ok = peak_mib <= PEAK_RSS_TARGET_MIB
    print(
        f"{verdict(rss_ok)}  wrapper peak RSS (VmHWM) {peak_mib:.1f} MiB, VmRSS while idle "
        f"{idle.rss_kib / 1024:.1f} MiB (target <= {PEAK_RSS_TARGET_MIB:g} MiB); AWS's sample "
        f"peaks at {sample_peak_kib(env) / 1024:.1f} MiB"
    )
    scale = 60.0 / idle.window
    per_minute_stat = idle.cpu_stat_seconds * scale
    per_minute_precise = idle.cpu_schedstat_seconds * scale
    # /proc/PID/stat counts in clock ticks (10 ms): over a 10 s window one tick already reads as
    # 0.06 s per minute, so a --quick run judges by the nanosecond schedstat figure.
    judged = per_minute_precise if window < 60.0 else per_minute_stat
    cpu_ok = judged <= IDLE_CPU_TARGET_PER_MINUTE
    print(
        f"{verdict(cpu_ok)}  idle CPU {per_minute_stat:.3f} s per minute from /proc/PID/stat "
        f"({idle.cpu_stat_seconds:.2f} s over {idle.window:g} s), {per_minute_precise:.4f} s per "
        f"minute from schedstat (target <= {IDLE_CPU_TARGET_PER_MINUTE:g})"
    )
    passed = wall_ok and rss_ok and cpu_ok
    if always_profile or not passed:
        profile(env)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
