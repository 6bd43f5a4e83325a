"""Fixtures shared by the whole suite."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.keys import generate_key


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    """One RSA-3072 key for the session (generation takes about a second)."""
    return generate_key()


@pytest.fixture(scope="session")
def other_rsa_key() -> rsa.RSAPrivateKey:
    """A second, unrelated RSA-3072 key, for "signed with the wrong key" cases."""
    return generate_key()
