"""Per-client state kept on disk between rounds, loaded only when the client is sampled.

A simulated client is rebuilt by ``client_fn(cid)`` every time it is sampled, so
anything it learns (a personal layer, an optimizer's moments, a counter) is lost
unless it is stored. A client opts in by implementing :class:`StatefulClient`;
with ``client_state_dir`` set, the worker calls ``set_state`` with what was
saved last time before the instruction and stores ``get_state()`` after it.
State is a dict of numpy arrays saved as ``.npz`` without pickle; scalars are
0-d arrays.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from fedsilo.common.typing import NDArray

__all__ = ["ClientStateStore", "StatefulClient"]

_SAFE_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")


@runtime_checkable
class StatefulClient(Protocol):
    """A client whose state survives between the rounds it is sampled in."""

    def get_state(self) -> dict[str, NDArray]:
        """What to keep until the client is sampled again."""
        ...

    def set_state(self, state: dict[str, NDArray]) -> None:
        """Restore what ``get_state`` returned the last time."""
        ...


class ClientStateStore:
    """One ``.npz`` file per client that has state, in ``directory``."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def path(self, cid: str) -> Path:
        """The client's file: its id when that is a safe file name, else a hash of it."""
        if _SAFE_ID.fullmatch(cid):
            return self.directory / f"{cid}.npz"
        digest = hashlib.sha256(cid.encode()).hexdigest()
        return self.directory / f"~{digest}.npz"  # '~' never starts a safe id: no clash

    def load(self, cid: str) -> dict[str, NDArray] | None:
        """The client's saved state, or None if it has none yet."""
        path = self.path(cid)
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as stored:
            return {name: stored[name] for name in stored.files}

    def save(self, cid: str, state: dict[str, NDArray]) -> None:
        """Store ``state`` atomically: a crash mid-write leaves the previous state intact."""
        if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
            raise TypeError(f"get_state must return a dict of str to numpy arrays, got "
                            f"{type(state).__name__}")
        arrays = {name: np.asarray(value) for name, value in state.items()}
        for name, array in arrays.items():
            if array.dtype.hasobject:
                raise TypeError(f"state entry {name!r} has dtype object; store numeric arrays")
        path = self.path(cid)
        partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        with open(partial, "wb") as handle:
            np.savez(handle, **arrays)  # type: ignore[arg-type]
        os.replace(partial, path)
