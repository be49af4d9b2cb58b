"""The Ray backend: the same engine, with Ray actors as workers.

Ray is an optional extra (``pip install fedsilo[ray]``) and is imported only
when this backend is chosen. The pool holds as many actors as the cluster's
resources allow for ``client_resources`` (each actor reserves ``num_cpus`` and
``num_gpus``), so a client sees exactly the resources it asked for. The round's
parameters are put in Ray's object store once per version; an actor fetches
them once and reuses them for every client it runs with that version.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedsilo.common.exceptions import ClientDisconnected, ClientTimeout
from fedsilo.common.typing import Parameters
from fedsilo.simulation.engine import Engine, ParameterPublisher, WorkerSlot, WorkerStartError
from fedsilo.simulation.runtime import ClientFn, ClientRuntime, Outcome, ParametersHandle, Task

log = logging.getLogger("fedsilo.simulation")

__all__ = ["import_ray", "ray_engine", "ray_pool_size"]

ACTOR_START_S = 300.0  # a busy cluster may take a while to place and start an actor


def import_ray() -> Any:
    """Ray, or an error that says how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise ImportError("backend='ray' needs Ray: pip install 'fedsilo[ray]'") from exc
    return ray


def ray_pool_size(resources: dict[str, float], client_resources: dict[str, float]) -> int:
    """How many clients fit at once on a cluster with ``resources`` (Ray's totals)."""
    fits = []
    for name, key in (("num_cpus", "CPU"), ("num_gpus", "GPU")):
        wanted = float(client_resources.get(name, 0.0))
        if wanted > 0:
            fits.append(math.floor(resources.get(key, 0.0) / wanted + 1e-9))
    size = min(fits) if fits else math.floor(resources.get("CPU", 1.0))
    if size < 1:
        raise ValueError(f"client_resources {client_resources} do not fit on the Ray cluster, "
                         f"which has {resources.get('CPU', 0):g} CPUs and "
                         f"{resources.get('GPU', 0):g} GPUs; ask for less")
    return int(size)


def ray_engine(
    client_fn: ClientFn,
    *,
    client_resources: dict[str, float],
    num_workers: int | None = None,
    state_dir: str | Path | None = None,
    actor_scheduling: str | Any = "DEFAULT",
) -> Engine:
    """An engine whose workers are Ray actors on the already initialised Ray runtime."""
    ray = import_ray()
    size = ray_pool_size(ray.cluster_resources(), client_resources)
    if num_workers is not None:
        size = min(size, num_workers)
    options = {"num_cpus": float(client_resources.get("num_cpus", 1.0)),
               "num_gpus": float(client_resources.get("num_gpus", 0.0)),
               "scheduling_strategy": actor_scheduling}
    actor_class = ray.remote(_SimulationActor)
    client_fn_ref = ray.put(client_fn)
    state = None if state_dir is None else str(state_dir)
    slots: list[WorkerSlot] = [RayActorSlot(ray, actor_class, options, client_fn_ref, state)
                               for _ in range(size)]
    log.info("ray backend: %d actors with %s each", size, client_resources)
    return Engine(slots, ObjectStorePublisher(ray))


class _SimulationActor:
    """A Ray actor that runs client tasks, like a worker process of the local pool."""

    def __init__(self, client_fn: list[Any], state_dir: str | None) -> None:
        import ray

        self.runtime = ClientRuntime(ray.get(client_fn[0]), state_dir)

    def run(self, task: Task) -> Outcome:
        return self.runtime.run(task)

    def pid(self) -> int:
        return os.getpid()


@dataclass(frozen=True)
class ObjectStoreHandle(ParametersHandle):
    """Tensors in Ray's object store; the ref sits in a list so Ray does not resolve it."""

    key: str
    tensor_type: str
    refs: list[Any] = field(compare=False)

    def load(self) -> list[bytes]:
        import ray

        return list(ray.get(self.refs[0]))


class ObjectStorePublisher(ParameterPublisher):
    """``ray.put`` once per version; the object is freed when no task holds its ref."""

    def __init__(self, ray: Any) -> None:
        self._ray = ray
        self._lock = threading.Lock()
        self._current: tuple[Parameters, ObjectStoreHandle] | None = None
        self._versions = itertools.count(1)

    def publish(self, parameters: Parameters) -> ParametersHandle:
        with self._lock:
            if self._current is not None:
                source, handle = self._current
                if source is parameters or (source.tensor_type == parameters.tensor_type
                                            and source.tensors == parameters.tensors):
                    return handle
            handle = ObjectStoreHandle(f"{os.getpid()}-{next(self._versions)}",
                                       parameters.tensor_type,
                                       [self._ray.put(list(parameters.tensors))])
            self._current = (parameters, handle)
            return handle

    def release(self, handle: ParametersHandle) -> None:
        pass  # the object store frees the object once no handle refers to it

    def close(self) -> None:
        with self._lock:
            self._current = None


class RayActorSlot(WorkerSlot):
    """One actor; killed and replaced when its client overruns, replaced when it dies."""

    def __init__(self, ray: Any, actor_class: Any, options: dict[str, Any],
                 client_fn_ref: Any, state_dir: str | None) -> None:
        self._ray = ray
        self._actor_class = actor_class
        self._options = options
        self._client_fn_ref = client_fn_ref
        self._state_dir = state_dir
        self._spawn()

    def _spawn(self) -> None:
        self.actor = self._actor_class.options(**self._options).remote(
            [self._client_fn_ref], self._state_dir)

    def wait_ready(self) -> None:
        try:
            self._ray.get(self.actor.pid.remote(), timeout=ACTOR_START_S)
        except Exception as exc:
            raise WorkerStartError(f"a Ray actor could not load client_fn: "
                                   f"{_first_line(exc)}") from exc

    def run(self, task: Task, timeout: float | None) -> Outcome:
        kind = type(task.instruction).__name__.removesuffix("Ins").lower()
        exceptions = self._ray.exceptions
        ref = self.actor.run.remote(task)
        try:
            outcome: Outcome = self._ray.get(ref, timeout=timeout)
        except exceptions.GetTimeoutError:
            self._ray.kill(self.actor)
            self._spawn()
            raise ClientTimeout(task.cid, f"{kind} gave no reply within {timeout:g} s; its "
                                          "actor was stopped and replaced") from None
        except exceptions.RayActorError as exc:
            self._spawn()
            raise ClientDisconnected(task.cid, f"its actor died during {kind} "
                                               f"({_first_line(exc)}); a fresh actor "
                                               "replaces it") from None
        except exceptions.RayTaskError as exc:
            raise ClientDisconnected(task.cid, f"its actor failed during {kind}: "
                                               f"{_first_line(exc)}") from None
        return outcome

    def close(self) -> None:
        self._ray.kill(self.actor)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
