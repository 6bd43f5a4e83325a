"""Prove a paid AWS Marketplace container is entitled at startup; keep Metering informed.

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
from marketplace_entitlement._settings import Settings, load_settings
from marketplace_entitlement._version import __version__
from marketplace_entitlement.entitlement._gate import (
    Entitlement,
    check_entitlement,
    require_entitlement,
)
from marketplace_entitlement.entitlement._reregister import Reregistration, start_reregistration
from marketplace_entitlement.metering._gate import MeteringEntitlement
from marketplace_entitlement.metering._recorder import record_usage
from marketplace_entitlement.metering._records import UsageRecordError
from marketplace_entitlement.metering._runtime import Metering, start_metering

__all__ = [
    "ClaimMismatchError",
    "ConfigurationError",
    "Entitlement",
    "EntitlementError",
    "InvalidSignatureError",
    "MalformedTokenError",
    "Metering",
    "MeteringEntitlement",
    "NotEntitledError",
    "RegistrationInterrupted",
    "Reregistration",
    "ServiceConfigurationError",
    "ServiceUnavailableError",
    "Settings",
    "UsageRecordError",
    "VerificationError",
    "__version__",
    "check_entitlement",
    "load_settings",
    "record_usage",
    "require_entitlement",
    "start_metering",
    "start_reregistration",
]

for _name in __all__:
    if _name != "__version__":
        globals()[_name].__module__ = __name__
del _name
