"""Prove a paid AWS Marketplace container is entitled at startup; keep Metering informed.

Importing this package has no side effects: no client is created, no thread started, no logging
configured.
"""

from __future__ import annotations

from marketplace_entitlement._errors import (
    ClaimMismatchError,
    ConfigurationError,
    EntitlementError,
    ExpiredRegistrationTokenError,
    InvalidRegistrationTokenError,
    InvalidSignatureError,
    MalformedTokenError,
    NotEntitledError,
    RegistrationInterrupted,
    RegistrationTokenError,
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
from marketplace_entitlement.saas._customer import SaasCustomer
from marketplace_entitlement.saas._fulfillment import (
    FulfillmentASGI,
    FulfillmentResponse,
    FulfillmentWSGI,
    handle_fulfillment,
)
from marketplace_entitlement.saas._reporter import UsageReporter
from marketplace_entitlement.saas._resolve import resolve_customer
from marketplace_entitlement.saas._sender import HeldRecord, SendResult

__all__ = [
    "ClaimMismatchError",
    "ConfigurationError",
    "Entitlement",
    "EntitlementError",
    "ExpiredRegistrationTokenError",
    "FulfillmentASGI",
    "FulfillmentResponse",
    "FulfillmentWSGI",
    "HeldRecord",
    "InvalidRegistrationTokenError",
    "InvalidSignatureError",
    "MalformedTokenError",
    "Metering",
    "MeteringEntitlement",
    "NotEntitledError",
    "RegistrationInterrupted",
    "RegistrationTokenError",
    "Reregistration",
    "SaasCustomer",
    "SendResult",
    "ServiceConfigurationError",
    "ServiceUnavailableError",
    "Settings",
    "UsageRecordError",
    "UsageReporter",
    "VerificationError",
    "__version__",
    "check_entitlement",
    "handle_fulfillment",
    "load_settings",
    "record_usage",
    "require_entitlement",
    "resolve_customer",
    "start_metering",
    "start_reregistration",
]

for _name in __all__:
    if _name != "__version__":
        globals()[_name].__module__ = __name__
del _name
