"""Shared fixtures for the emulator's tests: one RSA key, emulators that stop, botocore clients."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import botocore.session
import pytest
from botocore.config import Config
from botocore.session import Session

from marketplace_entitlement.emulator import Emulator
from marketplace_entitlement.emulator._keys import generate_private_key, private_key_pem

MakeEmulator = Callable[..., Emulator]
MakeClient = Callable[..., Any]

ACCESS_KEY_ID = "AKIDTEST"
SECRET_ACCESS_KEY = "secret"


@pytest.fixture(scope="session")
def botocore_session() -> Session:
    """One botocore session (loading the service data once); clients are made from it."""
    return botocore.session.get_session()


@pytest.fixture(scope="session")
def other_private_key() -> bytes:
    """A second RSA-3072 key (PEM), for tests that need a key the emulator does not sign with."""
    return private_key_pem(generate_private_key())


@pytest.fixture
def make_emulator(metering_emulator_private_key: bytes) -> Iterator[MakeEmulator]:
    """Start emulators with the session's key unless ``keys`` is given; stop them afterwards."""
    started: list[Emulator] = []

    def make(**kwargs: Any) -> Emulator:
        kwargs.setdefault("keys", {1: metering_emulator_private_key})
        emulator = Emulator(**kwargs).start()
        started.append(emulator)
        return emulator

    yield make
    for emulator in started:
        emulator.stop()


@pytest.fixture
def make_client(botocore_session: Session) -> MakeClient:
    """Make a real botocore ``meteringmarketplace`` client for an emulator (one attempt only)."""

    def make(
        emulator: Emulator,
        *,
        region: str = "us-east-1",
        access_key_id: str = ACCESS_KEY_ID,
        secret_access_key: str = SECRET_ACCESS_KEY,
        **config: Any,
    ) -> Any:
        config.setdefault("retries", {"total_max_attempts": 1})
        return botocore_session.create_client(
            "meteringmarketplace",
            region_name=region,
            endpoint_url=emulator.endpoint,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=Config(**config),
        )

    return make


@pytest.fixture
def emulator(make_emulator: MakeEmulator) -> Emulator:
    """A default emulator: every product entitled, any region, AWS's rate limits."""
    return make_emulator()


@pytest.fixture
def client(emulator: Emulator, make_client: MakeClient) -> Any:
    """A botocore client for ``emulator`` in us-east-1."""
    return make_client(emulator)


Control = Callable[..., tuple[int, Any]]


@pytest.fixture
def control() -> Control:
    """Call an emulator's control API with urllib; answer the status and the decoded JSON."""

    def call(emulator: Emulator, method: str, path: str, body: object = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310  (a loopback http URL built by the test)
            emulator.control_url + path, data=data, method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    return call
