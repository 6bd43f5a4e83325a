"""The plain-Python RSA-PSS verifier and PEM reader agree with cryptography, case for case."""

from __future__ import annotations

import base64

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace_entitlement.entitlement._rsa import (
    KeyFormatError,
    RsaPublicKey,
    load_pem_public_key,
    spki_der,
)
from tests.keys import public_pem

PSS_SHA256 = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)


def ours(key: rsa.RSAPrivateKey) -> RsaPublicKey:
    """Our view of ``key``'s public half, read from its PEM."""
    return load_pem_public_key(public_pem(key))


def cryptography_accepts(key: rsa.RSAPrivateKey, signature: bytes, message: bytes) -> bool:
    """Whether cryptography verifies ``signature`` over ``message`` (PSS-SHA256, any salt)."""
    auto = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
    try:
        key.public_key().verify(signature, message, auto, hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def test_pem_reader_matches_cryptography(rsa_key: rsa.RSAPrivateKey) -> None:
    """The modulus and exponent read from PEM equal cryptography's."""
    numbers = rsa_key.public_key().public_numbers()
    key = ours(rsa_key)
    assert (key.n, key.e) == (numbers.n, numbers.e)
    assert key.key_size == 3072


def test_pkcs1_pem_is_read_too(rsa_key: rsa.RSAPrivateKey) -> None:
    """An ``RSA PUBLIC KEY`` (PKCS #1) PEM gives the same key as the SubjectPublicKeyInfo PEM."""
    pkcs1 = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.PKCS1
    )
    assert load_pem_public_key(pkcs1) == ours(rsa_key)


def test_spki_der_round_trips(rsa_key: rsa.RSAPrivateKey) -> None:
    """Our DER encoding of a key is byte for byte cryptography's SubjectPublicKeyInfo."""
    expected = rsa_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert spki_der(ours(rsa_key)) == expected


@pytest.mark.parametrize(
    "pem",
    [
        b"no pem here",
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
        b"-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----",
        b"-----BEGIN PUBLIC KEY-----\nMAA=\n-----END PUBLIC KEY-----",
        b"-----BEGIN PUBLIC KEY-----\nMIIBIjAN\n-----END PUBLIC KEY-----",
    ],
)
def test_unreadable_pem_is_refused(pem: bytes) -> None:
    """Non-PEM text, other PEM types, bad base64 and truncated DER raise KeyFormatError."""
    with pytest.raises(KeyFormatError):
        load_pem_public_key(pem)


def test_ec_key_is_refused() -> None:
    """A SubjectPublicKeyInfo for a non-RSA algorithm is refused."""
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415

    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(KeyFormatError, match="not an RSA key"):
        load_pem_public_key(pem)


@settings(max_examples=60, deadline=None)
@given(message=st.binary(max_size=300))
def test_signatures_made_by_cryptography_verify(rsa_key: rsa.RSAPrivateKey, message: bytes) -> None:
    """Every PS256 signature cryptography makes verifies here, over any message."""
    signature = rsa_key.sign(message, PSS_SHA256, hashes.SHA256())
    assert ours(rsa_key).verify_pss_sha256(signature, message)


@settings(max_examples=150, deadline=None)
@given(
    message=st.binary(max_size=64),
    position=st.integers(min_value=0, max_value=383),
    flip=st.integers(min_value=1, max_value=255),
)
def test_any_corrupted_signature_is_refused_as_cryptography_refuses_it(
    rsa_key: rsa.RSAPrivateKey, message: bytes, position: int, flip: int
) -> None:
    """A signature with any byte altered is refused, exactly when cryptography refuses it."""
    signature = bytearray(rsa_key.sign(message, PSS_SHA256, hashes.SHA256()))
    signature[position] ^= flip
    corrupted = bytes(signature)
    assert ours(rsa_key).verify_pss_sha256(corrupted, message) is cryptography_accepts(
        rsa_key, corrupted, message
    )
    assert not ours(rsa_key).verify_pss_sha256(corrupted, message)


@settings(max_examples=40, deadline=None)
@given(message=st.binary(min_size=1, max_size=64), other=st.binary(min_size=1, max_size=64))
def test_signature_for_another_message_is_refused(
    rsa_key: rsa.RSAPrivateKey, message: bytes, other: bytes
) -> None:
    """A valid signature does not verify another message."""
    signature = rsa_key.sign(message, PSS_SHA256, hashes.SHA256())
    assert ours(rsa_key).verify_pss_sha256(signature, other) is (message == other)


def test_other_keys_signature_is_refused(
    rsa_key: rsa.RSAPrivateKey, other_rsa_key: rsa.RSAPrivateKey
) -> None:
    """A signature by another key does not verify."""
    signature = other_rsa_key.sign(b"m", PSS_SHA256, hashes.SHA256())
    assert not ours(rsa_key).verify_pss_sha256(signature, b"m")


@pytest.mark.parametrize("salt_length", [0, 20, 32, 64, padding.PSS.MAX_LENGTH])
def test_any_salt_length_verifies_as_openssl_auto_does(
    rsa_key: rsa.RSAPrivateKey, salt_length: int
) -> None:
    """The salt length is recovered, not assumed: 32 (RFC 7518) and any other verify."""
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=salt_length)
    signature = rsa_key.sign(b"m", pss, hashes.SHA256())
    assert ours(rsa_key).verify_pss_sha256(signature, b"m")
    assert not ours(rsa_key).verify_pss_sha256(signature, b"n")


def test_mgf1_with_another_hash_is_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    """PSS with MGF1-SHA-1 (not PS256's MGF1-SHA-256) does not verify."""
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA1()), salt_length=32)  # noqa: S303
    signature = rsa_key.sign(b"m", pss, hashes.SHA256())
    assert not ours(rsa_key).verify_pss_sha256(signature, b"m")


def test_pkcs1v15_signature_is_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    """An RS256 (PKCS #1 v1.5) signature by the right key is not a PSS signature."""
    signature = rsa_key.sign(b"m", padding.PKCS1v15(), hashes.SHA256())
    assert not ours(rsa_key).verify_pss_sha256(signature, b"m")


def test_wrong_length_and_out_of_range_signatures_are_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    """Signatures shorter or longer than the modulus, or not below it, are refused."""
    key = ours(rsa_key)
    good = rsa_key.sign(b"m", PSS_SHA256, hashes.SHA256())
    assert not key.verify_pss_sha256(good[1:], b"m")
    assert not key.verify_pss_sha256(b"\0" + good, b"m")
    assert not key.verify_pss_sha256(b"", b"m")
    too_big = key.n.to_bytes(384, "big")
    assert not key.verify_pss_sha256(too_big, b"m")
    assert not key.verify_pss_sha256(b"\xff" * 384, b"m")


def test_other_key_sizes_verify(other_rsa_key: rsa.RSAPrivateKey) -> None:
    """Key sizes that are not a multiple of 8 bits (and 2048/4096) verify correctly too."""
    for bits in (2048, 2049, 4096):
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        signature = key.sign(b"payload", PSS_SHA256, hashes.SHA256())
        assert ours(key).verify_pss_sha256(signature, b"payload")
        assert not ours(key).verify_pss_sha256(signature, b"Payload")


def test_pem_with_surrounding_text_and_crlf(rsa_key: rsa.RSAPrivateKey) -> None:
    """A PEM block inside other text, with CRLF line ends, is found and read."""
    pem = public_pem(rsa_key).replace(b"\n", b"\r\n")
    assert load_pem_public_key(b"key follows:\r\n" + pem + b"trailer") == ours(rsa_key)
    body = base64.b64encode(spki_der(ours(rsa_key)))
    assert body in public_pem(rsa_key).replace(b"\n", b"")
