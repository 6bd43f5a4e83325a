"""Prove a paid AWS Marketplace container is entitled at startup; keep Metering informed.

Importing this package has no side effects: no client is created, no thread started, no logging
configured. Its public names are loaded on first use (PEP 562), so that the console script can
block signals before botocore and the rest are imported (see ``_boot``).
"""

from __future__ import annotations

import importlib as _importlib
from typing import TYPE_CHECKING

from marketplace_entitlement._version import __version__

if TYPE_CHECKING:
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
    from marketplace_entitlement.entitlement._gate import (
        Entitlement,
        check_entitlement,
        require_entitlement,
    )
    from marketplace_entitlement.entitlement._reregister import (
        Reregistration,
        start_reregistration,
    )
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

# Where each public name lives; loaded on first access and re-exported with ``__module__`` set to
# the package, so tracebacks and reprs show the public path.
_LAZY: dict[str, str] = {
    "ClaimMismatchError": "marketplace_entitlement._errors",
    "ConfigurationError": "marketplace_entitlement._errors",
    "EntitlementError": "marketplace_entitlement._errors",
    "InvalidSignatureError": "marketplace_entitlement._errors",
    "MalformedTokenError": "marketplace_entitlement._errors",
    "NotEntitledError": "marketplace_entitlement._errors",
    "RegistrationInterrupted": "marketplace_entitlement._errors",
    "ServiceConfigurationError": "marketplace_entitlement._errors",
    "ServiceUnavailableError": "marketplace_entitlement._errors",
    "VerificationError": "marketplace_entitlement._errors",
    "Settings": "marketplace_entitlement._settings",
    "load_settings": "marketplace_entitlement._settings",
    "Entitlement": "marketplace_entitlement.entitlement._gate",
    "check_entitlement": "marketplace_entitlement.entitlement._gate",
    "require_entitlement": "marketplace_entitlement.entitlement._gate",
    "Reregistration": "marketplace_entitlement.entitlement._reregister",
    "start_reregistration": "marketplace_entitlement.entitlement._reregister",
    "Metering": "marketplace_entitlement.metering._runtime",
    "MeteringEntitlement": "marketplace_entitlement.metering._gate",
    "UsageRecordError": "marketplace_entitlement.metering._records",
    "record_usage": "marketplace_entitlement.metering._recorder",
    "start_metering": "marketplace_entitlement.metering._runtime",
    "ExpiredRegistrationTokenError": "marketplace_entitlement._errors",
    "InvalidRegistrationTokenError": "marketplace_entitlement._errors",
    "RegistrationTokenError": "marketplace_entitlement._errors",
    "SaasCustomer": "marketplace_entitlement.saas._customer",
    "FulfillmentASGI": "marketplace_entitlement.saas._fulfillment",
    "FulfillmentResponse": "marketplace_entitlement.saas._fulfillment",
    "FulfillmentWSGI": "marketplace_entitlement.saas._fulfillment",
    "handle_fulfillment": "marketplace_entitlement.saas._fulfillment",
    "UsageReporter": "marketplace_entitlement.saas._reporter",
    "resolve_customer": "marketplace_entitlement.saas._resolve",
    "HeldRecord": "marketplace_entitlement.saas._sender",
    "SendResult": "marketplace_entitlement.saas._sender",
}


def __getattr__(name: str) -> object:
    """Load a public name on first access (PEP 562) and cache it in the package namespace."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    value.__module__ = __name__
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The public names, loaded or not, plus what the namespace holds already."""
    return sorted(set(globals()) | set(_LAZY))


del TYPE_CHECKING  # only for the type checker; not a public name
