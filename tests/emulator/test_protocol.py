"""The wire: JSON 1.1 framing, model validation, SigV4 checks and HTTP/1.1 behaviour."""

from __future__ import annotations

import http.client
import json
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from marketplace_entitlement.emulator import Emulator
from marketplace_entitlement.emulator._errors import VALIDATION, ServiceError
from marketplace_entitlement.emulator._model import _Validation

TARGET = "AWSMPMeteringService.RegisterUsage"
BODY = json.dumps({"ProductCode": "prod", "PublicKeyVersion": 1}).encode()


def post(
    emulator: Emulator,
    body: bytes = BODY,
    *,
    target: str = TARGET,
    service: str | None = "aws-marketplace",
    region: str = "us-east-1",
    secret: str = "secret",  # noqa: S107  (a dummy secret)
    extra_headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], dict[str, Any]]:
    """Send a raw request (signed with botocore's SigV4Auth for ``service`` unless None)."""
    headers = {"X-Amz-Target": target, "Content-Type": "application/x-amz-json-1.1"}
    headers.update(extra_headers or {})
    request = AWSRequest(method="POST", url=emulator.endpoint + "/", data=body, headers=headers)
    if service is not None:
        SigV4Auth(Credentials("AKIDTEST", secret), service, region).add_auth(request)
    connection = http.client.HTTPConnection(emulator.host, emulator.port, timeout=10)
    try:
        connection.request("POST", "/", body=body, headers=dict(request.headers.items()))
        response = connection.getresponse()
        payload = response.read()
        return (
            response.status,
            {k.lower(): v for k, v in response.getheaders()},
            json.loads(payload),
        )
    finally:
        connection.close()


def test_unsigned_request_is_refused(emulator: Emulator) -> None:
    """No Authorization header: 400 MissingAuthenticationTokenException."""
    status, _, body = post(emulator, service=None)
    assert status == 400
    assert body == {
        "__type": "MissingAuthenticationTokenException",
        "message": "Missing Authentication Token",
    }


def test_request_signed_for_another_service_is_refused(emulator: Emulator) -> None:
    """A signature scoped to a signing name other than aws-marketplace is an invalid signature."""
    status, _, body = post(emulator, service="execute-api")
    assert (status, body["__type"]) == (400, "InvalidSignatureException")


def test_malformed_authorization_is_refused(emulator: Emulator) -> None:
    """An Authorization header that is not SigV4 is refused with InvalidSignatureException."""
    status, _, body = post(
        emulator, service=None, extra_headers={"Authorization": "AWS4-HMAC-SHA256 Credential=x"}
    )
    assert (status, body["__type"]) == (400, "InvalidSignatureException")


def test_wrong_signing_region_is_an_invalid_region(make_emulator: Any) -> None:
    """A raw RegisterUsage signed for a region other than the emulator's: InvalidRegionException."""
    status, _, body = post(make_emulator(region="eu-central-1"), region="us-east-1")
    assert (status, body["__type"]) == (400, "InvalidRegionException")


def test_signatures_are_verified_when_credentials_are_configured(
    make_emulator: Any, make_client: Any
) -> None:
    """With credentials configured the HMAC is recomputed: right secret ok, wrong one refused."""
    emulator = make_emulator(credentials={"AKIDTEST": "secret"})
    assert make_client(emulator).register_usage(ProductCode="p", PublicKeyVersion=1)["Signature"]
    with pytest.raises(ClientError) as excinfo:
        make_client(emulator, secret_access_key="wrong").register_usage(
            ProductCode="p", PublicKeyVersion=1
        )
    assert excinfo.value.response["Error"]["Code"] == "InvalidSignatureException"
    with pytest.raises(ClientError) as excinfo:
        make_client(emulator, access_key_id="AKIDUNKNOWN").register_usage(
            ProductCode="p", PublicKeyVersion=1
        )
    assert excinfo.value.response["Error"]["Code"] == "UnrecognizedClientException"


def test_any_key_is_accepted_without_configured_credentials(emulator: Emulator) -> None:
    """By default the emulator cannot know secrets: any correctly shaped signature passes."""
    status, _, body = post(emulator, secret="anything")
    assert status == 200
    assert body["Signature"]


def test_unknown_operation(emulator: Emulator) -> None:
    """An X-Amz-Target the service does not have: UnknownOperationException."""
    status, _, body = post(emulator, target="AWSMPMeteringService.GetEntitlements")
    assert (status, body["__type"]) == (400, "UnknownOperationException")


def test_body_that_is_not_json(emulator: Emulator) -> None:
    """A body that does not parse as a JSON object: SerializationException."""
    status, _, body = post(emulator, b"{not json")
    assert (status, body["__type"]) == (400, "SerializationException")


def test_wrong_json_type_is_a_serialization_error(emulator: Emulator) -> None:
    """A string where the model has an integer: SerializationException."""
    status, _, body = post(
        emulator, json.dumps({"ProductCode": "p", "PublicKeyVersion": "1"}).encode()
    )
    assert (status, body["__type"]) == (400, "SerializationException")


@pytest.mark.parametrize(
    ("request_body", "fragment"),
    [
        (
            {"PublicKeyVersion": 1},
            "'productCode' failed to satisfy constraint: Member must not be null",
        ),
        ({"ProductCode": "a b", "PublicKeyVersion": 1}, "regular expression pattern"),
        ({"ProductCode": "p" * 256, "PublicKeyVersion": 1}, "length less than or equal to 255"),
        ({"ProductCode": "p", "PublicKeyVersion": 0}, "value greater than or equal to 1"),
        ({"ProductCode": "p", "PublicKeyVersion": 1, "Nonce": "n" * 256}, "'nonce'"),
    ],
)
def test_model_constraints_answer_validation_exception(
    emulator: Emulator, make_client: Any, request_body: dict[str, Any], fragment: str
) -> None:
    """Required members, patterns, lengths and ranges from the model: ValidationException (400)."""
    client = make_client(emulator, parameter_validation=False)
    with pytest.raises(ClientError) as excinfo:
        client.register_usage(**request_body)
    assert excinfo.value.response["Error"]["Code"] == "ValidationException"
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert fragment in excinfo.value.response["Error"]["Message"]


def test_nested_structures_are_validated(emulator: Emulator, make_client: Any) -> None:
    """Constraints inside nested lists and structures (tags of allocations) are checked too."""
    client = make_client(emulator, parameter_validation=False)
    with pytest.raises(ClientError) as excinfo:
        client.meter_usage(
            ProductCode="p",
            Timestamp=0,
            UsageDimension="d",
            UsageAllocations=[
                {"AllocatedUsageQuantity": 1, "Tags": [{"Key": "", "Value": "v"}] * 6}
            ],
        )
    message = excinfo.value.response["Error"]["Message"]
    assert "usageAllocations.1.member.tags" in message
    assert "usageAllocations.1.member.tags.1.member.key" in message


def test_enums_are_validated() -> None:
    """A string outside a shape's enum is a ValidationException (checked on a model shape)."""
    shapes = {
        "S": {"type": "structure", "members": {"Status": {"shape": "E"}}},
        "E": {"type": "string", "enum": ["Success", "DuplicateRecord"]},
    }
    validation = _Validation(shapes)
    validation.check({"Status": "Maybe"}, "S", "")
    assert validation.problems
    assert "enum value set" in validation.problems[0]
    assert ServiceError(VALIDATION, "x").status == 400


def test_answers_are_http_1_1_with_length_and_request_id(emulator: Emulator) -> None:
    """Every answer has Content-Length, the JSON 1.1 content type and x-amzn-RequestId."""
    for target in (TARGET, "AWSMPMeteringService.Nope"):
        _, headers, _ = post(emulator, target=target)
        assert int(headers["content-length"]) > 0
        assert headers["content-type"] == "application/x-amz-json-1.1"
        assert headers["x-amzn-requestid"]


def test_keep_alive_serves_several_requests_on_one_connection(emulator: Emulator) -> None:
    """HTTP/1.1 keep-alive: three requests on one connection, including an error answer."""
    connection = http.client.HTTPConnection(emulator.host, emulator.port, timeout=10)
    try:
        for body in (BODY, b"{bad", BODY):
            request = AWSRequest(
                method="POST",
                url=emulator.endpoint + "/",
                data=body,
                headers={"X-Amz-Target": TARGET},
            )
            SigV4Auth(Credentials("AKIDTEST", "s"), "aws-marketplace", "us-east-1").add_auth(
                request
            )
            connection.request("POST", "/", body=body, headers=dict(request.headers.items()))
            response = connection.getresponse()
            assert response.version == 11
            response.read()
        assert connection.sock is not None  # the same socket was kept open throughout
    finally:
        connection.close()
    assert len(emulator.requests()) == 3


def test_requests_are_recorded_with_identity_and_outcome(
    emulator: Emulator, make_client: Any
) -> None:
    """Each request is recorded with operation, body, region, access key and error code."""
    client = make_client(emulator, region="sa-east-1", access_key_id="AKIDREC")
    client.register_usage(ProductCode="p", PublicKeyVersion=1, Nonce="n")
    with pytest.raises(ClientError):
        client.register_usage(ProductCode="p", PublicKeyVersion=9)
    post(emulator, service=None)
    first, second, third = emulator.requests()
    assert (first.operation, first.region, first.access_key_id, first.status) == (
        "RegisterUsage",
        "sa-east-1",
        "AKIDREC",
        200,
    )
    assert first.body == {"ProductCode": "p", "PublicKeyVersion": 1, "Nonce": "n"}
    assert second.error_code == "InvalidPublicKeyVersionException"
    assert (third.error_code, third.access_key_id) == ("MissingAuthenticationTokenException", None)
    assert emulator.requests("MeterUsage") == []
