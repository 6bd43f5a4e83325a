"""The RSA key pairs the emulator signs RegisterUsage tokens with, one per PublicKeyVersion."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

KEY_SIZE: Final = 3072  # the size of a real product key seen in public code (FACTS.md)
PUBLIC_EXPONENT: Final = 65537

PrivateKeyInput = bytes | rsa.RSAPrivateKey


def generate_private_key() -> rsa.RSAPrivateKey:
    """Generate an RSA-3072 private key (about a second of CPU)."""
    return rsa.generate_private_key(public_exponent=PUBLIC_EXPONENT, key_size=KEY_SIZE)


def load_private_key(data: PrivateKeyInput) -> rsa.RSAPrivateKey:
    """Load a PEM-encoded RSA private key (or pass a key object through)."""
    if isinstance(data, rsa.RSAPrivateKey):
        return data
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise TypeError("the emulator signs with PS256 and needs an RSA private key")
    return key


def private_key_pem(key: rsa.RSAPrivateKey) -> bytes:
    """Serialize ``key`` as unencrypted PKCS#8 PEM."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class KeyRing:
    """Key pairs by PublicKeyVersion: generated lazily, once, and cached; versions can expire.

    A version is known when it was given at construction or added later; with no keys given,
    version 1 is known and its key is generated on first use.
    """

    def __init__(self, keys: Mapping[int, PrivateKeyInput] | None = None) -> None:
        self._lock = threading.Lock()
        self._keys: dict[int, rsa.RSAPrivateKey | None] = {}
        self._public_pems: dict[int, bytes] = {}
        self._expired: dict[int, float] = {}
        if keys is None:
            self._keys[1] = None
        for version, data in (keys or {}).items():
            self._keys[version] = load_private_key(data)

    def versions(self) -> tuple[int, ...]:
        """The known PublicKeyVersions, in order."""
        with self._lock:
            return tuple(sorted(self._keys))

    def knows(self, version: int) -> bool:
        """Tell whether ``version`` is a known PublicKeyVersion."""
        with self._lock:
            return version in self._keys

    def add(self, version: int, key: PrivateKeyInput | None = None) -> None:
        """Make ``version`` known, with ``key`` or a key generated on first use."""
        loaded = None if key is None else load_private_key(key)
        with self._lock:
            self._keys[version] = loaded
            self._public_pems.pop(version, None)

    def private_key(self, version: int) -> rsa.RSAPrivateKey:
        """Return ``version``'s private key, generated the first time (``KeyError`` if unknown)."""
        with self._lock:
            key = self._keys[version]
            if key is None:
                key = generate_private_key()
                self._keys[version] = key
            return key

    def public_key_pem(self, version: int = 1) -> bytes:
        """Return the SubjectPublicKeyInfo PEM of ``version``'s public key."""
        pem = self._public_pems.get(version)
        if pem is None:
            pem = (
                self.private_key(version)
                .public_key()
                .public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                )
            )
            self._public_pems[version] = pem
        return pem

    def expire(self, version: int, at: float) -> None:
        """Mark ``version`` expired at epoch ``at`` (answered as PublicKeyRotationTimestamp)."""
        with self._lock:
            if version not in self._keys:
                raise KeyError(version)
            self._expired[version] = at

    def rotation_timestamp(self, version: int) -> float | None:
        """Return when ``version`` expired, or None while it is current."""
        with self._lock:
            return self._expired.get(version)

    def expired(self) -> dict[int, float]:
        """Return every expired version with its rotation timestamp."""
        with self._lock:
            return dict(self._expired)

    def unexpire_all(self) -> None:
        """Make every version current again."""
        with self._lock:
            self._expired.clear()
