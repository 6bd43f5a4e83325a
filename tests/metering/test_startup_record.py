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


def _events(stderr: str, event: str) -> list[dict[str, str]]:
    lines = (json.loads(line) for line in stderr.splitlines() if line.startswith("{"))
    return [line for line in lines if line.get("event") == event]


def test_stop_says_which_usage_its_hour_already_reported_and_which_failed_to_send(
    service: Emulator, tmp_path: Path
) -> None:
    """The stop warnings tell carried usage of an already reported hour from a failed send.

    CMD records 2 units of the startup dimension (its hour holds the startup record, so they are
    carried into the next hour and are lost if the task ends) and 3 of another, then makes every
    MeterUsage fail: `run` logs one warning naming the 2 units, their dimension and why, and one
    error for the send that failed, and never claims the next start sends the carried units.
    """
    fault = json.dumps({"spec": "MeterUsage:error=InternalServiceErrorException"})
    script = (
        f"{PYTHON} -m marketplace_entitlement record requests 2 && "
        f"{PYTHON} -m marketplace_entitlement record users 3 && "
        f"{PYTHON} -c 'import sys, urllib.request as u; u.urlopen(u.Request(sys.argv[1], "
        f'data=sys.argv[2].encode(), method="POST", '
        'headers={"Content-Type": "application/json"}))\' '
        f"{service.endpoint}/_emulator/faults '{fault}'"
    )
    env = metering_env(
        base_env(tmp_path), service.endpoint, tmp_path / "state", dimensions="requests,users",
        MARKETPLACE_METERING_STOP_TIMEOUT="3s",
    )  # fmt: skip
    service.set_product(PRODUCT, "entitled", dimensions=["requests", "users"])
    run = _cli(env, "run", "--", "sh", "-c", script)
    assert run.returncode == 0, run.stderr
    (carried,) = _events(run.stderr, "metering.left_at_stop")
    assert carried["reason"] == "hour_already_reported"
    assert carried["message"].startswith("2 units of requests recorded in an hour already reported")
    assert "never reported" in carried["message"]
    (unsent,) = _events(run.stderr, "metering.unsent_at_stop")
    assert unsent["reason"] == "send_failed"
    assert "3 units of users" in unsent["message"]


def test_a_store_from_before_the_product_file_is_bound_by_its_records(
    service: Emulator, tmp_path: Path
) -> None:
    """Without the product-code file, the products of the stored records decide (78 for another).

    A state directory written before the product file existed holds only the store: its records'
    product code binds it, so another product is still refused before any call.
    """
    state = tmp_path / "state"
    env = metering_env(base_env(tmp_path), service.endpoint, state, dimensions="requests")
    assert _cli(env, "check").returncode == 0
    (state / "product-code").unlink()
    refused = _cli({**env, "MARKETPLACE_PRODUCT_CODE": OTHER}, "check")
    assert refused.returncode == 78, refused.stderr
    assert f"holds usage of product {PRODUCT}" in refused.stderr
    assert _products(service) == [PRODUCT]
    again = _cli(env, "check")
    assert again.returncode == 0, again.stderr
    assert (state / "product-code").read_text().strip() == PRODUCT
