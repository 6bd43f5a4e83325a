"""resolve_customer and `marketplace-entitlement resolve-customer`, against the emulator."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from typing import Any

import pytest

import marketplace_entitlement
from marketplace_entitlement import (
    EntitlementError,
    ExpiredRegistrationTokenError,
    InvalidRegistrationTokenError,
    RegistrationTokenError,
    SaasCustomer,
    ServiceUnavailableError,
    resolve_customer,
)
from marketplace_entitlement.emulator import Emulator
from marketplace_entitlement.saas._resolve import CustomerResolver


def test_new_integration_customer_is_typed_and_frozen(
    saas_emulator: Emulator, saas_client: Any
) -> None:
    """A new-integration token resolves to account, license, product and agreement, no identifier."""
    made = saas_emulator.create_customer(
        "saas-prod", aws_account_id="123456789012", new_integration=True, agreement_id="agmt-9"
    )
    customer = resolve_customer(made.registration_token, client=saas_client)
    assert customer == SaasCustomer(
        product_code="saas-prod",
        aws_account_id="123456789012",
        license_arn=made.license_arn,
        agreement_id="agmt-9",
        customer_identifier=None,
    )
    assert customer.identification == "license"
    with pytest.raises(AttributeError):
        customer.product_code = "other"  # type: ignore[misc]


def test_legacy_customer_keeps_its_identifier(saas_emulator: Emulator, saas_client: Any) -> None:
    """A customer of an existing integration resolves with its CustomerIdentifier too."""
    made = saas_emulator.create_customer("saas-prod", customer_identifier="cust-legacy")
    customer = resolve_customer(made.registration_token, client=saas_client)
    assert customer.customer_identifier == "cust-legacy"
    assert customer.aws_account_id == made.aws_account_id


def test_refused_tokens_are_typed_errors(saas_emulator: Emulator, saas_client: Any) -> None:
    """Unknown, empty and expired tokens raise RegistrationTokenError subclasses (exit code 65)."""
    for token in ("not-a-token", ""):
        with pytest.raises(InvalidRegistrationTokenError) as invalid:
            resolve_customer(token, client=saas_client)
        assert isinstance(invalid.value, RegistrationTokenError)
        assert invalid.value.exit_code == 65
    expired = saas_emulator.create_customer("saas-prod", expired=True)
    with pytest.raises(ExpiredRegistrationTokenError) as excinfo:
        resolve_customer(expired.registration_token, client=saas_client)
    assert isinstance(excinfo.value, EntitlementError)
    assert excinfo.value.aws_error_code == "ExpiredTokenException"


def test_throttling_and_server_errors_are_retried(
    saas_emulator: Emulator, saas_client: Any
) -> None:
    """A throttled, then failing ResolveCustomer is retried on the shared policy until it answers."""
    made = saas_emulator.create_customer("saas-prod")
    saas_emulator.inject_fault("ResolveCustomer", "error", error="ThrottlingException", count=1)
    saas_emulator.inject_fault(
        "ResolveCustomer", "error", error="InternalServiceErrorException", count=1
    )
    customer = CustomerResolver(client=saas_client, environ={}).resolve(made.registration_token)
    assert customer.license_arn == made.license_arn
    assert len(saas_emulator.requests("ResolveCustomer")) == 3


def test_a_throttled_resolve_names_its_own_budget(
    saas_emulator: Emulator, saas_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Throttled throughout: the error and the retry warnings name ResolveCustomer's fixed budget.

    Not MARKETPLACE_REGISTER_TIMEOUT, which does not govern ResolveCustomer.
    """
    made = saas_emulator.create_customer("saas-prod")
    saas_emulator.inject_fault("ResolveCustomer", "error", error="ThrottlingException")
    resolver = CustomerResolver(client=saas_client, environ={}, timeout=1.0)
    with caplog.at_level(logging.WARNING), pytest.raises(ServiceUnavailableError) as excinfo:
        resolver.resolve(made.registration_token)
    line = excinfo.value.refusal_line()
    assert "throughout the 1s ResolveCustomer retry budget" in line
    assert "MARKETPLACE_REGISTER_TIMEOUT" not in line + caplog.text
    assert "the 1s ResolveCustomer retry budget used up" in caplog.text


def test_cli_prints_the_customer_without_a_product_code(
    saas_emulator: Emulator, saas_env: dict[str, str]
) -> None:
    """`resolve-customer TOKEN` needs no MARKETPLACE_PRODUCT_CODE and prints one JSON object."""
    made = saas_emulator.create_customer("saas-prod", new_integration=True)
    done = subprocess.run(
        [sys.executable, "-m", "marketplace_entitlement", "resolve-customer", made.registration_token],
        env=saas_env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed["license_arn"] == made.license_arn
    assert printed["agreement_id"] == made.agreement_id
    assert printed["customer_identifier"] is None


def test_cli_refuses_an_invalid_token_with_65(saas_env: dict[str, str]) -> None:
    """An invalid token exits 65 with a line saying to send the buyer back to AWS Marketplace.

    A token starting with ``-`` (base64url tokens can) is a token, not an option.
    """
    for token in ("nope", "-Dnope"):
        done = subprocess.run(
            [sys.executable, "-m", "marketplace_entitlement", "resolve-customer", token],
            env=saas_env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 65, done.stderr
        assert "InvalidTokenException" in done.stderr
        assert "AWS Marketplace" in done.stderr


def test_public_names_are_exported() -> None:
    """The SaaS names are part of the package's public API."""
    for name in ("SaasCustomer", "resolve_customer", "RegistrationTokenError"):
        assert name in marketplace_entitlement.__all__
