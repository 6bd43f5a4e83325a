"""The control API under /_emulator/: read and change a running emulator over HTTP (urllib)."""

from __future__ import annotations

from typing import Any

import jwt
import pytest
from botocore.exceptions import ClientError

from marketplace_entitlement.emulator import Emulator


def code_of(call: Any) -> str:
    """Run a client call; return "ok" or the error code botocore raised."""
    try:
        call()
    except ClientError as error:
        return str(error.response["Error"]["Code"])
    return "ok"


def test_state_describes_the_configuration(make_emulator: Any, control: Any) -> None:
    """GET /state answers the endpoint, region, products, limits, faults and key versions."""
    emulator = make_emulator(region="eu-west-1", products={"p": "entitled"})
    status, state = control(emulator, "GET", "/state")
    assert status == 200
    assert state["endpoint"] == emulator.endpoint
    assert state["region"] == "eu-west-1"
    assert state["products"] == {"p": {"status": "entitled", "dimensions": None}}
    assert state["key_versions"] == [1]
    assert state["rate_limits"]["RegisterUsage"] == 5.0


def test_products_can_be_set_and_removed(emulator: Emulator, client: Any, control: Any) -> None:
    """PUT/POST/DELETE /products change what RegisterUsage answers.

    One client is one task: with AWS's first-call rule its later calls would always succeed, so
    this test asks for the every-call check.
    """
    emulator.set_entitlement_check("every-call")
    assert control(emulator, "PUT", "/products/p", {"status": "not_entitled"})[0] == 200
    register = lambda: client.register_usage(ProductCode="p", PublicKeyVersion=1)  # noqa: E731
    assert code_of(register) == "CustomerNotEntitledException"
    status, products = control(
        emulator, "POST", "/products", {"p": "entitled", "q": {"status": "platform_not_supported"}}
    )
    assert status == 200
    assert products["q"]["status"] == "platform_not_supported"
    assert code_of(register) == "ok"
    control(emulator, "DELETE", "/products/p")
    assert code_of(register) == "CustomerNotEntitledException"  # q is still configured
    assert control(emulator, "PUT", "/products/p", {"status": "invalid"})[1]["p"] == {
        "status": "invalid",
        "dimensions": None,
    }
    assert code_of(register) == "InvalidProductCodeException"
    control(emulator, "POST", "/products", {"p": "entitled"})
    assert code_of(register) == "ok"
    assert control(emulator, "PUT", "/products/x", {"status": "maybe"})[0] == 400


def test_faults_can_be_added_listed_and_cleared(
    emulator: Emulator, client: Any, control: Any
) -> None:
    """POST /faults (a spec or fields) puts faults in force; DELETE /faults clears them."""
    status, fault = control(
        emulator, "POST", "/faults", {"spec": "RegisterUsage:error=Boom:count=1"}
    )
    assert (status, fault["error"], fault["remaining"]) == (201, "Boom", 1)
    control(emulator, "POST", "/faults", {"operation": "MeterUsage", "kind": "drop"})
    assert len(control(emulator, "GET", "/faults")[1]) == 2
    assert code_of(lambda: client.register_usage(ProductCode="p", PublicKeyVersion=1)) == "Boom"
    assert control(emulator, "DELETE", "/faults") == (200, [])
    assert control(emulator, "POST", "/faults", {"spec": "Nope:drop"})[0] == 400


def test_rate_limits_and_settings(emulator: Emulator, client: Any, control: Any) -> None:
    """PUT /rate-limits and PUT /settings take effect on the next call."""
    status, limits = control(
        emulator, "PUT", "/rate-limits", {"RegisterUsage": None, "MeterUsage": 2}
    )
    assert status == 200
    assert "RegisterUsage" not in limits
    assert limits["MeterUsage"] == 2.0
    control(emulator, "PUT", "/settings", {"claim_casing": "pascal", "disabled_operations": []})
    token = client.register_usage(ProductCode="p", PublicKeyVersion=1)["Signature"]
    assert "ProductCode" in jwt.decode(token, emulator.public_key_pem(), algorithms=["PS256"])
    control(emulator, "PUT", "/settings", {"region": "ap-south-1"})
    assert code_of(lambda: client.register_usage(ProductCode="p", PublicKeyVersion=1)) == (
        "InvalidRegionException"
    )


def test_recorded_requests_can_be_read_and_cleared(
    emulator: Emulator, client: Any, control: Any
) -> None:
    """GET /requests answers what was received, optionally per operation; DELETE clears it."""
    client.register_usage(ProductCode="p", PublicKeyVersion=1)
    code_of(lambda: client.resolve_customer(RegistrationToken="x"))
    status, requests = control(emulator, "GET", "/requests")
    assert status == 200
    assert [r["operation"] for r in requests] == ["RegisterUsage", "ResolveCustomer"]
    assert requests[0]["access_key_id"] == "AKIDTEST"
    only = control(emulator, "GET", "/requests?operation=ResolveCustomer")[1]
    assert [r["error_code"] for r in only] == ["InvalidTokenException"]
    assert control(emulator, "DELETE", "/requests") == (200, [])


def test_customers_are_created_with_a_registration_token(
    emulator: Emulator, client: Any, control: Any
) -> None:
    """POST /customers answers 201 and a token ResolveCustomer resolves (or refuses if expired)."""
    status, customer = control(emulator, "POST", "/customers", {"product_code": "saas"})
    assert status == 201
    answer = client.resolve_customer(RegistrationToken=customer["registration_token"])
    assert answer["CustomerIdentifier"] == customer["customer_identifier"]
    _, expired = control(emulator, "POST", "/customers", {"product_code": "saas", "expired": True})
    assert code_of(
        lambda: client.resolve_customer(RegistrationToken=expired["registration_token"])
    ) == ("ExpiredTokenException")
    assert len(control(emulator, "GET", "/customers")[1]) == 2
    assert control(emulator, "POST", "/customers", {})[0] == 400


def test_keys_can_be_read_and_expired(emulator: Emulator, client: Any, control: Any) -> None:
    """GET /keys/1 answers the public key; POST /keys/1/expire adds the rotation timestamp."""
    status, key = control(emulator, "GET", "/keys/1")
    assert status == 200
    assert key["public_key_pem"].encode() == emulator.public_key_pem()
    control(emulator, "POST", "/keys/1/expire", {"at": 1_800_000_000})
    answer = client.register_usage(ProductCode="p", PublicKeyVersion=1)
    assert answer["PublicKeyRotationTimestamp"].timestamp() == 1_800_000_000
    assert control(emulator, "GET", "/keys/7")[0] == 404


def test_reset_restores_the_starting_configuration(
    make_emulator: Any, make_client: Any, control: Any
) -> None:
    """POST /reset forgets changes, faults, customers and records since the start."""
    emulator = make_emulator(products={"p": "entitled"})
    client = make_client(emulator)
    control(emulator, "PUT", "/products/p", {"status": "not_entitled"})
    control(emulator, "POST", "/faults", {"spec": "*:drop"})
    emulator.create_customer("p")
    assert control(emulator, "POST", "/reset")[0] == 200
    assert client.register_usage(ProductCode="p", PublicKeyVersion=1)["Signature"]
    assert emulator.customers() == []
    assert len(emulator.requests()) == 1


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/nope"), ("DELETE", "/state"), ("PATCH", "/faults")]
)
def test_unknown_control_paths_are_404(
    emulator: Emulator, control: Any, method: str, path: str
) -> None:
    """Paths and methods the control API does not have answer 404 with an error message."""
    status, body = control(emulator, method, path)
    assert status == 404
    assert "error" in body


def test_control_api_needs_no_signature_and_is_not_recorded(
    emulator: Emulator, control: Any
) -> None:
    """Control calls work unsigned and do not appear among the recorded service requests."""
    assert control(emulator, "GET", "/state")[0] == 200
    assert emulator.requests() == []
