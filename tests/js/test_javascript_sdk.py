"""The emulator answers the AWS SDK for JavaScript v3 exactly as it answers botocore.

Each test makes the same calls against one emulator first through a real botocore client, then
through ``@aws-sdk/client-marketplace-metering`` in one ``node`` process running ``drive.mjs`` (a
JSON plan on stdin, one JSON result per call on stdout), and compares what the two SDKs made of the
answers: the output members (timestamps as epoch seconds; RegisterUsage tokens verified with the
emulator's public key and compared claim by claim, ``iat`` aside), or the error's name, HTTP status
and message. The emulator checks every SigV4 signature against the secret it was given, and the
requests it recorded show that the JavaScript SDK sent the same bodies, signed for
``aws-marketplace`` in the client's region.

The tests skip, saying why, when ``node`` or the SDK (``npm ci`` in ``tests/js``) is missing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import botocore.session
import jwt
import pytest
from botocore import xform_name
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.session import Session

from marketplace_entitlement.emulator import Emulator

pytestmark = pytest.mark.node

JS_DIR = Path(__file__).resolve().parent
DRIVER = JS_DIR / "drive.mjs"
SDK_PACKAGE = JS_DIR / "node_modules" / "@aws-sdk" / "client-marketplace-metering"
NODE_TIMEOUT_SECONDS = 60

REGION = "us-east-1"
ACCESS_KEY_ID = "AKIDCROSSSDK"
SECRET_ACCESS_KEY = "cross-sdk-secret"
HOUR = 3600
DATE_TAG = "$date"  # {"$date": epoch seconds} stands for a timestamp in plans and answers
UNLIMITED = {
    "RegisterUsage": None,
    "MeterUsage": None,
    "BatchMeterUsage": None,
    "ResolveCustomer": None,
}
# A SigV4 Authorization header, split into the parts the credential scope is made of.
AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<akid>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request, SignedHeaders=(?P<headers>[^,]+), "
    r"Signature=[0-9a-f]{64}$"
)

Call = dict[str, Any]
Answer = dict[str, Any]


# -- plans ----------------------------------------------------------------------------------


def call(operation: str, **request: Any) -> Call:
    """One call of a plan: the operation and its input (timestamps written with ``at``)."""
    return {"operation": operation, "input": request}


def at(seconds: float) -> dict[str, float]:
    """A timestamp, as both drivers take it: epoch seconds, tagged."""
    return {DATE_TAG: seconds}


def hour_start() -> int:
    """The start of the current hour: inside MeterUsage's window, never in the future."""
    now = int(time.time())
    return now - now % HOUR


# -- botocore -------------------------------------------------------------------------------


def _to_botocore(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {DATE_TAG}:
            return datetime.fromtimestamp(value[DATE_TAG], tz=timezone.utc)
        return {key: _to_botocore(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_to_botocore(item) for item in value]
    return value


def _from_botocore(value: Any) -> Any:
    if isinstance(value, datetime):
        return {DATE_TAG: value.timestamp()}
    if isinstance(value, dict):
        return {key: _from_botocore(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_from_botocore(item) for item in value]
    return value


def botocore_answers(
    session: Session,
    emulator: Emulator,
    calls: Sequence[Call],
    *,
    region: str,
    secret_access_key: str = SECRET_ACCESS_KEY,
) -> list[Answer]:
    """Make ``calls`` with a real botocore client (one attempt each); answer like ``drive.mjs``."""
    client = session.create_client(
        "meteringmarketplace",
        region_name=region,
        endpoint_url=emulator.endpoint,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=secret_access_key,
        config=Config(retries={"total_max_attempts": 1}),
    )
    answers: list[Answer] = []
    for planned in calls:
        method = getattr(client, xform_name(planned["operation"]))
        try:
            response = method(**_to_botocore(planned["input"]))
        except ClientError as error:
            metadata = error.response["ResponseMetadata"]
            answers.append(
                {
                    "error": {
                        "name": error.response["Error"]["Code"],
                        "status": metadata["HTTPStatusCode"],
                        "message": error.response["Error"]["Message"],
                        "requestId": metadata.get("RequestId"),
                    }
                }
            )
        else:
            metadata = response.pop("ResponseMetadata")
            answers.append(
                {
                    "output": _from_botocore(response),
                    "status": metadata["HTTPStatusCode"],
                    "requestId": metadata.get("RequestId"),
                }
            )
    return answers


# -- the JavaScript SDK ---------------------------------------------------------------------


def node_environment(home: Path) -> dict[str, str]:
    """This process's environment without AWS settings, so only the plan configures the SDK."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    env.update(
        {
            "HOME": str(home),
            "AWS_CONFIG_FILE": str(home / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(home / "no-aws-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
            # Node 20 is still supported; the SDK's notice about Node 22 would only clutter stderr.
            "AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED": "true",
        }
    )
    return env


class JavaScriptSDK:
    """Runs plans through ``drive.mjs``: one ``node`` process per plan."""

    def __init__(self, node: str, home: Path) -> None:
        self.node = node
        self.env = node_environment(home)
        self.version: str | None = None

    def answers(
        self,
        emulator: Emulator,
        calls: Sequence[Call],
        *,
        region: str,
        secret_access_key: str = SECRET_ACCESS_KEY,
    ) -> list[Answer]:
        """Make ``calls`` through the SDK (one attempt each) and return one answer per call."""
        plan = {
            "endpoint": emulator.endpoint,
            "region": region,
            "credentials": {"accessKeyId": ACCESS_KEY_ID, "secretAccessKey": secret_access_key},
            "calls": list(calls),
        }
        completed = subprocess.run(
            [self.node, str(DRIVER)],
            input=json.dumps(plan),
            capture_output=True,
            text=True,
            cwd=JS_DIR,
            env=self.env,
            timeout=NODE_TIMEOUT_SECONDS,
            check=False,
        )
        assert completed.returncode == 0, f"drive.mjs failed:\n{completed.stderr}"
        document = json.loads(completed.stdout)
        self.version = document["sdkVersion"]
        answers: list[Answer] = document["results"]
        assert len(answers) == len(calls)
        return answers


@pytest.fixture(scope="module")
def javascript_sdk(tmp_path_factory: pytest.TempPathFactory) -> JavaScriptSDK:
    """The JavaScript SDK driver, or a skip saying what is missing."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not on PATH: the AWS SDK for JavaScript v3 cannot be run")
    if not (SDK_PACKAGE / "package.json").is_file():
        pytest.skip(
            "@aws-sdk/client-marketplace-metering is not installed: run `npm ci` in tests/js "
            "(scripts/test does this when npm is available)"
        )
    return JavaScriptSDK(node, tmp_path_factory.mktemp("node-home"))


@pytest.fixture(scope="module")
def session() -> Session:
    """One botocore session for the module (loading the service data once)."""
    return botocore.session.get_session()


@pytest.fixture
def make_emulator(metering_emulator_private_key: bytes) -> Iterator[Callable[..., Emulator]]:
    """Start emulators that sign with the session's key and check every SigV4 signature."""
    started: list[Emulator] = []

    def make(**kwargs: Any) -> Emulator:
        kwargs.setdefault("keys", {1: metering_emulator_private_key})
        kwargs.setdefault("credentials", {ACCESS_KEY_ID: SECRET_ACCESS_KEY})
        kwargs.setdefault("rate_limits", UNLIMITED)
        emulator = Emulator(**kwargs).start()
        started.append(emulator)
        return emulator

    yield make
    for emulator in started:
        emulator.stop()


@pytest.fixture
def emulator(make_emulator: Callable[..., Emulator]) -> Emulator:
    """An emulator where every product is entitled and any region is accepted."""
    return make_emulator()


# -- running both and comparing -------------------------------------------------------------


class Both:
    """Makes the same calls through botocore, then through the JavaScript SDK, and compares."""

    def __init__(self, session: Session, javascript: JavaScriptSDK) -> None:
        self.session = session
        self.javascript = javascript

    def run(
        self,
        emulator: Emulator,
        calls: Sequence[Call],
        *,
        region: str = REGION,
        before_each_sdk: Callable[[], object] | None = None,
        secret_access_key: str = SECRET_ACCESS_KEY,
    ) -> tuple[list[Answer], list[Answer]]:
        """Answer (botocore's answers, the JavaScript SDK's), after checking they are the same.

        ``before_each_sdk`` runs before each SDK's turn (to inject a fault for each, say).
        """
        emulator.clear_requests()
        if before_each_sdk is not None:
            before_each_sdk()
        python = botocore_answers(
            self.session, emulator, calls, region=region, secret_access_key=secret_access_key
        )
        if before_each_sdk is not None:
            before_each_sdk()
        javascript = self.javascript.answers(
            emulator, calls, region=region, secret_access_key=secret_access_key
        )
        check_recorded_requests(emulator, python, javascript, region=region)
        for index, (one, other) in enumerate(zip(python, javascript, strict=True)):
            assert comparable(emulator, one) == comparable(emulator, other), (
                f"call {index} ({calls[index]['operation']}): botocore got {one}, "
                f"the JavaScript SDK got {other}"
            )
        return python, javascript


@pytest.fixture
def both(session: Session, javascript_sdk: JavaScriptSDK) -> Both:
    """Run calls through both SDKs and assert they got the same answers."""
    return Both(session, javascript_sdk)


def check_recorded_requests(
    emulator: Emulator, python: Sequence[Answer], javascript: Sequence[Answer], *, region: str
) -> None:
    """Each SDK sent one request per call; the JavaScript SDK's match botocore's.

    The emulator records the region and access key id from each request's SigV4 credential scope;
    ``ClientToken`` is left out of the comparison when each SDK generated its own.
    """
    recorded = emulator.requests()
    assert len(recorded) == len(python) + len(javascript)
    for answer, request in zip([*python, *javascript], recorded, strict=True):
        assert request.request_id == _request_id(answer)
        assert (request.region, request.access_key_id) == (region, ACCESS_KEY_ID)
    for sent_by_botocore, sent_by_javascript in zip(
        recorded[: len(python)], recorded[len(python) :], strict=True
    ):
        assert sent_by_javascript.operation == sent_by_botocore.operation
        assert _body_without_generated_token(sent_by_javascript.body) == (
            _body_without_generated_token(sent_by_botocore.body)
        )


def _request_id(answer: Answer) -> str:
    return str(answer["error"]["requestId"] if "error" in answer else answer["requestId"])


def _body_without_generated_token(body: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if body is None:
        return None
    kept = dict(body)
    if isinstance(kept.get("ClientToken"), str) and _is_uuid4(kept["ClientToken"]):
        del kept["ClientToken"]
    return kept


def _is_uuid4(text: str) -> bool:
    return (
        re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", text)
        is not None
    )


def comparable(emulator: Emulator, answer: Answer) -> Answer:
    """What must be equal between SDKs: output members with tokens decoded, or the error.

    A RegisterUsage ``Signature`` is verified (PS256, the emulator's public key of the version in
    its claims) and replaced by its header and claims without ``iat``, the one volatile claim.
    """
    if "error" in answer:
        error = answer["error"]
        return {"error": {key: error[key] for key in ("name", "status", "message")}}
    output = dict(answer["output"])
    # ResolveCustomer's Metadata (AgreementId) is newer than the JavaScript SDK's model
    # (3.1138.0, the latest): that SDK drops it, botocore keeps it.
    output.pop("Metadata", None)
    if "Signature" in output:
        output["Signature"] = decoded_token(emulator, output["Signature"])
    return {"output": output, "status": answer["status"]}


def decoded_token(emulator: Emulator, token: str) -> dict[str, Any]:
    """Verify a RegisterUsage token with the emulator's public key; its header and stable claims."""
    unverified = jwt.decode(token, options={"verify_signature": False})
    version = int(unverified["publicKeyVersion"])
    claims = jwt.decode(token, emulator.public_key_pem(version), algorithms=["PS256"])
    assert isinstance(claims["iat"], int)
    assert abs(claims["iat"] - time.time()) < 60
    del claims["iat"]
    return {"header": jwt.get_unverified_header(token), "claims": claims}


def error_names(answers: Sequence[Answer]) -> list[str | None]:
    """The error name of each answer (None for a success)."""
    return [answer["error"]["name"] if "error" in answer else None for answer in answers]


# -- RegisterUsage --------------------------------------------------------------------------


def test_register_usage_gives_both_sdks_the_same_verified_token(
    both: Both, emulator: Emulator
) -> None:
    """RegisterUsage's Signature verifies (PS256) for both SDKs, with the same claims and nonce."""
    calls = [
        call("RegisterUsage", ProductCode="prod-crosssdk", PublicKeyVersion=1, Nonce="nonce-1"),
        call("RegisterUsage", ProductCode="prod-crosssdk", PublicKeyVersion=1),
    ]
    python, javascript = both.run(emulator, calls)
    with_nonce = comparable(emulator, javascript[0])["output"]["Signature"]
    assert with_nonce["header"]["alg"] == "PS256"
    assert with_nonce["claims"] == {
        "productCode": "prod-crosssdk",
        "publicKeyVersion": 1,
        "nonce": "nonce-1",
    }
    assert "nonce" not in comparable(emulator, javascript[1])["output"]["Signature"]["claims"]
    assert [answer["status"] for answer in python + javascript] == [200] * 4


def test_a_rotated_key_timestamp_reaches_both_sdks_as_the_same_instant(
    both: Both, emulator: Emulator
) -> None:
    """PublicKeyRotationTimestamp is parsed by both SDKs into the same epoch second."""
    rotated_at = 1_700_000_000
    emulator.expire_key(1, at=rotated_at)
    calls = [call("RegisterUsage", ProductCode="prod-crosssdk", PublicKeyVersion=1)]
    _, javascript = both.run(emulator, calls)
    assert javascript[0]["output"]["PublicKeyRotationTimestamp"] == at(rotated_at)


def test_register_usage_errors_have_the_same_names_for_both_sdks(
    both: Both, make_emulator: Callable[..., Emulator]
) -> None:
    """Not entitled, unsupported platform, invalid or unlisted product, unknown key version."""
    emulator = make_emulator(
        products={
            "prod-entitled": "entitled",
            "prod-unpaid": "not_entitled",
            "prod-fargate": "platform_not_supported",
            "prod-invalid": "invalid",
        }
    )
    calls = [
        call("RegisterUsage", ProductCode="prod-unpaid", PublicKeyVersion=1),
        call("RegisterUsage", ProductCode="prod-fargate", PublicKeyVersion=1),
        call("RegisterUsage", ProductCode="prod-invalid", PublicKeyVersion=1),
        call("RegisterUsage", ProductCode="prod-unlisted", PublicKeyVersion=1),
        call("RegisterUsage", ProductCode="prod-entitled", PublicKeyVersion=2),
    ]
    _, javascript = both.run(emulator, calls)
    assert error_names(javascript) == [
        "CustomerNotEntitledException",
        "PlatformNotSupportedException",
        "InvalidProductCodeException",
        "CustomerNotEntitledException",
        "InvalidPublicKeyVersionException",
    ]
    assert all(answer["error"]["modeled"] for answer in javascript)
    assert {answer["error"]["status"] for answer in javascript} == {400}


def test_a_client_in_another_region_is_refused_alike_by_region_checks(
    both: Both, make_emulator: Callable[..., Emulator]
) -> None:
    """Signed for us-east-1 at a us-west-2 emulator: InvalidRegionException, InvalidEndpointRegion."""
    emulator = make_emulator(region="us-west-2")
    calls = [
        call("RegisterUsage", ProductCode="prod-crosssdk", PublicKeyVersion=1),
        call(
            "MeterUsage",
            ProductCode="prod-crosssdk",
            Timestamp=at(hour_start()),
            UsageDimension="users",
            UsageQuantity=1,
        ),
    ]
    _, javascript = both.run(emulator, calls, region="us-east-1")
    assert error_names(javascript) == ["InvalidRegionException", "InvalidEndpointRegionException"]
    assert "us-west-2" in javascript[0]["error"]["message"]


# -- injected faults, every operation -------------------------------------------------------


def one_call_per_operation(emulator: Emulator) -> list[Call]:
    """A valid call of each of the four operations."""
    customer = emulator.create_customer("prod-saas")
    return [
        call("RegisterUsage", ProductCode="prod-crosssdk", PublicKeyVersion=1),
        call(
            "MeterUsage",
            ProductCode="prod-crosssdk",
            Timestamp=at(hour_start()),
            UsageDimension="users",
            UsageQuantity=1,
        ),
        call(
            "BatchMeterUsage",
            ProductCode="prod-saas",
            UsageRecords=[
                {
                    "CustomerIdentifier": customer.customer_identifier,
                    "Timestamp": at(hour_start()),
                    "Dimension": "users",
                    "Quantity": 1,
                }
            ],
        ),
        call("ResolveCustomer", RegistrationToken=customer.registration_token),
    ]


@pytest.mark.parametrize(
    ("error", "status", "fault"),
    [
        ("ThrottlingException", 400, "client"),
        ("InternalServiceErrorException", 500, "server"),
    ],
)
def test_an_injected_error_reaches_both_sdks_alike_for_every_operation(
    both: Both, emulator: Emulator, error: str, status: int, fault: str
) -> None:
    """An injected ThrottlingException (400) or InternalServiceErrorException (500) is the same."""
    calls = one_call_per_operation(emulator)
    operations = [planned["operation"] for planned in calls]

    def inject_once_per_operation() -> None:
        for operation in operations:
            emulator.inject_fault(operation, "error", error=error, count=1)

    _, javascript = both.run(emulator, calls, before_each_sdk=inject_once_per_operation)
    assert error_names(javascript) == [error] * 4
    assert {(answer["error"]["status"], answer["error"]["fault"]) for answer in javascript} == {
        (status, fault)
    }
    assert all(answer["error"]["modeled"] for answer in javascript)
    assert all(request.fault == "error" for request in emulator.requests())


# -- MeterUsage -----------------------------------------------------------------------------


def test_meter_usage_repeats_answer_both_sdks_with_the_same_record_id(
    both: Both, emulator: Emulator
) -> None:
    """The JavaScript SDK's repeat of botocore's record gets botocore's MeteringRecordId."""
    start = hour_start()
    record = {"ProductCode": "prod-crosssdk", "UsageDimension": "users", "UsageQuantity": 4}
    calls = [
        call("MeterUsage", Timestamp=at(start), **record),
        call("MeterUsage", Timestamp=at(start + 1.25), **record),
        call(
            "MeterUsage",
            ProductCode="prod-crosssdk",
            Timestamp=at(start),
            UsageDimension="storage",
            UsageQuantity=3,
            UsageAllocations=[
                {"AllocatedUsageQuantity": 2, "Tags": [{"Key": "team", "Value": "a"}]},
                {"AllocatedUsageQuantity": 1, "Tags": [{"Key": "team", "Value": "b"}]},
            ],
        ),
    ]
    python, javascript = both.run(emulator, calls)
    ids = [answer["output"]["MeteringRecordId"] for answer in python + javascript]
    assert ids[0] == ids[1] == ids[3] == ids[4]
    assert ids[2] == ids[5] != ids[0]


def test_meter_usage_errors_have_the_same_names_for_both_sdks(
    both: Both, make_emulator: Callable[..., Emulator]
) -> None:
    """Duplicate, out-of-bounds timestamps, conflicts, DryRun and entitlement: the same errors."""
    emulator = make_emulator(
        products={"prod-crosssdk": "entitled", "prod-unpaid": "not_entitled"},
        dimensions={"prod-crosssdk": ["users"]},
    )
    start = hour_start()
    now = time.time()
    usage = {"ProductCode": "prod-crosssdk", "UsageDimension": "users"}
    calls = [
        call("MeterUsage", Timestamp=at(start), UsageQuantity=5, **usage),
        call("MeterUsage", Timestamp=at(start), UsageQuantity=6, **usage),
        call("MeterUsage", Timestamp=at(int(now) - 7 * HOUR), UsageQuantity=5, **usage),
        call("MeterUsage", Timestamp=at(int(now) + HOUR), UsageQuantity=5, **usage),
        call("MeterUsage", Timestamp=at(start), UsageQuantity=5, DryRun=True, **usage),
        call(
            "MeterUsage",
            ProductCode="prod-crosssdk",
            Timestamp=at(start),
            UsageDimension="gigabytes",
            UsageQuantity=1,
        ),
        call(
            "MeterUsage",
            ProductCode="prod-unpaid",
            Timestamp=at(start),
            UsageDimension="users",
            UsageQuantity=1,
        ),
        call(
            "MeterUsage", Timestamp=at(start - HOUR), UsageQuantity=2, ClientToken="tok-1", **usage
        ),
        call(
            "MeterUsage", Timestamp=at(start - HOUR), UsageQuantity=3, ClientToken="tok-1", **usage
        ),
    ]
    _, javascript = both.run(emulator, calls)
    assert error_names(javascript) == [
        None,
        "DuplicateRequestException",
        "TimestampOutOfBoundsException",
        "TimestampOutOfBoundsException",
        "DryRunOperation",
        "InvalidUsageDimensionException",
        "CustomerNotEntitledException",
        None,
        "IdempotencyConflictException",
    ]


# -- BatchMeterUsage ------------------------------------------------------------------------


def test_batch_meter_usage_per_record_statuses_are_the_same_for_both_sdks(
    both: Both, emulator: Emulator
) -> None:
    """Success, CustomerNotSubscribed and DuplicateRecord come back per record, the same."""
    subscriber = emulator.create_customer("prod-saas")
    by_account = emulator.create_customer("prod-saas")
    lapsed = emulator.create_customer("prod-saas", subscribed=False)
    start = hour_start()

    def record(quantity: int, **customer: str) -> dict[str, Any]:
        return {"Timestamp": at(start), "Dimension": "users", "Quantity": quantity, **customer}

    calls = [
        call(
            "BatchMeterUsage",
            ProductCode="prod-saas",
            UsageRecords=[
                record(3, CustomerIdentifier=subscriber.customer_identifier),
                record(4, CustomerIdentifier=subscriber.customer_identifier),
                record(
                    2,
                    CustomerAWSAccountId=by_account.aws_account_id,
                    LicenseArn=by_account.license_arn,
                ),
                record(1, CustomerIdentifier=lapsed.customer_identifier),
                record(1, CustomerIdentifier="cust-nobody"),
            ],
        )
    ]
    python, javascript = both.run(emulator, calls)
    results = javascript[0]["output"]["Results"]
    assert [result["Status"] for result in results] == [
        "Success",
        "DuplicateRecord",
        "Success",
        "CustomerNotSubscribed",
        "CustomerNotSubscribed",
    ]
    assert results[0]["UsageRecord"]["Timestamp"] == at(start)
    assert results[0]["MeteringRecordId"] == python[0]["output"]["Results"][0]["MeteringRecordId"]
    assert javascript[0]["output"]["UnprocessedRecords"] == []


def test_batch_meter_usage_unprocessed_records_are_the_same_for_both_sdks(
    both: Both, emulator: Emulator
) -> None:
    """Records the service left unprocessed come back to both SDKs, milliseconds included."""
    customer = emulator.create_customer("prod-saas")
    records = [
        {
            "CustomerIdentifier": customer.customer_identifier,
            "Timestamp": at(hour_start() + 0.25),
            "Dimension": "users",
            "Quantity": 2,
        }
    ]
    calls = [call("BatchMeterUsage", ProductCode="prod-saas", UsageRecords=records)]
    _, javascript = both.run(
        emulator,
        calls,
        before_each_sdk=lambda: emulator.inject_fault("BatchMeterUsage", "unprocessed", count=1),
    )
    assert javascript[0]["output"] == {"Results": [], "UnprocessedRecords": records}


def test_batch_meter_usage_errors_have_the_same_names_for_both_sdks(
    both: Both, make_emulator: Callable[..., Emulator]
) -> None:
    """Old timestamps, unknown products and ambiguous customers fail the call alike."""
    emulator = make_emulator(products={"prod-saas": "entitled"})
    customer = emulator.create_customer("prod-saas")
    now = int(time.time())

    def batch(product: str, **record: Any) -> Call:
        usage = {"Timestamp": at(hour_start()), "Dimension": "users", "Quantity": 1, **record}
        return call("BatchMeterUsage", ProductCode=product, UsageRecords=[usage])

    calls = [
        batch(
            "prod-saas",
            CustomerIdentifier=customer.customer_identifier,
            Timestamp=at(now - 25 * HOUR),  # BatchMeterUsage's window is 24 hours
        ),
        batch("prod-other", CustomerIdentifier=customer.customer_identifier),
        batch(
            "prod-saas",
            CustomerIdentifier=customer.customer_identifier,
            CustomerAWSAccountId=customer.aws_account_id,
        ),
        batch(
            "prod-saas",
            CustomerAWSAccountId=customer.aws_account_id,
            LicenseArn="arn:aws:license-manager::000000000000:license:l-0",
        ),
    ]
    _, javascript = both.run(emulator, calls)
    assert error_names(javascript) == [
        "TimestampOutOfBoundsException",
        "InvalidProductCodeException",
        "InvalidCustomerIdentifierException",
        "InvalidLicenseException",
    ]


# -- ResolveCustomer ------------------------------------------------------------------------


def test_resolve_customer_answers_both_sdks_alike(both: Both, emulator: Emulator) -> None:
    """A live token resolves to the same identifiers; unknown and expired tokens fail alike."""
    customer = emulator.create_customer("prod-saas")
    expired = emulator.create_customer("prod-saas", expired=True)
    calls = [
        call("ResolveCustomer", RegistrationToken=customer.registration_token),
        call("ResolveCustomer", RegistrationToken="not-a-token-the-emulator-issued"),
        call("ResolveCustomer", RegistrationToken=expired.registration_token),
    ]
    _, javascript = both.run(emulator, calls)
    assert javascript[0]["output"] == {
        "CustomerIdentifier": customer.customer_identifier,
        "ProductCode": "prod-saas",
        "CustomerAWSAccountId": customer.aws_account_id,
        "LicenseArn": customer.license_arn,
    }
    assert error_names(javascript) == [None, "InvalidTokenException", "ExpiredTokenException"]


# -- signing --------------------------------------------------------------------------------


def test_the_javascript_sdk_signs_sigv4_for_aws_marketplace_in_its_region(
    both: Both, make_emulator: Callable[..., Emulator]
) -> None:
    """Every operation is signed for aws-marketplace in the client's region, and verifies."""
    emulator = make_emulator(region="us-west-2")
    calls = one_call_per_operation(emulator)
    _, javascript = both.run(emulator, calls, region="us-west-2")
    assert error_names(javascript) == [None] * 4
    for answer in javascript:
        scope = AUTHORIZATION.match(answer["authorization"] or "")
        assert scope is not None, answer["authorization"]
        assert (scope["akid"], scope["region"], scope["service"]) == (
            ACCESS_KEY_ID,
            "us-west-2",
            "aws-marketplace",
        )
        assert {"host", "x-amz-date", "x-amz-target"} <= set(scope["headers"].split(";"))
    assert emulator.state()["verifies_signatures"] is True
    assert {(r.region, r.access_key_id) for r in emulator.requests()} == {
        ("us-west-2", ACCESS_KEY_ID)
    }


def test_a_signature_made_with_the_wrong_secret_is_refused_alike(
    both: Both, emulator: Emulator
) -> None:
    """Signed with a secret the emulator does not hold: InvalidSignatureException for both."""
    calls = [call("RegisterUsage", ProductCode="prod-crosssdk", PublicKeyVersion=1)]
    _, javascript = both.run(emulator, calls, secret_access_key="not-the-secret")
    assert error_names(javascript) == ["InvalidSignatureException"]


def test_the_sdk_that_runs_is_the_version_package_json_pins(
    javascript_sdk: JavaScriptSDK, emulator: Emulator
) -> None:
    """drive.mjs loads exactly the @aws-sdk/client-marketplace-metering version package.json pins."""
    manifest = json.loads((JS_DIR / "package.json").read_text())
    pinned = manifest["dependencies"]["@aws-sdk/client-marketplace-metering"]
    assert javascript_sdk.answers(emulator, [], region=REGION) == []
    assert javascript_sdk.version == pinned
    assert emulator.requests() == []
