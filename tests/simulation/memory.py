"""Resident memory of a process and all its descendants, sampled while work runs."""

from __future__ import annotations

import threading
from types import TracebackType

import psutil


def tree_rss(root: psutil.Process | None = None, exclude: frozenset[int] = frozenset()) -> int:
    """Bytes resident in ``root`` (default: this process) and every process below it,
    except the processes whose pid is in ``exclude``."""
    root = root if root is not None else psutil.Process()
    total = 0
    for process in [root, *root.children(recursive=True)]:
        if process.pid in exclude:
            continue
        try:
            total += process.memory_info().rss
        except psutil.Error:  # ended between listing and reading
            pass
    return total


class PeakTreeRss:
    """Samples :func:`tree_rss` (and this process's own RSS) every ``interval`` seconds
    inside a ``with`` block.

    Processes already below this one when the block starts (left over from earlier work in
    the same test session, e.g. a pool still shutting down) are not counted: ``baseline``
    is this process's RSS at the start, and ``peak`` counts it and what the block started.
    """

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.baseline = 0
        self.peak = 0
        self.own_peak = 0  # this process alone
        self._stop = threading.Event()
        self._earlier: frozenset[int] = frozenset()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        own = psutil.Process()
        while True:
            self.peak = max(self.peak, tree_rss(exclude=self._earlier))
            self.own_peak = max(self.own_peak, own.memory_info().rss)
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> PeakTreeRss:
        me = psutil.Process()
        self._earlier = frozenset(p.pid for p in me.children(recursive=True))
        self.baseline = tree_rss(exclude=self._earlier)
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, tree_rss(exclude=self._earlier))
