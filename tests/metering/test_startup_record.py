"""The stored startup record is reused only for the request this configuration would send."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from marketplace_entitlement.emulator import Emulator
from marketplace_entitlement.store import open_store, sqlite_url
from tests.metering.harness import PRODUCT, PYTHON, base_env, metering_env

OTHER = "prod-zzz"


@pytest.fixture
def service() -> Iterator[Emulator]:
    """An in-process emulator listing two entitled custom-priced products."""
    with Emulator(
        products={PRODUCT: "entitled", OTHER: "entitled"},
        dimensions={PRODUCT: ["requests"], OTHER: ["requests"]},
        rate_limits={"MeterUsage": None},
    ) as emulator:  # fmt: skip
        yield emulator


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "marketplace_entitlement", *args],
        env=env, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip


def _products(service: Emulator) -> list[str]:
    return [r.body["ProductCode"] for r in service.requests("MeterUsage") if r.body]


@pytest.mark.parametrize("task", ["AKIDTASK0001", "AKIDTASK0002"])
def test_a_state_directory_of_another_product_is_refused(
    service: Emulator, tmp_path: Path, task: str
) -> None:
    """A second product on a state directory exits 78 naming it; nothing of the first is resent.

    `check` for PRODUCT stores its startup record; `check` and `run` for another product (from the
    same task or another one) on that directory refuse before any call, and CMD never starts. On
    its own directory the other product's startup request carries its own product code.
    """
    state = tmp_path / "state"
    env = metering_env(base_env(tmp_path), service.endpoint, state, dimensions="requests")
    assert _cli(env, "check").returncode == 0
    other = {
        **metering_env(base_env(tmp_path, task=task), service.endpoint, state),
        "MARKETPLACE_PRODUCT_CODE": OTHER,
        "MARKETPLACE_DIMENSIONS": "requests",
    }
    refused = _cli(other, "check")
    assert refused.returncode == 78, refused.stderr
    assert "MARKETPLACE_METERING_STATE_DIR" in refused.stderr
    assert refused.stdout == ""
    run = _cli(other, "run", "--", "sh", "-c", "echo CMD started")
    assert run.returncode == 78, run.stderr
    assert "CMD started" not in run.stdout
    assert _products(service) == [PRODUCT]
    own = _cli({**other, "MARKETPLACE_METERING_STATE_DIR": str(tmp_path / "own")}, "check")
    assert own.returncode == 0, own.stderr
    assert json.loads(own.stdout)["product_code"] == OTHER
    assert _products(service) == [PRODUCT, OTHER]


def test_a_startup_record_refused_for_good_is_held_not_resent(
    service: Emulator, tmp_path: Path
) -> None:
    """A startup record the service refuses (78) is held: a later `run` does not send it again.

    `check` with an unlisted first dimension exits 78 and leaves that record held; `run` with the
    listing's dimension sends only its own startup record (and its hour at stop), never the
    refused one.
    """
    state = tmp_path / "state"
    env = metering_env(base_env(tmp_path), service.endpoint, state, dimensions="bogus")
    refused = _cli(env, "check")
    assert refused.returncode == 78, refused.stderr
    store = open_store(sqlite_url(str(state / "usage.sqlite3")))
    try:
        assert [(r.stream, r.state) for r in store.records()] == [("bogus", "held")]
    finally:
        store.close()
    run = _cli({**env, "MARKETPLACE_DIMENSIONS": "requests"}, "run", "--", "true")
    assert run.returncode == 0, run.stderr
    dimensions = [r.body["UsageDimension"] for r in service.requests("MeterUsage") if r.body]
    assert dimensions.count("bogus") == 1
    assert "requests" in dimensions


@pytest.mark.parametrize(
    ("variable", "kind"),
    [
        ("MARKETPLACE_METERING_HTTP", socket.SOCK_STREAM),
        ("MARKETPLACE_METERING_STATSD", socket.SOCK_DGRAM),
    ],
)
def test_a_listen_port_in_use_is_refused_before_the_startup_call(
    service: Emulator, tmp_path: Path, variable: str, kind: socket.SocketKind
) -> None:
    """`run` binds its ingestion endpoints before the startup MeterUsage: a port in use exits 78.

    Another process (here the test) holds the port: `run` refuses naming the variable, sends no
    MeterUsage at all, and never starts CMD.
    """
    with socket.socket(socket.AF_INET, kind) as taken:
        taken.bind(("127.0.0.1", 0))
        if kind == socket.SOCK_STREAM:
            taken.listen()
        port = taken.getsockname()[1]
        env = metering_env(base_env(tmp_path), service.endpoint, tmp_path / "state")
        env[variable] = f"127.0.0.1:{port}"
        run = _cli(env, "run", "--", "sh", "-c", "echo CMD started")
    assert run.returncode == 78, run.stderr
    assert variable in run.stderr
    assert "CMD started" not in run.stdout
    assert service.requests("MeterUsage") == []
