"""Resident memory of a process and all its descendants, sampled while work runs."""

from __future__ import annotations

import threading
from types import TracebackType

import psutil


def tree_rss(root: psutil.Process | None = None) -> int:
    """Bytes resident in ``root`` (default: this process) and every process below it."""
    root = root if root is not None else psutil.Process()
    total = 0
    for process in [root, *root.children(recursive=True)]:
        try:
            total += process.memory_info().rss
        except psutil.Error:  # ended between listing and reading
            pass
    return total


class PeakTreeRss:
    """Samples :func:`tree_rss` (and this process's own RSS) every ``interval`` seconds
    inside a ``with`` block."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.peak = 0
        self.own_peak = 0  # this process alone
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        own = psutil.Process()
        while True:
            self.peak = max(self.peak, tree_rss())
            self.own_peak = max(self.own_peak, own.memory_info().rss)
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> PeakTreeRss:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, tree_rss())
