"""``Emulator``: the Metering Service on a free loopback port, in a background thread."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from marketplace_entitlement.emulator._control import make_control_handler
from marketplace_entitlement.emulator._faults import Fault, FaultTable, parse_fault_spec
from marketplace_entitlement.emulator._keys import KeyRing, PrivateKeyInput, private_key_pem
from marketplace_entitlement.emulator._limits import RateLimiter
from marketplace_entitlement.emulator._model import OPERATIONS
from marketplace_entitlement.emulator._operations import (
    ENTITLEMENT_CHECKS,
    EntitlementCheck,
    MeteringService,
    Product,
    ServiceState,
    TokenFactory,
    new_customer,
)
from marketplace_entitlement.emulator._server import CONTROL_PREFIX, Backend, EmulatorHTTPServer
from marketplace_entitlement.emulator._types import (
    ClaimCasing,
    Customer,
    RecordedRequest,
    check_claim_casing,
    check_product_status,
)


def _check_operation(operation: str) -> str:
    if operation not in OPERATIONS:
        raise ValueError(f"unknown operation {operation!r} (one of {', '.join(OPERATIONS)})")
    return operation


class Emulator:
    """A local AWS Marketplace Metering Service; use it as a context manager.

    ``products`` maps product codes to ``"entitled"``, ``"not_entitled"``,
    ``"platform_not_supported"`` or ``"invalid"``; with none, every well-formed code is entitled,
    and with some, RegisterUsage answers any other code as not entitled. ``keys`` maps
    PublicKeyVersions to PEM private keys (default: version 1, generated on first use).
    ``credentials`` maps access key ids to secrets: when given, SigV4 signatures are recomputed
    and checked; otherwise any access key id is accepted. ``rate_limits`` overrides AWS's quotas
    per operation (None or 0: unlimited). ``faults`` are specs or ``Fault`` objects in force from
    the start. Nothing runs until ``start()`` (or ``with``).
    """

    def __init__(
        self,
        *,
        products: Mapping[str, str] | None = None,
        region: str | None = None,
        claim_casing: ClaimCasing = "camel",
        rate_limits: Mapping[str, float | None] | None = None,
        keys: Mapping[int, PrivateKeyInput] | None = None,
        credentials: Mapping[str, str] | None = None,
        disabled_operations: Iterable[str] = (),
        dimensions: Mapping[str, Iterable[str]] | None = None,
        faults: Iterable[Fault | str] = (),
        seed: int | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        key_dir: str | os.PathLike[str] | None = None,
        entitlement_check: str = "first-call",
    ) -> None:
        self._initial_products = {
            code: Product(
                check_product_status(status),
                None
                if dimensions is None or code not in dimensions
                else frozenset(dimensions[code]),
            )
            for code, status in (products or {}).items()
        }
        self._initial_region = region
        self._initial_entitlement_check = check_entitlement_check(entitlement_check)
        self._initial_casing = check_claim_casing(claim_casing)
        self._initial_disabled = {_check_operation(op) for op in disabled_operations}
        self._initial_rate_limits = dict(rate_limits or {})
        for operation in self._initial_rate_limits:
            _check_operation(operation)
        self._fault_specs = list(faults)
        self._seed = seed
        self._address = (host, port)
        self._keys = KeyRing(keys)
        self._key_dir = None if key_dir is None else Path(key_dir)
        self._temp_dir: Path | None = None
        self._state = ServiceState(keys=self._keys)
        self._backend = Backend(
            service=MeteringService(self._state),
            faults=FaultTable(),
            limiter=RateLimiter(self._initial_rate_limits),
            # Kept as given (not copied): a live mapping can name credentials issued later, as
            # an STS stand-in issues them (tests/test_credentials.py).
            credentials=credentials,
        )
        self._server: EmulatorHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._files_lock = threading.Lock()
        self.reset()

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> Emulator:
        """Bind the port and serve in a daemon thread; return self."""
        if self._server is not None:
            raise RuntimeError("the emulator is already started")
        self._server = EmulatorHTTPServer(self._address, self._backend, make_control_handler(self))
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"metering-emulator-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving at once (pending delays are cut short) and remove the temporary key dir."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._backend.stopping.set()
        server.shutdown()
        server.close_connections()
        server.server_close()
        thread.join()
        self._server = self._thread = None
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- where it is ------------------------------------------------------------------------

    @property
    def host(self) -> str:
        """The address the server is bound to."""
        return self._bound()[0]

    @property
    def port(self) -> int:
        """The TCP port the server is bound to."""
        return self._bound()[1]

    def _bound(self) -> tuple[str, int]:
        if self._server is None:
            raise RuntimeError("the emulator is not started; use start() or a with block")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def endpoint(self) -> str:
        """The URL for ``AWS_ENDPOINT_URL_MARKETPLACE_METERING`` / ``endpoint_url``."""
        return f"http://{self.host}:{self.port}"

    @property
    def control_url(self) -> str:
        """The base URL of the control API (``GET {control_url}/state`` and so on)."""
        return self.endpoint + CONTROL_PREFIX.rstrip("/")

    # -- keys -------------------------------------------------------------------------------

    def public_key_pem(self, version: int = 1) -> bytes:
        """The PEM (SubjectPublicKeyInfo) of the public key tokens of ``version`` verify with."""
        return self._keys.public_key_pem(version)

    def private_key_pem(self, version: int = 1) -> bytes:
        """The PEM (PKCS#8) of the private key that signs tokens of ``version``."""
        return private_key_pem(self._keys.private_key(version))

    def private_key(self, version: int = 1) -> RSAPrivateKey:
        """The private key object that signs tokens of ``version``."""
        return self._keys.private_key(version)

    @property
    def key_versions(self) -> tuple[int, ...]:
        """The PublicKeyVersions RegisterUsage accepts."""
        return self._keys.versions()

    @property
    def public_key_file(self) -> Path:
        """A PEM file holding version 1's public key (for ``MARKETPLACE_PUBLIC_KEY_FILE``)."""
        return self.public_key_file_for(1)

    def public_key_file_for(self, version: int) -> Path:
        """Write (once) and return a PEM file holding ``version``'s public key."""
        pem = self.public_key_pem(version)
        with self._files_lock:
            directory = self._key_dir
            if directory is None:
                if self._temp_dir is None:
                    self._temp_dir = Path(tempfile.mkdtemp(prefix="metering-emulator-"))
                directory = self._temp_dir
            directory.mkdir(parents=True, exist_ok=True)
            path = directory / f"public-key-v{version}.pem"
            if not path.exists() or path.read_bytes() != pem:
                path.write_bytes(pem)
            return path

    def add_key(self, version: int, private_key: PrivateKeyInput | None = None) -> None:
        """Accept PublicKeyVersion ``version``, signing with ``private_key`` (or a new key)."""
        self._keys.add(version, private_key)

    def expire_key(self, version: int, at: float | None = None) -> None:
        """Mark ``version`` expired: RegisterUsage then answers ``PublicKeyRotationTimestamp``."""
        self._keys.expire(version, time.time() if at is None else at)

    # -- configuration while running --------------------------------------------------------

    def set_product(
        self, code: str, status: str, *, dimensions: Iterable[str] | None = None
    ) -> None:
        """Configure ``code`` as entitled, not_entitled or platform_not_supported."""
        product = Product(
            check_product_status(status), None if dimensions is None else frozenset(dimensions)
        )
        with self._state.lock:
            self._state.products[code] = product

    def remove_product(self, code: str) -> None:
        """Forget ``code`` (with no products left, every code is entitled again)."""
        with self._state.lock:
            self._state.products.pop(code, None)

    def products(self) -> dict[str, dict[str, Any]]:
        """The configured products: status and dimensions (None: any dimension)."""
        with self._state.lock:
            return {
                code: {
                    "status": product.status,
                    "dimensions": None
                    if product.dimensions is None
                    else sorted(product.dimensions),
                }
                for code, product in sorted(self._state.products.items())
            }

    @property
    def region(self) -> str | None:
        """The emulator's region (None: any region is accepted)."""
        return self._state.region

    def set_region(self, region: str | None) -> None:
        """Change the region RegisterUsage must be signed for (None: any)."""
        with self._state.lock:
            self._state.region = region

    @property
    def claim_casing(self) -> ClaimCasing:
        """``camel`` (productCode, ...) or ``pascal`` (ProductCode, ...) token claims."""
        return self._state.claim_casing

    def set_claim_casing(self, casing: str) -> None:
        """Sign later tokens with ``camel`` or ``pascal`` claim names."""
        checked = check_claim_casing(casing)
        with self._state.lock:
            self._state.claim_casing = checked

    @property
    def entitlement_check(self) -> str:
        """``first-call`` (as AWS: entitlement errors only on a task's initial call) or ``every-call``."""
        return self._state.entitlement_check

    def set_entitlement_check(self, mode: str) -> None:
        """Answer Register/MeterUsage's entitlement errors on a task's first call only, or on every call."""
        checked = check_entitlement_check(mode)
        with self._state.lock:
            self._state.entitlement_check = checked

    def forget_tasks(self) -> None:
        """Forget which tasks called: each one's next RegisterUsage or MeterUsage is a first call again."""
        with self._state.lock:
            self._state.registered_tasks.clear()

    def set_disabled_operations(self, operations: Iterable[str]) -> None:
        """Answer ``DisabledApiException`` to exactly these operations."""
        disabled = {_check_operation(op) for op in operations}
        with self._state.lock:
            self._state.disabled_operations = disabled

    @property
    def disabled_operations(self) -> frozenset[str]:
        """The operations answered with ``DisabledApiException``."""
        return frozenset(self._state.disabled_operations)

    def set_token_factory(self, factory: TokenFactory | None) -> None:
        """Answer ``factory(claims, private_key)`` as RegisterUsage's Signature (None: normal)."""
        with self._state.lock:
            self._state.token_factory = factory

    def inject_fault(
        self,
        operation: str,
        kind: str,
        *,
        count: int | None = None,
        probability: float | None = None,
        seed: int | None = None,
        error: str | None = None,
        status: int | None = None,
        delay: float | None = None,
        message: str | None = None,
    ) -> Fault:
        """Put a fault in force for ``operation`` (or ``"*"``); see ``Fault`` for the kinds."""
        fault = Fault(
            operation=operation,
            kind=kind,
            count=count,
            probability=probability,
            seed=self._seed if seed is None else seed,
            error=error,
            status=status,
            delay=delay,
            message=message,
        )
        self._backend.faults.add(fault)
        return fault

    def add_fault(self, fault: Fault | str) -> Fault:
        """Put a ``Fault`` or a spec (``RegisterUsage:error=ThrottlingException``) in force."""
        if isinstance(fault, str):
            fault = parse_fault_spec(fault, default_seed=self._seed)
        self._backend.faults.add(fault)
        return fault

    def clear_faults(self) -> None:
        """Remove every injected fault."""
        self._backend.faults.clear()

    def faults(self) -> list[dict[str, Any]]:
        """The faults in force, JSON-ready."""
        return self._backend.faults.describe()

    def set_rate_limit(self, operation: str, per_second: float | None) -> None:
        """Limit ``operation`` to ``per_second`` calls with a one-second burst (None or 0: off)."""
        self._backend.limiter.set(_check_operation(operation), per_second)

    def rate_limits(self) -> dict[str, float | None]:
        """The operations that are rate limited, with their rates."""
        return self._backend.limiter.limits()

    # -- customers and records --------------------------------------------------------------

    def create_customer(
        self,
        product_code: str,
        *,
        customer_identifier: str | None = None,
        aws_account_id: str | None = None,
        license_arn: str | None = None,
        expired: bool = False,
        subscribed: bool = True,
        new_integration: bool = False,
        agreement_id: str | None = None,
    ) -> Customer:
        """Create a SaaS customer; its ``registration_token`` is what ResolveCustomer resolves.

        ``new_integration`` makes a customer of a Concurrent Agreements integration: no
        CustomerIdentifier, named by ``aws_account_id`` + ``license_arn`` only.
        """
        customer = new_customer(
            product_code,
            customer_identifier=customer_identifier,
            aws_account_id=aws_account_id,
            license_arn=license_arn,
            expired=expired,
            subscribed=subscribed,
            new_integration=new_integration,
            agreement_id=agreement_id,
        )
        with self._state.lock:
            self._state.customers[customer.registration_token] = customer
        return customer

    def customers(self) -> list[Customer]:
        """Every customer created so far."""
        with self._state.lock:
            return list(self._state.customers.values())

    def requests(self, operation: str | None = None) -> list[RecordedRequest]:
        """Every request received (oldest first), or only those of ``operation``."""
        return self._backend.recorded(operation)

    def metered(self) -> list[dict[str, Any]]:
        """Every MeterUsage record accepted, oldest first (an identical repeat is not listed again).

        Each: metering_record_id, product_code, dimension, hour, timestamp, task (the identity the
        hour rule is keyed by), quantity (text), allocations (as sent) and accepted_at.
        """
        with self._state.lock:
            return [dict(record) for record in self._state.metered]

    def batch_metered(self) -> list[dict[str, Any]]:
        """Every BatchMeterUsage record accepted, oldest first (identical repeats not listed again).

        Each: metering_record_id, product_code, customer_identifier, aws_account_id, license_arn,
        dimension, timestamp, quantity (text), allocations (as sent) and accepted_at.
        """
        with self._state.lock:
            return [dict(record) for record in self._state.batch_metered]

    def clear_requests(self) -> None:
        """Forget the recorded requests."""
        self._backend.forget_records()

    def reset(self) -> None:
        """Return to the configuration given at construction and forget everything since.

        Keys are kept (they are expensive to make) but no version stays expired.
        """
        state = self._state
        with state.lock:
            state.products = dict(self._initial_products)
            state.region = self._initial_region
            state.claim_casing = self._initial_casing
            state.disabled_operations = set(self._initial_disabled)
            state.customers.clear()
            state.token_factory = None
            state.entitlement_check = self._initial_entitlement_check
            state.registered_tasks.clear()
        state.forget_usage()
        self._keys.unexpire_all()
        self._backend.limiter = RateLimiter(self._initial_rate_limits)
        self._backend.faults.clear()
        for spec in self._fault_specs:
            self.add_fault(spec if isinstance(spec, str) else Fault(**_fault_arguments(spec)))
        self._backend.forget_records()

    def state(self) -> dict[str, Any]:
        """A JSON-ready snapshot of the configuration (what ``GET /_emulator/state`` answers)."""
        return {
            "endpoint": self.endpoint if self._server is not None else None,
            "region": self.region,
            "claim_casing": self.claim_casing,
            "entitlement_check": self.entitlement_check,
            "products": self.products(),
            "disabled_operations": sorted(self.disabled_operations),
            "key_versions": list(self.key_versions),
            "expired_keys": {str(v): at for v, at in self._keys.expired().items()},
            "rate_limits": self.rate_limits(),
            "faults": self.faults(),
            "customers": len(self.customers()),
            "requests": len(self.requests()),
            "verifies_signatures": self._backend.credentials is not None,
        }


def check_entitlement_check(mode: str) -> EntitlementCheck:
    """Validate an entitlement-check mode (``first-call`` or ``every-call``)."""
    if mode == "first-call":
        return "first-call"
    if mode == "every-call":
        return "every-call"
    raise ValueError(f"entitlement check {mode!r} is not one of {', '.join(ENTITLEMENT_CHECKS)}")


def _fault_arguments(fault: Fault) -> dict[str, Any]:
    """The constructor arguments of ``fault``, to put a fresh copy in force on reset."""
    return {
        "operation": fault.operation,
        "kind": fault.kind,
        "count": fault.count,
        "probability": fault.probability,
        "seed": fault.seed,
        "error": fault.error,
        "status": fault.status,
        "message": fault.message,
        "delay": fault.delay,
    }
