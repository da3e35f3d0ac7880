"""subsidy/platform/worker.py: the background loop of the outbox relay and
payout's scheduler — woken early by new work, stopped within a timeout, and
left behind (said so) when it hangs."""

from __future__ import annotations

import logging
import threading

from subsidy.platform.worker import WorkerThread

LOG = logging.getLogger("test.worker")


class Ticking(WorkerThread):
    """Counts rounds; waits an hour between them unless woken."""

    def __init__(self):
        super().__init__("ticking", LOG)
        self.rounds = 0
        self.ticked = threading.Event()

    def _run(self):
        while not self._stop.is_set():
            self.rounds += 1
            self.ticked.set()
            self._wake.wait(3600)
            self._wake.clear()


def test_wake_runs_a_round_now_and_stop_ends_the_loop():
    worker = Ticking()
    worker.start()
    assert worker.ticked.wait(5)
    worker.ticked.clear()
    worker.wake()
    assert worker.ticked.wait(5) and worker.rounds >= 2
    worker.stop(5)
    assert not worker._thread.is_alive()


def test_a_loop_that_hangs_is_left_behind_and_the_log_says_so(caplog):
    release = threading.Event()

    class Hanging(WorkerThread):
        def _run(self):
            release.wait(10)  # a call that does not return when asked to stop

    worker = Hanging("hanging", LOG)
    worker.start()
    with caplog.at_level(logging.WARNING, logger="test.worker"):
        worker.stop(0.05)
    release.set()
    assert [r.getMessage() for r in caplog.records] == ["hanging did not stop within 0s; leaving it (daemon thread)"]
