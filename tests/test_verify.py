"""The verifier (PyJWT + cryptography, PS256 fixed) against cryptography's own PSS signer."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from marketplace_entitlement import InvalidSignatureError, MalformedTokenError
from marketplace_entitlement.entitlement import _verify
from marketplace_entitlement.entitlement._verify import verify_signature


def b64url(data: bytes) -> str:
    """base64url without padding (RFC 7515)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(nonce: str = "n-1") -> dict[str, object]:
    """The claims the emulator would sign for product ``p`` version 1."""
    return {"productCode": "p", "publicKeyVersion": 1, "nonce": nonce, "iat": int(time.time())}


def pss_token(key: rsa.RSAPrivateKey, salt_length: int, payload: dict[str, object]) -> str:
    """A PS256 JWS signed by cryptography's signer with the given PSS salt length."""
    signing_input = (
        b64url(json.dumps({"alg": "PS256", "typ": "JWT"}).encode())
        + "."
        + b64url(json.dumps(payload).encode())
    )
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=salt_length)
    signature = key.sign(signing_input.encode(), pss, hashes.SHA256())
    return f"{signing_input}.{b64url(signature)}"


def verify(token: str, key: rsa.RSAPrivateKey, nonce: str = "n-1") -> _verify.VerifiedClaims:
    """Verify ``token`` with ``key``'s public half, expecting product p, version 1."""
    return verify_signature(
        token, key.public_key(), product_code="p", public_key_version=1, nonce=nonce
    )


@pytest.mark.parametrize(
    "salt_length", [0, 32, padding.PSS.MAX_LENGTH], ids=["salt-0", "salt-32", "salt-max"]
)
def test_any_pss_salt_length_from_cryptography_verifies(
    rsa_key: rsa.RSAPrivateKey, salt_length: int
) -> None:
    """Tokens signed with salt 0, 32 (RFC 7518) and the maximum all verify, as OpenSSL's auto does."""
    result = verify(pss_token(rsa_key, salt_length, claims()), rsa_key)
    assert (result.product_code, result.public_key_version, result.nonce) == ("p", 1, "n-1")


@pytest.mark.parametrize("salt_length", [0, 32, padding.PSS.MAX_LENGTH])
def test_wrong_key_is_refused_for_every_salt_length(
    rsa_key: rsa.RSAPrivateKey, other_rsa_key: rsa.RSAPrivateKey, salt_length: int
) -> None:
    """A token signed by another key never verifies, whatever its salt length."""
    with pytest.raises(InvalidSignatureError):
        verify(pss_token(other_rsa_key, salt_length, claims()), rsa_key)


@pytest.mark.parametrize("salt_length", [0, 32, padding.PSS.MAX_LENGTH])
@pytest.mark.parametrize("part", [0, 1, 2])
def test_a_flipped_bit_anywhere_is_refused(
    rsa_key: rsa.RSAPrivateKey, salt_length: int, part: int
) -> None:
    """One bit flipped in the header, the payload or the signature: refused (65), never accepted."""
    pieces = pss_token(rsa_key, salt_length, claims()).split(".")
    raw = bytearray(base64.urlsafe_b64decode(pieces[part] + "=" * (-len(pieces[part]) % 4)))
    raw[len(raw) // 2] ^= 0x01
    pieces[part] = b64url(bytes(raw))
    with pytest.raises((InvalidSignatureError, MalformedTokenError)):
        verify(".".join(pieces), rsa_key)


def test_pyjwts_global_ps256_is_left_as_the_application_has_it(rsa_key: rsa.RSAPrivateKey) -> None:
    """The salt-tolerant PS256 lives on a private PyJWS: PyJWT's global one still insists on 32."""
    token = pss_token(rsa_key, 0, claims())
    assert verify(token, rsa_key).nonce == "n-1"
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, rsa_key.public_key(), algorithms=["PS256"])


def test_the_runtime_path_has_no_hand_written_rsa() -> None:
    """The hand-written RSA module is gone; verification goes through PyJWT's PyJWS."""
    with pytest.raises(ImportError):
        __import__("marketplace_entitlement.entitlement._rsa")
    assert isinstance(_verify._jws(), jwt.PyJWS)
    assert _verify._jws() is not jwt.api_jws._jws_global_obj
