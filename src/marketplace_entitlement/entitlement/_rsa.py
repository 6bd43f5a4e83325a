"""RSA public keys from PEM, and RSASSA-PSS (SHA-256) signature verification, in plain Python.

Why not cryptography here: the entrypoint is a container's PID 1 for the container's whole life,
and cryptography's native library adds about 7 MiB to it (bench/entrypoint.py) for the one thing
the gate needs, a public-key verification. Verification needs no secret, so it has no timing side
channel to defend; it is modular exponentiation plus RFC 8017's EMSA-PSS-VERIFY, both short and
specified exactly. tests/test_rsa.py checks this module against cryptography's signer and verifier.
cryptography still signs and generates keys in the emulator.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

_PEM = re.compile(
    rb"-----BEGIN (?P<label>[A-Z ]+)-----(?P<body>[A-Za-z0-9+/=\s]*)-----END (?P=label)-----"
)
_RSA_ENCRYPTION_OID = bytes.fromhex("2a864886f70d010101")  # 1.2.840.113549.1.1.1
_SHA256_LENGTH = 32  # hLen


class KeyFormatError(ValueError):
    """The text is not an RSA public key in a form this module reads."""


@dataclass(frozen=True)
class RsaPublicKey:
    """An RSA public key: modulus ``n`` and public exponent ``e``."""

    n: int
    e: int

    @property
    def key_size(self) -> int:
        """The modulus length in bits (3072 for AWS Marketplace product keys)."""
        return self.n.bit_length()

    def verify_pss_sha256(self, signature: bytes, message: bytes) -> bool:
        """RSASSA-PSS-VERIFY (RFC 8017 section 8.1.2) with SHA-256 and MGF1-SHA-256."""
        k = (self.key_size + 7) // 8
        if len(signature) != k:
            return False
        s = int.from_bytes(signature, "big")
        if s >= self.n:
            return False
        em_bits = self.key_size - 1
        em_length = (em_bits + 7) // 8
        m = pow(s, self.e, self.n)
        if m.bit_length() > em_length * 8:
            return False
        return _emsa_pss_verify(message, m.to_bytes(em_length, "big"), em_bits)


def _mgf1_sha256(seed: bytes, length: int) -> bytes:
    """MGF1 with SHA-256 (RFC 8017 appendix B.2.1)."""
    output = bytearray()
    counter = 0
    while len(output) < length:
        output += hashlib.sha256(seed + counter.to_bytes(4, "big")).digest()
        counter += 1
    return bytes(output[:length])


def _emsa_pss_verify(message: bytes, encoded: bytes, em_bits: int) -> bool:
    """EMSA-PSS-VERIFY (RFC 8017 section 9.1.2) for SHA-256, recovering the salt length.

    RFC 7518 has PS256 signers use a 32-byte salt; like OpenSSL's default verification, the salt
    length is read from the encoding instead of being assumed, so signers that use another length
    (cryptography's ``PSS.MAX_LENGTH``, say) still verify. The salt length does not weaken PSS.
    """
    h_length = _SHA256_LENGTH
    em_length = len(encoded)
    if em_length < h_length + 2 or encoded[-1] != 0xBC:
        return False
    masked_db, digest = encoded[: em_length - h_length - 1], encoded[em_length - h_length - 1 : -1]
    unused_bits = 8 * em_length - em_bits
    top_mask = 0xFF >> unused_bits
    if masked_db[0] & ~top_mask & 0xFF:
        return False
    db = bytearray(
        a ^ b for a, b in zip(masked_db, _mgf1_sha256(digest, len(masked_db)), strict=True)
    )
    db[0] &= top_mask
    separator = next((index for index, byte in enumerate(db) if byte), None)
    if separator is None or db[separator] != 0x01:
        return False
    salt = bytes(db[separator + 1 :])
    m_hash = hashlib.sha256(message).digest()
    return hashlib.sha256(b"\0" * 8 + m_hash + salt).digest() == digest


# --- PEM and DER ---------------------------------------------------------------------------


def load_pem_public_key(pem: bytes) -> RsaPublicKey:
    """Read ``PUBLIC KEY`` (SubjectPublicKeyInfo) or ``RSA PUBLIC KEY`` (PKCS #1) PEM."""
    match = _PEM.search(pem)
    if match is None:
        raise KeyFormatError("no PEM block found")
    label = match.group("label").decode()
    try:
        der = base64.b64decode(b"".join(match.group("body").split()), validate=True)
    except (binascii.Error, ValueError) as error:
        raise KeyFormatError("the PEM body is not valid base64") from error
    if label == "RSA PUBLIC KEY":
        return _rsa_public_key(der)
    if label == "PUBLIC KEY":
        return _subject_public_key_info(der)
    raise KeyFormatError(f"a PEM {label!r} block is not a public key")


def _read(der: bytes, offset: int, tag: int) -> tuple[bytes, int]:
    """Read one DER element with ``tag`` at ``offset``; return its contents and the next offset."""
    if offset + 2 > len(der) or der[offset] != tag:
        raise KeyFormatError("unexpected DER structure")
    length = der[offset + 1]
    offset += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or offset + count > len(der):
            raise KeyFormatError("unsupported DER length")
        length = int.from_bytes(der[offset : offset + count], "big")
        offset += count
    if offset + length > len(der):
        raise KeyFormatError("truncated DER")
    return der[offset : offset + length], offset + length


def _positive_integer(contents: bytes) -> int:
    if not contents or contents[0] & 0x80:
        raise KeyFormatError("an RSA key component is not a positive integer")
    return int.from_bytes(contents, "big")


def _rsa_public_key(der: bytes) -> RsaPublicKey:
    """RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }."""
    body, end = _read(der, 0, 0x30)
    if end != len(der):
        raise KeyFormatError("trailing data after the key")
    modulus, offset = _read(body, 0, 0x02)
    exponent, offset = _read(body, offset, 0x02)
    if offset != len(body):
        raise KeyFormatError("unexpected data in the RSA key")
    key = RsaPublicKey(_positive_integer(modulus), _positive_integer(exponent))
    if key.e < 3 or key.e % 2 == 0 or key.n % 2 == 0:
        raise KeyFormatError("not a valid RSA public key")
    return key


def _subject_public_key_info(der: bytes) -> RsaPublicKey:
    """SubjectPublicKeyInfo with algorithm rsaEncryption around an RSAPublicKey."""
    body, end = _read(der, 0, 0x30)
    if end != len(der):
        raise KeyFormatError("trailing data after the key")
    algorithm, offset = _read(body, 0, 0x30)
    oid, _ = _read(algorithm, 0, 0x06)
    if oid != _RSA_ENCRYPTION_OID:
        raise KeyFormatError("the key is not an RSA key")
    bits, offset = _read(body, offset, 0x03)
    if offset != len(body) or not bits or bits[0] != 0:
        raise KeyFormatError("unexpected public key bit string")
    return _rsa_public_key(bits[1:])


def spki_der(key: RsaPublicKey) -> bytes:
    """The key as DER SubjectPublicKeyInfo (the body of its ``PUBLIC KEY`` PEM)."""
    rsa_key = _sequence(_integer(key.n) + _integer(key.e))
    algorithm = _sequence(_tlv(0x06, _RSA_ENCRYPTION_OID) + _tlv(0x05, b""))
    return _sequence(algorithm + _tlv(0x03, b"\0" + rsa_key))


def _tlv(tag: int, contents: bytes) -> bytes:
    length = len(contents)
    if length < 0x80:
        return bytes([tag, length]) + contents
    size = (length.bit_length() + 7) // 8
    return bytes([tag, 0x80 | size]) + length.to_bytes(size, "big") + contents


def _integer(value: int) -> bytes:
    return _tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def _sequence(contents: bytes) -> bytes:
    return _tlv(0x30, contents)
