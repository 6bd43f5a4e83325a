"""gunicorn settings and hooks: the entitlement gate runs once, in the master, before any fork.

``on_starting`` runs in the master before it binds the port or forks a worker, so no worker exists
(and nothing listens) until the buyer's entitlement is verified; a refusal ends gunicorn with the
gate's exit code (65, 69, 77 or 78). Workers are forked from that master and cannot skip the
check: the WSGI module has no entitlement code at all. Re-registration runs in one thread of the
master, never once per worker.

Use it with ``gunicorn --config python:my_service.gunicorn_config my_service.app:app``.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from marketplace_entitlement import (
    EntitlementError,
    Reregistration,
    require_entitlement,
    start_reregistration,
)

bind = os.environ.get("BIND", "0.0.0.0:8080")
workers = int(os.environ.get("WEB_CONCURRENCY", "3"))
preload_app = False  # the gate lives in the master's hooks, so preloading is not needed for it

logger = logging.getLogger("my_service")
_reregistration: list[Reregistration] = []


def on_starting(server: Any) -> None:
    """Gate once, in the master, before the port is bound or any worker forked."""
    entitlement = require_entitlement()  # refused: one actionable line, then exit 65/69/77/78
    server.log.info("entitled to %s; starting %d workers", entitlement.product_code, workers)

    def on_failure(error: EntitlementError) -> None:
        # AWS bills per task-hour regardless and reports no entitlement change on later calls;
        # keep serving and let the next round try again. Stop the server here if you prefer.
        server.log.warning("re-registration failed: %s", error.refusal_line())

    _reregistration.append(start_reregistration(on_failure=on_failure))


def on_exit(server: Any) -> None:
    """Stop re-registering when the master exits."""
    for reregistration in _reregistration:
        reregistration.stop()
