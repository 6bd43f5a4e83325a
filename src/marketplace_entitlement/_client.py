"""The botocore Metering Service client: created once, lazily, with timeouts and retries we own."""

from __future__ import annotations

import json
import logging
import threading
from typing import TYPE_CHECKING, Any, Protocol

from marketplace_entitlement._errors import ConfigurationError
from marketplace_entitlement._version import __version__

if TYPE_CHECKING:
    from marketplace_entitlement._settings import Settings

logger = logging.getLogger(__name__)

SERVICE_NAME = "meteringmarketplace"
CONNECT_TIMEOUT = 5.0  # a startup check should learn fast that the endpoint is unreachable
READ_TIMEOUT = 10.0  # RegisterUsage answers in well under a second when healthy
PLATFORM_LOOKUP_TIMEOUT = 1.0


class MeteringClient(Protocol):
    """The part of botocore's ``meteringmarketplace`` client this package calls."""

    def register_usage(self, **kwargs: Any) -> dict[str, Any]:
        """Call RegisterUsage."""
        ...  # pragma: no cover


def create_metering_client(settings: Settings) -> MeteringClient:
    """Create a botocore client for the Metering Service in the settings' region.

    botocore is imported here, not at module import, because importing it costs a few hundred
    milliseconds. botocore's own retries are limited to one attempt so that this package's retry
    policy owns the whole time budget (MARKETPLACE_REGISTER_TIMEOUT); timeouts never exceed it.
    """
    import botocore.session  # noqa: PLC0415  (deferred: see docstring)
    from botocore.config import Config  # noqa: PLC0415
    from botocore.exceptions import BotoCoreError, PartialCredentialsError  # noqa: PLC0415

    try:
        session = botocore.session.get_session()
        region = (
            settings.region or session.get_config_variable("region") or platform_region(settings)
        )
        if not region:
            raise ConfigurationError(
                "no AWS region: AWS_REGION, AWS_DEFAULT_REGION and the platform metadata gave none",
                variable="AWS_REGION",
                hint="ECS and EKS set AWS_REGION; elsewhere set AWS_REGION to the listing's region",
            )
        budget = settings.register_timeout or READ_TIMEOUT
        config = Config(
            connect_timeout=min(CONNECT_TIMEOUT, budget),
            read_timeout=min(READ_TIMEOUT, budget),
            retries={"mode": "standard", "total_max_attempts": 1},
            user_agent_extra=f"marketplace-entitlement/{__version__}",
            max_pool_connections=4,
        )
        client: MeteringClient = session.create_client(
            SERVICE_NAME, region_name=region, config=config
        )
    except (ValueError, BotoCoreError) as error:  # a missing profile, an endpoint that is no URL
        partial = isinstance(error, PartialCredentialsError)
        raise ConfigurationError(
            f"cannot create the Metering Service client: {error}",
            hint="set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or neither (then the ECS "
            "task role or the EKS IRSA role is used)"
            if partial
            else "check AWS_PROFILE, AWS_ENDPOINT_URL_MARKETPLACE_METERING, AWS_ENDPOINT_URL "
            "and the region",
        ) from error
    return client


def endpoint_url(client: object) -> str | None:
    """The URL a botocore client sends to (``client.meta.endpoint_url``); None if it has none."""
    url = getattr(getattr(client, "meta", None), "endpoint_url", None)
    return url if isinstance(url, str) else None


def platform_region(settings: Settings) -> str | None:
    """Ask the platform for the region when no variable names it: the ECS task metadata endpoint.

    ECS sets ``AWS_REGION`` itself, so this is a fallback for unusual set-ups; the task ARN carries
    the region (``arn:aws:ecs:REGION:ACCOUNT:task/...``).
    """
    uri = settings.ecs_metadata_uri
    if not uri:
        return None
    import urllib.request  # noqa: PLC0415  (rarely needed; ~40 ms of imports on every start)

    try:
        with urllib.request.urlopen(  # noqa: S310  (the URI is the platform's, http by design)
            uri.rstrip("/") + "/task", timeout=PLATFORM_LOOKUP_TIMEOUT
        ) as response:
            task = json.load(response)
    except (OSError, ValueError) as error:
        logger.debug("ECS task metadata unavailable: %s", error)
        return None
    parts = str(task.get("TaskARN", "")).split(":")
    return parts[3] if len(parts) > 4 and parts[3] else None


class LazyClient:
    """Holds one client, created on first use (thread-safe), or the one injected."""

    def __init__(self, settings: Settings, client: MeteringClient | None = None) -> None:
        self._settings = settings
        self._client = client
        self._lock = threading.Lock()

    def get(self) -> MeteringClient:
        """Return the client, creating it on the first call."""
        with self._lock:
            if self._client is None:
                self._client = create_metering_client(self._settings)
            return self._client
