"""Resident memory of a process and all its descendants, sampled while work runs."""

from __future__ import annotations

import threading
from types import TracebackType

import psutil


def tree_rss(root: psutil.Process | None = None, exclude: frozenset[int] = frozenset()) -> int:
    """Bytes resident in ``root`` (default: this process) and every process below it,
    except the processes whose pid is in ``exclude``."""
    return sum(rss for _, rss, _ in tree_processes(root, exclude))


def tree_processes(root: psutil.Process | None = None, exclude: frozenset[int] = frozenset()
                   ) -> list[tuple[int, int, str]]:
    """(pid, resident bytes, command line) of ``root`` and every process below it, except
    the processes whose pid is in ``exclude``.

    A child that runs its parent's command line is a copy of the parent that has not yet
    replaced itself with its own program (a process being started: Python forks, then
    executes the new program). Until then it shares the parent's memory, and its RSS is
    the parent's again, so it is left out rather than counted twice. A child forked to work
    without a program of its own (multiprocessing's "fork" start method) would be left out
    too: the simulations measured here start their workers as programs ("spawn", Ray).
    """
    root = root if root is not None else psutil.Process()
    parents: dict[int, int] = {}
    commands: dict[int, list[str]] = {}
    for process in [root, *root.children(recursive=True)]:
        try:
            parents[process.pid], commands[process.pid] = process.ppid(), process.cmdline()
        except psutil.Error:  # ended between listing and reading
            pass
    found = []
    for pid, command in commands.items():
        if pid in exclude or (pid != root.pid and commands.get(parents[pid]) == command):
            continue
        try:
            found.append((pid, psutil.Process(pid).memory_info().rss, " ".join(command)))
        except psutil.Error:
            pass
    return found


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
        self.at_peak: list[tuple[int, int, str]] = []  # the processes counted at the peak
        self._stop = threading.Event()
        self._earlier: frozenset[int] = frozenset()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        own = psutil.Process()
        while True:
            self._take()
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
        self._take()

    def _take(self) -> None:
        processes = tree_processes(exclude=self._earlier)
        total = sum(rss for _, rss, _ in processes)
        if total > self.peak:
            self.peak, self.at_peak = total, processes

    def describe_peak(self) -> str:
        """The processes counted at the peak, one per line, for a failure's message."""
        return "\n".join(f"  pid {pid}: {rss / 2**20:.0f} MB  {command[:160]}"
                         for pid, rss, command in self.at_peak)
