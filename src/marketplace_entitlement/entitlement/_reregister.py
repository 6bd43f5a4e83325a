"""Background re-registration: a thread that re-runs the gate every interval, jittered.

Each round uses a fresh nonce and full verification (``Gate.check``). What a failure does is the
caller's policy, given as ``on_failure``; the entrypoint keeps CMD running by default, or stops it.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from marketplace_entitlement._client import MeteringClient
from marketplace_entitlement._env import REREGISTER_INTERVAL
from marketplace_entitlement._errors import EntitlementError, ServiceUnavailableError
from marketplace_entitlement._parsers import check_duration
from marketplace_entitlement.entitlement._gate import Entitlement, Gate, settings_from_code

logger = logging.getLogger(__name__)

JITTER_FRACTION = 0.1  # each wait is the interval +/- 10%, so a fleet started together drifts apart


class Reregistration:
    """Re-registers every ``interval`` seconds in a daemon thread until ``stop()``; 0 means off.

    ``on_success`` and ``on_failure`` run in the thread after each round. A round's retry budget is
    the smaller of the register timeout and the interval, so a round never overlaps the next.
    """

    def __init__(
        self,
        gate: Gate,
        *,
        interval: float | None = None,
        on_success: Callable[[Entitlement], None] | None = None,
        on_failure: Callable[[EntitlementError], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.gate = gate
        self.interval = check_duration(
            gate.settings.reregister_interval if interval is None else interval,
            REREGISTER_INTERVAL,
        )
        self._on_success = on_success
        self._on_failure = on_failure
        self._rng = rng or random.SystemRandom()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.rounds = 0
        self.next_attempt_at: float | None = None

    def next_wait(self) -> float:
        """The wait before the next round: the interval, jittered by +/- ``JITTER_FRACTION``."""
        spread = self.interval * JITTER_FRACTION
        return max(0.0, self.interval + self._rng.uniform(-spread, spread))

    def start(self) -> Reregistration:
        """Start the thread (once); return self, so ``start_reregistration(...).stop()`` works."""
        if self._thread is not None:
            raise RuntimeError("re-registration already started")
        if self.interval == 0:  # MARKETPLACE_REREGISTER_INTERVAL=0: off; the handle does nothing
            logger.info(
                "background re-registration is off (interval 0)",
                extra={"event": "reregistration.disabled"},
            )
            return self
        self._thread = threading.Thread(
            target=self._loop, name="marketplace-reregistration", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float | None = 5.0) -> None:
        """Ask the thread to stop (ends any wait at once) and wait up to ``timeout`` for it."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        """Whether the thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def _loop(self) -> None:
        wait = self.next_wait()
        self.next_attempt_at = time.time() + wait
        while not self._stop.wait(wait):
            self.rounds += 1
            wait = self.next_wait()
            self.next_attempt_at = time.time() + wait  # known before the round's callbacks run
            self._round()

    def _round(self) -> None:
        """One round; the thread's outermost level: whatever goes wrong is a failed round.

        A round that raises anything (an EntitlementError, or an unexpected exception: a bug, a
        RecursionError) is reported through ``on_failure`` like any failure, so the failure
        policy and the status file see it; the thread itself never dies of it.
        """
        budget = min(self.gate.settings.register_timeout, self.interval)
        try:
            entitlement = self.gate.check(self._stop, timeout=budget)
        except EntitlementError as error:
            self._failed(error)
            return
        except Exception as error:  # outermost level of the thread: logged, counted as a failure
            logger.exception(
                "re-registration %d failed unexpectedly",
                self.rounds,
                extra={"event": "reregistration.internal_error", "round": self.rounds},
            )
            self._failed(
                ServiceUnavailableError(
                    f"re-registration round {self.rounds} failed unexpectedly: "
                    f"{type(error).__name__}: {str(error)[:200]}",
                    aws_error_code=None,
                    attempts=0,
                    hint="counted as a failed registration; please report it",
                )
            )
            return
        if self._stop.is_set():  # stopped while the call was in flight: its outcome is moot
            return
        logger.info(
            "re-registration %d succeeded",
            self.rounds,
            extra={"event": "reregistration.succeeded", "round": self.rounds},
        )
        self._callback(self._on_success, entitlement)

    def _failed(self, error: EntitlementError) -> None:
        if self._stop.is_set():
            return
        logger.warning(
            "re-registration %d failed: %s",
            self.rounds,
            error.refusal_line(),
            extra={
                "event": "reregistration.failed",
                "round": self.rounds,
                "exit_code": error.exit_code,
            },
        )
        self._callback(self._on_failure, error)

    def _callback(self, callback: Callable[[Any], None] | None, argument: object) -> None:
        if callback is None:
            return
        try:
            callback(argument)
        except Exception:  # outermost level of the thread: a failing callback is logged
            logger.exception(
                "re-registration %d: the callback failed",
                self.rounds,
                extra={"event": "reregistration.callback_failed", "round": self.rounds},
            )


def start_reregistration(
    *,
    interval: float | None = None,
    on_success: Callable[[Entitlement], None] | None = None,
    on_failure: Callable[[EntitlementError], None] | None = None,
    client: MeteringClient | None = None,
    **overrides: Any,
) -> Reregistration:
    """For applications using the import API: start background re-registration; call ``.stop()``.

    Settings come from ``overrides`` and the environment as for ``check_entitlement``; ``interval``
    defaults to ``MARKETPLACE_REREGISTER_INTERVAL``.
    """
    settings = settings_from_code(None, overrides)
    return Reregistration(
        Gate(settings, client), interval=interval, on_success=on_success, on_failure=on_failure
    ).start()
