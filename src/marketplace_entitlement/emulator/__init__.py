"""A local AWS Marketplace Metering Service for tests and offline development.

Importing this package starts nothing: an ``Emulator`` serves only once started.
"""

from __future__ import annotations

from marketplace_entitlement.emulator._emulator import Emulator
from marketplace_entitlement.emulator._faults import Fault, FaultSpecError, parse_fault_spec
from marketplace_entitlement.emulator._operations import TokenFactory
from marketplace_entitlement.emulator._types import (
    ClaimCasing,
    Customer,
    ProductStatus,
    RecordedRequest,
)

__all__ = [
    "ClaimCasing",
    "Customer",
    "Emulator",
    "Fault",
    "FaultSpecError",
    "ProductStatus",
    "RecordedRequest",
    "TokenFactory",
    "parse_fault_spec",
]

for _name in (
    "Customer",
    "Emulator",
    "Fault",
    "FaultSpecError",
    "RecordedRequest",
    "parse_fault_spec",
):
    globals()[_name].__module__ = __name__
del _name
