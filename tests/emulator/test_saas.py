"""BatchMeterUsage and ResolveCustomer: the SaaS operations, their statuses and errors."""

from __future__ import annotations

import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from marketplace_entitlement.emulator import Emulator
from marketplace_entitlement.emulator._model import load_service_model


def code_of(excinfo: pytest.ExceptionInfo[ClientError]) -> str:
    """The error code botocore saw."""
    return str(excinfo.value.response["Error"]["Code"])


def record(customer: str, quantity: int = 1, **extra: Any) -> dict[str, Any]:
    """A usage record for ``customer`` (a CustomerIdentifier) timestamped a minute ago."""
    return {
        "Timestamp": int(time.time()) - 60,
        "CustomerIdentifier": customer,
        "Dimension": "api_calls",
        "Quantity": quantity,
        **extra,
    }


def test_resolve_customer_returns_the_customer(emulator: Emulator, client: Any) -> None:
    """A token from create_customer resolves to its identifiers, product, account and license."""
    customer = emulator.create_customer("saas-prod", aws_account_id="123456789012")
    answer = client.resolve_customer(RegistrationToken=customer.registration_token)
    assert answer["CustomerIdentifier"] == customer.customer_identifier
    assert answer["ProductCode"] == "saas-prod"
    assert answer["CustomerAWSAccountId"] == "123456789012"
    assert answer["LicenseArn"] == customer.license_arn


def test_unknown_and_expired_tokens(emulator: Emulator, client: Any) -> None:
    """An unknown token gets InvalidTokenException; an expired one ExpiredTokenException."""
    with pytest.raises(ClientError) as excinfo:
        client.resolve_customer(RegistrationToken="not-a-token")
    assert code_of(excinfo) == "InvalidTokenException"
    expired = emulator.create_customer("saas-prod", expired=True)
    with pytest.raises(ClientError) as excinfo:
        client.resolve_customer(RegistrationToken=expired.registration_token)
    assert code_of(excinfo) == "ExpiredTokenException"


def test_resolve_customer_disabled_and_internal_error(emulator: Emulator, client: Any) -> None:
    """ResolveCustomer can answer DisabledApiException and InternalServiceErrorException."""
    token = emulator.create_customer("saas-prod").registration_token
    emulator.inject_fault(
        "ResolveCustomer", "error", error="InternalServiceErrorException", count=1
    )
    with pytest.raises(ClientError) as excinfo:
        client.resolve_customer(RegistrationToken=token)
    assert code_of(excinfo) == "InternalServiceErrorException"
    emulator.set_disabled_operations(["ResolveCustomer"])
    with pytest.raises(ClientError) as excinfo:
        client.resolve_customer(RegistrationToken=token)
    assert code_of(excinfo) == "DisabledApiException"


def test_batch_statuses_per_record(emulator: Emulator, client: Any) -> None:
    """Known customers succeed; unknown or unsubscribed ones are CustomerNotSubscribed."""
    known = emulator.create_customer("saas-prod")
    gone = emulator.create_customer("saas-prod", subscribed=False)
    answer = client.batch_meter_usage(
        ProductCode="saas-prod",
        UsageRecords=[
            record(known.customer_identifier),
            record("stranger"),
            record(gone.customer_identifier),
        ],
    )
    statuses = [result["Status"] for result in answer["Results"]]
    assert statuses == ["Success", "CustomerNotSubscribed", "CustomerNotSubscribed"]
    assert answer["Results"][0]["MeteringRecordId"]
    assert answer["UnprocessedRecords"] == []


def test_batch_repeats_are_idempotent_and_changes_are_duplicates(
    emulator: Emulator, client: Any
) -> None:
    """The same record again keeps its id; another quantity for it is a DuplicateRecord."""
    customer = emulator.create_customer("saas-prod").customer_identifier
    first = record(customer, 3)
    one = client.batch_meter_usage(ProductCode="saas-prod", UsageRecords=[first])
    two = client.batch_meter_usage(ProductCode="saas-prod", UsageRecords=[first])
    assert one["Results"][0]["MeteringRecordId"] == two["Results"][0]["MeteringRecordId"]
    changed = client.batch_meter_usage(
        ProductCode="saas-prod", UsageRecords=[{**first, "Quantity": 4}]
    )
    assert changed["Results"][0]["Status"] == "DuplicateRecord"


def test_batch_by_account_and_license(emulator: Emulator, client: Any) -> None:
    """Records may name CustomerAWSAccountId and LicenseArn instead of a CustomerIdentifier."""
    customer = emulator.create_customer("saas-prod", aws_account_id="210987654321")
    usage = {
        "Timestamp": int(time.time()) - 60,
        "CustomerAWSAccountId": "210987654321",
        "LicenseArn": customer.license_arn,
        "Dimension": "api_calls",
        "Quantity": 2,
    }
    answer = client.batch_meter_usage(UsageRecords=[usage])
    assert answer["Results"][0]["Status"] == "Success"
    wrong = {**usage, "LicenseArn": customer.license_arn.replace("license:l-", "license:l-0")}
    with pytest.raises(ClientError) as excinfo:
        client.batch_meter_usage(UsageRecords=[wrong])
    assert code_of(excinfo) == "InvalidLicenseException"


def test_batch_refuses_old_records_and_bad_customers(emulator: Emulator, client: Any) -> None:
    """Records 24 hours old are out of bounds; an empty CustomerIdentifier is invalid."""
    customer = emulator.create_customer("saas-prod").customer_identifier
    old = {**record(customer), "Timestamp": int(time.time()) - 24 * 3600 - 1}
    with pytest.raises(ClientError) as excinfo:
        client.batch_meter_usage(ProductCode="saas-prod", UsageRecords=[old])
    assert code_of(excinfo) == "TimestampOutOfBoundsException"
    with pytest.raises(ClientError) as excinfo:
        client.batch_meter_usage(ProductCode="saas-prod", UsageRecords=[record("")])
    assert code_of(excinfo) == "InvalidCustomerIdentifierException"


def test_batch_product_dimension_and_allocation_errors(
    make_emulator: Any, make_client: Any
) -> None:
    """Unknown product, unknown dimension, bad allocations and duplicate tags are refused."""
    emulator = make_emulator(
        products={"saas-prod": "entitled", "bad-prod": "invalid"},
        dimensions={"saas-prod": ["api_calls"]},
    )
    client = make_client(emulator)
    customer = emulator.create_customer("saas-prod").customer_identifier
    cases = [
        ("other-prod", record(customer), "InvalidProductCodeException"),
        ("bad-prod", record(customer), "InvalidProductCodeException"),
        ("saas-prod", {**record(customer), "Dimension": "gb"}, "InvalidUsageDimensionException"),
        (
            "saas-prod",
            record(customer, 2, UsageAllocations=[{"AllocatedUsageQuantity": 1}]),
            "InvalidUsageAllocationsException",
        ),
        (
            "saas-prod",
            record(
                customer,
                1,
                UsageAllocations=[
                    {
                        "AllocatedUsageQuantity": 1,
                        "Tags": [{"Key": "k", "Value": "a"}, {"Key": "k", "Value": "b"}],
                    }
                ],
            ),
            "InvalidTagException",
        ),
    ]
    for product, usage, expected in cases:
        with pytest.raises(ClientError) as excinfo:
            client.batch_meter_usage(ProductCode=product, UsageRecords=[usage])
        assert code_of(excinfo) == expected


def test_batch_throttling_and_disabled(emulator: Emulator, client: Any) -> None:
    """BatchMeterUsage answers ThrottlingException beyond its limit and DisabledApiException."""
    customer = emulator.create_customer("saas-prod").customer_identifier
    emulator.set_rate_limit("BatchMeterUsage", 1)
    client.batch_meter_usage(ProductCode="saas-prod", UsageRecords=[record(customer)])
    with pytest.raises(ClientError) as excinfo:
        client.batch_meter_usage(ProductCode="saas-prod", UsageRecords=[record(customer)])
    assert code_of(excinfo) == "ThrottlingException"
    emulator.set_rate_limit("BatchMeterUsage", None)
    emulator.set_disabled_operations(["BatchMeterUsage"])
    with pytest.raises(ClientError) as excinfo:
        client.batch_meter_usage(ProductCode="saas-prod", UsageRecords=[record(customer)])
    assert code_of(excinfo) == "DisabledApiException"


def test_unprocessed_fault_returns_every_record_unprocessed(
    emulator: Emulator, client: Any
) -> None:
    """An ``unprocessed`` fault answers the records as UnprocessedRecords, then normal service."""
    customer = emulator.create_customer("saas-prod").customer_identifier
    emulator.inject_fault("BatchMeterUsage", "unprocessed", count=1)
    usage = [record(customer, 1), record(customer, 2, Dimension="other")]
    answer = client.batch_meter_usage(ProductCode="saas-prod", UsageRecords=usage)
    assert answer["Results"] == []
    assert [r["Quantity"] for r in answer["UnprocessedRecords"]] == [1, 2]
    retried = client.batch_meter_usage(ProductCode="saas-prod", UsageRecords=usage)
    assert [r["Status"] for r in retried["Results"]] == ["Success", "Success"]


def test_more_than_25_records_fail_model_validation(emulator: Emulator, make_client: Any) -> None:
    """UsageRecords is limited to 25 by the model: 26 get ValidationException."""
    client = make_client(emulator, parameter_validation=False)
    with pytest.raises(ClientError) as excinfo:
        client.batch_meter_usage(ProductCode="saas-prod", UsageRecords=[record("c")] * 26)
    assert code_of(excinfo) == "ValidationException"
    assert "usageRecords" in str(excinfo.value)


def test_every_modelled_error_is_producible() -> None:
    """The tests above produce every error the installed model lists for the SaaS operations."""
    produced = {
        "InternalServiceErrorException",
        "InvalidProductCodeException",
        "InvalidUsageDimensionException",
        "InvalidTagException",
        "InvalidUsageAllocationsException",
        "InvalidCustomerIdentifierException",
        "TimestampOutOfBoundsException",
        "ThrottlingException",
        "DisabledApiException",
        "InvalidLicenseException",
        "InvalidTokenException",
        "ExpiredTokenException",
    }
    operations = load_service_model()["operations"]
    for name in ("BatchMeterUsage", "ResolveCustomer"):
        assert {e["shape"] for e in operations[name]["errors"]} <= produced
