"""Fault injection, as botocore sees each kind, and the compact fault spec syntax."""

from __future__ import annotations

import http.client
import json
import threading
from typing import Any

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError, ReadTimeoutError

from marketplace_entitlement.emulator import Emulator, FaultSpecError, parse_fault_spec


def register(client: Any) -> Any:
    """One RegisterUsage call."""
    return client.register_usage(ProductCode="prod", PublicKeyVersion=1)


def outcome(client: Any) -> str:
    """Return "ok" or the error code of one RegisterUsage call."""
    try:
        register(client)
    except ClientError as error:
        return str(error.response["Error"]["Code"])
    return "ok"


def test_error_fault_with_any_type_and_status(emulator: Emulator, client: Any) -> None:
    """An error fault answers the given __type and status, for the next ``count`` calls only."""
    emulator.inject_fault("RegisterUsage", "error", error="SlowDown", status=503, count=2)
    for _ in range(2):
        with pytest.raises(ClientError) as excinfo:
            register(client)
        assert excinfo.value.response["Error"]["Code"] == "SlowDown"
        assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert register(client)["Signature"]
    assert [r.fault for r in emulator.requests()] == ["error", "error", None]


def test_throttling_fault_defaults_to_400(emulator: Emulator, client: Any) -> None:
    """A ThrottlingException fault travels with HTTP 400, as AWS sends it."""
    emulator.add_fault("RegisterUsage:error=ThrottlingException:count=1")
    with pytest.raises(ClientError) as excinfo:
        register(client)
    assert excinfo.value.response["Error"]["Code"] == "ThrottlingException"
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_dropped_connection_is_connection_closed(emulator: Emulator, client: Any) -> None:
    """A ``drop`` fault closes the socket unanswered: botocore raises ConnectionClosedError."""
    emulator.inject_fault("RegisterUsage", "drop", count=1)
    with pytest.raises(ConnectionClosedError):
        register(client)
    assert register(client)["Signature"]


def test_delay_beyond_the_read_timeout_is_a_read_timeout(
    emulator: Emulator, make_client: Any
) -> None:
    """A ``delay`` longer than the client's read timeout: botocore raises ReadTimeoutError."""
    emulator.inject_fault("RegisterUsage", "delay", delay=5, count=1)
    with pytest.raises(ReadTimeoutError):
        register(make_client(emulator, read_timeout=0.3))


def test_short_delay_then_normal_answer(emulator: Emulator, client: Any) -> None:
    """A ``delay`` shorter than the timeout still answers normally, and is recorded."""
    emulator.inject_fault("RegisterUsage", "delay", delay=0.05, count=1)
    assert register(client)["Signature"]
    assert emulator.requests()[0].fault == "delay"


def test_malformed_body_parses_to_no_signature(emulator: Emulator, client: Any) -> None:
    """A ``malformed`` 200 body is not JSON: botocore answers a result without Signature."""
    emulator.inject_fault("RegisterUsage", "malformed", count=1)
    answer = register(client)
    assert "Signature" not in answer
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_malformed_error_body_is_a_client_error_named_by_status(
    emulator: Emulator, client: Any
) -> None:
    """A ``malformed`` 500 body: botocore raises ClientError whose code is the HTTP status."""
    emulator.inject_fault("RegisterUsage", "malformed", status=500, count=1)
    with pytest.raises(ClientError) as excinfo:
        register(client)
    assert excinfo.value.response["Error"]["Code"] == "500"


def test_truncated_body_is_shorter_than_promised(emulator: Emulator, client: Any) -> None:
    """A ``truncated`` answer promises more bytes than it sends, then closes the connection.

    botocore reads what arrived and finds no Signature; a strict reader sees IncompleteRead.
    """
    emulator.inject_fault("RegisterUsage", "truncated", count=2)
    assert "Signature" not in register(client)
    connection = http.client.HTTPConnection(emulator.host, emulator.port, timeout=10)
    try:
        headers = {
            "X-Amz-Target": "AWSMPMeteringService.RegisterUsage",
            "Authorization": "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/aws-marketplace/"
            "aws4_request, SignedHeaders=host;x-amz-date, Signature=" + "0" * 64,
        }
        body = json.dumps({"ProductCode": "p", "PublicKeyVersion": 1})
        connection.request("POST", "/", body=body, headers=headers)
        with pytest.raises(http.client.IncompleteRead):
            connection.getresponse().read()
    finally:
        connection.close()


def test_probability_faults_are_reproducible_with_a_seed(
    make_emulator: Any, make_client: Any
) -> None:
    """The same seed and probability fault the same calls; 0 never faults, 1 always does."""
    sequences = []
    for _ in range(2):
        emulator = make_emulator(rate_limits={"RegisterUsage": None})
        emulator.inject_fault("RegisterUsage", "error", probability=0.5, seed=1234)
        client = make_client(emulator)
        sequences.append([outcome(client) for _ in range(16)])
    assert sequences[0] == sequences[1]
    assert {"ok", "InternalServiceErrorException"} == set(sequences[0])
    emulator.clear_faults()
    emulator.inject_fault("RegisterUsage", "error", probability=0.0, seed=1)
    assert outcome(client) == "ok"
    emulator.clear_faults()
    emulator.inject_fault("RegisterUsage", "error", probability=1.0, seed=1)
    assert outcome(client) == "InternalServiceErrorException"


def test_faults_come_before_rate_limits(emulator: Emulator, client: Any) -> None:
    """A faulted call does not take a rate-limit token: the limit applies to the calls after it."""
    emulator.set_rate_limit("RegisterUsage", 1)
    emulator.inject_fault("RegisterUsage", "error", error="InternalServiceErrorException", count=1)
    assert [outcome(client) for _ in range(3)] == [
        "InternalServiceErrorException",
        "ok",
        "ThrottlingException",
    ]


def test_wildcard_fault_applies_to_every_operation(emulator: Emulator, client: Any) -> None:
    """A fault for ``*`` applies to whichever operation comes next; clear_faults removes it."""
    emulator.add_fault("*:error=InternalServiceErrorException")
    with pytest.raises(ClientError):
        client.resolve_customer(RegistrationToken="t")
    with pytest.raises(ClientError):
        register(client)
    emulator.clear_faults()
    assert register(client)["Signature"]


def test_faults_given_at_construction_are_in_force(make_emulator: Any, make_client: Any) -> None:
    """Faults passed to the constructor apply from the first call and again after reset()."""
    emulator = make_emulator(faults=["RegisterUsage:error=DisabledApiException:count=1"])
    client = make_client(emulator)
    assert outcome(client) == "DisabledApiException"
    assert outcome(client) == "ok"
    emulator.reset()
    assert outcome(client) == "DisabledApiException"


def test_stop_cuts_a_pending_delay_short(make_emulator: Any, make_client: Any) -> None:
    """Stopping the emulator during a long delay answers nothing and returns promptly."""
    emulator = make_emulator()
    emulator.inject_fault("RegisterUsage", "delay", delay=300, count=1)
    client = make_client(emulator, read_timeout=120)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            register(client)
        except (ConnectionClosedError, ClientError) as error:
            errors.append(error)

    thread = threading.Thread(target=call)
    thread.start()
    pause = threading.Event()
    for _ in range(1000):  # a spent count=1 fault leaves the table: the call is being delayed
        if not emulator.faults():
            break
        pause.wait(0.01)
    assert not emulator.faults()
    emulator.stop()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert isinstance(errors[0], ConnectionClosedError)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            "RegisterUsage:error=ThrottlingException:count=3",
            {
                "operation": "RegisterUsage",
                "kind": "error",
                "error": "ThrottlingException",
                "count": 3,
            },
        ),
        ("MeterUsage:delay=2.5", {"kind": "delay", "delay": 2.5}),
        ("*:drop:probability=0.25:seed=7", {"operation": "*", "probability": 0.25, "seed": 7}),
        ("BatchMeterUsage:unprocessed", {"kind": "unprocessed", "status": 200}),
        ("RegisterUsage:malformed:status=502", {"kind": "malformed", "status": 502}),
        ("RegisterUsage:error", {"error": "InternalServiceErrorException", "status": 500}),
    ],
)
def test_fault_specs_parse(spec: str, expected: dict[str, Any]) -> None:
    """Compact specs OPERATION:KIND[=VALUE][:KEY=VALUE]... parse to the described fault."""
    described = parse_fault_spec(spec).describe()
    assert {key: described[key] for key in expected} == expected


@pytest.mark.parametrize(
    "spec",
    [
        "RegisterUsage",
        "Nope:drop",
        "RegisterUsage:explode",
        "RegisterUsage:unprocessed",
        "RegisterUsage:delay",
        "RegisterUsage:drop:count=0",
        "RegisterUsage:drop:probability=2",
        "RegisterUsage:drop:count=x",
        "RegisterUsage:drop=1",
        "RegisterUsage:drop:colour=red",
    ],
)
def test_bad_fault_specs_are_refused(spec: str) -> None:
    """Unusable specs raise FaultSpecError with a message saying why."""
    with pytest.raises(FaultSpecError):
        parse_fault_spec(spec)
