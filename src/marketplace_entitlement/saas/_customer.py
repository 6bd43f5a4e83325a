"""The SaaS customer: who a usage record is for, in either of AWS's two identifications."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Identification = Literal["license", "legacy"]


@dataclass(frozen=True)
class SaasCustomer:
    """A buyer of a SaaS product, as ResolveCustomer answered (or as the seller stored it).

    New integrations (AWS's Concurrent Agreements, required for products listed from June 2026)
    identify the buyer by ``aws_account_id`` + ``license_arn``: one account holding two licenses is
    two customers. Existing integrations use ``customer_identifier`` + ``product_code``; AWS leaves
    ``customer_identifier`` empty for new integrations. ``agreement_id`` is ``Metadata.AgreementId``.
    """

    product_code: str
    aws_account_id: str | None = None
    license_arn: str | None = None
    agreement_id: str | None = None
    customer_identifier: str | None = None

    def __post_init__(self) -> None:
        if not self.product_code:
            raise ValueError("a SaaS customer needs its product_code")
        if not (self.aws_account_id and self.license_arn) and not self.customer_identifier:
            raise ValueError(
                "a SaaS customer needs aws_account_id and license_arn, or a customer_identifier"
            )

    @property
    def identification(self) -> Identification:
        """``license`` (account id + license ARN) when both are known, else ``legacy``."""
        return "license" if self.aws_account_id and self.license_arn else "legacy"

    def identity(self) -> dict[str, str]:
        """The members that name this customer in a BatchMeterUsage ``UsageRecord``."""
        if self.identification == "license":
            return {
                "CustomerAWSAccountId": str(self.aws_account_id),
                "LicenseArn": str(self.license_arn),
            }
        return {"CustomerIdentifier": str(self.customer_identifier)}

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping of every field (None where AWS sent nothing)."""
        return asdict(self)

    @classmethod
    def from_resolve_answer(cls, answer: dict[str, Any]) -> SaasCustomer:
        """Build from ResolveCustomer's answer; empty strings count as absent."""
        metadata = answer.get("Metadata") or {}

        def text(value: object) -> str | None:
            return str(value) if value not in (None, "") else None

        return cls(
            product_code=str(answer.get("ProductCode") or ""),
            aws_account_id=text(answer.get("CustomerAWSAccountId")),
            license_arn=text(answer.get("LicenseArn")),
            agreement_id=text(metadata.get("AgreementId")),
            customer_identifier=text(answer.get("CustomerIdentifier")),
        )
