"""The gate through the import API: real botocore, real SigV4, the emulator on loopback."""

from __future__ import annotations

import base64
import http.server
import itertools
import json
import threading
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from marketplace_entitlement import (
    ClaimMismatchError,
    ConfigurationError,
    Entitlement,
    InvalidSignatureError,
    MalformedTokenError,
    NotEntitledError,
    RegistrationInterrupted,
    ServiceConfigurationError,
    ServiceUnavailableError,
    VerificationError,
    check_entitlement,
    load_settings,
    require_entitlement,
)
from marketplace_entitlement.emulator import Emulator
from marketplace_entitlement.entitlement._gate import Gate
from tests.keys import private_pem


def fast_delays() -> Iterator[float]:
    """Retry waits of 10 ms, so retry tests do not sit through the real schedule."""
    return itertools.repeat(0.01)


def fast_gate(**overrides: Any) -> Gate:
    """A Gate from the environment (and overrides) that retries every 10 ms."""
    return Gate(load_settings(**overrides), retry_delays=fast_delays)


@pytest.mark.parametrize("casing", ["camel", "pascal"])
def test_entitled_start_with_each_claim_casing(
    service: Emulator, aws_env: dict[str, str], casing: str
) -> None:
    """An entitled product passes with camelCase claims (the service's) and PascalCase (AWS prose)."""
    service.set_claim_casing(casing)
    entitlement = check_entitlement()
    assert isinstance(entitlement, Entitlement)
    assert entitlement.product_code == "prod-test123"
    assert entitlement.public_key_version == 1
    assert entitlement.verified is True
    claims = jwt.decode(entitlement.token, options={"verify_signature": False})
    assert ("productCode" in claims) is (casing == "camel")
    assert ("ProductCode" in claims) is (casing == "pascal")


def test_every_registration_sends_a_fresh_nonce_that_the_token_carries(
    service: Emulator, aws_env: dict[str, str]
) -> None:
    """Each call sends a new random nonce; the verified entitlement carries the one sent."""
    first = check_entitlement()
    second = check_entitlement()
    sent = [r.body["Nonce"] for r in service.requests("RegisterUsage") if r.body]
    assert sent == [first.nonce, second.nonce]
    assert first.nonce != second.nonce
    assert len(first.nonce) >= 32


def test_request_carries_product_code_and_key_version(
    service: Emulator, aws_env: dict[str, str]
) -> None:
    """RegisterUsage is sent with the configured ProductCode and PublicKeyVersion, signed in region."""
    check_entitlement()
    (request,) = service.requests("RegisterUsage")
    assert request.body is not None
    assert request.body["ProductCode"] == "prod-test123"
    assert request.body["PublicKeyVersion"] == 1
    assert request.region == "us-east-1"
    assert request.access_key_id == "AKIDTESTGATE"


def test_overrides_win_over_environment(
    service: Emulator, aws_env: dict[str, str], rsa_key: rsa.RSAPrivateKey
) -> None:
    """Keyword arguments to check_entitlement override the environment (here the region).

    A product code given in code is pinned: the environment repeating it is fine.
    """
    entitlement = check_entitlement(
        product_code=aws_env["MARKETPLACE_PRODUCT_CODE"], region="eu-central-1"
    )
    assert entitlement.product_code == aws_env["MARKETPLACE_PRODUCT_CODE"]
    (request,) = service.requests("RegisterUsage")
    assert request.region == "eu-central-1"


def test_entitlement_json_is_complete(service: Emulator, aws_env: dict[str, str]) -> None:
    """The entitlement serialises with every documented field, times in ISO 8601 UTC."""
    data = check_entitlement().to_json()
    assert set(data) == {
        "entitled",
        "product_code",
        "public_key_version",
        "nonce",
        "issued_at",
        "registered_at",
        "verified",
        "public_key_rotation_timestamp",
        "signature",
    }
    assert data["issued_at"].endswith("Z")
    json.dumps(data)


@pytest.mark.parametrize(
    ("status", "error", "code", "exit_code"),
    [
        ("not_entitled", NotEntitledError, "CustomerNotEntitledException", 77),
        ("platform_not_supported", NotEntitledError, "PlatformNotSupportedException", 77),
    ],
)
def test_not_entitled_errors(
    service: Emulator,
    aws_env: dict[str, str],
    status: str,
    error: type[Exception],
    code: str,
    exit_code: int,
) -> None:
    """Not entitled and unsupported platform are refusals (77) carrying the AWS error code."""
    service.set_product("prod-test123", status)
    with pytest.raises(NotEntitledError) as caught:
        check_entitlement()
    assert isinstance(caught.value, error)
    assert caught.value.aws_error_code == code
    assert caught.value.exit_code == exit_code
    assert len(service.requests("RegisterUsage")) == 1  # terminal: not retried


def test_platform_not_supported_points_at_the_emulator(
    service: Emulator, aws_env: dict[str, str]
) -> None:
    """The refusal for PlatformNotSupportedException tells a person to use the emulator locally."""
    service.set_product("prod-test123", "platform_not_supported")
    with pytest.raises(NotEntitledError) as caught:
        check_entitlement()
    assert "emulator" in caught.value.refusal_line()
    assert "ECS" in caught.value.refusal_line()


def test_unknown_product_code_is_a_configuration_error(
    service: Emulator, aws_env: dict[str, str]
) -> None:
    """InvalidProductCodeException maps to 78 and names MARKETPLACE_PRODUCT_CODE."""
    service.set_product("prod-test123", "invalid")
    with pytest.raises(ServiceConfigurationError) as caught:
        check_entitlement()
    assert caught.value.aws_error_code == "InvalidProductCodeException"
    assert caught.value.variable == "MARKETPLACE_PRODUCT_CODE"
    assert caught.value.exit_code == 78


def test_wrong_region_is_a_configuration_error(service: Emulator, aws_env: dict[str, str]) -> None:
    """A request signed for another region than the service's gets InvalidRegionException: 78."""
    service.set_region("us-west-2")
    with pytest.raises(ServiceConfigurationError) as caught:
        check_entitlement()
    assert caught.value.aws_error_code == "InvalidRegionException"
    assert caught.value.variable == "AWS_REGION"


def test_unknown_key_version_is_a_configuration_error(
    service: Emulator, aws_env: dict[str, str]
) -> None:
    """InvalidPublicKeyVersionException maps to 78 and names MARKETPLACE_PUBLIC_KEY_VERSION."""
    with pytest.raises(ServiceConfigurationError) as caught:
        check_entitlement(public_key_version=7)
    assert caught.value.aws_error_code == "InvalidPublicKeyVersionException"
    assert caught.value.variable == "MARKETPLACE_PUBLIC_KEY_VERSION"


def test_unlisted_product_is_not_entitled(service: Emulator, aws_env: dict[str, str]) -> None:
    """With other products listed as entitled, ours is not: CustomerNotEntitledException, 77."""
    service.set_product("prod-someone-else", "entitled")
    with pytest.raises(NotEntitledError) as caught:
        check_entitlement()
    assert caught.value.aws_error_code == "CustomerNotEntitledException"


def test_disabled_api_is_a_configuration_error(service: Emulator, aws_env: dict[str, str]) -> None:
    """DisabledApiException maps to 78."""
    service.set_disabled_operations(["RegisterUsage"])
    with pytest.raises(ServiceConfigurationError) as caught:
        check_entitlement()
    assert caught.value.aws_error_code == "DisabledApiException"
    assert caught.value.exit_code == 78


def test_access_denied_says_which_permission_is_missing(
    service: Emulator, aws_env: dict[str, str]
) -> None:
    """An AccessDeniedException (no IAM permission) is 78 and names aws-marketplace:RegisterUsage."""
    service.inject_fault("RegisterUsage", "error", error="AccessDeniedException", count=1)
    with pytest.raises(ServiceConfigurationError) as caught:
        check_entitlement()
    assert "aws-marketplace:RegisterUsage" in caught.value.refusal_line()


@pytest.mark.parametrize(
    ("kind", "extra"),
    [
        ("error", {"error": "ThrottlingException"}),
        ("error", {"error": "InternalServiceErrorException", "status": 500}),
        ("error", {"error": None, "status": 503}),
        ("drop", {}),
        ("malformed", {}),
        ("truncated", {}),
    ],
)
def test_retryable_failures_are_retried_until_success(
    service: Emulator, aws_env: dict[str, str], kind: str, extra: dict[str, Any]
) -> None:
    """Throttling, server errors, dropped connections and unparsable bodies are retried."""
    service.inject_fault("RegisterUsage", kind, count=3, **extra)
    entitlement = fast_gate().check()
    assert entitlement.verified
    requests = service.requests("RegisterUsage")
    assert len(requests) == 4
    nonces = {r.body["Nonce"] for r in requests if r.body}
    assert nonces == {entitlement.nonce}  # one registration, retried with its own nonce


def test_budget_running_out_is_service_unavailable(
    service: Emulator, aws_env: dict[str, str]
) -> None:
    """Throttling for the whole register timeout ends with ServiceUnavailableError (69)."""
    service.inject_fault("RegisterUsage", "error", error="ThrottlingException")
    started = time.monotonic()
    with pytest.raises(ServiceUnavailableError) as caught:
        fast_gate(register_timeout="1s").check()
    elapsed = time.monotonic() - started
    assert caught.value.exit_code == 69
    assert caught.value.aws_error_code == "ThrottlingException"
    assert caught.value.attempts == len(service.requests("RegisterUsage")) > 1
    assert elapsed >= 1.0
    assert "MARKETPLACE_REGISTER_TIMEOUT" in caught.value.refusal_line()


def test_stop_event_ends_the_retry_wait(service: Emulator, aws_env: dict[str, str]) -> None:
    """Setting the stop event during a retry wait raises RegistrationInterrupted, no more calls."""
    service.inject_fault("RegisterUsage", "error", error="ThrottlingException")
    stop = threading.Event()
    gate = Gate(load_settings(), retry_delays=lambda: itertools.repeat(60.0))
    outcome: list[BaseException] = []

    def work() -> None:
        try:
            gate.check(stop)
        except RegistrationInterrupted as error:
            outcome.append(error)

    thread = threading.Thread(target=work)
    thread.start()
    deadline = time.monotonic() + 10
    while not service.requests("RegisterUsage") and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    thread.join(5)
    assert not thread.is_alive()
    assert len(outcome) == 1
    assert len(service.requests("RegisterUsage")) == 1


def test_key_rotation_timestamp_is_surfaced(
    service: Emulator, aws_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """PublicKeyRotationTimestamp in the answer is kept and logged as a warning saying what to do."""
    rotation = time.time() + 86400
    service.expire_key(1, at=rotation)
    with caplog.at_level("WARNING", logger="marketplace_entitlement"):
        entitlement = check_entitlement()
    assert entitlement.public_key_rotation_timestamp is not None
    assert abs(entitlement.public_key_rotation_timestamp.timestamp() - rotation) < 1
    assert any("MARKETPLACE_PUBLIC_KEY_VERSION" in r.getMessage() for r in caplog.records)


def test_verification_off_logs_a_warning_every_time(
    service: Emulator, aws_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """With MARKETPLACE_VERIFY_SIGNATURE=false each registration warns, and is marked unverified."""
    with caplog.at_level("WARNING", logger="marketplace_entitlement"):
        first = check_entitlement(verify_signature="false")
        second = check_entitlement(verify_signature=False)
    assert first.verified is False
    assert second.verified is False
    warnings = [r for r in caplog.records if "verification is OFF" in r.getMessage()]
    assert len(warnings) == 2


def test_verification_off_still_compares_the_claims(
    service: Emulator, aws_env: dict[str, str]
) -> None:
    """Even unverified, a token for another product is refused."""
    service.set_token_factory(lambda claims, key: _sign({**claims, "productCode": "x"}, key))
    with pytest.raises(ClaimMismatchError):
        check_entitlement(verify_signature="false")


def test_no_key_with_verification_on_is_refused_before_any_call(
    service: Emulator, aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Verification on and no key: ConfigurationError (78) and RegisterUsage is never called."""
    monkeypatch.delenv("MARKETPLACE_PUBLIC_KEY_FILE")
    with pytest.raises(ConfigurationError) as caught:
        check_entitlement()
    assert caught.value.exit_code == 78
    assert service.requests() == []


def test_require_entitlement_exits_with_the_mapped_code(
    service: Emulator, aws_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """require_entitlement exits the process with 77 and logs one actionable line when refused."""
    service.set_product("prod-test123", "not_entitled")
    with pytest.raises(SystemExit) as caught, caplog.at_level("ERROR"):
        require_entitlement()
    assert caught.value.code == 77
    (line,) = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert "subscribe" in line


def test_require_entitlement_returns_the_entitlement(
    service: Emulator, aws_env: dict[str, str]
) -> None:
    """When entitled, require_entitlement returns the verified entitlement."""
    assert require_entitlement().verified


def test_injected_client_is_used(service: Emulator, aws_env: dict[str, str]) -> None:
    """A botocore client passed in is the one that calls RegisterUsage."""
    import botocore.session  # noqa: PLC0415

    client = botocore.session.get_session().create_client(
        "meteringmarketplace",
        region_name="ap-southeast-2",
        endpoint_url=service.endpoint,
        aws_access_key_id="AKIDINJECTED",
        aws_secret_access_key="s",
    )
    check_entitlement(client=client)
    (request,) = service.requests("RegisterUsage")
    assert request.access_key_id == "AKIDINJECTED"
    assert request.region == "ap-southeast-2"


# --- hostile tokens: each must be refused with a VerificationError (exit 65) ---------------


def _sign(claims: dict[str, object], key: rsa.RSAPrivateKey, algorithm: str = "PS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(claims: dict[str, object]) -> str:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(claims).encode())}."


def _hs256_with_public_key(claims: dict[str, object], public_pem: bytes) -> str:
    """The classic algorithm-confusion forgery: HMAC keyed with the RSA public key's PEM."""
    import hashlib  # noqa: PLC0415
    import hmac  # noqa: PLC0415

    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps(claims).encode())
    mac = hmac.new(public_pem, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{_b64(mac)}"


HOSTILE: dict[str, Any] = {
    "alg none": lambda claims, key, ctx: _unsigned(claims),
    "HS256 keyed with the public key": lambda claims, key, ctx: _hs256_with_public_key(
        claims, ctx["public_pem"]
    ),
    "RS256 instead of PS256": lambda claims, key, ctx: _sign(claims, key, "RS256"),
    "valid token from another key": lambda claims, key, ctx: _sign(claims, ctx["other_key"]),
    "another nonce": lambda claims, key, ctx: _sign({**claims, "nonce": "not-the-nonce"}, key),
    "another product code": lambda claims, key, ctx: _sign({**claims, "productCode": "evil"}, key),
    "another key version": lambda claims, key, ctx: _sign({**claims, "publicKeyVersion": 2}, key),
    "key version as a bool": lambda claims, key, ctx: _sign(
        {**claims, "publicKeyVersion": True}, key
    ),
    "missing nonce": lambda claims, key, ctx: _sign(
        {k: v for k, v in claims.items() if k != "nonce"}, key
    ),
    "missing product code": lambda claims, key, ctx: _sign(
        {k: v for k, v in claims.items() if k != "productCode"}, key
    ),
    "missing iat": lambda claims, key, ctx: _sign(
        {k: v for k, v in claims.items() if k != "iat"}, key
    ),
    "iat a day old": lambda claims, key, ctx: _sign(
        {**claims, "iat": int(time.time()) - 86400}, key
    ),
    "iat in the future": lambda claims, key, ctx: _sign(
        {**claims, "iat": int(time.time()) + 3600}, key
    ),
    "both casings disagreeing": lambda claims, key, ctx: _sign(
        {**claims, "ProductCode": "evil"}, key
    ),
    "garbage": lambda claims, key, ctx: "this is not a token",
    "non-base64 characters": lambda claims, key, ctx: _sign(claims, key).replace(".", ".*", 1),
    "four parts": lambda claims, key, ctx: _sign(claims, key) + ".e30",
    "empty": lambda claims, key, ctx: "",
    "truncated": lambda claims, key, ctx: _sign(claims, key)[:-20],
    "signature bit flipped": lambda claims, key, ctx: _flip_last_signature_char(_sign(claims, key)),
    "oversized": lambda claims, key, ctx: _sign({**claims, "padding": "A" * 40000}, key),
    "payload not an object": lambda claims, key, ctx: _sign_raw_payload(b"[1, 2, 3]", key),
}


def _flip_last_signature_char(token: str) -> str:
    head, _, signature = token.rpartition(".")
    middle = len(signature) // 2
    replacement = "A" if signature[middle] != "A" else "B"
    return f"{head}.{signature[:middle]}{replacement}{signature[middle + 1 :]}"


def _sign_raw_payload(payload: bytes, key: rsa.RSAPrivateKey) -> str:
    return jwt.api_jws.encode(payload, key, algorithm="PS256")


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_token_is_refused(
    service: Emulator,
    aws_env: dict[str, str],
    other_rsa_key: rsa.RSAPrivateKey,
    name: str,
) -> None:
    """Forged, replayed, mismatched or malformed Signatures are refused as VerificationError (65)."""
    context = {"public_pem": service.public_key_pem(1), "other_key": other_rsa_key}
    service.set_token_factory(lambda claims, key: HOSTILE[name](claims, key, context))
    with pytest.raises(VerificationError) as caught:
        check_entitlement()
    assert caught.value.exit_code == 65
    assert caught.value.refusal_line()


def test_replayed_token_from_an_earlier_registration_is_refused(
    service: Emulator, aws_env: dict[str, str]
) -> None:
    """A genuine token captured from an earlier registration is refused: its nonce is not ours."""
    captured = check_entitlement().token
    service.set_token_factory(lambda claims, key: captured)
    with pytest.raises(ClaimMismatchError) as caught:
        check_entitlement()
    assert caught.value.claim == "nonce"
    assert caught.value.exit_code == 65


def test_wrong_key_is_an_invalid_signature(
    service: Emulator, aws_env: dict[str, str], other_rsa_key: rsa.RSAPrivateKey
) -> None:
    """A PS256 token signed by another key is InvalidSignatureError, with a hint about the key."""
    service.set_token_factory(lambda claims, key: _sign(claims, other_rsa_key))
    with pytest.raises(InvalidSignatureError) as caught:
        check_entitlement()
    assert "MARKETPLACE_PUBLIC_KEY" in caught.value.refusal_line()


def test_algorithm_confusion_is_malformed_not_verified(
    service: Emulator, aws_env: dict[str, str]
) -> None:
    """An HS256 token is refused for its algorithm, never verified with the public key as secret."""
    public_pem = service.public_key_pem(1)
    service.set_token_factory(lambda claims, key: _hs256_with_public_key(claims, public_pem))
    with pytest.raises(MalformedTokenError, match="PS256"):
        check_entitlement()


def test_padded_base64url_token_still_verifies(service: Emulator, aws_env: dict[str, str]) -> None:
    """A token from a signer that pads its base64url parts with ``=`` (and signs them so) verifies."""
    from cryptography.hazmat.primitives import hashes  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import padding  # noqa: PLC0415

    def padded(part: bytes) -> str:
        return base64.urlsafe_b64encode(part).decode()

    def padding_signer(claims: dict[str, object], key: rsa.RSAPrivateKey) -> str:
        for filler in ("", "a", "ab"):  # one of three lengths leaves the payload unaligned
            payload = padded(json.dumps({**claims, "filler": filler}).encode())
            if payload.endswith("="):
                break
        signing_input = padded(b'{"alg":"PS256","typ":"JWT"}') + "." + payload
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        signature = key.sign(signing_input.encode(), pss, hashes.SHA256())
        return f"{signing_input}.{padded(signature)}"

    service.set_token_factory(padding_signer)
    entitlement = check_entitlement()
    assert "=" in entitlement.token
    assert entitlement.verified


def test_claim_mismatch_names_the_claim(service: Emulator, aws_env: dict[str, str]) -> None:
    """A mismatched claim error carries the claim name, what was sent and what came back."""
    service.set_token_factory(lambda claims, key: _sign({**claims, "productCode": "evil"}, key))
    with pytest.raises(ClaimMismatchError) as caught:
        check_entitlement()
    assert caught.value.claim == "productCode"
    assert caught.value.expected == "prod-test123"
    assert caught.value.actual == "evil"


def test_key_version_two_verifies_with_its_own_key(
    service: Emulator, aws_env: dict[str, str], other_rsa_key: rsa.RSAPrivateKey
) -> None:
    """With PublicKeyVersion 2 configured and its key given, version 2 tokens verify."""
    service.add_key(2, private_pem(other_rsa_key))
    environ = {k: v for k, v in aws_env.items() if k != "MARKETPLACE_PUBLIC_KEY_FILE"}
    entitlement = check_entitlement(
        environ=environ, public_key_version="2", public_key=service.public_key_pem(2).decode()
    )
    assert entitlement.public_key_version == 2


def test_last_attempt_is_made_at_the_deadline(service: Emulator, aws_env: dict[str, str]) -> None:
    """A wait longer than what is left is cut to the deadline, where one last attempt is made."""
    service.inject_fault("RegisterUsage", "error", error="ThrottlingException")
    gate = Gate(
        load_settings(register_timeout="300ms"), retry_delays=lambda: itertools.repeat(60.0)
    )
    with pytest.raises(ServiceUnavailableError) as caught:
        gate.check()
    assert caught.value.attempts == 2
    first, last = service.requests("RegisterUsage")
    assert last.time - first.time >= 0.25


def test_customer_not_subscribed_is_not_entitled(
    service: Emulator, aws_env: dict[str, str]
) -> None:
    """CustomerNotSubscribedException (named in the API reference's prose) is a refusal: 77."""
    service.inject_fault("RegisterUsage", "error", error="CustomerNotSubscribedException", count=1)
    with pytest.raises(NotEntitledError) as caught:
        check_entitlement()
    assert caught.value.exit_code == 77


def test_invalid_endpoint_is_a_configuration_error(
    aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An endpoint override that is no URL is a ConfigurationError (78), not a botocore error."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_MARKETPLACE_METERING", "not a url")
    with pytest.raises(ConfigurationError) as caught:
        check_entitlement()
    assert caught.value.exit_code == 78
    assert "AWS_ENDPOINT_URL_MARKETPLACE_METERING" in caught.value.refusal_line()


class _OddService(http.server.BaseHTTPRequestHandler):
    """A service that answers 200 with ``body`` (set per test), counting the calls."""

    body: ClassVar[bytes] = b"{}"
    calls: ClassVar[int] = 0

    def do_POST(self) -> None:
        """Answer the configured body."""
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        type(self).calls += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:
        """Stay quiet."""


@pytest.mark.parametrize(
    ("body", "error", "retried"),
    [
        (b"[1, 2, 3]", ServiceUnavailableError, True),
        (b'"just text"', ServiceUnavailableError, True),
        (b"{}", ServiceUnavailableError, True),
        (b'{"Signature": 5}', MalformedTokenError, False),
        (
            b'{"Signature": "x", "PublicKeyRotationTimestamp": "soon"}',
            ServiceUnavailableError,
            True,
        ),
    ],
)
def test_answers_of_the_wrong_shape_end_in_a_contract_code(
    aws_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    body: bytes,
    error: type[Exception],
    retried: bool,
) -> None:
    """Odd 200 answers are retried until 69, or refused as 65; never an internal error."""
    _OddService.body, _OddService.calls = body, 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _OddService)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv(
        "AWS_ENDPOINT_URL_MARKETPLACE_METERING", f"http://127.0.0.1:{server.server_port}"
    )
    try:
        with pytest.raises(error):
            fast_gate(register_timeout="500ms").check()
    finally:
        server.shutdown()
        server.server_close()
    assert (_OddService.calls > 1) is retried
