"""Validation of request bodies against the botocore service model, as AWS's front end does it."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, cast

from marketplace_entitlement.emulator._errors import SERIALIZATION, VALIDATION, ServiceError

SERVICE_NAME: Final = "meteringmarketplace"
OPERATIONS: Final = ("BatchMeterUsage", "MeterUsage", "RegisterUsage", "ResolveCustomer")

JsonObject = dict[str, Any]
MAX_SHOWN_VALUE: Final = 128  # a ValidationException never echoes a huge value back whole


@functools.cache
def load_service_model() -> Mapping[str, Any]:
    """Load (once) the Metering Service's model from the installed botocore."""
    from botocore.loaders import Loader  # noqa: PLC0415  (slow import: load lazily)

    model: Mapping[str, Any] = Loader().load_service_model(SERVICE_NAME, "service-2")
    return model


@functools.cache
def _pattern(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _lower_first(name: str) -> str:
    return name[:1].lower() + name[1:]


@dataclass
class _Validation:
    """Collects constraint violations; type mismatches are raised at once (they abort parsing)."""

    shapes: Mapping[str, Any]
    problems: list[str] = field(default_factory=list)

    def check(self, value: object, shape_name: str, path: str) -> None:
        shape = self.shapes[shape_name]
        kind = shape["type"]
        checker = getattr(self, f"_check_{kind}", None)
        if checker is None:
            raise ServiceError(SERIALIZATION, f"Unsupported shape type {kind!r} at {path!r}")
        checker(value, shape, path)

    def _fail(self, value: object, path: str, constraint: str) -> None:
        shown = value if isinstance(value, (str, int, float)) else "..."
        if isinstance(shown, str) and len(shown) > MAX_SHOWN_VALUE:
            shown = shown[:MAX_SHOWN_VALUE] + f"...({len(shown)} characters)"
        self.problems.append(
            f"Value '{shown}' at '{path}' failed to satisfy constraint: {constraint}"
        )

    @staticmethod
    def _type_error(path: str, expected: str) -> ServiceError:
        return ServiceError(SERIALIZATION, f"Expected {expected} at '{path}'")

    def _check_structure(self, value: object, shape: Mapping[str, Any], path: str) -> None:
        if not isinstance(value, dict):
            raise self._type_error(path or "input", "a structure (JSON object)")
        members: Mapping[str, Any] = shape.get("members", {})
        for name in shape.get("required", ()):
            if value.get(name) is None:
                self._fail(None, self._join(path, name), "Member must not be null")
        for name, member in members.items():
            if value.get(name) is not None:
                self.check(value[name], member["shape"], self._join(path, name))

    @staticmethod
    def _join(path: str, name: str) -> str:
        return f"{path}.{_lower_first(name)}" if path else _lower_first(name)

    def _check_list(self, value: object, shape: Mapping[str, Any], path: str) -> None:
        if not isinstance(value, list):
            raise self._type_error(path, "a list (JSON array)")
        self._check_length(value, len(value), shape, path)
        for index, item in enumerate(value, start=1):
            self.check(item, shape["member"]["shape"], f"{path}.{index}.member")

    def _check_map(self, value: object, shape: Mapping[str, Any], path: str) -> None:
        if not isinstance(value, dict):
            raise self._type_error(path, "a map (JSON object)")
        self._check_length(value, len(value), shape, path)
        for key, item in value.items():
            self.check(key, shape["key"]["shape"], f"{path}.key")
            self.check(item, shape["value"]["shape"], f"{path}.{key}")

    def _check_length(self, value: object, size: int, shape: Mapping[str, Any], path: str) -> None:
        if "min" in shape and size < shape["min"]:
            self._fail(
                value, path, f"Member must have length greater than or equal to {shape['min']}"
            )
        if "max" in shape and size > shape["max"]:
            self._fail(value, path, f"Member must have length less than or equal to {shape['max']}")

    def _check_string(self, value: object, shape: Mapping[str, Any], path: str) -> None:
        if not isinstance(value, str):
            raise self._type_error(path, "a string")
        self._check_length(value, len(value), shape, path)
        if "pattern" in shape and _pattern(shape["pattern"]).fullmatch(value) is None:
            self._fail(
                value, path, f"Member must satisfy regular expression pattern: {shape['pattern']}"
            )
        if "enum" in shape and value not in shape["enum"]:
            self._fail(value, path, f"Member must satisfy enum value set: {shape['enum']}")

    def _check_integer(self, value: object, shape: Mapping[str, Any], path: str) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._type_error(path, "an integer")
        if "min" in shape and value < shape["min"]:
            self._fail(
                value, path, f"Member must have value greater than or equal to {shape['min']}"
            )
        if "max" in shape and value > shape["max"]:
            self._fail(value, path, f"Member must have value less than or equal to {shape['max']}")

    _check_long = _check_integer

    def _check_boolean(self, value: object, shape: Mapping[str, Any], path: str) -> None:
        if not isinstance(value, bool):
            raise self._type_error(path, "a boolean")

    def _check_timestamp(self, value: object, shape: Mapping[str, Any], path: str) -> None:
        # JSON 1.1 sends timestamps as epoch seconds (a JSON number).
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self._type_error(path, "a timestamp (epoch seconds as a JSON number)")

    def _check_double(self, value: object, shape: Mapping[str, Any], path: str) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self._type_error(path, "a number")

    _check_float = _check_double


def validate_input(operation: str, body: object) -> JsonObject:
    """Check ``body`` against ``operation``'s input shape; return it, or raise ``ServiceError``.

    Violations of constraints (required members, lengths, patterns, ranges, enums) answer
    ``ValidationException`` with every violation listed, the way AWS's front end does; values of
    the wrong JSON type answer ``SerializationException``.
    """
    model = load_service_model()
    input_shape = model["operations"][operation]["input"]["shape"]
    validation = _Validation(model["shapes"])
    validation.check(body, input_shape, "")
    if validation.problems:
        count = len(validation.problems)
        noun = "error" if count == 1 else "errors"
        raise ServiceError(
            VALIDATION, f"{count} validation {noun} detected: " + "; ".join(validation.problems)
        )
    return cast("JsonObject", body)  # the structure check above proved it is a dict


def has_member(shape_name: str, member: str) -> bool:
    """Tell whether the installed model's ``shape_name`` has ``member`` (models gain members)."""
    return member in load_service_model()["shapes"][shape_name].get("members", {})
