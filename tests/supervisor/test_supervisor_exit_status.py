"""The supervisor exits with its command's status, 128+N for death by signal, 126/127 for exec."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.supervisor.supervised import PYTHON, run

EXIT_CODES = [0, 1, 2, 32, 64, 127, 254, 255]
KILLED_BY = [signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGKILL]


@pytest.mark.pid1
def test_supervision_runs_behind_the_real_gate() -> None:
    """These tests drive ``marketplace-entitlement run``: it registers, verifies, then starts CMD."""
    status, stdout, stderr = run(["sh", "-c", "echo started"])
    assert status == 0
    assert "started" in stdout
    assert stderr.index("entitled to prod-supervision") < stderr.index("started ['sh'")


@pytest.mark.pid1
@pytest.mark.parametrize("code", EXIT_CODES)
def test_exit_status_of_the_command_is_passed_through_as_pid1(code: int) -> None:
    """As PID 1, the supervisor exits with exactly the status its command exited with."""
    status, _, _ = run(["sh", "-c", f"exit {code}"])
    assert status == code


@pytest.mark.pid1
@pytest.mark.parametrize("signum", KILLED_BY, ids=lambda s: signal.Signals(s).name)
def test_command_killed_by_signal_gives_128_plus_n_as_pid1(signum: int) -> None:
    """As PID 1, a command that dies from signal N makes the supervisor exit 128+N."""
    kill_self = f"import os; os.kill(os.getpid(), {int(signum)})"
    status, _, _ = run([PYTHON, "-c", kill_self])
    assert status == 128 + signum


@pytest.mark.parametrize("code", [0, 3, 255])
def test_exit_status_is_passed_through_when_not_pid1(code: int) -> None:
    """Not as PID 1 (the subreaper path), the command's exit status is passed through too."""
    status, _, _ = run(["sh", "-c", f"exit {code}"], pid1=False)
    assert status == code


@pytest.mark.pid1
def test_missing_command_exits_127_naming_it() -> None:
    """A command that is not on PATH gives exit 127 and a message that names it."""
    status, _, stderr = run(["no-such-command-anywhere", "--flag"])
    assert status == 127
    assert "command not found: 'no-such-command-anywhere'" in stderr


@pytest.mark.pid1
def test_non_executable_file_exits_126_naming_it(tmp_path: Path) -> None:
    """A command that exists but is not executable gives exit 126 and a message that names it."""
    script = tmp_path / "not-executable.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o644)
    status, _, stderr = run([str(script)])
    assert status == 126
    assert f"cannot execute '{script}'" in stderr


def test_script_with_missing_interpreter_exits_126(tmp_path: Path) -> None:
    """An executable whose #! interpreter is missing exists, so it is 126 (as in shells), not 127."""
    script = tmp_path / "bad-interpreter.sh"
    script.write_text("#!/no/such/interpreter\nexit 0\n")
    script.chmod(0o755)
    status, _, stderr = run([str(script)], pid1=False)
    assert status == 126
    assert "interpreter" in stderr


@pytest.mark.pid1
def test_script_without_shebang_runs_with_bin_sh(tmp_path: Path) -> None:
    """A script with no #! line runs with /bin/sh (as execvp does) and exits with its own status."""
    script = tmp_path / "no-shebang"
    script.write_text('echo "ran with $1"\nexit 4\n')
    script.chmod(0o755)
    status, stdout, _ = run([str(script), "an-argument"])
    assert status == 4
    assert stdout == "ran with an-argument"
