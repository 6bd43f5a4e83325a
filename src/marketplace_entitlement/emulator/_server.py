"""The HTTP side: a threaded HTTP/1.1 server answering the JSON 1.1 protocol on loopback."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

from marketplace_entitlement.emulator._errors import (
    SERIALIZATION,
    THROTTLING,
    UNKNOWN_OPERATION,
    VALIDATION,
    ServiceError,
)
from marketplace_entitlement.emulator._faults import Fault, FaultTable
from marketplace_entitlement.emulator._limits import RateLimiter
from marketplace_entitlement.emulator._model import OPERATIONS, JsonObject, validate_input
from marketplace_entitlement.emulator._operations import MeteringService
from marketplace_entitlement.emulator._sigv4 import (
    SignedIdentity,
    parse_authorization,
    verify_signature,
)
from marketplace_entitlement.emulator._types import RecordedRequest

logger = logging.getLogger(__name__)

TARGET_PREFIX: Final = "AWSMPMeteringService."
CONTENT_TYPE: Final = "application/x-amz-json-1.1"
CONTROL_PREFIX: Final = "/_emulator/"
MALFORMED_BODY: Final = b"<html><body>this is not JSON</body></html>"
TRUNCATED_EXTRA: Final = 64  # bytes promised by Content-Length but never sent
# No request body is read beyond this: a larger one is answered 413 and the connection closed.
MAX_BODY_BYTES: Final = 2 * 1024 * 1024
# Per-operation request size limits of the real service (BatchMeterUsage: "less than 1 MB"; the
# emulator takes the stricter, decimal reading).
REQUEST_SIZE_LIMITS: Final[Mapping[str, int]] = {"BatchMeterUsage": 1_000_000}


class BodyTooLarge(ValueError):
    """The request body is larger than ``MAX_BODY_BYTES``; it was not read."""


ControlHandler = Callable[[str, str, bytes], tuple[int, object]]


@dataclass
class Backend:
    """What the request handler needs: the service, its faults, limits, credentials, records."""

    service: MeteringService
    faults: FaultTable
    limiter: RateLimiter
    credentials: Mapping[str, str] | None = None
    stopping: threading.Event = field(default_factory=threading.Event)
    records: list[RecordedRequest] = field(default_factory=list)
    records_lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, entry: RecordedRequest) -> None:
        """Keep ``entry`` for tests to read back."""
        with self.records_lock:
            self.records.append(entry)

    def recorded(self, operation: str | None = None) -> list[RecordedRequest]:
        """Return the recorded requests, oldest first, optionally of one operation."""
        with self.records_lock:
            return [r for r in self.records if operation is None or r.operation == operation]

    def forget_records(self) -> None:
        """Drop every recorded request."""
        with self.records_lock:
            self.records.clear()


class _Connection:
    """What one service request learned, for the record."""

    def __init__(self) -> None:
        self.operation: str | None = None
        self.body: JsonObject | None = None
        self.identity: SignedIdentity | None = None
        self.fault: Fault | None = None


@dataclass(frozen=True)
class _Misbehaviour:
    """A fault that answers badly: ``drop``, ``malformed`` or ``truncated``."""

    kind: str
    status: int


class EmulatorHTTPServer(ThreadingHTTPServer):
    """A ``ThreadingHTTPServer`` that can close its open keep-alive connections when stopping."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024  # a herd of 200+ clients connecting at once (bench/herd.py) fits

    def __init__(self, address: tuple[str, int], backend: Backend, control: ControlHandler) -> None:
        self.backend = backend
        self.control = control
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def track(self, sock: socket.socket, *, is_open: bool) -> None:
        """Remember (or forget) a client connection so ``close_connections`` can reach it."""
        with self._open_lock:
            if is_open:
                self._open.add(sock)
            else:
                self._open.discard(sock)

    def close_connections(self) -> None:
        """Shut every open client connection so idle keep-alive handlers return at once."""
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            _shutdown(sock)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log a failed connection (a client that went away) instead of printing to stderr."""
        logger.debug("error while serving %s", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    """Routes ``/_emulator/...`` to the control API and everything else to the service."""

    protocol_version = "HTTP/1.1"
    server: EmulatorHTTPServer

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes: without TCP_NODELAY, Nagle's algorithm and the
        # client's delayed ACK hold the body back ~40 ms on every keep-alive answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection, is_open=True)

    def finish(self) -> None:
        self.server.track(self.connection, is_open=False)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Send access logs to ``logging`` (debug) rather than stderr."""
        logger.debug("%s " + format, self.address_string(), *args)

    # -- plumbing ---------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            total = 0
            while True:
                size = int(self.rfile.readline(64).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY_BYTES:
                    raise BodyTooLarge(total)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(64)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise BodyTooLarge(length)
        return self.rfile.read(length) if length > 0 else b""

    def _send(
        self, status: int, payload: bytes, *, content_type: str = CONTENT_TYPE, request_id: str
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-amzn-RequestId", request_id)
        self.end_headers()
        self.wfile.write(payload)

    def _send_json(
        self, status: int, data: object, *, request_id: str, content_type: str = CONTENT_TYPE
    ) -> None:
        payload = json.dumps(data, separators=(",", ":")).encode()
        self._send(status, payload, content_type=content_type, request_id=request_id)

    # -- routing ----------------------------------------------------------------------------

    def _route(self) -> None:
        request_id = str(uuid.uuid4())
        try:
            body = self._read_body()
        except BodyTooLarge:
            # Never read (nor keep) a huge body: answer and close the connection.
            self.close_connection = True
            self._send_json(
                413,
                {
                    "__type": "RequestEntityTooLargeException",
                    "message": f"Request bodies are limited to {MAX_BODY_BYTES} bytes.",
                },
                request_id=request_id,
            )
            return
        except ValueError:
            self.close_connection = True
            self._send_json(400, {"message": "bad request framing"}, request_id=request_id)
            return
        if self.path.startswith(CONTROL_PREFIX):
            status, data = self.server.control(self.command, self.path, body)
            self._send_json(status, data, request_id=request_id, content_type="application/json")
        elif self.command == "POST":
            self._serve(body, request_id)
        else:
            error = ServiceError(UNKNOWN_OPERATION, f"{self.command} is not supported")
            self._send_json(400, _error_body(error), request_id=request_id)

    do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = _route  # noqa: N815  (http.server names)

    # -- the service ------------------------------------------------------------------------

    def _serve(self, raw: bytes, request_id: str) -> None:
        backend = self.server.backend
        seen = _Connection()
        received = time.time()
        target = self.headers.get("X-Amz-Target", "")
        name = target.removeprefix(TARGET_PREFIX)
        if target.startswith(TARGET_PREFIX) and name in OPERATIONS:
            seen.operation = name
        try:
            parsed = json.loads(raw or b"{}")
            seen.body = parsed if isinstance(parsed, dict) else None
        except ValueError:
            seen.body = None
        error_code = None
        answer: object = None
        misbehaviour: _Misbehaviour | None = None
        try:
            outcome = self._answer(raw, seen, target)
        except ServiceError as error:
            status, error_code, answer = error.status, error.error_type, _error_body(error)
        else:
            if isinstance(outcome, _Misbehaviour):
                misbehaviour = outcome
                status = 0 if outcome.kind == "drop" else outcome.status
            else:
                status, answer = 200, outcome
        # Record before answering, so a caller that got its answer finds the request recorded.
        backend.record(
            RecordedRequest(
                time=received,
                operation=seen.operation,
                body=seen.body,
                region=seen.identity.region if seen.identity else None,
                access_key_id=seen.identity.access_key_id if seen.identity else None,
                status=status,
                error_code=error_code,
                fault=seen.fault.kind if seen.fault else None,
                request_id=request_id,
            )
        )
        if misbehaviour is not None:
            self._misbehave(misbehaviour.kind, misbehaviour.status)
        elif seen.fault is not None and seen.fault.kind == "trickle":
            self._trickle(status, answer, request_id, seen.fault.delay or 0.0)
        else:
            self._send_json(status, answer, request_id=request_id)

    def _answer(self, raw: bytes, seen: _Connection, target: str) -> JsonObject | _Misbehaviour:
        """Authenticate, apply faults and limits, validate and run the operation."""
        backend = self.server.backend
        identity = parse_authorization(self.headers.get("Authorization"))
        seen.identity = identity
        if backend.credentials is not None:
            headers = {name.lower(): self.headers.get_all(name) or [] for name in self.headers}
            verify_signature(
                identity,
                credentials=backend.credentials,
                method=self.command,
                target=self.path,
                headers=headers,
                body=raw,
                now=time.time(),
            )
        if seen.operation is None:
            raise ServiceError(UNKNOWN_OPERATION, f"Unknown operation {target[:100]!r}")
        limit = REQUEST_SIZE_LIMITS.get(seen.operation)
        if limit is not None and len(raw) >= limit:
            raise ServiceError(
                VALIDATION, f"{seen.operation} requests must be less than {limit} bytes."
            )
        fault = backend.faults.take(seen.operation)
        seen.fault = fault
        unprocessed = False
        if fault is not None:
            kind = fault.kind
            if kind == "error":
                message = fault.message or "Injected by the emulator"
                raise ServiceError(fault.error or "", message, status=fault.http_status)
            if kind == "delay" and backend.stopping.wait(fault.delay or 0.0):
                kind = "drop"  # the emulator is stopping: do not answer late
            if kind in ("drop", "malformed", "truncated"):
                return _Misbehaviour(kind, fault.http_status)
            unprocessed = kind == "unprocessed"
        if not backend.limiter.allow(seen.operation):
            raise ServiceError(THROTTLING, "Rate exceeded")
        if seen.body is None:
            raise ServiceError(SERIALIZATION, "The request body is not a JSON object")
        body = validate_input(seen.operation, seen.body)
        if unprocessed:
            return {"Results": [], "UnprocessedRecords": body["UsageRecords"]}
        return backend.service.call(seen.operation, body, identity)

    def _trickle(self, status: int, answer: object, request_id: str, interval: float) -> None:
        """Send the real answer one byte every ``interval`` seconds (until the emulator stops)."""
        payload = json.dumps(answer, separators=(",", ":")).encode()
        self.close_connection = True
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-amzn-RequestId", request_id)
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.flush()
        stopping = self.server.backend.stopping
        for index in range(len(payload)):
            if stopping.wait(interval):
                return
            try:
                self.wfile.write(payload[index : index + 1])
                self.wfile.flush()
            except OSError:  # the client gave up: nothing left to send to
                return

    def _misbehave(self, kind: str, status: int) -> None:
        """Drop the connection, or answer a body that is not JSON, or less than promised."""
        self.close_connection = True
        if kind == "drop":
            return
        payload = MALFORMED_BODY if kind == "malformed" else b'{"Signature":"eyJhbGciOiJQUzI1'
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        extra = TRUNCATED_EXTRA if kind == "truncated" else 0
        self.send_header("Content-Length", str(len(payload) + extra))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        logger.debug("connection already closed")


def _error_body(error: ServiceError) -> dict[str, str]:
    return {"__type": error.error_type, "message": error.message}
