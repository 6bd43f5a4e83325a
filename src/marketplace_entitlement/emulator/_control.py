"""The control API under ``/_emulator/``: read and change the emulator while it runs (no SigV4).

::

    GET    /_emulator/state          configuration snapshot
    GET    /_emulator/products       configured products
    POST   /_emulator/products       {"CODE": "entitled" | {"status": .., "dimensions": [..]}}
    PUT    /_emulator/products/CODE  {"status": "not_entitled", "dimensions": [...]}
    DELETE /_emulator/products/CODE
                                     (statuses: entitled, not_entitled, platform_not_supported,
                                     invalid)
    PUT    /_emulator/settings       {"region": .., "claim_casing": .., "disabled_operations": [],
                                      "entitlement_check": "first-call" | "every-call"}
    GET    /_emulator/faults
    POST   /_emulator/faults         {"spec": "RegisterUsage:drop:count=1"} or a fault's fields
    DELETE /_emulator/faults
    GET    /_emulator/rate-limits
    PUT    /_emulator/rate-limits    {"RegisterUsage": 2, "MeterUsage": null}
    GET    /_emulator/metered        every accepted MeterUsage record (task, hour, quantity, ...)
    GET    /_emulator/batch-metered  every accepted BatchMeterUsage record (customer, quantity, ...)
    GET    /_emulator/requests[?operation=RegisterUsage]
    DELETE /_emulator/requests
    GET    /_emulator/customers
    POST   /_emulator/customers      {"product_code": .., "expired": false} -> 201
    GET    /_emulator/keys/N         {"version": N, "public_key_pem": .., "public_key_file": ..}
    POST   /_emulator/keys/N/expire  {"at": EPOCH} (optional body)
    POST   /_emulator/reset
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from marketplace_entitlement.emulator._faults import (
    FaultSpecError,
    fault_from_mapping,
    parse_fault_spec,
)

if TYPE_CHECKING:
    from marketplace_entitlement.emulator._emulator import Emulator

Answer = tuple[int, object]


class _ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        raise _ControlError(400, "the body must be JSON") from None
    if not isinstance(data, dict):
        raise _ControlError(400, "the body must be a JSON object")
    return data


def _set_products(emulator: Emulator, body: bytes) -> Answer:
    for code, value in _object(body).items():
        if isinstance(value, str):
            emulator.set_product(code, value)
        elif isinstance(value, dict):
            emulator.set_product(code, str(value.get("status")), dimensions=value.get("dimensions"))
        else:
            raise _ControlError(400, f"product {code}: give a status or an object")
    return 200, emulator.products()


def _put_product(emulator: Emulator, code: str, body: bytes) -> Answer:
    data = _object(body)
    emulator.set_product(code, str(data.get("status")), dimensions=data.get("dimensions"))
    return 200, emulator.products()


def _settings(emulator: Emulator, body: bytes) -> Answer:
    data = _object(body)
    if "region" in data:
        emulator.set_region(data["region"])
    if "claim_casing" in data:
        emulator.set_claim_casing(str(data["claim_casing"]))
    if "disabled_operations" in data:
        emulator.set_disabled_operations(data["disabled_operations"] or [])
    if "entitlement_check" in data:
        emulator.set_entitlement_check(str(data["entitlement_check"]))
    return 200, emulator.state()


def _add_fault(emulator: Emulator, body: bytes) -> Answer:
    data = _object(body)
    if "spec" in data:
        fault = emulator.add_fault(parse_fault_spec(str(data["spec"]), default_seed=None))
    else:
        fault = emulator.add_fault(fault_from_mapping(data))
    return 201, fault.describe()


def _rate_limits(emulator: Emulator, body: bytes) -> Answer:
    for operation, rate in _object(body).items():
        emulator.set_rate_limit(operation, None if rate is None else float(rate))
    return 200, emulator.rate_limits()


def _create_customer(emulator: Emulator, body: bytes) -> Answer:
    data = _object(body)
    if not data.get("product_code"):
        raise _ControlError(400, "product_code is required")
    customer = emulator.create_customer(
        str(data["product_code"]),
        customer_identifier=data.get("customer_identifier"),
        aws_account_id=data.get("aws_account_id"),
        license_arn=data.get("license_arn"),
        expired=bool(data.get("expired", False)),
        subscribed=bool(data.get("subscribed", True)),
        new_integration=bool(data.get("new_integration", False)),
        agreement_id=data.get("agreement_id"),
    )
    return 201, customer.to_json()


def _key(emulator: Emulator, version: int, action: str | None, method: str, body: bytes) -> Answer:
    if version not in emulator.key_versions:
        raise _ControlError(404, f"unknown key version {version}")
    if action is None and method == "GET":
        return 200, {
            "version": version,
            "public_key_pem": emulator.public_key_pem(version).decode(),
            "public_key_file": str(emulator.public_key_file_for(version)),
        }
    if action == "expire" and method == "POST":
        at = _object(body).get("at")
        emulator.expire_key(version, None if at is None else float(at))
        return 200, emulator.state()["expired_keys"]
    raise _ControlError(405, f"{method} is not allowed here")


def _route(emulator: Emulator, method: str, target: str, body: bytes) -> Answer:  # noqa: PLR0911, PLR0912
    split = urlsplit(target)
    parts = [unquote(part) for part in split.path.split("/")[2:] if part]
    query = parse_qs(split.query)
    resource = parts[0] if parts else ""
    rest = parts[1:]
    route = (method, resource, len(rest))
    if route == ("GET", "state", 0):
        return 200, emulator.state()
    if route == ("POST", "reset", 0):
        emulator.reset()
        return 200, emulator.state()
    if resource == "products":
        if route == ("GET", "products", 0):
            return 200, emulator.products()
        if route in {("POST", "products", 0), ("PUT", "products", 0)}:
            return _set_products(emulator, body)
        if route == ("PUT", "products", 1):
            return _put_product(emulator, rest[0], body)
        if route == ("DELETE", "products", 1):
            emulator.remove_product(rest[0])
            return 200, emulator.products()
    if route == ("PUT", "settings", 0):
        return _settings(emulator, body)
    if resource == "faults" and not rest:
        if method == "GET":
            return 200, emulator.faults()
        if method == "POST":
            return _add_fault(emulator, body)
        if method == "DELETE":
            emulator.clear_faults()
            return 200, emulator.faults()
    if resource == "rate-limits" and not rest:
        if method == "GET":
            return 200, emulator.rate_limits()
        if method in {"PUT", "POST"}:
            return _rate_limits(emulator, body)
    if route == ("GET", "metered", 0):
        return 200, emulator.metered()
    if route == ("GET", "batch-metered", 0):
        return 200, emulator.batch_metered()
    if resource == "requests" and not rest:
        if method == "GET":
            operation = query.get("operation", [None])[0]
            return 200, [entry.to_json() for entry in emulator.requests(operation)]
        if method == "DELETE":
            emulator.clear_requests()
            return 200, []
    if resource == "customers" and not rest:
        if method == "GET":
            return 200, [customer.to_json() for customer in emulator.customers()]
        if method == "POST":
            return _create_customer(emulator, body)
    if resource == "keys" and 1 <= len(rest) <= 2 and rest[0].isdigit():
        return _key(emulator, int(rest[0]), rest[1] if len(rest) == 2 else None, method, body)
    raise _ControlError(404, f"no control endpoint {method} {split.path}")


def make_control_handler(emulator: Emulator) -> Callable[[str, str, bytes], Answer]:
    """Return the function the HTTP handler calls for ``/_emulator/...`` requests."""

    def handle(method: str, target: str, body: bytes) -> Answer:
        try:
            return _route(emulator, method, target, body)
        except _ControlError as error:
            return error.status, {"error": error.message}
        except (FaultSpecError, ValueError, TypeError, KeyError) as error:
            return 400, {"error": str(error)}

    return handle
