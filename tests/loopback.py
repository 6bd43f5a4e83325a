"""Reaching loopback services from tests and benches: the environment, a botocore client, a GET."""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.config import Config

BOTOCORE_POOL = 10  # botocore's own default of max_pool_connections


def emulator_env(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    *,
    endpoint: str,
    access_key_id: str,
    marketplace: Mapping[str, str],
) -> dict[str, str]:
    """Point botocore (and the package) at ``endpoint``; return the environment for subprocesses.

    botocore reads its endpoint override and credentials from ``os.environ``, so they are set with
    monkeypatch; config files are pointed at nothing so this machine's ~/.aws cannot interfere.
    Every ``MARKETPLACE_*`` variable is removed, then ``marketplace`` and a JSON log format set.
    """
    values = {
        "AWS_ENDPOINT_URL_MARKETPLACE_METERING": endpoint,
        "AWS_ACCESS_KEY_ID": access_key_id,
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        **marketplace,
        "MARKETPLACE_LOG_FORMAT": "json",
    }
    for name in ("AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name in [n for n in os.environ if n.startswith("MARKETPLACE_")]:
        monkeypatch.delenv(name)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return dict(os.environ)


def emulator_client(
    endpoint: str, *, access_key_id: str, secret: str, max_pool_connections: int = BOTOCORE_POOL
) -> Any:
    """A botocore client for the emulator at ``endpoint`` (one attempt: our retry policy owns retries)."""
    return botocore.session.get_session().create_client(
        "meteringmarketplace",
        region_name="us-east-1",
        endpoint_url=endpoint,
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret,
        config=Config(retries={"total_max_attempts": 1}, max_pool_connections=max_pool_connections),
    )


def get(url: str) -> str | None:
    """The body of a GET of ``url``, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310  (loopback http)
            return str(response.read().decode())
    except OSError:
        return None
