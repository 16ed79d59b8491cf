"""A request to stop a scoring run, made by SIGTERM/SIGINT (`StopSignal.install`) or by a test (`request`).

The batch loop asks it between batches (a stop lets the current batch finish and be written); what waits on
the database, or a Spark job, registers a cancel with `on_stop`, called when the run outlasts its grace.

    >>> stop = StopSignal(grace_s=0, repeat_s=60)
    >>> cancelled = []
    >>> stop.on_stop(lambda: cancelled.append(True))
    >>> stop.requested, stop()
    (False, False)
    >>> stop.request(15)
    >>> stop.requested, stop.signal, cancelled
    (True, 15, [True])
    >>> stop.close()  # no more cancels: the run is over
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any

import structlog

__all__ = ["StopSignal"]


class StopSignal:
    """SIGTERM/SIGINT ask the run to stop after the current batch; a second signal is the default.

    A batch waiting on the database (a hung statement, another session's lock) would hold the stop for as
    long as the wait lasts: ``grace_s`` after the request, every cancel registered with `on_stop` is called
    (the store's in-flight statements, a Spark job), and again every ``repeat_s`` until `close`: the store
    refuses new statements and retries from the first cancel on, and cancelling again catches a statement that
    slipped in between (docs/reliability.md). So the run ends (KILLED, 128 + signal) well inside the 30 s a
    platform gives before SIGKILL. ``grace_s=0`` cancels at once.
    """

    def __init__(self, *, grace_s: float = 8.0, repeat_s: float = 1.0) -> None:
        self.signal: int | None = None
        self.grace_s = grace_s
        self.repeat_s = repeat_s
        self._cancel: list[Callable[[], Any]] = []  # called ``grace_s`` after the request
        self._at_once: list[Callable[[], Any]] = []  # called with the request
        self._done = threading.Event()  # never set in the CLI: the watchdog is a daemon and ends with it

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def __call__(self) -> bool:
        """The batch loop's question (`scorer.job.score_users` takes any ``() -> bool``)."""
        return self.requested

    def on_stop(self, cancel: Callable[[], Any], *, at_once: bool = False) -> None:
        """Call ``cancel`` if the run is still going ``grace_s`` after the stop request; ``at_once``: with the
        request (work that has no batch to finish first, as a Spark job), and now if it came already."""
        (self._at_once if at_once else self._cancel).append(cancel)
        if self.requested and (at_once or self.grace_s <= 0):
            self._call(cancel)

    def request(self, signum: int = signal.SIGTERM) -> None:
        """Ask the run to stop, as ``signum`` does; the cancels follow ``grace_s`` later (at once when 0)."""
        if self.signal is not None:
            return
        self.signal = signum
        for cancel in list(self._at_once):
            self._call(cancel)
        if self.grace_s <= 0:
            self._cancel_all()
        first = self.grace_s if self.grace_s > 0 else self.repeat_s
        timer = threading.Timer(first, self._watchdog)
        timer.daemon = True
        timer.start()

    def close(self) -> None:
        """Stop cancelling (the run is over): for a caller that outlives its run, as a test does."""
        self._done.set()

    def _watchdog(self) -> None:
        while not self._done.is_set():
            self._cancel_all()
            if self._done.wait(self.repeat_s):
                return

    def _cancel_all(self) -> None:
        for cancel in [*self._at_once, *self._cancel]:
            self._call(cancel)

    @staticmethod
    def _call(cancel: Callable[[], Any]) -> None:
        try:
            cancel()
        except Exception as exc:  # a failed cancel leaves the statement to its own timeout
            structlog.get_logger("lead_scorer").warning("cancel_failed", error=type(exc).__name__)

    def install(self) -> None:
        """Make SIGTERM and SIGINT the request (the main thread's handlers); a second one ends the process."""

        def handler(signum: int, _frame: Any) -> None:
            if self.signal is not None:
                signal.signal(signum, signal.SIG_DFL)
                raise KeyboardInterrupt
            self.request(signum)

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
