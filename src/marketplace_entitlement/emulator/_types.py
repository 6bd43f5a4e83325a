"""The emulator's public value types: product states, claim casings, customers, requests."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Final, Literal

ProductStatus = Literal["entitled", "not_entitled", "platform_not_supported", "invalid"]
PRODUCT_STATUSES: Final[tuple[ProductStatus, ...]] = (
    "entitled",
    "not_entitled",
    "platform_not_supported",
    "invalid",
)

ClaimCasing = Literal["camel", "pascal"]
CLAIM_CASINGS: Final[tuple[ClaimCasing, ...]] = ("camel", "pascal")


def check_product_status(status: str) -> ProductStatus:
    """Return ``status`` as a ``ProductStatus``, or raise ``ValueError`` naming the choices."""
    for known in PRODUCT_STATUSES:
        if status == known:
            return known
    raise ValueError(f"product status must be one of {', '.join(PRODUCT_STATUSES)}, not {status!r}")


def check_claim_casing(casing: str) -> ClaimCasing:
    """Return ``casing`` as a ``ClaimCasing``, or raise ``ValueError`` naming the choices."""
    for known in CLAIM_CASINGS:
        if casing == known:
            return known
    raise ValueError(f"claim casing must be one of {', '.join(CLAIM_CASINGS)}, not {casing!r}")


@dataclass(frozen=True)
class Customer:
    """A SaaS buyer the emulator knows, and the registration token that resolves to it.

    ``customer_identifier`` is ``""`` for customers of a new integration (Concurrent Agreements):
    they are named by ``aws_account_id`` + ``license_arn`` only. ``agreement_id`` is what
    ResolveCustomer answers as ``Metadata.AgreementId``.
    """

    registration_token: str
    product_code: str
    customer_identifier: str
    aws_account_id: str
    license_arn: str
    expired: bool = False
    subscribed: bool = True
    agreement_id: str = ""

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-ready mapping of every field."""
        return asdict(self)


@dataclass(frozen=True)
class RecordedRequest:
    """One request the emulator received and how it answered.

    ``operation`` is None when the target was missing or unknown; ``body`` is None when the body
    was not a JSON object; ``region`` and ``access_key_id`` come from the SigV4 credential scope
    (None when unsigned); ``error_code`` is the ``__type`` answered (None on success or when a
    fault answered without one); ``fault`` names the injected fault kind that applied, if any.
    """

    time: float
    operation: str | None
    body: Mapping[str, Any] | None
    region: str | None
    access_key_id: str | None
    status: int
    error_code: str | None
    fault: str | None
    request_id: str

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-ready mapping of every field."""
        data = asdict(self)
        data["body"] = None if self.body is None else dict(self.body)
        return data
