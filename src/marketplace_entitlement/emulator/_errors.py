"""The error answers the emulated service sends, as one exception type the handlers raise."""

from __future__ import annotations

from typing import Final

# HTTP status of every modelled error, except the one the model marks as a server fault.
CLIENT_ERROR_STATUS: Final = 400
SERVER_ERROR_STATUS: Final = 500

INTERNAL_SERVICE_ERROR: Final = "InternalServiceErrorException"
THROTTLING: Final = "ThrottlingException"
# Not in the service model's error lists: these come from AWS's front end (authentication,
# routing, deserialization and model validation happen before the service itself is reached).
VALIDATION: Final = "ValidationException"
SERIALIZATION: Final = "SerializationException"
UNKNOWN_OPERATION: Final = "UnknownOperationException"
MISSING_AUTHENTICATION_TOKEN: Final = "MissingAuthenticationTokenException"  # noqa: S105  (an error name)
INVALID_SIGNATURE: Final = "InvalidSignatureException"
UNRECOGNIZED_CLIENT: Final = "UnrecognizedClientException"
# MeterUsage's DryRun answers with this error when the caller would have been allowed.
DRY_RUN_OPERATION: Final = "DryRunOperation"


def default_status(error_type: str) -> int:
    """Return the HTTP status AWS uses for ``error_type`` (500 only for the internal error)."""
    return SERVER_ERROR_STATUS if error_type == INTERNAL_SERVICE_ERROR else CLIENT_ERROR_STATUS


class ServiceError(Exception):
    """An error answer: ``{"__type": error_type, "message": message}`` with HTTP ``status``."""

    def __init__(self, error_type: str, message: str, *, status: int | None = None) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message
        self.status = default_status(error_type) if status is None else status
