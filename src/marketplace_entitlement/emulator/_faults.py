"""Injected faults: what goes wrong, for which operation, how often, and the spec syntax for them.

A fault spec is ``OPERATION:KIND[=VALUE][:KEY=VALUE]...``, for example::

    RegisterUsage:error=ThrottlingException:count=3
    MeterUsage:error=InternalServiceErrorException:probability=0.25:seed=7
    *:delay=2.5:count=1
    ResolveCustomer:drop
    BatchMeterUsage:unprocessed:count=2

``OPERATION`` is one of the four operations or ``*`` (any). ``KIND`` is ``error`` (VALUE: the
``__type``), ``delay`` (VALUE: seconds), ``drop``, ``malformed``, ``truncated``, ``unprocessed``
or ``trickle`` (VALUE: seconds between bytes: the real answer, sent one byte at a time, so that
no single read ever times out: ``RegisterUsage:trickle=0.5``).
Keys: ``count`` (the next N matching calls), ``probability`` (0..1, each matching call),
``seed`` (for probability), ``status`` (HTTP status), ``message``. With neither count nor
probability a fault applies to every matching call until cleared.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from marketplace_entitlement.emulator._errors import INTERNAL_SERVICE_ERROR, default_status
from marketplace_entitlement.emulator._model import OPERATIONS

ANY_OPERATION: Final = "*"
FAULT_KINDS: Final = (
    "delay", "drop", "error", "malformed", "trickle", "truncated", "unprocessed",
)  # fmt: skip
_VALUE_KINDS: Final = {"error": "error", "delay": "delay", "trickle": "delay"}


class FaultSpecError(ValueError):
    """A fault description that cannot be used; the message says what is wrong."""


@dataclass
class Fault:
    """One injected fault; ``remaining`` counts down when ``count`` was given."""

    operation: str
    kind: str
    count: int | None = None
    probability: float | None = None
    seed: int | None = None
    error: str | None = None
    status: int | None = None
    message: str | None = None
    delay: float | None = None
    remaining: int | None = field(default=None, init=False)
    _rng: random.Random | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.operation != ANY_OPERATION and self.operation not in OPERATIONS:
            raise FaultSpecError(f"unknown operation {self.operation!r} (one of {OPERATIONS} or *)")
        if self.kind not in FAULT_KINDS:
            raise FaultSpecError(f"unknown fault kind {self.kind!r} (one of {FAULT_KINDS})")
        if self.kind == "unprocessed" and self.operation != "BatchMeterUsage":
            raise FaultSpecError("the unprocessed fault applies to BatchMeterUsage only")
        if self.kind in ("delay", "trickle") and (self.delay is None or self.delay < 0):
            raise FaultSpecError(f"a {self.kind} fault needs delay=SECONDS (>= 0)")
        if self.kind == "error" and not self.error:
            self.error = INTERNAL_SERVICE_ERROR
        if self.count is not None and self.count < 1:
            raise FaultSpecError("count must be >= 1")
        if self.probability is not None and not 0.0 <= self.probability <= 1.0:
            raise FaultSpecError("probability must be between 0 and 1")
        if self.status is not None and not 100 <= self.status <= 599:
            raise FaultSpecError("status must be an HTTP status (100..599)")
        self.remaining = self.count
        if self.probability is not None:
            self._rng = random.Random(self.seed)

    @property
    def http_status(self) -> int:
        """The status to answer with: the given one, else AWS's for the error, else 200."""
        if self.status is not None:
            return self.status
        if self.kind == "error" and self.error:
            return default_status(self.error)
        return 200

    def fires(self) -> bool:
        """Decide (and count) whether this fault applies to the current call."""
        if self.remaining is not None and self.remaining <= 0:
            return False
        if self._rng is not None and self._rng.random() >= (self.probability or 0.0):
            return False
        if self.remaining is not None:
            self.remaining -= 1
        return True

    @property
    def exhausted(self) -> bool:
        """True once a counted fault has fired ``count`` times."""
        return self.remaining is not None and self.remaining <= 0

    def describe(self) -> dict[str, Any]:
        """Return a JSON-ready description (what the control API shows)."""
        return {
            "operation": self.operation,
            "kind": self.kind,
            "count": self.count,
            "remaining": self.remaining,
            "probability": self.probability,
            "seed": self.seed,
            "error": self.error,
            "status": self.http_status,
            "message": self.message,
            "delay": self.delay,
        }


def _number(key: str, text: str, kind: type[int] | type[float]) -> float:
    try:
        return kind(text)
    except ValueError:
        raise FaultSpecError(f"{key} must be a number, not {text!r}") from None


def fault_from_mapping(data: Mapping[str, Any], *, default_seed: int | None = None) -> Fault:
    """Build a ``Fault`` from a JSON object (the control API's body) or a parsed spec."""
    known = {
        "operation",
        "kind",
        "count",
        "probability",
        "seed",
        "error",
        "status",
        "message",
        "delay",
    }
    unknown = sorted(set(data) - known)
    if unknown:
        raise FaultSpecError(f"unknown fault field(s): {', '.join(unknown)}")
    if "operation" not in data or "kind" not in data:
        raise FaultSpecError("a fault needs an operation and a kind")
    try:
        return Fault(
            operation=str(data["operation"]),
            kind=str(data["kind"]),
            count=None if data.get("count") is None else int(data["count"]),
            probability=None if data.get("probability") is None else float(data["probability"]),
            seed=default_seed if data.get("seed") is None else int(data["seed"]),
            error=None if data.get("error") is None else str(data["error"]),
            status=None if data.get("status") is None else int(data["status"]),
            message=None if data.get("message") is None else str(data["message"]),
            delay=None if data.get("delay") is None else float(data["delay"]),
        )
    except (TypeError, ValueError) as error:
        if isinstance(error, FaultSpecError):
            raise
        raise FaultSpecError(f"invalid fault: {error}") from error


def parse_fault_spec(spec: str, *, default_seed: int | None = None) -> Fault:
    """Parse ``OPERATION:KIND[=VALUE][:KEY=VALUE]...`` (see the module docstring)."""
    parts = spec.strip().split(":")
    if len(parts) < 2:
        raise FaultSpecError(f"fault spec {spec!r} needs at least OPERATION:KIND")
    operation, kind_part, *options = parts
    kind, _, value = kind_part.partition("=")
    data: dict[str, Any] = {"operation": operation, "kind": kind}
    if value:
        if kind not in _VALUE_KINDS:
            raise FaultSpecError(f"fault kind {kind!r} takes no value")
        data[_VALUE_KINDS[kind]] = value
    numbers: dict[str, type[int] | type[float]] = {
        "count": int,
        "probability": float,
        "seed": int,
        "status": int,
        "delay": float,
    }
    for option in options:
        key, sep, text = option.partition("=")
        if not sep:
            raise FaultSpecError(f"fault option {option!r} must be KEY=VALUE")
        if key in numbers:
            data[key] = _number(key, text, numbers[key])
        elif key in {"message", "error"}:
            data[key] = text
        else:
            raise FaultSpecError(f"unknown fault option {key!r}")
    if kind in ("delay", "trickle") and "delay" in data:
        data["delay"] = _number("delay", str(data["delay"]), float)
    return fault_from_mapping(data, default_seed=default_seed)


class FaultTable:
    """The faults in force, checked in the order they were added; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        """Put ``fault`` in force after those already there."""
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        """Remove every fault."""
        with self._lock:
            self._faults.clear()

    def take(self, operation: str) -> Fault | None:
        """Return the first fault that fires for ``operation``, counting it; drop spent ones."""
        with self._lock:
            for fault in self._faults:
                if fault.operation in (operation, ANY_OPERATION) and fault.fires():
                    if fault.exhausted:
                        self._faults.remove(fault)
                    return fault
            return None

    def describe(self) -> list[dict[str, Any]]:
        """Return the faults in force, JSON-ready."""
        with self._lock:
            return [fault.describe() for fault in self._faults]
