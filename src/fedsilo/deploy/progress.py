"""Live progress of a federation: the rounds' figures and each site's job status."""

from __future__ import annotations

import threading
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

__all__ = ["FederationProgress"]


class FederationProgress:
    """A table that follows the rounds and the jobs; plain lines when not on a terminal."""

    def __init__(self, console: Console, rounds: int, sites: list[str]) -> None:
        self.console = console
        self.rounds = rounds
        self.jobs: dict[str, tuple[str, str]] = {s: ("Pending", "") for s in sites}
        self.round_ = 0
        self.figures_: dict[str, float] = {}
        self._lock = threading.Lock()
        self._live: Live | None = None

    def __enter__(self) -> FederationProgress:
        if self.console.is_terminal:
            self._live = Live(self._table(), console=self.console, refresh_per_second=4)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.update(self._table())
            self._live.__exit__(None, None, None)
            self._live = None

    def on_round(self, server_round: int, figures: dict[str, float]) -> None:
        """A round's figures (the server's thread calls it when the round is evaluated)."""
        with self._lock:
            self.round_ = server_round
            self.figures_ = dict(figures)
        shown = "  ".join(f"{k} {v:.4f}" for k, v in self.figures_.items())
        label = "initial" if server_round == 0 else f"round {server_round}/{self.rounds}"
        self._print(f"{label}: {shown}")

    def on_job(self, site: str, description: dict[str, Any]) -> None:
        status = (str(description.get("TrainingJobStatus", "?")),
                  str(description.get("SecondaryStatus", "")))
        with self._lock:
            changed = self.jobs.get(site) != status
            self.jobs[site] = status
        if changed:
            self._print(f"{site}: {status[0]} ({status[1]})")

    def note(self, text: str) -> None:
        self._print(text)

    def _print(self, text: str) -> None:
        if self._live is not None:
            self._live.update(self._table())
            self._live.console.print(text, highlight=False, markup=False)
        else:
            self.console.print(text, highlight=False, markup=False)

    def _table(self) -> Table:
        with self._lock:
            title = f"round {self.round_}/{self.rounds}"
            if self.figures_:
                title += "  " + "  ".join(f"{k} {v:.3f}" for k, v in self.figures_.items())
            table = Table(title=title)
            table.add_column("site")
            table.add_column("job")
            table.add_column("stage")
            for site, (status, secondary) in self.jobs.items():
                table.add_row(site, status, secondary)
        return table
