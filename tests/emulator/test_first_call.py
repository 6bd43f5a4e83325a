"""RegisterUsage answers entitlement errors as AWS does: only on a task's first call.

A task is told apart by the access key id its requests are signed with (ECS task role and IRSA
sessions each have their own temporary credentials). ``every-call`` keeps the former rule.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from botocore.exceptions import ClientError
from tests.emulator.conftest import MakeClient, MakeEmulator

from marketplace_entitlement.emulator import Emulator
from marketplace_entitlement.emulator._cli import _resolve, build_emulator, build_parser


def outcome(client: Any, product: str = "p") -> str:
    """``ok`` or the error code RegisterUsage answers."""
    try:
        client.register_usage(ProductCode=product, PublicKeyVersion=1)
    except ClientError as error:
        return str(error.response["Error"]["Code"])
    return "ok"


@pytest.mark.parametrize(
    ("status", "error"),
    [
        ("not_entitled", "CustomerNotEntitledException"),
        ("platform_not_supported", "PlatformNotSupportedException"),
    ],
)
def test_a_registered_task_is_not_refused_later(
    make_emulator: MakeEmulator, make_client: MakeClient, status: str, error: str
) -> None:
    """After a task registered, an unsubscribe does not refuse it; a new task is refused."""
    emulator = make_emulator(rate_limits={"RegisterUsage": None})
    task_a = make_client(emulator, access_key_id="ASIATASKA")
    task_b = make_client(emulator, access_key_id="ASIATASKB")
    assert outcome(task_a) == "ok"
    emulator.set_product("p", status)
    assert outcome(task_a) == "ok"
    assert outcome(task_b) == error


def test_a_task_refused_at_first_stays_refused_until_it_registers(
    make_emulator: MakeEmulator, make_client: MakeClient
) -> None:
    """A task that never registered gets the entitlement error on each call, then not once it has."""
    emulator = make_emulator(products={"p": "not_entitled"}, rate_limits={"RegisterUsage": None})
    task = make_client(emulator, access_key_id="ASIATASKC")
    assert outcome(task) == "CustomerNotEntitledException"
    assert outcome(task) == "CustomerNotEntitledException"
    emulator.set_product("p", "entitled")
    assert outcome(task) == "ok"
    emulator.set_product("p", "not_entitled")
    assert outcome(task) == "ok"


def test_every_call_is_the_opt_in_former_rule(
    make_emulator: MakeEmulator, make_client: MakeClient
) -> None:
    """With entitlement_check="every-call" each call checks the product's current status."""
    emulator = make_emulator(entitlement_check="every-call", rate_limits={"RegisterUsage": None})
    task = make_client(emulator, access_key_id="ASIATASKD")
    assert outcome(task) == "ok"
    emulator.set_product("p", "not_entitled")
    assert outcome(task) == "CustomerNotEntitledException"
    assert emulator.state()["entitlement_check"] == "every-call"


def test_reset_forgets_registered_tasks(
    make_emulator: MakeEmulator, make_client: MakeClient
) -> None:
    """``reset`` (and ``forget_tasks``) make each task's next call a first call again."""
    emulator = make_emulator(rate_limits={"RegisterUsage": None})
    task = make_client(emulator, access_key_id="ASIATASKE")
    assert outcome(task) == "ok"
    emulator.set_product("p", "not_entitled")
    emulator.forget_tasks()
    assert outcome(task) == "CustomerNotEntitledException"


def test_cli_option_selects_the_rule() -> None:
    """``--entitlement-check every-call`` reaches the emulator; junk is a usage error."""
    namespace = build_parser().parse_args(["--entitlement-check", "every-call"])
    emulator: Emulator = build_emulator(_resolve(namespace, {}))
    assert emulator.entitlement_check == "every-call"
    default = build_emulator(_resolve(build_parser().parse_args([]), {}))
    assert default.entitlement_check == "first-call"


def test_control_api_switches_the_rule(
    make_emulator: MakeEmulator, make_client: MakeClient, control: Any
) -> None:
    """PUT /_emulator/settings {"entitlement_check": ...} switches the rule; junk is a 400."""
    emulator = make_emulator(rate_limits={"RegisterUsage": None})
    task = make_client(emulator, access_key_id="ASIATASKF")
    assert outcome(task) == "ok"
    emulator.set_product("p", "not_entitled")
    assert outcome(task) == "ok"
    status, state = control(emulator, "PUT", "/settings", {"entitlement_check": "every-call"})
    assert (status, state["entitlement_check"]) == (200, "every-call")
    assert outcome(task) == "CustomerNotEntitledException"
    assert control(emulator, "PUT", "/settings", {"entitlement_check": "sometimes"})[0] == 400


def metered(client: Any, product: str = "p", dimension: str = "users") -> str:
    """``ok`` or the error code MeterUsage answers (one record for the current hour)."""
    now = time.time()
    try:
        client.meter_usage(
            ProductCode=product,
            Timestamp=now - now % 3600,
            UsageDimension=dimension,
            UsageQuantity=1,
        )
    except ClientError as error:
        return str(error.response["Error"]["Code"])
    return "ok"


def test_meter_usage_refuses_only_a_task_initial_call(
    make_emulator: MakeEmulator, make_client: MakeClient
) -> None:
    """After a task metered, an unsubscribe does not refuse its later MeterUsage; a new task is."""
    emulator = make_emulator(rate_limits={"MeterUsage": None})
    task_a = make_client(emulator, access_key_id="ASIAMETERA")
    task_b = make_client(emulator, access_key_id="ASIAMETERB")
    assert metered(task_a) == "ok"
    emulator.set_product("p", "not_entitled")
    assert metered(task_a) == "ok"
    assert metered(task_a, dimension="other") == "ok"
    assert metered(task_b) == "CustomerNotEntitledException"


def test_register_usage_counts_as_the_initial_call_for_meter_usage(
    make_emulator: MakeEmulator, make_client: MakeClient
) -> None:
    """A task that registered is not refused MeterUsage later, and one that metered not RegisterUsage."""
    emulator = make_emulator(
        products={"p": "entitled", "q": "entitled"},
        rate_limits={"RegisterUsage": None, "MeterUsage": None},
    )
    registered = make_client(emulator, access_key_id="ASIAREGFIRST")
    metering = make_client(emulator, access_key_id="ASIAMETERFIRST")
    assert outcome(registered) == "ok"
    assert metered(metering) == "ok"
    emulator.set_product("p", "not_entitled")
    assert metered(registered) == "ok"
    assert outcome(metering) == "ok"
    assert metered(registered, product="q") == "ok"
    emulator.set_product("q", "not_entitled")
    assert metered(metering, product="q") == "CustomerNotEntitledException"


def test_meter_usage_refused_at_first_stays_refused(
    make_emulator: MakeEmulator, make_client: MakeClient
) -> None:
    """A task whose initial MeterUsage was refused is refused again until a call succeeds."""
    emulator = make_emulator(products={"p": "not_entitled"}, rate_limits={"MeterUsage": None})
    task = make_client(emulator, access_key_id="ASIAMETERC")
    assert metered(task) == "CustomerNotEntitledException"
    assert metered(task) == "CustomerNotEntitledException"


def test_every_call_covers_meter_usage(
    make_emulator: MakeEmulator, make_client: MakeClient
) -> None:
    """With entitlement_check="every-call" each MeterUsage checks the product's current status."""
    emulator = make_emulator(entitlement_check="every-call", rate_limits={"MeterUsage": None})
    task = make_client(emulator, access_key_id="ASIAMETERD")
    assert metered(task) == "ok"
    emulator.set_product("p", "not_entitled")
    assert metered(task) == "CustomerNotEntitledException"


def test_control_api_unsubscribe_keeps_a_metering_task_entitled(
    make_emulator: MakeEmulator, make_client: MakeClient, control: Any
) -> None:
    """PUT /_emulator/products/p {"status": "not_entitled"} refuses only new tasks' MeterUsage."""
    emulator = make_emulator(rate_limits={"MeterUsage": None})
    task = make_client(emulator, access_key_id="ASIAMETERE")
    assert metered(task) == "ok"
    assert control(emulator, "PUT", "/products/p", {"status": "not_entitled"})[0] == 200
    assert metered(task) == "ok"
    assert (
        metered(make_client(emulator, access_key_id="ASIAMETERF")) == "CustomerNotEntitledException"
    )
