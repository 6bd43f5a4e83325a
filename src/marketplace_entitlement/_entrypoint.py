"""What ``run`` and ``check`` do once settings are parsed: gate, then supervise and re-register.

The gate runs in a worker thread while the main thread waits on the signal pipe, so a shutdown
signal during startup retries (or during a slow request) ends the process at once.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING, TextIO, TypeAlias

from marketplace_entitlement import _boot, _env
from marketplace_entitlement._client import MeteringClient
from marketplace_entitlement._errors import EntitlementError, RegistrationInterrupted
from marketplace_entitlement._settings import Settings
from marketplace_entitlement._status import StatusFile
from marketplace_entitlement.entitlement._gate import Entitlement, Gate
from marketplace_entitlement.entitlement._reregister import Reregistration
from marketplace_entitlement.supervision._signal_sets import SHUTDOWN
from marketplace_entitlement.supervision._signals import SignalPipe, signal_name
from marketplace_entitlement.supervision._supervisor import (
    CommandError,
    Supervisor,
    SupervisorOptions,
    exec_environment,
    set_parent_death_signal,
)

if TYPE_CHECKING:
    from marketplace_entitlement.metering._gate import MeterUsageGate

logger = logging.getLogger(__name__)

AnyGate: TypeAlias = "Gate | MeterUsageGate"


def make_gate(settings: Settings, client: MeteringClient | None = None) -> AnyGate:
    """The pricing model's gate: RegisterUsage (hourly) or MeterUsage (custom)."""
    if settings.pricing == "custom":
        # Imported only for custom pricing: an hourly container's start does not pay for it.
        from marketplace_entitlement.metering import _runtime as metering  # noqa: PLC0415

        return metering.custom_gate(settings, client)
    return Gate(settings, client)


def gate_interruptibly(
    gate: AnyGate, signals: SignalPipe, held: list[int] | None = None
) -> Entitlement:
    """Run ``gate.check`` in a worker thread; a shutdown signal raises RegistrationInterrupted.

    Any other signal (but SIGCHLD) is appended to ``held``, once per kind as the kernel keeps a
    pending signal, to be delivered to CMD once it starts (as tini and dumb-init, which block
    signals until the child exists, do); without ``held`` (``check``) it is ignored.
    """
    stop = threading.Event()
    outcome: list[Entitlement | BaseException] = []

    def work() -> None:
        try:
            outcome.append(gate.check(stop))
        except BaseException as error:  # noqa: BLE001  (handed to the main thread, re-raised there)
            outcome.append(error)
        finally:
            signals.notify()

    threading.Thread(target=work, name="marketplace-gate", daemon=True).start()
    while not outcome:
        for signum in signals.wait():
            if signum in SHUTDOWN:  # ends the wrapper while registering: CMD never starts
                stop.set()
                raise RegistrationInterrupted(
                    f"{signal_name(signum)} received while registering; not starting", signum=signum
                )
            if signum != signal.SIGCHLD and held is not None and signum not in held:
                held.append(signum)
                logger.debug(
                    "received %s while registering; it goes to the command once it starts",
                    signal_name(signum),
                    extra={"event": "signal.held", "signal": signal_name(signum)},
                )
    result = outcome[0]
    if isinstance(result, BaseException):
        raise result
    return result


def _status_file(settings: Settings) -> StatusFile | None:
    """The status file, already written once (``starting``), or None when none is configured."""
    if settings.status_file is None:
        return None
    return StatusFile(
        settings.status_file,
        product_code=settings.product_code,
        max_age=settings.effective_status_max_age,
    ).create()


def log_refusal(error: EntitlementError) -> None:
    """Log the one line a person can act on, with the exit code it leads to."""
    logger.error(
        "%s",
        error.refusal_line(),
        extra={
            "event": "entitlement.refused",
            "exit_code": error.exit_code,
            "error": type(error).__name__,
            "aws_error_code": getattr(error, "aws_error_code", None),
            "variable": getattr(error, "variable", None),
            "claim": getattr(error, "claim", None),
        },
    )


def _pass_gate(
    gate: AnyGate,
    signals: SignalPipe,
    status: StatusFile | None,
    *,
    reregister: bool,
    held: list[int] | None = None,
) -> Entitlement | int:
    """Run the gate; record the outcome in the status file; an int is the refusal's exit code.

    ``reregister`` says whether a next attempt will follow (``run``) or not (``check``).
    """
    try:
        entitlement = gate_interruptibly(gate, signals, held)
    except EntitlementError as error:
        if status is not None and not isinstance(error, RegistrationInterrupted):
            status.record_failure(error, at=time.time(), next_attempt=None)
        log_refusal(error)
        return error.exit_code
    if status is not None:
        interval = gate.settings.reregister_interval
        status.record_success(
            registered_at=entitlement.registered_at.timestamp(),
            next_attempt=time.time() + interval
            if reregister and interval > 0 and isinstance(gate, Gate)
            else None,
        )
    return entitlement


def run_check(settings: Settings, stdout: TextIO, client: MeteringClient | None = None) -> int:
    """``check``: one registration and verification; the entitlement as JSON on stdout."""
    with SignalPipe() as signals:
        outcome = _pass_gate(
            make_gate(settings, client), signals, _status_file(settings), reregister=False
        )
    if isinstance(outcome, int):
        return outcome
    stdout.write(json.dumps(outcome.to_json()) + "\n")
    stdout.flush()
    return 0


def supervisor_options(settings: Settings) -> SupervisorOptions:
    """The supervisor's options, from the settings."""
    return SupervisorOptions(
        signal_group=settings.signal_group,
        term_delay=settings.term_delay,
        stop_grace_period=settings.stop_grace_period,
        rewrite=dict(settings.signal_rewrite),
        leftover_grace_period=settings.leftover_grace_period,
    )


def run_entrypoint(
    settings: Settings, command: Sequence[str], client: MeteringClient | None = None
) -> int:
    """``run``: gate; only if entitled start CMD, supervise it, re-register; return exit code."""
    if settings.pricing == "custom":
        return _run_metered(settings, command, client)
    return _run(settings, command, client)


def _run_metered(settings: Settings, command: Sequence[str], client: MeteringClient | None) -> int:
    """``run`` for custom pricing: the metering runtime is imported only here."""
    from marketplace_entitlement.metering import _runtime as metering  # noqa: PLC0415

    return _run(metering.with_state_dir(settings), command, client, metering)


def _run(
    settings: Settings,
    command: Sequence[str],
    client: MeteringClient | None,
    metering: ModuleType | None = None,
) -> int:
    """Gate, start CMD, supervise; with ``metering`` (custom pricing) meter instead of re-register."""
    status = _status_file(settings)
    gate = Gate(settings, client) if metering is None else metering.custom_gate(settings, client)
    # Custom pricing: the ingestion endpoints are bound before the startup MeterUsage, so a port in
    # use is refused (78) before any call to AWS.
    listeners = None if metering is None else metering.bind_for_run(gate)
    with SignalPipe() as signals:
        if settings.parent_death_signal is not None:
            set_parent_death_signal(settings.parent_death_signal, _boot.parent_at_start)
        held: list[int] = []
        outcome = _pass_gate(gate, signals, status, reregister=True, held=held)
        if isinstance(outcome, int):
            if listeners is not None:
                listeners.close()
            return outcome
        metered = None
        env = None  # the environment run was given (exec_environment), untouched
        if metering is not None:
            # before CMD: it may record
            metered = metering.start_for_run(gate, outcome, status, listeners)
            env = metering.child_environment(settings, exec_environment(), metered)
        supervisor = Supervisor(command, supervisor_options(settings), signals, env=env)
        try:
            supervisor.start()
        except CommandError as error:
            log_refusal(error)
            if metered is not None:
                metered.stop()
            return error.exit_code
        stopped_for: list[EntitlementError] = []
        reregistration = None
        if metering is not None and metered is not None:
            metered.on_backlog_stop = metering.backlog_stopper(supervisor.request_stop, stopped_for)
        elif isinstance(gate, Gate):
            reregistration = _start_reregistration(gate, status, supervisor, stopped_for)

        def abandon_reregistration() -> None:
            # Exit at once: a round in flight is abandoned, its outcome neither logged nor recorded.
            if reregistration is not None:
                reregistration.stop(timeout=0)

        try:
            code = supervisor.run(held=held, on_exit=abandon_reregistration)
        finally:
            abandon_reregistration()
            if metered is not None:
                metered.stop()  # sends the unfinished hour (MARKETPLACE_METERING_STOP_TIMEOUT)
    if stopped_for:
        logger.error(
            "stopped the command (policy 'stop'): %s; exiting %d",
            stopped_for[0].refusal_line(),
            stopped_for[0].exit_code,
            extra={"event": "entrypoint.stopped", "child_status": code},
        )
        return stopped_for[0].exit_code
    if code in settings.success_exit_codes:
        logger.info(
            "the command exited with status %d, reported as 0 (%s)",
            code,
            _env.SUCCESS_EXIT_CODES,
            extra={"event": "entrypoint.status_remapped", "child_status": code},
        )
        return 0
    return code


def _start_reregistration(
    gate: Gate,
    status: StatusFile | None,
    supervisor: Supervisor,
    stopped_for: list[EntitlementError],
) -> Reregistration:
    settings = gate.settings
    reregistration: Reregistration

    def on_success(entitlement: Entitlement) -> None:
        if status is not None:
            status.record_success(
                registered_at=entitlement.registered_at.timestamp(),
                next_attempt=reregistration.next_attempt_at,
            )

    def on_failure(error: EntitlementError) -> None:
        if status is not None:
            status.record_failure(
                error, at=time.time(), next_attempt=reregistration.next_attempt_at
            )
        if settings.reregister_failure_policy == "stop" and not stopped_for:
            stopped_for.append(error)
            supervisor.request_stop(f"re-registration failed: {error.refusal_line()}")

    reregistration = Reregistration(gate, on_success=on_success, on_failure=on_failure)
    return reregistration.start()
