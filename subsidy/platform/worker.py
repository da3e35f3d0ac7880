"""A service's background loop on a daemon thread of its own: the outbox
relay (subsidy/platform/outbox.py) and payout's scheduler run on it.

The subclass's ``_run`` loops until ``self._stop`` is set and waits between
rounds on ``self._wake`` (or on ``self._stop``, for a backoff that must end
at once when the service stops). ``wake`` cuts the current wait short: new
work is there (rows written, the clock moved). ``stop`` sets both and waits
for the thread, up to a timeout: a loop stuck in a call that does not return
is left behind (a daemon thread ends with the process) and said so, rather
than holding the service's shutdown.
"""

from __future__ import annotations

import abc
import logging
import threading


class WorkerThread(abc.ABC):
    def __init__(self, thread_name: str, log: logging.Logger):
        self.thread_name = thread_name
        self.log = log
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    @abc.abstractmethod
    def _run(self) -> None:
        """The loop (see the module doc)."""

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """New work: run now rather than at the next round."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                self.log.warning("%s did not stop within %.0fs; leaving it (daemon thread)", self.thread_name, timeout)
