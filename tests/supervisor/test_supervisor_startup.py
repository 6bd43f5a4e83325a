"""Before CMD exists: signals are held from the first line of Python, and CMD gets what we got.

PID 1 drops a signal that has no handler, so ``run`` blocks every signal it forwards before loading
anything heavy and unblocks them once its handlers exist (as tini and dumb-init block them first
thing in ``main()``); signals other than the shutdown ones that arrive during registration reach
CMD once it starts; CMD's environment and standard descriptors are exactly the wrapper's.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from marketplace_entitlement.emulator import Emulator
from tests.supervisor.supervised import (
    PYTHON,
    TIMEOUT,
    Supervised,
    child,
    entrypoint_environment,
    skip_unless_pid1,
    wait_until,
)

AS_PID1 = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]
CLI = [PYTHON, "-m", "marketplace_entitlement"]

# Run as the namespace's PID 1: block SIGNAL, send it to ourselves (it stays pending, as a signal
# sent while the wrapper's interpreter is still loading would be), then exec the wrapper. The mask
# and the pending signal survive exec; a wrapper that never unblocks it never sees it.
_PENDING_THEN_EXEC = """
import os, signal, sys
signum = int(sys.argv[1])
signal.pthread_sigmask(signal.SIG_BLOCK, [signum])
os.kill(os.getpid(), signum)
os.execv(sys.executable, [sys.executable, *sys.argv[2:]])
"""


@pytest.mark.pid1
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_a_shutdown_signal_sent_before_handlers_exist_ends_startup(
    tmp_path: Path, signum: signal.Signals
) -> None:
    """A SIGTERM/SIGINT pending when the wrapper starts is delivered once its handlers exist.

    The wrapper exits 128+N without starting CMD and without a traceback.
    """
    skip_unless_pid1()
    marker = tmp_path / "cmd-ran"
    argv = [*AS_PID1, PYTHON, "-c", _PENDING_THEN_EXEC, str(int(signum))]
    argv += ["-m", "marketplace_entitlement", "run", "--", "touch", str(marker)]
    result = subprocess.run(
        argv, env=entrypoint_environment(), capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 128 + signum, result.stderr
    assert not marker.exists()
    assert "Traceback" not in result.stderr
    assert f"{signum.name} received while registering; not starting" in result.stderr


# Runs the given entry point the way its launcher would, with an audit hook that records, when the
# CLI (which loads the rest of the package) is first imported, whether SIGTERM is blocked.
_BLOCKED_AT_HEAVY_IMPORTS = """
import os, runpy, signal, sys
report, how, target = sys.argv[1], sys.argv[2], sys.argv[3]
heavy = {"marketplace_entitlement._cli"}
def hook(event, args):
    if event == "import" and args[0] in heavy:
        heavy.discard(args[0])
        blocked = signal.SIGTERM in signal.pthread_sigmask(signal.SIG_BLOCK, [])
        line = f"{args[0]} {'blocked' if blocked else 'not blocked'}\\n".encode()
        fd = os.open(report, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        os.write(fd, line)
        os.close(fd)
sys.addaudithook(hook)
sys.argv = [target, "run", "--", "true"]
if how == "module":
    runpy.run_module(target, run_name="__main__", alter_sys=True)
else:
    runpy.run_path(target, run_name="__main__")
"""


@pytest.mark.parametrize("how", ["module", "script"], ids=["python-m", "console-script"])
def test_signals_are_blocked_before_the_heavy_imports(tmp_path: Path, how: str) -> None:
    """``python -m`` and the console script block SIGTERM before loading the CLI (and the rest)."""
    report = tmp_path / "report"
    script = Path(sys.executable).parent / "marketplace-entitlement"
    target = "marketplace_entitlement" if how == "module" else str(script)
    result = subprocess.run(
        [PYTHON, "-c", _BLOCKED_AT_HEAVY_IMPORTS, str(report), how, target],
        env=entrypoint_environment(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert report.read_text().splitlines() == ["marketplace_entitlement._cli blocked"]


class HeldRegistration:
    """The emulator answers RegisterUsage only once :meth:`release` is called."""

    def __init__(self) -> None:
        self.arrived = threading.Event()
        self._release = threading.Event()

    def token(self, claims: dict[str, object], key: rsa.RSAPrivateKey) -> str:
        """The emulator's token factory: note the request, wait for the release, then sign."""
        self.arrived.set()
        self._release.wait(TIMEOUT)
        return jwt.encode(claims, key, algorithm="PS256")

    def release(self) -> None:
        """Let RegisterUsage answer."""
        self._release.set()


@pytest.fixture
def held_registration(service: Emulator) -> Iterator[HeldRegistration]:
    """RegisterUsage is held by the emulator until the test releases it."""
    held = HeldRegistration()
    service.set_token_factory(held.token)
    yield held
    held.release()


def _text_env(aws_env: dict[str, str]) -> dict[str, str]:
    return {
        **aws_env,
        "MARKETPLACE_LOG_FORMAT": "text",
        "MARKETPLACE_LOG_LEVEL": "debug",
        "MARKETPLACE_REREGISTER_INTERVAL": "0",
    }


@pytest.mark.pid1
def test_a_signal_received_during_registration_reaches_cmd_once_it_starts(
    aws_env: dict[str, str], held_registration: HeldRegistration
) -> None:
    """SIGUSR1 during registration is held, then delivered to CMD right after it starts.

    As with tini and dumb-init it may reach CMD before CMD installs its handler: then it ends CMD
    (138), else CMD reports it; either way it was delivered, not dropped.
    """
    with Supervised(child("signal_echo.py"), env=_text_env(aws_env)) as supervised:
        wait_until(held_registration.arrived.is_set, "RegisterUsage arriving at the emulator")
        supervised.send(signal.SIGUSR1)
        supervised.expect_log("received SIGUSR1 while registering")
        held_registration.release()
        supervised.close_stdin()
        code = supervised.wait()
        stdout = supervised.rest_of_stdout()
    assert code == 128 + signal.SIGUSR1 or f"child {signal.SIGUSR1}" in stdout


@pytest.mark.pid1
def test_cmd_gets_the_environment_the_wrapper_was_given(aws_env: dict[str, str]) -> None:
    """With no locale set, CMD's environment equals the wrapper's exactly (no ``LC_CTYPE=C.UTF-8``).

    Python's locale coercion writes ``LC_CTYPE`` into ``os.environ``; CMD must not inherit it.
    """
    env = {
        name: value
        for name, value in _text_env(aws_env).items()
        if not name.startswith(("LC_", "LANG", "PYTHONCOERCECLOCALE"))
    }
    with Supervised(["env"], env=env) as supervised:
        assert supervised.wait() == 0, supervised.stderr
        lines = supervised.rest_of_stdout()
    seen = dict(line.split("=", 1) for line in lines)
    assert "LC_CTYPE" not in seen
    assert seen == env


@pytest.mark.pid1
def test_a_closed_stderr_leaves_the_exit_status_to_cmd(aws_env: dict[str, str]) -> None:
    """``run -- CMD 2>&-``: the wrapper logs nowhere and exits with CMD's status (7).

    CMD starts with fd 2 closed too, exactly as the wrapper was given it.
    """
    command = ["sh", "-c", "if [ -e /proc/self/fd/2 ]; then exit 8; fi; exit 7"]
    close_stderr = ["sh", "-c", 'exec "$@" 2>&-', "sh"]
    with Supervised(command, env=_text_env(aws_env), wrap=close_stderr) as supervised:
        assert supervised.wait() == 7
