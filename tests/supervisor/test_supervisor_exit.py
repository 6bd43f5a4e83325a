"""How ``run`` ends: at once when CMD exits, with remapped statuses, and when its parent dies.

- A re-registration in flight when CMD exits is abandoned (the wrapper does not wait for it).
- ``MARKETPLACE_SUCCESS_EXIT_CODES`` reports chosen CMD statuses as 0 (tini ``-e``).
- ``MARKETPLACE_PARENT_DEATH_SIGNAL`` asks the kernel for a signal when the process that started
  ``run`` dies (tini ``-p``); it is forwarded to CMD like any other.
"""

from __future__ import annotations

import signal
import subprocess
import threading

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from marketplace_entitlement.emulator import Emulator
from tests.supervisor.supervised import (
    PYTHON,
    TIMEOUT,
    Supervised,
    alive,
    child,
    entrypoint_argv,
    entrypoint_environment,
    wait_until,
)


def _text_env(aws_env: dict[str, str], **more: str) -> dict[str, str]:
    return {**aws_env, "MARKETPLACE_LOG_FORMAT": "text", "MARKETPLACE_LOG_LEVEL": "debug", **more}


@pytest.mark.pid1
def test_cmd_exiting_during_a_reregistration_ends_run_without_waiting_for_it(
    service: Emulator, aws_env: dict[str, str]
) -> None:
    """CMD exits while a re-registration is held by the service: run exits with CMD's status.

    The round in flight is abandoned the moment CMD's status is known: when the service answers
    right after "the command exited" is logged, its success is neither logged nor recorded (the
    old wrapper waited up to 1 s for it, and logged it).
    """
    second_arrived, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def factory(claims: dict[str, object], key: rsa.RSAPrivateKey) -> str:
        calls.append(1)
        if len(calls) == 2:  # the first re-registration: hold it
            second_arrived.set()
            release.wait(TIMEOUT)
        return jwt.encode(claims, key, algorithm="PS256")

    service.set_token_factory(factory)
    env = _text_env(aws_env, MARKETPLACE_REREGISTER_INTERVAL="200ms")
    command = ["sh", "-c", "echo ready; read line; exit 3"]
    try:
        with Supervised(command, env=env) as supervised:
            supervised.expect("ready")
            wait_until(second_arrived.is_set, "a re-registration reaching the service")
            supervised.close_stdin()
            supervised.expect_log("the command exited with status 3")
            release.set()
            assert supervised.wait() == 3
            stderr = supervised.stderr
    finally:
        release.set()
    assert "re-registration 1 succeeded" not in stderr


@pytest.mark.parametrize(("status", "reported"), [(143, 0), (130, 0), (3, 3)])
def test_success_exit_codes_are_reported_as_zero(
    aws_env: dict[str, str], status: int, reported: int
) -> None:
    """``--success-exit-codes 143,130``: CMD's 143 or 130 becomes 0; any other status is kept."""
    argv = [*entrypoint_argv([]), "--success-exit-codes", "143,130", "--", "sh", "-c"]
    result = subprocess.run(
        [*argv, f"exit {status}"],
        env=_text_env(aws_env, MARKETPLACE_REREGISTER_INTERVAL="0"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == reported, result.stderr


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MARKETPLACE_SUCCESS_EXIT_CODES", "0,300"),
        ("MARKETPLACE_SUCCESS_EXIT_CODES", "143;130"),
        ("MARKETPLACE_PARENT_DEATH_SIGNAL", "KILL"),
        ("MARKETPLACE_PARENT_DEATH_SIGNAL", "SIGNOPE"),
        ("MARKETPLACE_LEFTOVER_GRACE_PERIOD", "-1s"),
    ],
)
def test_invalid_supervision_settings_are_configuration_errors(
    aws_env: dict[str, str], variable: str, value: str
) -> None:
    """A bad exit-code list, an unknown or uncatchable signal, a bad duration: 78, naming it.

    CMD never runs.
    """
    env = {**aws_env, variable: value}
    argv = [*entrypoint_argv([]), "--", "sh", "-c", "exit 0"]
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 78
    assert variable in result.stderr


# The parent of ``run``: starts it, prints its pid, then waits for the test to kill it. ``run`` and
# CMD share the test's stdin pipe, which stays open after the parent dies (CMD exits at its end).
_PARENT = """
import subprocess, sys
wrapper = subprocess.Popen(sys.argv[1:])
print(wrapper.pid, flush=True)
sys.stdin.read()
"""


def test_parent_death_signal_reaches_cmd_when_the_parent_dies() -> None:
    """With ``--parent-death-signal TERM``, killing run's parent sends run SIGTERM; CMD gets it.

    CMD (exiting 0 on SIGTERM) then ends, and run exits.
    """
    command = child("signal_echo.py", "--exit-on", "SIGTERM:0")
    argv = [*entrypoint_argv([]), "--parent-death-signal", "TERM", "--", *command]
    parent = subprocess.Popen(
        [PYTHON, "-c", _PARENT, *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=entrypoint_environment(),
    )
    try:
        assert parent.stdout is not None
        wrapper = int(parent.stdout.readline())
        assert parent.stdout.readline().strip() == "child ready", parent.stderr
        parent.kill()
        parent.wait(TIMEOUT)
        assert parent.stdout.readline().strip() == f"child {signal.SIGTERM}"
        wait_until(lambda: not alive(wrapper), "run exiting")
    finally:
        if parent.poll() is None:
            parent.kill()
        parent.communicate()
