"""``marketplace-entitlement run`` as the container ENTRYPOINT: the real CLI as PID 1, the emulator.

Process supervision itself (signals, exit statuses, reaping) is proven in ``tests/supervisor``; this
module proves what ``run`` adds: the gate before CMD, re-registration, its failure policy, the status
file and the probe.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from marketplace_entitlement import load_settings
from marketplace_entitlement._status import StatusFile, probe
from marketplace_entitlement.emulator import Emulator

CLI = [sys.executable, "-m", "marketplace_entitlement"]
UNSHARE = shutil.which("unshare")
# --kill-child: if unshare is killed (a failed test cleaning up), the wrapper inside dies too.
AS_PID1 = [UNSHARE, "--pid", "--fork", "--mount-proc", "--kill-child"] if UNSHARE else []

pid1 = pytest.mark.skipif(
    os.geteuid() != 0 or UNSHARE is None,
    reason="PID 1 tests need root and unshare(1) to create a PID namespace",
)


_STARTED: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _no_process_outlives_its_test() -> Iterator[None]:
    """A test that fails half-way must not leave a wrapper retrying in the background."""
    yield
    while _STARTED:
        process = _STARTED.pop()
        if process.poll() is None:
            process.kill()
        process.communicate()


def start_run(
    env: dict[str, str], command: list[str], *options: str, as_pid1: bool = True
) -> subprocess.Popen[str]:
    """Start ``run [options] -- command`` (as PID 1 in a new PID namespace unless told otherwise)."""
    argv = [*(AS_PID1 if as_pid1 else []), *CLI, "run", *options, "--", *command]
    process = subprocess.Popen(
        [str(a) for a in argv],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _STARTED.append(process)
    return process


def signal_wrapper(process: subprocess.Popen[str], signum: int) -> None:
    """Send ``signum`` to the wrapper itself: unshare's child (PID 1 inside), not unshare."""
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    assert wait_for(lambda: bool(children.read_text().split())), "unshare's child never appeared"
    os.kill(int(children.read_text().split()[0]), signum)


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> bool:
    """Poll ``condition`` every 20 ms until true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


@pid1
def test_entitled_run_starts_cmd_as_child_of_pid1(
    service: Emulator, aws_env: dict[str, str], tmp_path: Path
) -> None:
    """Entitled: CMD runs (as a child of PID 1 in the namespace) and its status is the exit code."""
    marker = tmp_path / "ran"
    process = start_run(
        aws_env, ["sh", "-c", f'echo "$PPID" > {marker}; exit 7'], "--reregister-interval", "0"
    )
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 7, stderr
    assert marker.read_text().strip() == "1"  # the wrapper is PID 1, CMD's parent


@pid1
@pytest.mark.parametrize(
    ("setup", "exit_code"),
    [("not_entitled", 77), ("platform_not_supported", 77), ("forged", 65), ("no_key", 78)],
)
def test_refused_run_never_starts_cmd(
    service: Emulator,
    aws_env: dict[str, str],
    tmp_path: Path,
    other_rsa_key: rsa.RSAPrivateKey,
    setup: str,
    exit_code: int,
) -> None:
    """Not entitled, unverifiable or misconfigured: the mapped exit code, and CMD never runs."""
    env = dict(aws_env)
    if setup == "forged":
        service.set_token_factory(lambda c, k: jwt.encode(c, other_rsa_key, algorithm="PS256"))
    elif setup == "no_key":
        del env["MARKETPLACE_PUBLIC_KEY_FILE"]
    else:
        service.set_product("prod-test123", setup)
    marker = tmp_path / "ran"
    process = start_run(env, ["touch", str(marker)])
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == exit_code, stderr
    assert not marker.exists()
    assert '"event": "entitlement.refused"' in stderr


@pid1
def test_sigterm_during_startup_retries_exits_at_once_without_cmd(
    service: Emulator, aws_env: dict[str, str], tmp_path: Path
) -> None:
    """SIGTERM while startup is retrying throttled calls: exit 143 promptly, CMD never started."""
    service.inject_fault("RegisterUsage", "error", error="ThrottlingException")
    marker = tmp_path / "ran"
    process = start_run(aws_env, ["touch", str(marker)])
    assert wait_for(lambda: bool(service.requests("RegisterUsage")))
    time.sleep(0.2)
    signal_wrapper(process, signal.SIGTERM)
    _, stderr = process.communicate(timeout=10)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert not marker.exists()
    assert len(service.requests("RegisterUsage")) == 1


@pid1
def test_reregistration_uses_fresh_nonces_while_cmd_runs(
    service: Emulator, aws_env: dict[str, str]
) -> None:
    """With a 1 s interval, RegisterUsage is repeated in the background, each with a new nonce."""
    process = start_run(
        aws_env, ["sleep", "30"], "--reregister-interval", "1s", "--stop-grace-period", "2s"
    )
    # Five requests: the startup one and four rounds, of which the first three had finished (rounds
    # are sequential) when the fourth began; SIGTERM may abandon the fourth (run exits at once).
    assert wait_for(lambda: len(service.requests("RegisterUsage")) >= 5, timeout=30)
    signal_wrapper(process, signal.SIGTERM)
    _, stderr = process.communicate(timeout=15)
    assert process.returncode == 128 + signal.SIGTERM, stderr  # sleep died of the forwarded TERM
    nonces = [r.body["Nonce"] for r in service.requests("RegisterUsage") if r.body]
    assert len(nonces) >= 5
    assert len(set(nonces)) == len(nonces)
    assert stderr.count('"event": "reregistration.succeeded"') >= 3


def _forge_after_first(service: Emulator) -> None:
    """From the second registration on, answer tokens for another nonce (verification fails)."""
    seen: list[int] = []

    def factory(claims: dict[str, object], key: rsa.RSAPrivateKey) -> str:
        seen.append(1)
        if len(seen) > 1:
            claims = {**claims, "nonce": "replayed"}
        return jwt.encode(claims, key, algorithm="PS256")

    service.set_token_factory(factory)


@pid1
def test_failure_policy_keep_running_leaves_cmd_running(
    service: Emulator, aws_env: dict[str, str], tmp_path: Path
) -> None:
    """Default policy: a failed re-registration is logged and recorded; CMD keeps running."""
    _forge_after_first(service)
    status = tmp_path / "status.json"
    process = start_run(
        {**aws_env, "MARKETPLACE_STATUS_FILE": str(status)},
        ["sh", "-c", "sleep 4; exit 5"],
        "--reregister-interval",
        "1s",
    )
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 5, stderr  # CMD ran to its own end
    assert '"event": "reregistration.failed"' in stderr
    state = json.loads(status.read_text())
    assert state["last_error"]["exit_code"] == 65
    assert state["entitled"] is False  # a verification failure ends the entitled state


def start_with_stop_policy(env: dict[str, str], child: str, *, grace: str) -> subprocess.Popen[str]:
    """``run`` a shell ``child`` re-registering every second with the ``stop`` failure policy."""
    return start_run(
        env,
        ["sh", "-c", child],
        *("--reregister-interval", "1s", "--reregister-failure-policy", "stop"),
        *("--stop-grace-period", grace),
    )


@pid1
def test_failure_policy_stop_terminates_cmd_and_exits_with_the_refusal_code(
    service: Emulator, aws_env: dict[str, str], tmp_path: Path
) -> None:
    """Policy ``stop``: a failed re-registration SIGTERMs CMD, and run exits with the refusal code."""
    _forge_after_first(service)
    marker = tmp_path / "terminated"
    child = f"trap 'touch {marker}; exit 0' TERM; while :; do sleep 0.1; done"
    process = start_with_stop_policy(aws_env, child, grace="5s")
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 65, stderr
    assert marker.exists()  # CMD got SIGTERM and ran its handler: a graceful stop


@pid1
def test_failure_policy_stop_kills_cmd_that_ignores_sigterm(
    service: Emulator, aws_env: dict[str, str]
) -> None:
    """Policy ``stop`` with a CMD ignoring SIGTERM: SIGKILL after the grace period, exit code 65."""
    _forge_after_first(service)
    child = "trap '' TERM; while :; do sleep 0.1; done"
    started = time.monotonic()
    process = start_with_stop_policy(aws_env, child, grace="1s")
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 65, stderr
    assert "SIGKILL" in stderr
    assert time.monotonic() - started < 25


@pid1
def test_status_file_and_probe_follow_the_state(
    service: Emulator, aws_env: dict[str, str], tmp_path: Path
) -> None:
    """The status file says entitled while CMD runs, and ``probe`` passes; a tiny max age fails it."""
    status = tmp_path / "run" / "status.json"
    env = {**aws_env, "MARKETPLACE_STATUS_FILE": str(status)}
    process = start_run(env, ["sleep", "30"], "--reregister-interval", "0")
    assert wait_for(lambda: status.exists() and '"entitled": true' in status.read_text())
    state = json.loads(status.read_text())
    assert state["state"] == "entitled"
    assert state["product_code"] == "prod-test123"
    assert isinstance(state["last_success"], float)
    probe = subprocess.run([*CLI, "probe"], env=env, capture_output=True, text=True, check=False)
    assert probe.returncode == 0, probe.stderr
    assert "entitled" in probe.stdout
    time.sleep(0.3)
    stale = subprocess.run(
        [*CLI, "probe", "--max-age", "100ms"], env=env, capture_output=True, text=True, check=False
    )
    assert stale.returncode == 1
    assert "more than" in stale.stderr
    signal_wrapper(process, signal.SIGTERM)
    process.communicate(timeout=15)


def test_status_file_records_a_refusal_and_probe_fails(
    service: Emulator, aws_env: dict[str, str], tmp_path: Path
) -> None:
    """After a refusal the status file says not entitled with the error, and the probe fails."""
    service.set_product("prod-test123", "not_entitled")
    status = tmp_path / "status.json"
    env = {**aws_env, "MARKETPLACE_STATUS_FILE": str(status)}
    process = start_run(env, ["true"], as_pid1=False)
    process.communicate(timeout=60)
    assert process.returncode == 77
    state = json.loads(status.read_text())
    assert state["state"] == "not_entitled"
    assert state["last_error"]["aws_error_code"] == "CustomerNotEntitledException"
    probe = subprocess.run([*CLI, "probe"], env=env, capture_output=True, text=True, check=False)
    assert probe.returncode == 1
    assert "CustomerNotEntitledException" in probe.stderr


def test_probe_without_status_file(tmp_path: Path) -> None:
    """The probe fails (1) when the file does not exist, and 78 when no file is configured."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARKETPLACE_")}
    missing = subprocess.run(
        [*CLI, "probe", "--status-file", str(tmp_path / "none.json")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert missing.returncode == 1
    assert "has not registered yet" in missing.stderr
    unset = subprocess.run([*CLI, "probe"], env=env, capture_output=True, text=True, check=False)
    assert unset.returncode == 78
    assert "MARKETPLACE_STATUS_FILE" in unset.stderr


@pytest.mark.parametrize("argv", [["run"], ["run", "--"], ["run", "--register-timeout", "5s"]])
def test_run_without_command_is_a_usage_error(aws_env: dict[str, str], argv: list[str]) -> None:
    """``run`` with no command exits 64 and says how to call it."""
    result = subprocess.run([*CLI, *argv], env=aws_env, capture_output=True, text=True, check=False)
    assert result.returncode == 64
    assert "run [OPTIONS] -- CMD" in result.stderr


@pytest.mark.parametrize(
    "options", [[], ["--register-timeout", "1m"], ["--register-timeout=1m", "--log-format", "text"]]
)
def test_run_without_double_dash_takes_cmd_after_the_options(
    service: Emulator, aws_env: dict[str, str], options: list[str]
) -> None:
    """``run [OPTIONS] CMD`` (an image's CMD after ENTRYPOINT ["...", "run"]) works without ``--``."""
    result = subprocess.run(
        [*CLI, "run", *options, "sh", "-c", "exit 9", "--not-an-option-of-run"],
        env=aws_env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 9, result.stderr


def test_unwritable_status_file_is_refused_before_registering(
    service: Emulator, aws_env: dict[str, str], tmp_path: Path
) -> None:
    """A status file that cannot be written is a configuration error (78) naming the variable."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    env = {**aws_env, "MARKETPLACE_STATUS_FILE": str(blocker / "status.json")}
    result = subprocess.run([*CLI, "check"], env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 78
    assert "MARKETPLACE_STATUS_FILE" in result.stderr
    assert service.requests() == []


def test_status_write_failure_later_is_logged_not_fatal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """When the status directory disappears mid-run, the write is logged and nothing raises."""
    directory = tmp_path / "run"
    status = StatusFile(directory / "status.json", product_code="p", max_age=None).create()
    shutil.rmtree(directory)
    directory.write_text("now a file")  # the directory cannot be recreated
    with caplog.at_level("WARNING", logger="marketplace_entitlement"):
        status.record_success(registered_at=time.time(), next_attempt=None)
    assert any("could not write the status file" in r.getMessage() for r in caplog.records)


def test_probe_has_no_age_limit_when_reregistration_is_off(tmp_path: Path) -> None:
    """With MARKETPLACE_REREGISTER_INTERVAL=0 the startup registration stays current for the probe."""
    settings = load_settings(
        {"MARKETPLACE_PRODUCT_CODE": "p", "MARKETPLACE_VERIFY_SIGNATURE": "false"},
        reregister_interval="0",
    )
    assert settings.effective_status_max_age is None
    path = tmp_path / "status.json"
    status = StatusFile(path, product_code="p", max_age=settings.effective_status_max_age).create()
    status.record_success(registered_at=time.time(), next_attempt=None)
    assert probe(path, now=time.time() + 30 * 86400).healthy
    assert not probe(path, max_age=60, now=time.time() + 3600).healthy


def test_run_with_double_dash_inside_cmd_and_none_before(
    service: Emulator, aws_env: dict[str, str]
) -> None:
    """Without a leading ``--``, a ``--`` inside CMD belongs to CMD (``npm run start -- --port``)."""
    result = subprocess.run(
        [*CLI, "run", "sh", "-c", 'echo "$@"', "sh", "--", "--port", "80"],
        env=aws_env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "-- --port 80"
