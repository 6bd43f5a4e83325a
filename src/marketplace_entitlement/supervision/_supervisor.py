"""Run CMD as the child of a good PID 1: forward signals, reap every zombie, pass its status on.

One loop in the main thread does all the work (the signal handlers only record, see ``_signals``):
it forwards each signal received to the child, reaps with ``waitpid(-1, WNOHANG | __WNOTHREAD)``
whenever SIGCHLD arrives, and returns the child's exit status, or 128+N when signal N killed it.
While idle it blocks in ``select`` with no timeout. docs/supervision.md describes the behaviour.

Reaping never takes a status that belongs to another thread: ``__WNOTHREAD`` limits the wait to
children of the main thread, which are CMD (spawned by this thread) and every orphan (the kernel
re-parents orphans to the thread that spawned their ancestor, or to PID 1's main thread). Children
that other threads start and wait for themselves (botocore's ``credential_process`` helpers, run by
the gate and re-registration threads) are never touched.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from marketplace_entitlement import _exit_codes
from marketplace_entitlement._errors import CommandError, CommandNotExecutable, CommandNotFound
from marketplace_entitlement.supervision._signal_sets import JOB_CONTROL_TTY, SHUTDOWN
from marketplace_entitlement.supervision._signals import SignalPipe, catchable_signals, signal_name

__all__ = [
    "LEFTOVER_GRACE_PERIOD",
    "CommandError",
    "CommandNotExecutable",
    "CommandNotFound",
    "Supervisor",
    "SupervisorOptions",
    "exec_environment",
    "set_parent_death_signal",
]

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG: Final = 1
PR_SET_CHILD_SUBREAPER: Final = 36
# Linux: wait only for children of the calling thread (not in the os module; <linux/wait.h>).
_WNOTHREAD: Final = 0x20000000
# After the main child exits: SIGTERM what is left of its group; by default exit at once (as
# dumb-init does; as PID 1 the kernel then SIGKILLs the rest of the namespace).
LEFTOVER_GRACE_PERIOD: Final = 0.0
# After that SIGKILL, how long to wait for the group to disappear before giving up with a warning.
_LEFTOVER_KILL_WAIT: Final = 2.0
# Cleanup only (never while idle): how often to look again for group members that are not our
# children, whose exit sends us no SIGCHLD.
_CLEANUP_RECHECK: Final = 0.05

_JOB_CONTROL_STOPS: Final = JOB_CONTROL_TTY | {signal.SIGTSTP}
# SHUTDOWN: signals that ask a process to end. A stopped child cannot act on them, so they are
# followed by SIGCONT (in a container nothing else would ever resume it).
_WAIT_FLAGS: Final = os.WNOHANG | os.WUNTRACED | os.WCONTINUED | _WNOTHREAD


@dataclass(frozen=True)
class SupervisorOptions:
    """How the supervisor treats signals and the child's process group.

    ``rewrite`` maps a received signal to the one delivered instead; mapping to 0 drops it.
    ``leftover_grace_period``: after CMD exits, how long the rest of its group may take to exit
    after SIGTERM before SIGKILL; 0 sends SIGTERM and does not wait.
    """

    signal_group: bool = False
    term_delay: float = 0.0
    stop_grace_period: float = 10.0
    rewrite: Mapping[int, int] = field(default_factory=dict)
    kill_group_on_exit: bool = True
    leftover_grace_period: float = LEFTOVER_GRACE_PERIOD

    def __post_init__(self) -> None:
        if self.term_delay < 0:
            raise ValueError(f"term_delay must be >= 0, not {self.term_delay}")
        if self.leftover_grace_period < 0:
            raise ValueError(
                f"leftover_grace_period must be >= 0, not {self.leftover_grace_period}"
            )
        if self.stop_grace_period < 0:
            raise ValueError(f"stop_grace_period must be >= 0, not {self.stop_grace_period}")
        valid = signal.valid_signals()
        for received, delivered in self.rewrite.items():
            if received not in valid or (delivered != 0 and delivered not in valid):
                raise ValueError(f"cannot rewrite signal {received} to {delivered}")


class Supervisor:
    """Starts CMD in its own process group and supervises it until it exits.

    Use it from the main thread only: the children of the main thread (CMD and the orphans) are
    the supervisor's to reap; children of other threads are left to the threads that started them.
    ``env`` defaults to the environment the process was started with (:func:`exec_environment`).
    """

    def __init__(
        self,
        argv: Sequence[str],
        options: SupervisorOptions,
        signals: SignalPipe,
        *,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if not argv:
            raise ValueError("argv must name the command to run")
        self._argv = list(argv)
        self._options = options
        self._signals = signals
        self._env = dict(exec_environment() if env is None else env)
        self._pid: int | None = None
        self._status: int | None = None
        self._child_stopped = False
        self._is_init = os.getpid() == 1
        self._lock = threading.Lock()
        self._stop_reason: str | None = None
        self._stop_handled = False
        self._term_at: float | None = None  # when a delayed SIGTERM is due (monotonic)
        self._kill_at: float | None = None  # when request_stop()'s SIGKILL is due (monotonic)
        self._on_exit: Callable[[], None] | None = None
        self._warned_eperm = False

    @property
    def pid(self) -> int | None:
        """The child's pid (also its process group id), or ``None`` before :meth:`start`."""
        return self._pid

    def start(self) -> None:
        """Spawn CMD as a child in its own process group, with default signal actions, none blocked.

        Raises:
            CommandNotFound: CMD is not found (exit 127).
            CommandNotExecutable: CMD exists but cannot be executed (exit 126).
        """
        if self._pid is not None:
            raise RuntimeError("the command was started already")
        if not self._is_init:
            _become_subreaper()
        command = self._argv[0]
        try:
            try:
                self._pid = self._spawn(command, self._argv)
            except OSError as error:
                if error.errno != errno.ENOEXEC:
                    raise
                # No #! line: run it with /bin/sh, as execvp() does (and so tini and dumb-init).
                found = command if "/" in command else shutil.which(command, path=self._path)
                self._pid = self._spawn("/bin/sh", ["/bin/sh", found or command, *self._argv[1:]])
        except OSError as error:
            raise _command_error(command, error, self._path) from error
        self._hand_terminal_to_child()
        logger.info(
            "started %s as pid %d",
            self._argv,
            self._pid,
            extra={"event": "command.started", "child_pid": self._pid, "argv": self._argv},
        )

    @property
    def _path(self) -> str | None:
        return self._env.get("PATH", os.defpath)

    def _spawn(self, program: str, argv: list[str]) -> int:
        """posix_spawnp in CMD's own group, default signal actions, nothing blocked."""
        return os.posix_spawnp(
            program,
            argv,
            self._env,
            setpgroup=0,
            setsigdef=catchable_signals(),
            setsigmask=(),
        )

    def request_stop(self, reason: str) -> None:
        """Ask the loop, from any thread, to stop the child: SIGTERM its group, then SIGKILL.

        SIGKILL follows ``stop_grace_period`` seconds later if the child is still there. :meth:`run`
        still returns the child's own status. Only the first request counts.
        """
        with self._lock:
            if self._stop_reason is None:
                self._stop_reason = reason
        self._signals.notify()

    def run(self, *, held: Sequence[int] = (), on_exit: Callable[[], None] | None = None) -> int:
        """Supervise until the child exits; return its status, or 128+N if signal N killed it.

        ``held``: signals received before CMD existed, delivered first as if they arrived now.
        ``on_exit`` is called once, as soon as CMD's status is known, before anything is logged.
        """
        if self._pid is None:
            raise RuntimeError("start() the command before run()")
        self._on_exit = on_exit
        for signum in held:
            self._on_signal(signum)
        self._reap()
        while self._status is None:
            deadlines = [d for d in (self._term_at, self._kill_at) if d is not None]
            # No deadline pending: block with no timeout (an idle supervisor never polls).
            timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            received = self._signals.wait(timeout)
            for signum in received:
                if signum != signal.SIGCHLD:
                    self._on_signal(signum)
            # Reap after forwarding: until it is reaped, the child's pid cannot be reused.
            if signal.SIGCHLD in received:
                self._reap()
            if self._status is None:
                self._on_deadlines(time.monotonic())
        status = self._status
        if self._options.kill_group_on_exit:
            self._clean_up_group()
        self._reap()
        return status

    def _on_signal(self, signum: int) -> None:
        """Forward one received signal, holding SIGTERM back for ``term_delay`` when asked."""
        delay = self._options.term_delay
        if signum == signal.SIGTERM and delay > 0 and self._term_at is None:
            self._term_at = time.monotonic() + delay
            logger.info("received SIGTERM; forwarding it in %.3g s", delay)
        elif self._term_at is not None and signum in (signal.SIGTERM, signal.SIGINT):
            logger.info(
                "received %s during the SIGTERM delay; forwarding SIGTERM now", signal_name(signum)
            )
            self._term_at = None
            self._forward(signal.SIGTERM)
            if signum == signal.SIGINT:
                self._forward(signum)
        else:
            self._forward(signum)

    def _on_deadlines(self, now: float) -> None:
        """Send the delayed SIGTERM, act on a stop request, and SIGKILL when the grace is over."""
        if self._term_at is not None and now >= self._term_at:
            self._term_at = None
            self._forward(signal.SIGTERM)
        if self._take_stop_request():
            self._kill_at = now + self._options.stop_grace_period
        if self._kill_at is not None and now >= self._kill_at:
            self._kill_at = None
            logger.warning(
                "the command is still running %.3g s after SIGTERM; sending SIGKILL",
                self._options.stop_grace_period,
            )
            self._signal_group(signal.SIGKILL)

    # -- signals ---------------------------------------------------------------------------------

    def _forward(self, received: int) -> None:
        """Deliver ``received`` (or its rewrite) to the child, or to its group (signal_group)."""
        delivered = self._options.rewrite.get(received, received)
        if delivered == 0:
            logger.info("received %s; dropped as configured", signal_name(received))
            return
        if received == signal.SIGCONT:
            self._hand_terminal_to_child()
        if self._options.signal_group:
            self._signal_group(delivered)
        else:
            self._kill(delivered)
        # Only the signals that end CMD are worth an INFO line; the rest (SIGWINCH from a terminal
        # being resized, SIGCONT on `fg`, SIGUSR1...) would interleave with a full-screen app.
        logger.log(
            logging.INFO if delivered in SHUTDOWN else logging.DEBUG,
            "forwarded %s to %s %d",
            signal_name(delivered),
            "process group" if self._options.signal_group else "pid",
            self._pid,
            extra={
                "event": "signal.forwarded",
                "signal": signal_name(delivered),
                "child_pid": self._pid,
            },
        )
        if self._child_stopped and (received in SHUTDOWN or delivered in SHUTDOWN):
            logger.info("the command is stopped; sending SIGCONT so it can act on the signal")
            self._signal_group(signal.SIGCONT)

    def _kill(self, signum: int) -> bool:
        """Signal the main child while it is unreaped; False when it is gone or not ours to signal."""
        if self._pid is None or self._status is not None:
            return False
        try:
            os.kill(self._pid, signum)
        except ProcessLookupError:
            return False
        except PermissionError:
            self._not_permitted(signum)
            return False
        return True

    def _signal_group(self, signum: int) -> bool:
        """Signal the child's process group (or the child alone if it left it); False if empty."""
        if self._pid is None:
            return False
        try:
            os.killpg(self._pid, signum)
        except ProcessLookupError:
            return self._kill(signum)
        except PermissionError:
            self._not_permitted(signum)
            return False
        return True

    def _not_permitted(self, signum: int) -> None:
        """EPERM (CMD changed its user, e.g. a setuid program): log it, keep supervising."""
        logger.log(
            logging.DEBUG if self._warned_eperm else logging.WARNING,
            "not permitted to send %s to the command (it runs as another user now); "
            "still supervising it",
            signal_name(signum),
            extra={"event": "signal.not_permitted", "signal": signal_name(signum)},
        )
        self._warned_eperm = True

    def _take_stop_request(self) -> bool:
        """Act on a request_stop() once: SIGTERM (and SIGCONT) to the group. True if it acted."""
        with self._lock:
            reason = self._stop_reason
            if reason is None or self._stop_handled:
                return False
            self._stop_handled = True
        logger.info(
            "stopping the command (%s): SIGTERM to its process group, SIGKILL in %.3g s",
            reason,
            self._options.stop_grace_period,
        )
        self._signal_group(signal.SIGTERM)
        if self._child_stopped:
            self._signal_group(signal.SIGCONT)
        return True

    # -- children --------------------------------------------------------------------------------

    def _reap(self) -> None:
        """Collect every child that changed state: the main child's status, and any orphan."""
        while True:
            try:
                pid, status = os.waitpid(-1, _WAIT_FLAGS)
            except ChildProcessError:
                return
            if pid == 0:
                return
            is_main = pid == self._pid and self._status is None
            if os.WIFSTOPPED(status):
                if is_main:
                    self._on_child_stopped(os.WSTOPSIG(status))
            elif os.WIFCONTINUED(status):
                if is_main:
                    self._child_stopped = False
                    logger.info("the command was continued")
            elif is_main:
                self._status = _exit_status(status)
                if self._on_exit is not None:
                    self._on_exit()
                logger.info(
                    "the command exited with status %d",
                    self._status,
                    extra={
                        "event": "command.exited",
                        "child_pid": pid,
                        "exit_status": self._status,
                    },
                )
            else:
                logger.debug(
                    "reaped orphan pid %d (status %d)",
                    pid,
                    _exit_status(status),
                    extra={"event": "orphan.reaped", "orphan_pid": pid},
                )

    def _on_child_stopped(self, signum: int) -> None:
        """Job control: follow a stopped child so it cannot hang the container or the terminal."""
        self._child_stopped = True
        name = signal_name(signum)
        if signum in (signal.SIGTTIN, signal.SIGTTOU) and self._child_holds_terminal():
            # The command used the terminal before start() handed it over (a race at startup);
            # it is in the foreground now, so its retried read or write will succeed.
            logger.debug("the command was stopped by %s before it held the terminal", name)
            self._signal_group(signal.SIGCONT)
            return
        if signum in _JOB_CONTROL_STOPS and self._job_control_shell_is_parent():
            # Under a job-control shell, stop too, so the shell sees the job stopped and takes
            # its terminal back; its SIGCONT on `fg` is forwarded (after handing the terminal back).
            logger.info("the command was stopped by %s; stopping too", name)
            os.kill(os.getpid(), signal.SIGSTOP)
            return
        logger.warning(
            "the command was stopped by %s; send SIGCONT to resume it (a SIGTERM, SIGINT, "
            "SIGQUIT or SIGHUP, or a stop request, also resumes it so that it can exit)",
            name,
        )

    def _job_control_shell_is_parent(self) -> bool:
        """True only when a job-control shell started us, so stopping ourselves is safe.

        Such a shell gives each job its own process group (we lead ours), stays in another group
        of the same session, on the same terminal, and resumes the job on `fg`. An init (tini,
        ``docker run --init``), sshd (we lead our session under ``ssh -t``), ``script`` or a
        shell without job control (we share its group) would never resume us.
        """
        if self._is_init or not os.isatty(0):
            return False
        parent = os.getppid()
        if parent <= 1:
            return False
        try:
            return (
                os.getpgrp() == os.getpid()
                and os.getsid(0) == os.getsid(parent)
                and os.getpgid(parent) != os.getpgrp()
                and os.tcgetpgrp(0) > 0  # stdin is our controlling terminal (else ENOTTY)
            )
        except OSError:
            return False

    def _child_holds_terminal(self) -> bool:
        """True when stdin is a terminal whose foreground process group is the command's."""
        try:
            return os.isatty(0) and os.tcgetpgrp(0) == self._pid
        except OSError:
            return False

    def _hand_terminal_to_child(self) -> None:
        """Make the child's group the terminal's foreground group, if we hold the foreground."""
        if self._pid is None or self._status is not None:
            return
        try:
            if os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp():
                os.tcsetpgrp(0, self._pid)
        except OSError as error:
            logger.debug("could not hand the terminal to the command: %s", error)

    def _clean_up_group(self) -> None:
        """SIGTERM what is left of the child's group, SIGKILL it after a grace period, reap it."""
        if self._pid is None:
            return
        self._reap()
        if not _group_exists(self._pid):
            return
        grace = self._options.leftover_grace_period
        self._signal_group(signal.SIGTERM)
        self._signal_group(signal.SIGCONT)
        if grace <= 0:
            logger.info(
                "the command exited; sent SIGTERM to the rest of its process group, not waiting",
                extra={"event": "leftovers.terminated"},
            )
            return
        logger.info(
            "the command exited; sent SIGTERM to the rest of its process group, SIGKILL in %.3g s",
            grace,
            extra={"event": "leftovers.terminated"},
        )
        if self._wait_group_gone(grace):
            return
        logger.warning("processes of the command's group outlived SIGTERM; sending SIGKILL")
        self._signal_group(signal.SIGKILL)
        if not self._wait_group_gone(_LEFTOVER_KILL_WAIT):
            logger.warning("processes of the command's group are still there after SIGKILL")

    def _wait_group_gone(self, seconds: float) -> bool:
        """Reap until the child's group is empty (True) or ``seconds`` pass (False).

        Signals arriving meanwhile still go to the group.
        """
        assert self._pid is not None  # only called once the child ran
        deadline = time.monotonic() + seconds
        while True:
            self._reap()
            if not _group_exists(self._pid):
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            for signum in self._signals.wait(min(remaining, _CLEANUP_RECHECK)):
                if signum != signal.SIGCHLD:
                    delivered = self._options.rewrite.get(signum, signum)
                    if delivered:
                        self._signal_group(delivered)


def _group_exists(pgid: int) -> bool:
    """True while process group ``pgid`` has a member (zombies count until reaped)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _exit_status(wait_status: int) -> int:
    """Turn a waitpid() status into an exit status: the code, or 128+N for death by signal N."""
    code = os.waitstatus_to_exitcode(wait_status)
    return _exit_codes.for_signal(-code) if code < 0 else code


def _command_error(command: str, error: OSError, path: str | None) -> CommandError:
    """Explain why ``command`` could not be spawned, with the shell's 127/126 distinction."""
    reason = error.strerror or str(error)
    if error.errno in (errno.ENOENT, errno.ENOTDIR):
        exists = os.path.exists(command) if "/" in command else shutil.which(command, os.F_OK, path)
        if not exists:
            return CommandNotFound(
                f"command not found: {command!r}",
                command=command,
                hint="check the command after -- and the image's PATH",
            )
        reason = "its interpreter (the #! line) was not found"
    return CommandNotExecutable(
        f"cannot execute {command!r}: {reason}",
        command=command,
        hint="check that it is an executable file (chmod +x) with a valid #! line",
    )


def exec_environment() -> dict[str, str]:
    """The environment this process was started with, exactly (for CMD).

    ``os.environ`` is not it: Python's locale coercion adds ``LC_CTYPE=C.UTF-8`` when no locale is
    set, before any Python code runs. ``/proc/self/environ`` still holds what ``execve`` was given
    (changes to the environment never write there); without /proc, ``os.environ`` is used.
    """
    try:
        with open("/proc/self/environ", "rb") as file:
            raw = file.read()
    except OSError:
        return dict(os.environ)
    environment: dict[str, str] = {}
    for entry in raw.split(b"\0"):
        name, equals, value = entry.partition(b"=")
        if equals and name and os.fsdecode(name) not in environment:
            environment[os.fsdecode(name)] = os.fsdecode(value)
    return environment


def set_parent_death_signal(signum: int, parent_at_start: int | None) -> None:
    """Have the kernel send ``signum`` to this process when its parent dies (tini ``-p``).

    ``parent_at_start`` is the parent's pid when the process started: if it is not our parent any
    more, the parent died before the request was made, so ``signum`` is sent at once.

    Raises:
        OSError: the kernel refused (not Linux, or an invalid signal).
    """
    libc = ctypes.CDLL(None, use_errno=True)
    prctl = libc.prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    if prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    if parent_at_start is not None and os.getppid() != parent_at_start:
        os.kill(os.getpid(), signum)


def _become_subreaper() -> None:
    """Adopt orphaned descendants as PID 1 would (prctl PR_SET_CHILD_SUBREAPER); best effort."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError) as error:
        logger.debug("cannot become a child subreaper: %s", error)
        return
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    if prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        logger.debug("cannot become a child subreaper: %s", os.strerror(ctypes.get_errno()))
