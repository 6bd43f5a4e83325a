"""What the four Metering Service operations do, on the emulator's in-memory state."""

from __future__ import annotations

import json
import math
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Final, Literal

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from marketplace_entitlement.emulator._errors import DRY_RUN_OPERATION, VALIDATION, ServiceError
from marketplace_entitlement.emulator._keys import KeyRing
from marketplace_entitlement.emulator._model import JsonObject
from marketplace_entitlement.emulator._sigv4 import SignedIdentity
from marketplace_entitlement.emulator._tasks import task_identity
from marketplace_entitlement.emulator._types import ClaimCasing, Customer, ProductStatus

MAX_AGE_SECONDS: Final = 6 * 3600  # records older than this are refused
BATCH_MAX_AGE_SECONDS: Final = 24 * 3600  # BatchMeterUsage: up to 24 hours after the event
MONTH_END_GRACE_SECONDS: Final = 6 * 3600  # last month's records until 06:00 UTC on the 1st
MAX_FUTURE_SECONDS: Final = 5 * 60  # clock skew tolerated for timestamps in the future
HOUR: Final = 3600

TokenFactory = Callable[[dict[str, object], RSAPrivateKey], str]
EntitlementCheck = Literal["first-call", "every-call"]
ENTITLEMENT_CHECKS: Final = ("first-call", "every-call")

_CLAIM_NAMES: Final[Mapping[str, Mapping[str, str]]] = {
    "camel": {"product": "productCode", "version": "publicKeyVersion", "nonce": "nonce"},
    "pascal": {"product": "ProductCode", "version": "PublicKeyVersion", "nonce": "Nonce"},
}


@dataclass
class Product:
    """A configured product: its entitlement status and, optionally, its allowed dimensions."""

    status: ProductStatus
    dimensions: frozenset[str] | None = None


@dataclass
class _Metered:
    record_id: str
    quantity: Decimal


@dataclass
class ServiceState:
    """Everything the operations read and change; guarded by ``lock``."""

    keys: KeyRing
    products: dict[str, Product] = field(default_factory=dict)
    region: str | None = None
    claim_casing: ClaimCasing = "camel"
    disabled_operations: set[str] = field(default_factory=set)
    customers: dict[str, Customer] = field(default_factory=dict)
    token_factory: TokenFactory | None = None
    # RegisterUsage's and MeterUsage's entitlement errors: "first-call" as AWS (only until a task
    # has made a successful RegisterUsage or MeterUsage call for the product), or "every-call"
    # (each call checks the product's status; the emulator's former behaviour).
    entitlement_check: EntitlementCheck = "first-call"
    registered_tasks: set[tuple[str, str]] = field(default_factory=set)
    hourly: dict[tuple[str, str, int, str], _Metered] = field(default_factory=dict)
    batch: dict[tuple[str, str, str, float], _Metered] = field(default_factory=dict)
    client_tokens: dict[str, tuple[str, JsonObject]] = field(default_factory=dict)
    metered: list[JsonObject] = field(default_factory=list)  # accepted MeterUsage records
    batch_metered: list[JsonObject] = field(default_factory=list)  # accepted BatchMeterUsage
    lock: threading.RLock = field(default_factory=threading.RLock)

    def forget_usage(self) -> None:
        """Drop every metering record and client token (customers and products stay)."""
        with self.lock:
            self.hourly.clear()
            self.batch.clear()
            self.client_tokens.clear()
            self.metered.clear()
            self.batch_metered.clear()


def new_customer(
    product_code: str,
    *,
    customer_identifier: str | None = None,
    aws_account_id: str | None = None,
    license_arn: str | None = None,
    expired: bool = False,
    subscribed: bool = True,
    new_integration: bool = False,
    agreement_id: str | None = None,
) -> Customer:
    """Make a customer with made-up identifiers where none are given.

    A ``new_integration`` customer has no CustomerIdentifier (AWS leaves it empty for products
    integrated with Concurrent Agreements): it is named by account id + license ARN only.
    """
    account = aws_account_id or f"{secrets.randbelow(10**12):012d}"
    identifier = "" if new_integration else customer_identifier or f"cust{secrets.token_hex(6)}"
    return Customer(
        registration_token=secrets.token_urlsafe(32),
        product_code=product_code,
        customer_identifier=identifier,
        aws_account_id=account,
        license_arn=license_arn
        or f"arn:aws:license-manager::{account}:license:l-{secrets.token_hex(16)}",
        expired=expired,
        subscribed=subscribed,
        agreement_id=agreement_id or f"agmt-{secrets.token_hex(12)}",
    )


class MeteringService:
    """The business rules of RegisterUsage, MeterUsage, BatchMeterUsage and ResolveCustomer."""

    def __init__(self, state: ServiceState, *, clock: Callable[[], float] = time.time) -> None:
        self.state = state
        self._clock = clock

    def call(self, operation: str, body: JsonObject, identity: SignedIdentity) -> JsonObject:
        """Run ``operation`` on a validated ``body``; raise ``ServiceError`` for an error answer."""
        handlers: Mapping[str, Callable[[JsonObject, SignedIdentity], JsonObject]] = {
            "RegisterUsage": self.register_usage,
            "MeterUsage": self.meter_usage,
            "BatchMeterUsage": self.batch_meter_usage,
            "ResolveCustomer": self.resolve_customer,
        }
        if operation in self.state.disabled_operations:
            raise ServiceError("DisabledApiException", f"The {operation} API is disabled.")
        return handlers[operation](body, identity)

    # -- shared checks ---------------------------------------------------------------------

    def _product(self, code: str, *, unlisted: ProductStatus) -> Product:
        """Return product ``code``; raise ``InvalidProductCodeException`` if its status is invalid.

        A code that is not configured is entitled when no product is configured, and has the
        status ``unlisted`` otherwise.
        """
        product = self.state.products.get(code)
        if product is None:
            product = Product("entitled" if not self.state.products else unlisted)
        if product.status == "invalid":
            raise ServiceError("InvalidProductCodeException", f"Product code {code} is invalid.")
        return product

    def _check_timestamp(self, timestamp: float) -> None:
        now = self._clock()
        if timestamp < now - MAX_AGE_SECONDS:
            raise ServiceError(
                "TimestampOutOfBoundsException",
                "Timestamp is more than 6 hours in the past.",
            )
        if timestamp > now + MAX_FUTURE_SECONDS:
            raise ServiceError("TimestampOutOfBoundsException", "Timestamp is in the future.")

    @staticmethod
    def _check_dimension(product: Product, dimension: str) -> None:
        if product.dimensions is not None and dimension not in product.dimensions:
            raise ServiceError(
                "InvalidUsageDimensionException",
                f"Usage dimension {dimension} does not match the product's dimensions.",
            )

    @staticmethod
    def _quantity(item: Mapping[str, Any], whole: str, decimal: str) -> tuple[Decimal, bool]:
        """Return the quantity and whether it was sent as a decimal string."""
        if item.get(whole) is not None and item.get(decimal) is not None:
            raise ServiceError(VALIDATION, f"Specify {whole} or {decimal}, not both.")
        if item.get(decimal) is not None:
            return Decimal(str(item[decimal])), True
        return Decimal(int(item.get(whole) or 0)), False

    def _check_allocations(
        self, allocations: Iterable[Mapping[str, Any]], quantity: Decimal, as_decimal: bool
    ) -> None:
        total = Decimal(0)
        seen_tag_sets: set[frozenset[tuple[str, str]]] = set()
        for allocation in allocations:
            amount, allocation_decimal = self._quantity(
                allocation, "AllocatedUsageQuantity", "AllocatedUsageQuantityAsDecimal"
            )
            if allocation_decimal != as_decimal:
                raise ServiceError(
                    "InvalidUsageAllocationsException",
                    "Allocations must use the same type of quantity as the usage quantity.",
                )
            total += amount
            tags = allocation.get("Tags") or []
            keys = [tag["Key"] for tag in tags]
            if len(keys) != len(set(keys)):
                raise ServiceError("InvalidTagException", "Tag keys must be unique.")
            tag_set = frozenset((tag["Key"], tag["Value"]) for tag in tags)
            if tag_set in seen_tag_sets:
                raise ServiceError(
                    "InvalidUsageAllocationsException",
                    "Each allocation needs a unique set of tags.",
                )
            seen_tag_sets.add(tag_set)
        if total != quantity:
            raise ServiceError(
                "InvalidUsageAllocationsException",
                f"Allocated quantities sum to {total}, not the usage quantity {quantity}.",
            )

    # -- RegisterUsage ---------------------------------------------------------------------

    def register_usage(self, body: JsonObject, identity: SignedIdentity) -> JsonObject:
        """Check entitlement and sign a PS256 JWT with the key of the requested version."""
        state = self.state
        code: str = body["ProductCode"]
        version: int = body["PublicKeyVersion"]
        with state.lock:
            if state.region is not None and identity.region != state.region:
                raise ServiceError(
                    "InvalidRegionException",
                    f"RegisterUsage must be called in {state.region}, not {identity.region}.",
                )
            # An unlisted code is a product the caller did not buy, as for a real buyer.
            product = self._product(code, unlisted="not_entitled")
            casing = _CLAIM_NAMES[state.claim_casing]
            factory = state.token_factory
            # AWS raises entitlement errors only on a task's first call: once a task (here: its
            # credentials, see _tasks) has registered, later calls succeed even if the buyer
            # unsubscribed. "every-call" checks the status on each call instead.
            task = (task_identity(identity), code)
            checked = state.entitlement_check == "every-call" or task not in state.registered_tasks
        if not state.keys.knows(version):
            raise ServiceError(
                "InvalidPublicKeyVersionException", f"Public key version {version} is invalid."
            )
        if checked and product.status == "platform_not_supported":
            raise ServiceError(
                "PlatformNotSupportedException",
                "AWS Marketplace does not support metering usage from the underlying platform.",
            )
        if checked and product.status == "not_entitled":
            raise ServiceError(
                "CustomerNotEntitledException", "Customer is not entitled to use this product."
            )
        with state.lock:
            state.registered_tasks.add(task)
        claims: dict[str, object] = {casing["product"]: code, casing["version"]: version}
        if body.get("Nonce") is not None:
            claims[casing["nonce"]] = body["Nonce"]
        claims["iat"] = int(self._clock())
        key = state.keys.private_key(version)
        if factory is not None:
            token = factory(dict(claims), key)
        else:
            token = jwt.encode(claims, key, algorithm="PS256", headers={"typ": "JWT"})
        result: JsonObject = {"Signature": token}
        rotated = state.keys.rotation_timestamp(version)
        if rotated is not None:
            result["PublicKeyRotationTimestamp"] = rotated
        return result

    # -- MeterUsage ------------------------------------------------------------------------

    def meter_usage(self, body: JsonObject, identity: SignedIdentity) -> JsonObject:
        """Record one hour's usage of one dimension, once per hour per caller (the ECS task)."""
        state = self.state
        with state.lock:
            if state.region is not None and identity.region != state.region:
                raise ServiceError(
                    "InvalidEndpointRegionException",
                    f"The endpoint's region {identity.region} is not {state.region}.",
                )
            product = self._product(body["ProductCode"], unlisted="invalid")
            # As for RegisterUsage: entitlement errors come only on a task's initial call. A task
            # that has made a successful MeterUsage or RegisterUsage call for this product is not
            # refused later; "every-call" checks the status on each call instead.
            task = task_identity(identity)
            first = (task, body["ProductCode"]) not in state.registered_tasks
            checked = state.entitlement_check == "every-call" or first
            if checked and product.status == "not_entitled":
                raise ServiceError(
                    "CustomerNotEntitledException", "Customer is not entitled to use this product."
                )
            self._check_timestamp(body["Timestamp"])
            self._check_dimension(product, body["UsageDimension"])
            quantity, as_decimal = self._quantity(body, "UsageQuantity", "UsageQuantityAsDecimal")
            if body.get("UsageAllocations") is not None:
                self._check_allocations(body["UsageAllocations"], quantity, as_decimal)
            if body.get("DryRun"):
                raise ServiceError(
                    DRY_RUN_OPERATION, "Request would have succeeded, but DryRun flag is set."
                )
            fingerprint = {key: value for key, value in body.items() if key != "ClientToken"}
            token = body.get("ClientToken")
            if token is not None and token in state.client_tokens:
                record_id, earlier = state.client_tokens[token]
                if _canonical(earlier) != _canonical(fingerprint):
                    raise ServiceError(
                        "IdempotencyConflictException",
                        "The ClientToken was used for a different request.",
                    )
                state.registered_tasks.add((task, body["ProductCode"]))
                return {"MeteringRecordId": record_id}
            hour = int(math.floor(body["Timestamp"] / HOUR) * HOUR)
            key = (body["ProductCode"], body["UsageDimension"], hour, task)
            metered = state.hourly.get(key)
            if metered is None:
                metered = _Metered(str(uuid.uuid4()), quantity)
                state.hourly[key] = metered
                state.metered.append(
                    {
                        "metering_record_id": metered.record_id,
                        "product_code": body["ProductCode"],
                        "dimension": body["UsageDimension"],
                        "hour": hour,
                        "timestamp": body["Timestamp"],
                        "task": task,
                        "quantity": str(quantity),
                        "allocations": body.get("UsageAllocations"),
                        "accepted_at": self._clock(),
                    }
                )
            elif metered.quantity != quantity:
                raise ServiceError(
                    "DuplicateRequestException",
                    "Usage for this dimension and hour was already reported with another quantity.",
                )
            if token is not None:
                state.client_tokens[token] = (metered.record_id, fingerprint)
            state.registered_tasks.add((task, body["ProductCode"]))
            return {"MeteringRecordId": metered.record_id}

    # -- BatchMeterUsage -------------------------------------------------------------------

    def _check_saas_region(self, operation: str, identity: SignedIdentity) -> None:
        region = self.state.region
        if region is not None and identity.region != region:
            raise ServiceError(
                "InvalidRegionException",
                f"{operation} must be called in {region}, not {identity.region}.",
            )

    def _check_batch_timestamp(self, timestamp: float) -> None:
        """Up to 24 hours back, and last month's records only until 06:00 UTC on the 1st."""
        now = self._clock()
        if timestamp > now + MAX_FUTURE_SECONDS:
            raise ServiceError("TimestampOutOfBoundsException", "Timestamp is in the future.")
        if timestamp <= now - BATCH_MAX_AGE_SECONDS:
            raise ServiceError(
                "TimestampOutOfBoundsException", "Timestamp is 24 hours or more in the past."
            )
        if now >= month_cutoff(timestamp):
            raise ServiceError(
                "TimestampOutOfBoundsException",
                "Usage for a past billing month is accepted only until 06:00 UTC on the 1st.",
            )

    def _customer_for(self, record: Mapping[str, Any], product_code: str) -> Customer | None:
        """The customer a record names: by license (each license its own customer), else id."""
        identifier = record.get("CustomerIdentifier")
        account = record.get("CustomerAWSAccountId")
        arn = record.get("LicenseArn")
        candidates = [c for c in self.state.customers.values() if c.product_code == product_code]
        if arn is not None:
            return next(
                (c for c in candidates if c.license_arn == arn and c.aws_account_id == account),
                None,
            )
        if identifier:
            return next((c for c in candidates if c.customer_identifier == identifier), None)
        if account is not None:
            # An account without a license names a customer only while it holds one license.
            owned = [c for c in candidates if c.aws_account_id == account]
            return owned[0] if len(owned) == 1 else None
        return None

    def _batch_product(self, body: JsonObject) -> str:
        """Return the one product of the call: ``ProductCode``, else the licenses' product."""
        licensed: set[str] = set()
        for record in body["UsageRecords"]:
            identifier = record.get("CustomerIdentifier")
            account = record.get("CustomerAWSAccountId")
            if (identifier is None) == (account is None) or identifier == "":
                raise ServiceError(
                    "InvalidCustomerIdentifierException",
                    "Each record needs exactly one of CustomerIdentifier or CustomerAWSAccountId.",
                )
            arn = record.get("LicenseArn")
            if arn is None:
                continue
            owner = next((c for c in self.state.customers.values() if c.license_arn == arn), None)
            if owner is None or (account is not None and owner.aws_account_id != account):
                raise ServiceError("InvalidLicenseException", f"License {arn} is not valid.")
            licensed.add(owner.product_code)
        code = body.get("ProductCode")
        products = licensed | ({code} if code is not None else set())
        if not products:
            raise ServiceError(VALIDATION, "ProductCode or LicenseArn must be specified.")
        if len(products) > 1:
            raise ServiceError(
                "InvalidProductCodeException", "A BatchMeterUsage call is for one product only."
            )
        return products.pop()

    def batch_meter_usage(self, body: JsonObject, identity: SignedIdentity) -> JsonObject:
        """Record SaaS usage for up to 25 customer records of one product."""
        state = self.state
        with state.lock:
            self._check_saas_region("BatchMeterUsage", identity)
            product_code = self._batch_product(body)
            product = self._product(product_code, unlisted="invalid")
            for record in body["UsageRecords"]:
                self._check_batch_timestamp(record["Timestamp"])
                self._check_dimension(product, record["Dimension"])
                quantity, as_decimal = self._quantity(record, "Quantity", "QuantityAsDecimal")
                if record.get("UsageAllocations") is not None:
                    self._check_allocations(record["UsageAllocations"], quantity, as_decimal)
            results = [self._meter_record(record, product_code) for record in body["UsageRecords"]]
        return {"Results": results, "UnprocessedRecords": []}

    def _meter_record(self, record: Mapping[str, Any], product_code: str) -> JsonObject:
        customer = self._customer_for(record, product_code)
        if customer is None or not customer.subscribed:
            return {"UsageRecord": record, "Status": "CustomerNotSubscribed"}
        quantity, _ = self._quantity(record, "Quantity", "QuantityAsDecimal")
        key = (product_code, customer.registration_token, record["Dimension"], record["Timestamp"])
        metered = self.state.batch.get(key)
        if metered is None:
            metered = _Metered(str(uuid.uuid4()), quantity)
            self.state.batch[key] = metered
            self.state.batch_metered.append(
                {
                    "metering_record_id": metered.record_id,
                    "product_code": product_code,
                    "customer_identifier": customer.customer_identifier,
                    "aws_account_id": customer.aws_account_id,
                    "license_arn": customer.license_arn,
                    "dimension": record["Dimension"],
                    "timestamp": record["Timestamp"],
                    "quantity": str(quantity),
                    "allocations": record.get("UsageAllocations"),
                    "accepted_at": self._clock(),
                }
            )
        elif metered.quantity != quantity:
            return {"UsageRecord": record, "Status": "DuplicateRecord"}
        return {"UsageRecord": record, "MeteringRecordId": metered.record_id, "Status": "Success"}

    # -- ResolveCustomer -------------------------------------------------------------------

    def resolve_customer(self, body: JsonObject, identity: SignedIdentity) -> JsonObject:
        """Exchange a registration token the emulator issued for the customer's identifiers."""
        with self.state.lock:
            self._check_saas_region("ResolveCustomer", identity)
            customer = self.state.customers.get(body["RegistrationToken"])
        if customer is None:
            raise ServiceError("InvalidTokenException", "Registration token is invalid.")
        if customer.expired:
            raise ServiceError("ExpiredTokenException", "Registration token has expired.")
        answer: JsonObject = {
            "ProductCode": customer.product_code,
            "CustomerAWSAccountId": customer.aws_account_id,
            "LicenseArn": customer.license_arn,
            "Metadata": {"AgreementId": customer.agreement_id},
        }
        if customer.customer_identifier:  # not populated for new integrations
            answer["CustomerIdentifier"] = customer.customer_identifier
        return answer


def month_cutoff(timestamp: float) -> float:
    """When usage at ``timestamp`` stops being accepted: 06:00 UTC on the next month's 1st."""
    moment = datetime.fromtimestamp(timestamp, tz=timezone.utc)
    first = datetime(
        moment.year + moment.month // 12, moment.month % 12 + 1, 1, tzinfo=timezone.utc
    )
    return first.timestamp() + MONTH_END_GRACE_SECONDS


def _canonical(value: JsonObject) -> str:
    return json.dumps(value, sort_keys=True, default=str)
