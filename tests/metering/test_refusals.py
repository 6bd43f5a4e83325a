"""Every bad setting and every bad record is refused with its message; nothing of a bad record is kept."""

from __future__ import annotations

import json
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from marketplace_entitlement import (
    ConfigurationError,
    UsageRecordError,
    load_settings,
    record_usage,
)
from marketplace_entitlement.emulator import Emulator
from tests.metering.harness import PRODUCT, PYTHON, RunProcess, base_env, metering_env, wait_for

DIMENSIONS = "requests,gb_scanned,users"


@pytest.fixture
def metered_service() -> Iterator[Emulator]:
    """An in-process emulator that knows the test product's dimensions."""
    with Emulator(
        products={PRODUCT: "entitled"},
        dimensions={PRODUCT: DIMENSIONS.split(",")},
        rate_limits={"MeterUsage": None},
    ) as emulator:
        yield emulator


DIMS = "MARKETPLACE_DIMENSIONS"
CUSTOM = {"MARKETPLACE_PRICING": "custom"}


@pytest.mark.parametrize(
    ("settings", "variable", "message"),
    [
        ({"MARKETPLACE_PRICING": "monthly"}, "MARKETPLACE_PRICING", "monthly"),
        ({"MARKETPLACE_PRICING": "custom"}, "MARKETPLACE_DIMENSIONS", "needs MARKETPLACE_DIMENSIONS"),
        ({"MARKETPLACE_DIMENSIONS": "a"}, "MARKETPLACE_PRICING", "is hourly"),
        ({**CUSTOM, DIMS: "a,,b"}, DIMS, "empty"),
        ({**CUSTOM, DIMS: ",".join(f"d{i}" for i in range(25))}, DIMS, "at most 24"),
        ({**CUSTOM, DIMS: "a,b,a"}, DIMS, "more than once"),
        ({**CUSTOM, DIMS: "x" * 256}, DIMS, "not a valid"),
        ({"MARKETPLACE_METERING_HTTP": "0.0.0.0:9811"}, "MARKETPLACE_METERING_HTTP", "not a loopback"),
        ({"MARKETPLACE_METERING_HTTP": "9811"}, "MARKETPLACE_METERING_HTTP", "HOST:PORT"),
        ({"MARKETPLACE_METERING_STATSD": "10.1.2.3:8125"}, "MARKETPLACE_METERING_STATSD", "not a loopback"),
        ({"MARKETPLACE_METERING_SEND_WINDOW": "soon"}, "MARKETPLACE_METERING_SEND_WINDOW", "soon"),
        ({"MARKETPLACE_METERING_STOP_TIMEOUT": "-1"}, "MARKETPLACE_METERING_STOP_TIMEOUT", "-1"),
        ({"MARKETPLACE_METERING_BACKLOG_POLICY": "panic"}, "MARKETPLACE_METERING_BACKLOG_POLICY", "panic"),
    ],
)  # fmt: skip
def test_bad_metering_settings_are_refused_naming_the_variable(
    settings: dict[str, str], variable: str, message: str
) -> None:
    """Each invalid metering setting is a configuration error naming its variable."""
    environ = {"MARKETPLACE_PRODUCT_CODE": PRODUCT, "MARKETPLACE_VERIFY_SIGNATURE": "false"}
    with pytest.raises(ConfigurationError, match=message) as caught:
        load_settings({**environ, **settings})
    assert caught.value.variable == variable
    assert caught.value.exit_code == 78


def test_custom_pricing_needs_no_public_key() -> None:
    """Custom pricing verifies no Signature, so no key is required (hourly pricing still needs one)."""
    settings = load_settings(
        {"MARKETPLACE_PRODUCT_CODE": PRODUCT, "MARKETPLACE_PRICING": "custom",
         "MARKETPLACE_DIMENSIONS": " requests , users "}
    )  # fmt: skip
    assert settings.dimensions == ("requests", "users")
    with pytest.raises(ConfigurationError, match="no public key"):
        load_settings({"MARKETPLACE_PRODUCT_CODE": PRODUCT})


BAD_RECORDS: list[tuple[Any, Any, Any, str]] = [
    ("nope", 1, None, "not declared"),
    ("gb_scanned", -1, None, "between 0 and"),
    ("gb_scanned", 1.5, None, "whole number"),
    ("gb_scanned", 2**31, None, "between 0 and"),
    ("gb_scanned", True, None, "whole number"),
    ("gb_scanned", "abc", None, "whole number"),
    ("gb_scanned", 1, {f"k{i}": "v" for i in range(6)}, "at most 5 tags"),
    ("gb_scanned", 1, {"ключ": "v"}, "tag key"),
    ("gb_scanned", 1, {"k": ""}, "tag value"),
    ("gb_scanned", 1, {"k": 5}, "must be strings"),
]


def test_bad_records_are_refused_and_never_sent(
    metered_service: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """record_usage refuses each bad record; only good ones are sent, allocations summing exactly.

    record_usage refuses each bad record with its reason; only the good ones reach the service,
    with allocations summing exactly to the quantity.
    """
    env = metering_env(base_env(tmp_path), metered_service.endpoint, tmp_path / "state")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for dimension, quantity, tags, message in BAD_RECORDS:
        with pytest.raises(UsageRecordError, match=message):
            record_usage(dimension, quantity, tags=tags)
    record_usage("gb_scanned", 4, tags={"team": "a"})
    record_usage("gb_scanned", 3, tags={"team": "b", "env": "prod"})
    record_usage("gb_scanned", 2)
    from marketplace_entitlement import start_metering  # noqa: PLC0415 (after the environment is set)

    start_metering().stop(timeout=30)
    (sent,) = [r for r in metered_service.metered() if r["dimension"] == "gb_scanned"]
    assert sent["quantity"] == "9"
    allocations = {
        json.dumps(a.get("Tags", [])): a["AllocatedUsageQuantity"] for a in sent["allocations"]
    }
    assert allocations == {
        "[]": 2,
        json.dumps([{"Key": "team", "Value": "a"}]): 4,
        json.dumps([{"Key": "env", "Value": "prod"}, {"Key": "team", "Value": "b"}]): 3,
    }
    assert sum(allocations.values()) == 9


def _post(
    address: str, body: bytes, method: str = "POST", path: str = "/v1/usage"
) -> tuple[int, Any]:
    request = urllib.request.Request(f"http://{address}{path}", data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 (loopback)
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def test_http_statsd_and_cli_refuse_bad_records_and_keep_nothing_of_them(
    metered_service: Emulator, tmp_path: Path
) -> None:
    """HTTP, StatsD and `record` refuse bad records with their reasons and keep nothing of them.

    Through `run`: HTTP answers 4xx with a JSON reason and keeps nothing of a bad request (not even
    its good records), refusing any quantity that is not a JSON number ("5", true, null) while a
    record without a quantity counts 1; StatsD logs each bad line and keeps the good ones; `record`
    exits 64 with the reason. Only the good usage is reported when `run` stops.
    """
    env = metering_env(
        base_env(tmp_path), metered_service.endpoint, tmp_path / "state",
        MARKETPLACE_METERING_STATSD="127.0.0.1:0",
    )  # fmt: skip
    statsd_port = _free_udp_port()
    env["MARKETPLACE_METERING_STATSD"] = f"127.0.0.1:{statsd_port}"
    run = RunProcess(env, [PYTHON, "-c", "import time; time.sleep(120)"], tmp_path / "run.log")
    address = env["MARKETPLACE_METERING_HTTP"]
    wait_for(lambda: any(e.get("event") == "metering.started" for e in run.events()), 60, "run")
    good = {"dimension": "gb_scanned", "quantity": 100}
    cases = [
        (b"{not json", "not JSON"),
        (
            json.dumps({"records": [good, {"dimension": "nope"}]}).encode(),
            "record 1: dimension 'nope'",
        ),
        (json.dumps({"records": []}).encode(), "1 to"),
        (json.dumps({"records": [good] * 10_001}).encode(), "1 to"),  # the batch limit
        (json.dumps({**good, "colour": "red"}).encode(), "unknown field"),
        (json.dumps({"dimension": "gb_scanned", "quantity": 2.5}).encode(), "whole number"),
        (json.dumps({"records": [good], "extra": 1}).encode(), "nothing else"),
        # Only JSON numbers are quantities: not a string, a boolean, null or a list.
        (json.dumps({"dimension": "gb_scanned", "quantity": "5"}).encode(), 'not "5"'),
        (json.dumps({"dimension": "gb_scanned", "quantity": True}).encode(), "not true"),
        (json.dumps({"dimension": "gb_scanned", "quantity": None}).encode(), "not null"),
        (json.dumps({"records": [good, {**good, "quantity": [5]}]}).encode(), "record 1: quantity"),
    ]
    for body, message in cases:
        status, answer = _post(address, body)
        assert status == 400
        assert message in answer["error"]
    assert _post(address, b"{}", path="/v2/other")[0] == 404
    assert _post(address, b"", method="GET")[0] == 405
    tagged = {"dimension": "gb_scanned", "quantity": 5, "tags": {"t": "h"}}
    assert _post(address, json.dumps(tagged).encode()) == (200, {"accepted": 1})
    # A record without a quantity counts 1.
    assert _post(address, b'{"dimension": "gb_scanned"}') == (200, {"accepted": 1})
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.sendto(
            b"gb_scanned:7|c|#team:s\ngb_scanned:1.5|c\nnope:1|c\ngb_scanned:1|g\ngb_scanned:2|c|@0.5",
            ("127.0.0.1", statsd_port),
        )
    wait_for(
        lambda: sum(e.get("event") == "metering.statsd_refused" for e in run.events()) == 4,
        30, "the StatsD refusals",
    )  # fmt: skip
    cli_env = {**env, "MARKETPLACE_METERING_STATE_DIR": str(tmp_path / "state")}
    for args, code, message in [
        (["nope"], 64, "not declared"),
        (["gb_scanned", "1.5"], 64, "whole number"),
        (["gb_scanned", "--tag", "novalue"], 64, "not K=V"),
        (["gb_scanned", "11", "--tag", "team=c"], 0, ""),
    ]:
        result = subprocess.run(
            [PYTHON, "-m", "marketplace_entitlement", "record", *args],
            env=cli_env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert result.returncode == code, result.stderr
        assert message in result.stderr
    no_store = {k: v for k, v in cli_env.items() if k != "MARKETPLACE_METERING_STATE_DIR"}
    result = subprocess.run(
        [PYTHON, "-m", "marketplace_entitlement", "record", "gb_scanned"],
        env=no_store, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 78
    assert "MARKETPLACE_METERING_STATE_DIR is not set" in result.stderr
    run.terminate()
    assert run.wait(timeout=60) == 143
    totals: dict[str, Decimal] = {}
    for record in metered_service.metered():
        totals[record["dimension"]] = totals.get(record["dimension"], Decimal(0)) + Decimal(
            record["quantity"]
        )
    assert totals == {"requests": 0, "gb_scanned": 5 + 1 + 7 + 11, "users": 0}


def test_record_names_the_option_or_the_variable_a_bad_value_came_from(tmp_path: Path) -> None:
    """A bad ``record`` value is named as the option or the variable it came from; nothing kept.

    Given as ``--dimensions`` the message names the option; from ``MARKETPLACE_DIMENSIONS``, the
    variable. Either way ``record`` exits 78 and no store is created.
    """
    too_many = ",".join(f"d{i}" for i in range(25))
    env = {**base_env(tmp_path), "MARKETPLACE_METERING_STATE_DIR": str(tmp_path / "state")}
    for extra_env, args, named in [
        ({}, ["--dimensions", too_many], "--dimensions names 25 dimensions"),
        ({"MARKETPLACE_DIMENSIONS": too_many}, [], "MARKETPLACE_DIMENSIONS names 25 dimensions"),
    ]:
        result = subprocess.run(
            [PYTHON, "-m", "marketplace_entitlement", "record", "d1", *args],
            env={**env, **extra_env}, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert result.returncode == 78, result.stderr
        assert named in result.stderr
    assert not (tmp_path / "state").exists()


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_what_one_request_cannot_hold_is_carried_not_dropped(
    metered_service: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Allocations beyond 2,500 and quantities beyond the maximum are carried, not dropped.

    2,501 tag sets in one hour: the record carries 2,500 allocations summing exactly to its
    quantity; a quantity above 2147483647 is sent capped. The rest is kept for the next hour (the
    stop says how much), never dropped and never sent twice.
    """
    env = metering_env(base_env(tmp_path), metered_service.endpoint, tmp_path / "state")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    from marketplace_entitlement import start_metering  # noqa: PLC0415 (after the environment is set)

    metering = start_metering()
    for i in range(2501):
        metering.record_usage("gb_scanned", 2, tags={"customer": f"c{i:04d}"})
    metering.record_usage("users", 2147483647)
    metering.record_usage("users", 10)
    assert metering.stop(timeout=30)
    sent = {r["dimension"]: r for r in metered_service.metered()}
    allocations = sent["gb_scanned"]["allocations"]
    assert len(allocations) == 2500
    assert sum(a["AllocatedUsageQuantity"] for a in allocations) == 5000
    assert sent["gb_scanned"]["quantity"] == "5000"
    assert sent["users"]["quantity"] == "2147483647"
