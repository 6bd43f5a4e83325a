"""The pytest plugin's fixtures, the package's public names, and import without side effects."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from typing import Any

import botocore.session
import jwt

import marketplace_entitlement.emulator as emulator_package
from marketplace_entitlement import testing
from marketplace_entitlement.emulator import Emulator


def test_metering_emulator_fixture_is_a_started_emulator(metering_emulator: Emulator) -> None:
    """The plugin's ``metering_emulator`` is running and answers on its endpoint."""
    assert metering_emulator.endpoint.startswith("http://127.0.0.1:")
    assert metering_emulator.public_key_file.exists()


def test_metering_env_points_botocore_at_the_emulator(
    metering_env: dict[str, str], metering_emulator: Emulator
) -> None:
    """With ``metering_env`` a plain botocore client (no arguments) reaches the emulator."""
    assert os.environ["AWS_ENDPOINT_URL_MARKETPLACE_METERING"] == metering_emulator.endpoint
    assert metering_env["MARKETPLACE_PUBLIC_KEY_FILE"] == str(metering_emulator.public_key_file)
    client: Any = botocore.session.get_session().create_client("meteringmarketplace")
    token = client.register_usage(ProductCode="seller-prod", PublicKeyVersion=1)["Signature"]
    with open(metering_env["MARKETPLACE_PUBLIC_KEY_FILE"], "rb") as key:
        claims = jwt.decode(token, key.read(), algorithms=["PS256"])
    assert claims["productCode"] == "seller-prod"
    assert metering_emulator.requests()[0].access_key_id == testing.DUMMY_ACCESS_KEY_ID


def test_all_is_sorted_and_complete() -> None:
    """``__all__`` lists every public name once, sorted, and each resolves."""
    names = emulator_package.__all__
    assert names == sorted(names)
    public = {n for n in vars(emulator_package) if n.isidentifier() and not n.startswith("_")}
    assert public - {"annotations"} == set(names)
    assert Emulator.__module__ == "marketplace_entitlement.emulator"


def test_importing_starts_nothing() -> None:
    """Importing the emulator and the plugin starts no thread and binds no socket."""
    code = (
        "import threading, marketplace_entitlement.emulator, marketplace_entitlement.testing;"
        "assert threading.active_count() == 1, threading.enumerate()"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_context_manager_stops_and_frees_the_port(metering_emulator_private_key: bytes) -> None:
    """Leaving the ``with`` block stops the server: the endpoint then refuses connections."""
    with Emulator(keys={1: metering_emulator_private_key}) as emulator:
        host, port = emulator.host, emulator.port
    with socket.socket() as sock:
        assert sock.connect_ex((host, port)) != 0
