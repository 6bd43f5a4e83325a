"""BatchMeterUsage and ResolveCustomer as the late-2026 model describes them (issue 11's audit)."""

from __future__ import annotations

import json
import socket
import time
from datetime import datetime, timezone
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from marketplace_entitlement.emulator import Emulator
from marketplace_entitlement.emulator._operations import month_cutoff
from marketplace_entitlement.emulator._server import MAX_BODY_BYTES


def code_of(excinfo: pytest.ExceptionInfo[ClientError]) -> str:
    """The error code botocore saw."""
    return str(excinfo.value.response["Error"]["Code"])


def licensed(customer: Any, quantity: int = 1, *, age: float = 60) -> dict[str, Any]:
    """A record naming ``customer`` by account id and license ARN, ``age`` seconds ago."""
    return {
        "Timestamp": int(time.time() - age),
        "CustomerAWSAccountId": customer.aws_account_id,
        "LicenseArn": customer.license_arn,
        "Dimension": "api_calls",
        "Quantity": quantity,
    }


def utc(text: str) -> float:
    """Epoch seconds of an ISO UTC moment."""
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


def test_two_licenses_of_one_account_are_two_customers(emulator: Emulator, client: Any) -> None:
    """One account holding two licenses: each license's usage is its own record, both Success."""
    first = emulator.create_customer("saas-prod", aws_account_id="111122223333")
    second = emulator.create_customer("saas-prod", aws_account_id="111122223333")
    usage = [licensed(first, 3), licensed(second, 5)]
    usage[1]["Timestamp"] = usage[0]["Timestamp"]
    answer = client.batch_meter_usage(UsageRecords=usage)
    assert [r["Status"] for r in answer["Results"]] == ["Success", "Success"]
    assert answer["Results"][0]["MeteringRecordId"] != answer["Results"][1]["MeteringRecordId"]


def test_records_are_accepted_for_24_hours(emulator: Emulator, client: Any) -> None:
    """A record 23 hours old is accepted; one 24 hours old is TimestampOutOfBoundsException."""
    customer = emulator.create_customer("saas-prod")
    answer = client.batch_meter_usage(UsageRecords=[licensed(customer, age=23 * 3600)])
    assert answer["Results"][0]["Status"] == "Success"
    with pytest.raises(ClientError) as excinfo:
        client.batch_meter_usage(UsageRecords=[licensed(customer, age=24 * 3600 + 5)])
    assert code_of(excinfo) == "TimestampOutOfBoundsException"


def test_month_cutoff_is_six_in_the_morning_of_the_first() -> None:
    """Usage of March is accepted until 06:00 UTC on April 1; December's until January 1."""
    assert month_cutoff(utc("2026-03-31T23:00:00")) == utc("2026-04-01T06:00:00")
    assert month_cutoff(utc("2026-03-01T00:00:00")) == utc("2026-04-01T06:00:00")
    assert month_cutoff(utc("2026-12-31T22:00:00")) == utc("2027-01-01T06:00:00")


def test_resolve_answers_agreement_id_and_no_identifier_for_new_integrations(
    emulator: Emulator, client: Any
) -> None:
    """New-integration customers resolve without CustomerIdentifier, with Metadata.AgreementId."""
    new = emulator.create_customer("saas-prod", new_integration=True, agreement_id="agmt-1")
    answer = client.resolve_customer(RegistrationToken=new.registration_token)
    assert "CustomerIdentifier" not in answer
    assert answer["Metadata"] == {"AgreementId": "agmt-1"}
    assert answer["LicenseArn"] == new.license_arn
    legacy = emulator.create_customer("saas-prod")
    answer = client.resolve_customer(RegistrationToken=legacy.registration_token)
    assert answer["CustomerIdentifier"] == legacy.customer_identifier
    assert answer["Metadata"]["AgreementId"] == legacy.agreement_id


def test_new_integration_customers_cannot_be_named_by_identifier(
    emulator: Emulator, client: Any
) -> None:
    """A new-integration customer is reached by license; it has no identifier to be named by."""
    new = emulator.create_customer("saas-prod", new_integration=True)
    assert new.customer_identifier == ""
    answer = client.batch_meter_usage(UsageRecords=[licensed(new)])
    assert answer["Results"][0]["Status"] == "Success"


def test_saas_operations_check_the_region(make_emulator: Any, make_client: Any) -> None:
    """An emulator in us-west-2 refuses BatchMeterUsage and ResolveCustomer signed for us-east-1."""
    emulator = make_emulator(region="us-west-2")
    customer = emulator.create_customer("saas-prod")
    wrong = make_client(emulator, region="us-east-1")
    with pytest.raises(ClientError) as excinfo:
        wrong.resolve_customer(RegistrationToken=customer.registration_token)
    assert code_of(excinfo) == "InvalidRegionException"
    with pytest.raises(ClientError) as excinfo:
        wrong.batch_meter_usage(UsageRecords=[licensed(customer)])
    assert code_of(excinfo) == "InvalidRegionException"
    right = make_client(emulator, region="us-west-2")
    assert right.batch_meter_usage(UsageRecords=[licensed(customer)])["Results"]


def test_batch_requests_of_1_mb_or_more_are_refused(emulator: Emulator, client: Any) -> None:
    """A BatchMeterUsage body of 1 MB or more is a ValidationException, nothing is recorded."""
    customer = emulator.create_customer("saas-prod")
    tags = [{"Key": f"k{i}" + "x" * 120, "Value": "v" * 250} for i in range(5)]
    allocations = [
        {"AllocatedUsageQuantity": 1, "Tags": [{**t, "Value": f"{n}{t['Value']}"} for t in tags]}
        for n in range(20)
    ]
    usage = [
        {**licensed(customer, 20), "Dimension": f"d{i}", "UsageAllocations": allocations}
        for i in range(25)
    ]
    assert len(json.dumps({"UsageRecords": usage})) > 1_000_000
    with pytest.raises(ClientError) as excinfo:
        client.batch_meter_usage(UsageRecords=usage)
    assert code_of(excinfo) == "ValidationException"
    assert "less than 1000000 bytes" in str(excinfo.value)


def test_a_20_mib_body_is_refused_without_being_read(emulator: Emulator) -> None:
    """A 20 MiB Content-Length gets 413 after only the headers were sent; the body is not read."""
    body_size = 20 * 1024 * 1024
    request = AWSRequest(
        method="POST",
        url=emulator.endpoint + "/",
        data=b"",
        headers={"X-Amz-Target": "AWSMPMeteringService.BatchMeterUsage"},
    )
    SigV4Auth(Credentials("AKIDTEST", "s"), "aws-marketplace", "us-east-1").add_auth(request)
    head = "".join(f"{k}: {v}\r\n" for k, v in request.headers.items() if k != "Content-Length")
    with socket.create_connection((emulator.host, emulator.port), timeout=10) as sock:
        sock.sendall(
            f"POST / HTTP/1.1\r\nHost: x\r\n{head}Content-Length: {body_size}\r\n\r\n".encode()
            + b"{" * 1024
        )
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413")
    assert body_size > MAX_BODY_BYTES


def test_validation_never_echoes_a_huge_value(emulator: Emulator, make_client: Any) -> None:
    """A 1.5 MB ProductCode is refused with a message that shows only its beginning."""
    client = make_client(emulator, parameter_validation=False)
    with pytest.raises(ClientError) as excinfo:
        client.register_usage(ProductCode="p" * 1_500_000, PublicKeyVersion=1)
    assert code_of(excinfo) == "ValidationException"
    assert len(str(excinfo.value)) < 2000
