"""Round checkpoints: what a crashed federation needs to continue where it stopped.

After every round the server writes one directory ``round-NNNNNN`` under the
checkpoint directory::

    round-000003/
        state.json        round number, History, strategy and sampling state (JSON)
        parameters.npz    the global parameters, one array per tensor
        strategy.npz      the arrays of the strategy's state (moments, ...)

Every file is written, flushed and fsynced inside a hidden temporary directory,
which is then renamed into place with ``os.replace``: a crash leaves either the
complete new checkpoint or none, never half of one. Arrays are stored as plain
``.npy`` members and read back with ``allow_pickle=False``; nothing is pickled.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fedsilo.common.exceptions import CheckpointError
from fedsilo.common.parameter import ndarrays_to_parameters, parameters_to_ndarrays
from fedsilo.common.typing import Parameters, Scalar
from fedsilo.server.history import History

log = logging.getLogger("fedsilo.server")

__all__ = [
    "FORMAT_VERSION",
    "check_parameters_match",
    "RoundCheckpoint",
    "latest_round",
    "load_latest",
    "lock_directory",
    "save_checkpoint",
]

FORMAT_VERSION = 1
DEFAULT_KEEP = 2
_NAME = re.compile(r"^round-(\d{6,})$")
_ARRAY_REF = "__ndarray__"
_BYTES_REF = "__bytes__"
_NUMPY_TENSORS = "numpy.ndarray"
_LOCK_NAME = ".lock"


@dataclass
class RoundCheckpoint:
    """The server's state at the end of ``server_round`` (0: after the initial parameters)."""

    server_round: int
    parameters: Parameters
    history: History
    strategy_type: str = ""
    strategy_state: dict[str, Any] = field(default_factory=dict)
    client_manager_state: dict[str, Any] = field(default_factory=dict)


# One run per directory --------------------------------------------------------


@contextlib.contextmanager
def lock_directory(directory: str | os.PathLike[str]) -> Iterator[None]:
    """Hold ``directory`` for one run; a second run on it is refused instead of interleaving.

    The lock is an ``flock`` on ``.lock``: the kernel drops it when its holder dies, so a
    run restarted after a crash (even SIGKILL) never finds a stale lock.
    """
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / _LOCK_NAME, "a+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise CheckpointError(
                f"{root} is in use by a running federation ({holder}); stop it first, or "
                "give this run its own checkpoint directory") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


# Saving ---------------------------------------------------------------------


def save_checkpoint(
    directory: str | os.PathLike[str], checkpoint: RoundCheckpoint, *, keep: int = DEFAULT_KEEP
) -> Path:
    """Write ``checkpoint`` atomically; keep the newest ``keep`` checkpoints, return its path."""
    if keep < 1:
        raise ValueError(f"keep must be at least 1 (the checkpoint just written), got {keep}")
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(root)
    final = root / f"round-{checkpoint.server_round:06d}"
    staging = root / f".{final.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
    staging.mkdir()
    try:
        strategy_arrays: dict[str, np.ndarray] = {}
        manifest = {
            "format": FORMAT_VERSION,
            "server_round": checkpoint.server_round,
            "tensor_type": checkpoint.parameters.tensor_type,
            "strategy": {
                "type": checkpoint.strategy_type,
                "state": _to_json_tree(checkpoint.strategy_state, strategy_arrays, "state"),
            },
            "client_manager": _to_json_tree(checkpoint.client_manager_state, None, "sampling"),
            "history": history_to_json(checkpoint.history),
        }
        _write_npz(staging / "parameters.npz", _parameters_to_arrays(checkpoint.parameters))
        _write_npz(staging / "strategy.npz", strategy_arrays)
        _write_bytes(staging / "state.json",
                     json.dumps(manifest, indent=1, allow_nan=True).encode("utf-8"))
        _fsync_directory(staging)
        if final.exists():  # the same round again (e.g. a run restarted by hand): replace it
            shutil.rmtree(final)
        os.replace(staging, final)
        _fsync_directory(root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _prune(root, keep)
    return final


def _parameters_to_arrays(parameters: Parameters) -> dict[str, np.ndarray]:
    if parameters.tensor_type == _NUMPY_TENSORS:
        arrays = parameters_to_ndarrays(parameters)
    else:  # a foreign tensor format: keep its bytes exactly as they are
        arrays = [np.frombuffer(tensor, dtype=np.uint8) for tensor in parameters.tensors]
    return {f"tensor_{i:05d}": array for i, array in enumerate(arrays)}


def _to_json_tree(value: Any, arrays: dict[str, np.ndarray] | None, where: str) -> Any:
    """``value`` with every ndarray moved into ``arrays`` and replaced by a reference."""
    if isinstance(value, np.ndarray):
        if arrays is None:
            raise CheckpointError(f"{where}: arrays are not allowed here")
        if value.dtype.hasobject:
            raise CheckpointError(
                f"{where}: an object array cannot be stored without pickle; convert it to "
                "a numeric array or to JSON values")
        key = f"a{len(arrays):05d}"
        arrays[key] = value
        return {_ARRAY_REF: key}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return {_BYTES_REF: value.hex()}
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise CheckpointError(f"{where}: keys must be strings, got {key!r}")
            if key in (_ARRAY_REF, _BYTES_REF):
                raise CheckpointError(f"{where}: the key {key!r} is reserved")
            out[key] = _to_json_tree(item, arrays, f"{where}.{key}")
        return out
    if isinstance(value, list | tuple):
        return [_to_json_tree(item, arrays, f"{where}[{i}]") for i, item in enumerate(value)]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise CheckpointError(
        f"{where}: {type(value).__name__} is neither a numpy array nor a JSON value; "
        "state_dict() must return arrays, lists of arrays or JSON values")


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **arrays)
    _write_bytes(path, buffer.getvalue())


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "xb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _remove_leftovers(root: Path) -> None:
    """Staging directories of a writer that crashed are never a checkpoint: drop them."""
    for entry in root.glob(".round-*.tmp"):
        shutil.rmtree(entry, ignore_errors=True)


def _prune(root: Path, keep: int) -> None:
    for server_round, path in list(_checkpoints(root))[keep:]:
        log.debug("removing the checkpoint of round %d", server_round)
        shutil.rmtree(path, ignore_errors=True)


# Loading --------------------------------------------------------------------


def _checkpoints(root: Path) -> Iterator[tuple[int, Path]]:
    """Complete checkpoints, newest first."""
    if not root.is_dir():
        return iter(())
    found = []
    for entry in root.iterdir():
        match = _NAME.match(entry.name)
        if match and entry.is_dir():
            found.append((int(match.group(1)), entry))
    return iter(sorted(found, reverse=True))


def latest_round(directory: str | os.PathLike[str]) -> int | None:
    """The round of the newest checkpoint in ``directory``, or None when it holds none."""
    newest = next(_checkpoints(Path(directory)), None)
    return None if newest is None else newest[0]


def load_latest(directory: str | os.PathLike[str]) -> RoundCheckpoint | None:
    """The newest checkpoint in ``directory``, or None when it holds none."""
    newest = next(_checkpoints(Path(directory)), None)
    if newest is None:
        return None
    return load_checkpoint(newest[1])


def load_checkpoint(path: str | os.PathLike[str]) -> RoundCheckpoint:
    """Read one checkpoint directory written by ``save_checkpoint``."""
    path = Path(path)
    try:
        manifest = json.loads((path / "state.json").read_text(encoding="utf-8"))
        if manifest.get("format") != FORMAT_VERSION:
            raise CheckpointError(
                f"{path}: checkpoint format {manifest.get('format')!r} is not "
                f"{FORMAT_VERSION}; it was written by another fedsilo version")
        with np.load(path / "parameters.npz", allow_pickle=False) as npz:
            tensors = [npz[key] for key in sorted(npz.files)]
        with np.load(path / "strategy.npz", allow_pickle=False) as npz:
            strategy_arrays = {key: npz[key] for key in npz.files}
        tensor_type = manifest["tensor_type"]
        if tensor_type == _NUMPY_TENSORS:
            parameters = ndarrays_to_parameters(tensors)
        else:
            parameters = Parameters([t.tobytes() for t in tensors], tensor_type)
        return RoundCheckpoint(
            server_round=int(manifest["server_round"]),
            parameters=parameters,
            history=history_from_json(manifest["history"]),
            strategy_type=manifest["strategy"]["type"],
            strategy_state=_from_json_tree(manifest["strategy"]["state"], strategy_arrays),
            client_manager_state=_from_json_tree(manifest["client_manager"], {}),
        )
    except CheckpointError:
        raise
    except Exception as exc:  # zip, .npy and JSON readers each raise their own errors
        raise CheckpointError(
            f"the checkpoint {path} cannot be read ({type(exc).__name__}: {exc}); remove that "
            "directory (or move it away) to resume from the checkpoint before it, or from the "
            "beginning when it is the only one") from exc


def check_parameters_match(checkpoint: RoundCheckpoint, reference: Parameters, source: str,
                           directory: str | os.PathLike[str]) -> None:
    """``CheckpointError`` unless the checkpoint's parameters have the tensors' shapes and
    dtypes of ``reference`` (the model this run trains, as ``source`` gave it)."""
    if checkpoint.parameters.tensor_type == reference.tensor_type != _NUMPY_TENSORS:
        return  # a foreign tensor format: its bytes say nothing of shapes
    saved, wanted = _layout(checkpoint.parameters), _layout(reference)
    if saved != wanted:
        raise CheckpointError(
            f"the checkpoint of round {checkpoint.server_round} in {directory} holds a model "
            f"of another shape: {_show(saved)}, while {source} are {_show(wanted)}; resume "
            "with the model that wrote it, or give this run an empty checkpoint directory")


def _layout(parameters: Parameters) -> list[tuple[tuple[int, ...], str]]:
    if parameters.tensor_type != _NUMPY_TENSORS:
        return [((len(tensor),), parameters.tensor_type) for tensor in parameters.tensors]
    return [(array.shape, str(array.dtype)) for array in parameters_to_ndarrays(parameters)]


def _show(layout: list[tuple[tuple[int, ...], str]]) -> str:
    return "[" + ", ".join(f"{shape} {dtype}" for shape, dtype in layout) + "]"


def _from_json_tree(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(value, dict):
        if set(value) == {_ARRAY_REF}:
            return arrays[value[_ARRAY_REF]]
        if set(value) == {_BYTES_REF}:
            return bytes.fromhex(value[_BYTES_REF])
        return {key: _from_json_tree(item, arrays) for key, item in value.items()}
    if isinstance(value, list):
        return [_from_json_tree(item, arrays) for item in value]
    return value


# History --------------------------------------------------------------------

_LOSSES = ("losses_distributed", "losses_centralized")
_METRICS = ("metrics_distributed_fit", "metrics_distributed", "metrics_centralized")


def history_to_json(history: History) -> dict[str, Any]:
    """A lossless JSON form of ``history`` (bytes metrics are tagged, not hexed away)."""
    out: dict[str, Any] = {}
    for name in _LOSSES:
        out[name] = [[r, float(loss)] for r, loss in getattr(history, name)]
    for name in _METRICS:
        out[name] = {key: [[r, _to_json_tree(v, None, key)] for r, v in pairs]
                     for key, pairs in getattr(history, name).items()}
    out["failures"] = [list(failure) for failure in history.failures]
    return out


def history_from_json(data: dict[str, Any]) -> History:
    """The History ``history_to_json`` wrote."""
    history = History()
    for name in _LOSSES:
        setattr(history, name, [(int(r), float(loss)) for r, loss in data[name]])
    for name in _METRICS:
        restored: dict[str, list[tuple[int, Scalar]]] = {
            key: [(int(r), _from_json_tree(v, {})) for r, v in pairs]
            for key, pairs in data[name].items()}
        setattr(history, name, restored)
    history.failures = [(int(r), str(cid), str(reason))
                        for r, cid, reason in data.get("failures", [])]
    return history
