"""Usage from any language: ``run``'s loopback HTTP endpoint and StatsD/DogStatsD UDP listener.

HTTP: ``POST /v1/usage`` with one record ``{"dimension": "requests", "quantity": 5, "tags": {..}}``
or ``{"records": [...]}``. Every record of a request is checked first and the request is stored in
one transaction: ``200 {"accepted": N}`` once durable; ``4xx {"error": "..."}`` and nothing kept
otherwise.

StatsD: ``dimension:5|c`` and DogStatsD ``dimension:5|c|#key:value,key2:value2``, several lines per
datagram. UDP is at most once: a datagram lost by the kernel is lost. Each bad line is logged and
skipped; the good lines of a datagram are stored together.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

from marketplace_entitlement._errors import ConfigurationError
from marketplace_entitlement.metering._recorder import Recorder
from marketplace_entitlement.metering._records import UsageRecordError
from marketplace_entitlement.store import Usage

logger = logging.getLogger(__name__)

PATH = "/v1/usage"
MAX_BODY_BYTES = 1 << 20
MAX_RECORDS = 10_000
MAX_DATAGRAM = 65_535


def _bind_error(variable: str, address: tuple[str, int], error: OSError) -> ConfigurationError:
    return ConfigurationError(
        f"{variable}: cannot listen on {address[0]}:{address[1]}: {error.strerror or error}",
        variable=variable,
        hint="choose a free loopback port, or set it to off",
    )


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out at once, not 40 ms apart

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("ingestion: " + format, *args)

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        """Only POST is served."""
        self._answer(HTTPStatus.METHOD_NOT_ALLOWED, {"error": f"use POST {PATH}"})

    def do_POST(self) -> None:
        """Check every record of the request, then store them in one transaction."""
        if self.path.split("?", 1)[0] != PATH:
            self._answer(HTTPStatus.NOT_FOUND, {"error": f"no endpoint {self.path}; use {PATH}"})
            return
        length_text = self.headers.get("Content-Length")
        if length_text is None or not length_text.isdigit():
            self._answer(HTTPStatus.LENGTH_REQUIRED, {"error": "Content-Length is required"})
            return
        length = int(length_text)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            self._answer(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                {"error": f"the body is larger than {MAX_BODY_BYTES} bytes; send smaller batches"},
            )
            return
        body = self.rfile.read(length)
        try:
            usage = self.server.parse(body)
        except UsageRecordError as error:
            self._answer(HTTPStatus.BAD_REQUEST, {"error": error.message})
            return
        try:
            self.server.recorder.add(usage)
        except Exception as error:  # the request's outermost handler: log, answer 503
            logger.exception("could not store usage", extra={"event": "metering.store_error"})
            self._answer(HTTPStatus.SERVICE_UNAVAILABLE, {"error": f"usage not stored: {error}"})
            return
        self._answer(HTTPStatus.OK, {"accepted": len(usage)})


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], recorder: Recorder, clock: Callable[[], float]
    ) -> None:
        self.recorder = recorder
        self.clock = clock
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.address_family = family
        super().__init__(address, _Handler)

    def parse(self, body: bytes) -> list[Usage]:
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError) as error:
            raise UsageRecordError(f"the body is not JSON: {error}") from None
        if isinstance(document, dict) and "records" in document:
            if set(document) != {"records"}:
                raise UsageRecordError('a batch is {"records": [...]} with nothing else')
            records = document["records"]
            if not isinstance(records, list) or not 1 <= len(records) <= MAX_RECORDS:
                raise UsageRecordError(f'"records" must be a list of 1 to {MAX_RECORDS} records')
        else:
            records = [document]
        now = self.clock()
        return [self._one(record, index, len(records), now) for index, record in enumerate(records)]

    def _one(self, record: object, index: int, count: int, now: float) -> Usage:
        try:
            return self.recorder.checker.from_json(record, now)
        except UsageRecordError as error:
            where = f"record {index}: " if count > 1 else ""
            raise UsageRecordError(where + error.message) from None


_Listener = TypeVar("_Listener", bound="_DaemonListener")


class _DaemonListener:
    """What both listeners share: a socket bound at construction, served from a daemon thread."""

    _thread: threading.Thread

    def _bound(self) -> tuple[Any, ...]:
        """The socket's address as the socket module gives it (host and port first)."""
        raise NotImplementedError

    @property
    def address(self) -> tuple[str, int]:
        """The bound host and port (the port is chosen by the kernel when 0 was asked)."""
        host, port = self._bound()[:2]
        return str(host), int(port)

    def start(self: _Listener) -> _Listener:
        """Serve until ``stop``."""
        self._thread.start()
        return self


class HttpIngestion(_DaemonListener):
    """The loopback HTTP endpoint, served from a daemon thread."""

    def __init__(
        self,
        address: tuple[str, int],
        recorder: Recorder,
        *,
        variable: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        try:
            self._server = _Server(address, recorder, clock)
        except OSError as error:
            raise _bind_error(variable, address, error) from error
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="marketplace-ingest-http", daemon=True
        )

    def _bound(self) -> tuple[Any, ...]:
        return tuple(self._server.server_address)

    def stop(self) -> None:
        """Stop accepting; requests being answered finish first."""
        if self._thread.is_alive():  # shutdown() would wait forever for a server never started
            self._server.shutdown()
        self._server.server_close()


def parse_statsd_line(line: str, recorder: Recorder, now: float) -> Usage:
    """One StatsD counter line as a store item; UsageRecordError says what is wrong with it."""
    name, sep, rest = line.partition(":")
    if not sep:
        raise UsageRecordError("expected dimension:quantity|c")
    fields = rest.split("|")
    if len(fields) < 2 or fields[1] != "c":
        raise UsageRecordError("only counters (|c) are usage")
    tags: dict[str, str] = {}
    for extra in fields[2:]:
        if extra.startswith("@"):
            if extra not in ("@1", "@1.0"):
                raise UsageRecordError("sampled counters (@rate) cannot be billed exactly")
        elif extra.startswith("#"):
            for pair in extra[1:].split(","):
                key, has_value, value = pair.partition(":")
                if not has_value:
                    raise UsageRecordError(f"tag {pair!r} has no value (use key:value)")
                tags[key] = value
        else:
            raise UsageRecordError(f"unknown field {extra!r}")
    if not fields[0].isdigit():
        raise UsageRecordError(f"quantity {fields[0]!r} is not a whole number")
    return recorder.checker.usage(name, int(fields[0]), tags, now)


class StatsdIngestion(_DaemonListener):
    """The loopback StatsD/DogStatsD UDP listener, served from a daemon thread."""

    def __init__(
        self,
        address: tuple[str, int],
        recorder: Recorder,
        *,
        variable: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self._socket = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self._socket.bind(address)
        except OSError as error:
            self._socket.close()
            raise _bind_error(variable, address, error) from error
        self._recorder = recorder
        self._clock = clock
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._serve, name="marketplace-ingest-statsd", daemon=True
        )

    def _bound(self) -> tuple[Any, ...]:
        return tuple(self._socket.getsockname())

    def stop(self) -> None:
        """Stop: wake the blocked receive with an empty datagram, then close."""
        self._stopping.set()
        try:
            self._socket.sendto(b"", self.address)
        except OSError:
            logger.debug("could not wake the StatsD listener", exc_info=True)
        if self._thread.is_alive():  # never started: nothing to join
            self._thread.join(timeout=5)
        self._socket.close()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                data = self._socket.recv(MAX_DATAGRAM)
            except OSError:
                if self._stopping.is_set():
                    return
                logger.exception("StatsD receive failed", extra={"event": "metering.statsd_error"})
                continue
            try:
                self.handle(data)
            except Exception:  # the listener's outermost loop: log and go on
                logger.exception(
                    "could not store StatsD usage", extra={"event": "metering.store_error"}
                )

    def handle(self, data: bytes) -> int:
        """Store the datagram's good lines together; log each bad one. Returns the number stored."""
        now = self._clock()
        usage: list[Usage] = []
        for raw in data.decode("utf-8", "replace").splitlines():
            line = raw.strip()
            if not line:
                continue
            try:
                usage.append(parse_statsd_line(line, self._recorder, now))
            except UsageRecordError as error:
                logger.warning(
                    "StatsD line refused: %s: %r",
                    error.message,
                    line[:200],
                    extra={"event": "metering.statsd_refused", "line": line[:200]},
                )
        if usage:
            self._recorder.add(usage)
        return len(usage)
