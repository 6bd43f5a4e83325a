"""Helpers for the SaaS usage tests: customers, the previous hour, totals the emulator accepted."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from marketplace_entitlement import SaasCustomer
from marketplace_entitlement.emulator import Emulator
from marketplace_entitlement.store import HOUR, hour_of

Key = tuple[str, str, int]


def previous_hour() -> int:
    """The start of the hour before this one (closed: its usage is sent at once)."""
    return hour_of(time.time()) - HOUR


def fast_retries() -> Iterator[float]:
    """Retry waits of 20 ms: a storm of failures is retried quickly in tests."""
    while True:
        yield 0.02


def license_customer(emulator: Emulator, account: str = "111122223333") -> SaasCustomer:
    """A new-integration customer, known to the emulator, named by account and license."""
    made = emulator.create_customer("saas-prod", aws_account_id=account, new_integration=True)
    return SaasCustomer("saas-prod", aws_account_id=account, license_arn=made.license_arn)


def legacy_customer(emulator: Emulator, product: str = "saas-prod") -> SaasCustomer:
    """A customer of an existing integration, named by customer identifier and product code."""
    made = emulator.create_customer(product)
    return SaasCustomer(product, customer_identifier=made.customer_identifier)


def customer_name(customer: SaasCustomer) -> str:
    """The name ``accepted_totals`` uses: the license ARN, else the customer identifier."""
    return customer.license_arn or str(customer.customer_identifier)


def accepted_totals(emulator: Emulator) -> dict[Key, Decimal]:
    """Quantity the emulator accepted per (customer, dimension, hour); each key at most once."""
    counts: Counter[Key] = Counter()
    totals: dict[Key, Decimal] = {}
    for record in emulator.batch_metered():
        name = record["license_arn"] if not record["customer_identifier"] else None
        name = name or record["customer_identifier"]
        key = (str(name), str(record["dimension"]), int(record["timestamp"]))
        counts[key] += 1
        totals[key] = Decimal(record["quantity"])
    assert all(count == 1 for count in counts.values()), counts
    return totals


def batch_bodies(emulator: Emulator) -> list[dict[str, Any]]:
    """The body of every BatchMeterUsage request the emulator received."""
    return [dict(r.body) for r in emulator.requests("BatchMeterUsage") if r.body is not None]
