"""RegisterUsage answers entitlement errors as AWS does: only on a task's first call.

A task is told apart by the access key id its requests are signed with (ECS task role and IRSA
sessions each have their own temporary credentials). ``every-call`` keeps the former rule.
"""

from __future__ import annotations

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
