"""Prove a paid AWS Marketplace container is entitled at startup, and keep the Metering Service informed.

Importing this package has no side effects: no client is created, no thread started, no logging
configured.
"""

from __future__ import annotations

from marketplace_entitlement._errors import (
    ClaimMismatchError,
    ConfigurationError,
    EntitlementError,
    InvalidSignatureError,
    MalformedTokenError,
    NotEntitledError,
    RegistrationInterrupted,
    ServiceConfigurationError,
    ServiceUnavailableError,
    VerificationError,
)

__all__ = [
    "ClaimMismatchError",
    "ConfigurationError",
    "EntitlementError",
    "InvalidSignatureError",
    "MalformedTokenError",
    "NotEntitledError",
    "RegistrationInterrupted",
    "ServiceConfigurationError",
    "ServiceUnavailableError",
    "VerificationError",
]

for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
