"""The exceptions the entitlement gate raises, and the one table that maps them to exit codes.

::

    EntitlementError                      (root; never raised itself)
    ├── ConfigurationError                78  .variable
    │   └── ServiceConfigurationError     78  .aws_error_code  (the service refused our settings)
    ├── NotEntitledError                  77  .aws_error_code
    ├── ServiceUnavailableError           69  .aws_error_code, .attempts
    ├── VerificationError                 65
    │   ├── MalformedTokenError           65  (not a JWT, not PS256, unreadable claims)
    │   ├── InvalidSignatureError         65  (signature does not verify with the configured key)
    │   └── ClaimMismatchError            65  .claim, .expected, .actual
    ├── RegistrationInterrupted           128+N  .signum (a shutdown was requested while waiting)
    ├── RegistrationTokenError            65  .aws_error_code  (SaaS: ResolveCustomer refused the token)
    │   ├── InvalidRegistrationTokenError 65  (not a token AWS Marketplace issued)
    │   └── ExpiredRegistrationTokenError 65  (the buyer took too long; send them back to AWS)
    └── CommandError                      .command  (``run`` could not start CMD)
        ├── CommandNotFound               127
        └── CommandNotExecutable          126
"""

from __future__ import annotations

from typing import Final

from marketplace_entitlement import _exit_codes


class EntitlementError(Exception):
    """Root of every error this package raises; ``exit_code`` is what ``run``/``check`` exit with.

    ``hint`` is the one line a person can act on (what failed, and what to set or check).
    """

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    @property
    def exit_code(self) -> int:
        """The documented exit code of this failure (docs/exit-codes.md)."""
        return exit_code_for(self)

    def refusal_line(self) -> str:
        """The message and its hint as one line."""
        return f"{self.message}; {self.hint}" if self.hint else self.message


class ConfigurationError(EntitlementError):
    """A setting is missing or invalid; ``variable`` names the environment variable involved."""

    def __init__(self, message: str, *, variable: str | None = None, hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.variable = variable


class ServiceConfigurationError(ConfigurationError):
    """The Metering Service refused our settings (product code, region, key version, API off)."""

    def __init__(
        self, message: str, *, aws_error_code: str, variable: str | None = None, hint: str = ""
    ) -> None:
        super().__init__(message, variable=variable, hint=hint)
        self.aws_error_code = aws_error_code


class NotEntitledError(EntitlementError):
    """The buyer is not entitled, or the platform is not one RegisterUsage supports."""

    def __init__(self, message: str, *, aws_error_code: str, hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.aws_error_code = aws_error_code


class ServiceUnavailableError(EntitlementError):
    """Throttling, server errors or network failures lasted for the whole register timeout."""

    def __init__(
        self, message: str, *, aws_error_code: str | None, attempts: int, hint: str = ""
    ) -> None:
        super().__init__(message, hint=hint)
        self.aws_error_code = aws_error_code
        self.attempts = attempts


class VerificationError(EntitlementError):
    """The returned Signature could not be verified."""


class MalformedTokenError(VerificationError):
    """The Signature is not a well-formed PS256 JWT with readable claims."""


class InvalidSignatureError(VerificationError):
    """The Signature does not verify with the configured public key."""


class ClaimMismatchError(VerificationError):
    """A claim is missing or differs from what was sent; ``claim`` names it."""

    def __init__(
        self, message: str, *, claim: str, expected: object, actual: object, hint: str = ""
    ) -> None:
        super().__init__(message, hint=hint)
        self.claim = claim
        self.expected = expected
        self.actual = actual


class RegistrationInterrupted(EntitlementError):
    """A shutdown was requested (signal ``signum``, or 0 when none) before registration finished."""

    def __init__(self, message: str, *, signum: int = 0) -> None:
        super().__init__(message)
        self.signum = signum


class RegistrationTokenError(EntitlementError):
    """SaaS: ResolveCustomer refused the registration token a buyer's browser posted."""

    def __init__(self, message: str, *, aws_error_code: str, hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.aws_error_code = aws_error_code


class InvalidRegistrationTokenError(RegistrationTokenError):
    """The token is not one AWS Marketplace issued (``InvalidTokenException``)."""


class ExpiredRegistrationTokenError(RegistrationTokenError):
    """The token has expired (``ExpiredTokenException``): the buyer must start again from AWS."""


class CommandError(EntitlementError):
    """``run`` could not start CMD; ``command`` names it."""

    def __init__(self, message: str, *, command: str, hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.command = command


class CommandNotFound(CommandError):
    """CMD is not a file, nor found on PATH (exit 127)."""


class CommandNotExecutable(CommandError):
    """CMD exists but the kernel refused to execute it (exit 126)."""


# The one table: most specific class first is not needed, lookup walks the MRO.
EXIT_CODES: Final[dict[type[EntitlementError], int]] = {
    ConfigurationError: _exit_codes.CONFIGURATION,
    NotEntitledError: _exit_codes.NOT_ENTITLED,
    ServiceUnavailableError: _exit_codes.SERVICE_UNAVAILABLE,
    VerificationError: _exit_codes.VERIFICATION_FAILED,
    RegistrationTokenError: _exit_codes.VERIFICATION_FAILED,
    CommandNotFound: _exit_codes.NOT_FOUND,
    CommandNotExecutable: _exit_codes.CANNOT_EXECUTE,
    CommandError: _exit_codes.CANNOT_EXECUTE,
}


def exit_code_for(error: EntitlementError) -> int:
    """Map an error to its exit code through ``EXIT_CODES`` (walking the class hierarchy)."""
    if isinstance(error, RegistrationInterrupted):
        return _exit_codes.for_signal(error.signum) if error.signum else _exit_codes.SIGNAL_BASE
    for cls in type(error).__mro__:
        code = EXIT_CODES.get(cls)
        if code is not None:
            return code
    return _exit_codes.CONFIGURATION
