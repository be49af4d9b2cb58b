"""Settings of a federation run."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ServerConfig"]


@dataclass
class ServerConfig:
    """How many rounds to run and how long one client may take per instruction (None: no bound)."""

    num_rounds: int = 1
    round_timeout: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.num_rounds, int) or self.num_rounds < 0:
            raise ValueError(f"num_rounds must be a non-negative int, got {self.num_rounds!r}")
        if self.round_timeout is not None and self.round_timeout <= 0:
            raise ValueError(f"round_timeout must be positive or None, got {self.round_timeout!r}")
