"""The examples in examples/ behave as their READMEs say, against the emulator over loopback.

Each is run as a seller would run it: the multi-worker server with the real gunicorn (its source
directory on PYTHONPATH stands in for ``pip install .`` of the seller's package), the shell service
under the real ``marketplace-entitlement run``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from marketplace_entitlement.emulator import Emulator
from tests.loopback import get

ROOT = Path(__file__).resolve().parents[2]
MULTI_WORKER = ROOT / "examples" / "multi-worker"
SHELL_SERVICE = ROOT / "examples" / "shell-service"
BIN = Path(sys.executable).parent
GUNICORN = [str(BIN / "gunicorn"), "--config", "python:my_service.gunicorn_config"]
APP = "my_service.app:app"

pytestmark = pytest.mark.skipif(
    not (BIN / "gunicorn").exists(), reason="gunicorn (the test extra) is not installed"
)


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(predicate: object, timeout: float = 30.0) -> bool:
    """Poll ``predicate`` (a callable) every 50 ms until it is true or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def server_env(aws_env: dict[str, str]) -> dict[str, str]:
    """The emulator's environment plus the example's package on PYTHONPATH and a free port."""
    return {
        **aws_env,
        "PYTHONPATH": str(MULTI_WORKER / "src"),
        "BIND": f"127.0.0.1:{free_port()}",
        "WEB_CONCURRENCY": "3",
    }


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test started; any still running at teardown is killed."""
    processes: list[subprocess.Popen[str]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def test_multi_worker_server_gates_once_before_forking_workers(
    service: Emulator, server_env: dict[str, str], started: list[subprocess.Popen[str]]
) -> None:
    """Entitled: one RegisterUsage in the master, then three workers serve; SIGTERM stops it."""
    url = f"http://{server_env['BIND']}/"
    server = subprocess.Popen(
        [*GUNICORN, APP], env=server_env, stderr=subprocess.PIPE, text=True, cwd=MULTI_WORKER
    )
    started.append(server)
    assert wait_for(lambda: get(url) is not None), "the server never answered"
    assert str(get(url)).startswith("hello from worker ")
    server.send_signal(signal.SIGTERM)
    _, stderr = server.communicate(timeout=30)
    assert server.returncode == 0, stderr
    assert stderr.count("Booting worker with pid") == 3
    assert "entitled to prod-test123; starting 3 workers" in stderr
    assert len(service.requests("RegisterUsage")) == 1


def test_multi_worker_server_refused_never_binds_nor_forks(
    service: Emulator, server_env: dict[str, str]
) -> None:
    """Not entitled: gunicorn exits 77 with the refusal line, no worker booted, port never bound."""
    service.set_product(server_env["MARKETPLACE_PRODUCT_CODE"], "not_entitled")
    result = subprocess.run(
        [*GUNICORN, APP],
        env=server_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=MULTI_WORKER,
    )
    assert result.returncode == 77, result.stderr
    assert "CustomerNotEntitledException" in result.stderr
    assert "Booting worker" not in result.stderr
    assert "Listening at" not in result.stderr


def test_multi_worker_server_runs_under_the_images_entrypoint(
    service: Emulator, server_env: dict[str, str], started: list[subprocess.Popen[str]]
) -> None:
    """As Dockerfile.example runs it: ``marketplace-entitlement run -- gunicorn ...`` serves."""
    url = f"http://{server_env['BIND']}/"
    wrapper = subprocess.Popen(
        [str(BIN / "marketplace-entitlement"), "run", "--", *GUNICORN, APP],
        env=server_env,
        stderr=subprocess.PIPE,
        text=True,
        cwd=MULTI_WORKER,
    )
    started.append(wrapper)
    assert wait_for(lambda: get(url) is not None), "the server never answered"
    wrapper.send_signal(signal.SIGTERM)
    _, stderr = wrapper.communicate(timeout=30)
    assert wrapper.returncode == 0, stderr
    # The wrapper's gate, then the master's own (kept for images whose ENTRYPOINT is overridden).
    assert len(service.requests("RegisterUsage")) == 2


def test_shell_service_starts_only_when_entitled_and_gets_sigterm(
    service: Emulator, aws_env: dict[str, str], started: list[subprocess.Popen[str]]
) -> None:
    """A non-Python CMD starts after the gate, and the wrapper forwards SIGTERM to it."""
    wrapper = subprocess.Popen(
        [str(BIN / "marketplace-entitlement"), "run", "--", str(SHELL_SERVICE / "service.sh")],
        env=aws_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    started.append(wrapper)
    assert wrapper.stdout is not None
    first = wrapper.stdout.readline()
    assert first.startswith("service: started as pid ")
    assert "for product prod-test123" in first
    wrapper.send_signal(signal.SIGTERM)
    stdout, stderr = wrapper.communicate(timeout=30)
    assert "service: SIGTERM received, shutting down" in stdout
    assert wrapper.returncode == 0, stderr


def test_shell_service_never_starts_when_refused(
    service: Emulator, aws_env: dict[str, str]
) -> None:
    """Not entitled: the wrapper exits 77 and the shell service prints nothing."""
    service.set_product("prod-test123", "not_entitled")
    result = subprocess.run(
        [str(BIN / "marketplace-entitlement"), "run", "--", str(SHELL_SERVICE / "service.sh")],
        env=aws_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 77
    assert "service:" not in result.stdout


def test_example_scripts_are_executable() -> None:
    """The shell service can be named as CMD directly: it is executable in the repository."""
    assert os.access(SHELL_SERVICE / "service.sh", os.X_OK)
    assert shutil.which("sh") is not None
