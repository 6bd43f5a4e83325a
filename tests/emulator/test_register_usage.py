"""RegisterUsage: entitlement answers, every modelled error, PS256 tokens, keys and rotation."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from marketplace_entitlement.emulator import Emulator
from marketplace_entitlement.emulator._model import load_service_model

MODELLED_ERRORS = {
    "InvalidProductCodeException",
    "InvalidRegionException",
    "InvalidPublicKeyVersionException",
    "PlatformNotSupportedException",
    "CustomerNotEntitledException",
    "ThrottlingException",
    "InternalServiceErrorException",
    "DisabledApiException",
}


def error_of(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    """The error code and HTTP status botocore saw."""
    response: Any = excinfo.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def outcome(call: Any) -> str:
    """Run a client call: "ok", or the error code botocore raised."""
    try:
        call()
    except ClientError as error:
        return str(error.response["Error"]["Code"])
    return "ok"


def test_entitled_product_gets_a_ps256_token_with_camel_case_claims(
    emulator: Emulator, client: Any
) -> None:
    """By default any well-formed code is entitled and the token carries camelCase claims."""
    before = int(time.time())
    answer = client.register_usage(ProductCode="prod-1", PublicKeyVersion=1, Nonce="n-42")
    token = answer["Signature"]
    assert jwt.get_unverified_header(token) == {"alg": "PS256", "typ": "JWT"}
    claims = jwt.decode(token, emulator.public_key_pem(), algorithms=["PS256"])
    assert claims["productCode"] == "prod-1"
    assert claims["publicKeyVersion"] == 1
    assert isinstance(claims["publicKeyVersion"], int)
    assert claims["nonce"] == "n-42"
    assert before <= claims["iat"] <= int(time.time())
    assert "PublicKeyRotationTimestamp" not in answer


def test_pascal_casing_names_the_claims_as_aws_prose_does(
    make_emulator: Any, make_client: Any
) -> None:
    """With claim_casing="pascal" the claims are ProductCode, PublicKeyVersion, Nonce and iat."""
    emulator = make_emulator(claim_casing="pascal")
    token = make_client(emulator).register_usage(
        ProductCode="prod-1", PublicKeyVersion=1, Nonce="abc"
    )["Signature"]
    claims = jwt.decode(token, emulator.public_key_pem(), algorithms=["PS256"])
    assert set(claims) == {"ProductCode", "PublicKeyVersion", "Nonce", "iat"}
    assert (claims["ProductCode"], claims["PublicKeyVersion"], claims["Nonce"]) == (
        "prod-1",
        1,
        "abc",
    )


def test_nonce_claim_is_absent_when_no_nonce_was_sent(emulator: Emulator, client: Any) -> None:
    """A registration without Nonce gets a token without a nonce claim."""
    token = client.register_usage(ProductCode="prod-1", PublicKeyVersion=1)["Signature"]
    claims = jwt.decode(token, emulator.public_key_pem(), algorithms=["PS256"])
    assert set(claims) == {"productCode", "publicKeyVersion", "iat"}


def test_token_does_not_verify_with_another_key(
    client: Any, make_emulator: Any, other_private_key: bytes
) -> None:
    """The signature is real: a different RSA key refuses it."""
    other = make_emulator(keys={1: other_private_key})
    token = client.register_usage(ProductCode="prod-1", PublicKeyVersion=1)["Signature"]
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, other.public_key_pem(), algorithms=["PS256"])


def test_public_key_file_holds_the_verifying_key(emulator: Emulator, client: Any) -> None:
    """``public_key_file`` is a PEM file of version 1's public key."""
    token = client.register_usage(ProductCode="p", PublicKeyVersion=1)["Signature"]
    pem = emulator.public_key_file.read_bytes()
    assert pem.startswith(b"-----BEGIN PUBLIC KEY-----")
    assert jwt.decode(token, pem, algorithms=["PS256"])["productCode"] == "p"


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("not_entitled", "CustomerNotEntitledException"),
        ("platform_not_supported", "PlatformNotSupportedException"),
        ("invalid", "InvalidProductCodeException"),
    ],
)
def test_configured_product_status_is_answered(
    make_emulator: Any, make_client: Any, status: str, expected: str
) -> None:
    """Products configured not_entitled / platform_not_supported / invalid: matching error (400)."""
    emulator = make_emulator(products={"good": "entitled", "bad": status})
    client = make_client(emulator)
    assert client.register_usage(ProductCode="good", PublicKeyVersion=1)["Signature"]
    with pytest.raises(ClientError) as excinfo:
        client.register_usage(ProductCode="bad", PublicKeyVersion=1)
    assert error_of(excinfo) == (expected, 400)


def test_unlisted_product_code_is_not_entitled_once_products_are_configured(
    make_emulator: Any, make_client: Any
) -> None:
    """With products configured, a code that is not one of them gets CustomerNotEntitled."""
    client = make_client(make_emulator(products={"known": "entitled"}))
    with pytest.raises(ClientError) as excinfo:
        client.register_usage(ProductCode="unknown", PublicKeyVersion=1)
    assert error_of(excinfo) == ("CustomerNotEntitledException", 400)
    assert "not entitled" in excinfo.value.response["Error"]["Message"]


def test_every_code_is_entitled_when_no_product_is_configured(client: Any) -> None:
    """With no product configured, any well-formed code gets a token."""
    for code in ("prod-a", "prod-b", "0123456789abcdefghijklmno"):
        assert client.register_usage(ProductCode=code, PublicKeyVersion=1)["Signature"]


def test_invalid_product_is_refused_before_the_key_version_is_checked(
    make_emulator: Any, make_client: Any
) -> None:
    """An invalid product code is answered as such whatever the PublicKeyVersion."""
    client = make_client(make_emulator(products={"bad": "invalid"}))
    with pytest.raises(ClientError) as excinfo:
        client.register_usage(ProductCode="bad", PublicKeyVersion=9)
    assert error_of(excinfo) == ("InvalidProductCodeException", 400)


def test_other_region_is_refused_when_a_region_is_configured(
    make_emulator: Any, make_client: Any
) -> None:
    """A call signed for another region than the emulator's gets InvalidRegionException."""
    emulator = make_emulator(region="eu-west-1")
    assert make_client(emulator, region="eu-west-1").register_usage(
        ProductCode="p", PublicKeyVersion=1
    )["Signature"]
    with pytest.raises(ClientError) as excinfo:
        make_client(emulator, region="us-east-1").register_usage(
            ProductCode="p", PublicKeyVersion=1
        )
    assert error_of(excinfo) == ("InvalidRegionException", 400)


def test_any_region_is_accepted_without_a_configured_region(
    emulator: Emulator, make_client: Any
) -> None:
    """With no region configured, calls signed for any region succeed."""
    for region in ("us-east-1", "ap-southeast-2"):
        assert make_client(emulator, region=region).register_usage(
            ProductCode="p", PublicKeyVersion=1
        )["Signature"]


def test_unknown_public_key_version_is_refused(client: Any) -> None:
    """A PublicKeyVersion the emulator has no key for gets InvalidPublicKeyVersionException."""
    with pytest.raises(ClientError) as excinfo:
        client.register_usage(ProductCode="p", PublicKeyVersion=2)
    assert error_of(excinfo) == ("InvalidPublicKeyVersionException", 400)


def test_each_key_version_signs_with_its_own_key(
    emulator: Emulator, client: Any, other_private_key: bytes
) -> None:
    """An added version signs with its own key, which the version 1 key does not verify."""
    emulator.add_key(2, other_private_key)
    token = client.register_usage(ProductCode="p", PublicKeyVersion=2)["Signature"]
    assert (
        jwt.decode(token, emulator.public_key_pem(2), algorithms=["PS256"])["publicKeyVersion"] == 2
    )
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, emulator.public_key_pem(1), algorithms=["PS256"])


def test_expired_key_version_answers_its_rotation_timestamp(
    emulator: Emulator, client: Any
) -> None:
    """After expire_key, RegisterUsage still signs but adds PublicKeyRotationTimestamp."""
    emulator.expire_key(1, at=1_700_000_000)
    answer = client.register_usage(ProductCode="p", PublicKeyVersion=1)
    assert answer["Signature"]
    assert answer["PublicKeyRotationTimestamp"].timestamp() == 1_700_000_000


def test_disabled_api_is_answered(make_emulator: Any, make_client: Any) -> None:
    """An operation listed in disabled_operations gets DisabledApiException."""
    client = make_client(make_emulator(disabled_operations=["RegisterUsage"]))
    with pytest.raises(ClientError) as excinfo:
        client.register_usage(ProductCode="p", PublicKeyVersion=1)
    assert error_of(excinfo) == ("DisabledApiException", 400)


def test_internal_error_is_a_500(emulator: Emulator, client: Any) -> None:
    """An injected InternalServiceErrorException travels as HTTP 500."""
    emulator.inject_fault("RegisterUsage", "error", error="InternalServiceErrorException", count=1)
    with pytest.raises(ClientError) as excinfo:
        client.register_usage(ProductCode="p", PublicKeyVersion=1)
    assert error_of(excinfo) == ("InternalServiceErrorException", 500)


def test_beyond_the_quota_is_throttled(emulator: Emulator, client: Any) -> None:
    """The default quota (5/s, burst 5) throttles a quick sixth-or-later call."""
    codes = [
        outcome(lambda: client.register_usage(ProductCode="p", PublicKeyVersion=1))
        for _ in range(12)
    ]
    assert "ThrottlingException" in codes
    assert codes[:5] == ["ok"] * 5


def test_every_modelled_error_is_covered() -> None:
    """The tests above cover every error the installed model lists for RegisterUsage."""
    listed = {e["shape"] for e in load_service_model()["operations"]["RegisterUsage"]["errors"]}
    assert listed == MODELLED_ERRORS


def test_token_factory_replaces_the_signature(emulator: Emulator, client: Any) -> None:
    """set_token_factory puts the factory's string in Signature; None restores normal tokens."""
    seen: list[dict[str, object]] = []

    def hostile(claims: dict[str, object], key: RSAPrivateKey) -> str:
        seen.append(claims)
        return jwt.encode({**claims, "productCode": "someone-else"}, key, algorithm="PS256")

    emulator.set_token_factory(hostile)
    token = client.register_usage(ProductCode="mine", PublicKeyVersion=1, Nonce="x")["Signature"]
    assert jwt.decode(token, emulator.public_key_pem(), algorithms=["PS256"])["productCode"] == (
        "someone-else"
    )
    assert seen[0]["productCode"] == "mine"
    assert seen[0]["nonce"] == "x"
    emulator.set_token_factory(None)
    token = client.register_usage(ProductCode="mine", PublicKeyVersion=1)["Signature"]
    assert (
        jwt.decode(token, emulator.public_key_pem(), algorithms=["PS256"])["productCode"] == "mine"
    )


def test_set_product_changes_answers_while_running(emulator: Emulator, client: Any) -> None:
    """set_product takes effect on the next call."""
    emulator.set_product("p", "not_entitled")
    with pytest.raises(ClientError) as excinfo:
        client.register_usage(ProductCode="p", PublicKeyVersion=1)
    assert error_of(excinfo)[0] == "CustomerNotEntitledException"
    emulator.set_product("p", "entitled")
    assert client.register_usage(ProductCode="p", PublicKeyVersion=1)["Signature"]
    emulator.set_product("p", "invalid")
    with pytest.raises(ClientError) as excinfo:
        client.register_usage(ProductCode="p", PublicKeyVersion=1)
    assert error_of(excinfo)[0] == "InvalidProductCodeException"
    assert emulator.products()["p"]["status"] == "invalid"
