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
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedsilo.common.exceptions import ClientDisconnected, ClientTimeout
from fedsilo.common.typing import Parameters
from fedsilo.simulation.engine import (
    Engine,
    ParameterPublisher,
    SlotLost,
    WorkerSlot,
    WorkerStartError,
)
from fedsilo.simulation.runtime import ClientFn, ClientRuntime, Outcome, ParametersHandle, Task

log = logging.getLogger("fedsilo.simulation")

__all__ = ["import_ray", "ray_engine", "ray_pool_size"]

ACTOR_START_S = 300.0  # a busy cluster may take a while to place and start an actor
REPLACE_S = 30.0  # how long a replacement or added actor may take to start before it is given up
NODE_PROBE_S = 2.0  # how long to wait for a node's raylet to accept a connection


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

    def new_slots(count: int) -> list[WorkerSlot]:
        return [RayActorSlot(ray, actor_class, options, client_fn_ref, state)
                for _ in range(count)]

    def grow(current: int) -> list[WorkerSlot]:
        """Slots for the room a node that joined (or came back) adds to the cluster: what
        is free now (a node that died but is still counted holds no free room)."""
        try:
            extra = ray_pool_size(ray.available_resources(), client_resources)
        except ValueError:  # no room at all for now
            return []
        if num_workers is not None:
            extra = min(extra, num_workers - current)
        if extra <= 0:
            return []
        log.info("ray backend: the cluster has room for %d more actors", extra)
        return new_slots(extra)

    log.info("ray backend: %d actors with %s each", size, client_resources)
    return Engine(new_slots(size), ObjectStorePublisher(ray), grow=grow)


class _SimulationActor:
    """A Ray actor that runs client tasks, like a worker process of the local pool."""

    def __init__(self, client_fn: list[Any], state_dir: str | None) -> None:
        import ray

        self.runtime = ClientRuntime(ray.get(client_fn[0]), state_dir)

    def run(self, task: Task) -> Outcome:
        return self.runtime.run(task)

    def pid(self) -> int:
        return os.getpid()

    def node(self) -> str:
        import ray

        return str(ray.get_runtime_context().get_node_id())


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
    """One actor; killed and replaced when its client overruns, replaced when it dies.

    When the actor's node leaves the cluster, the slot goes with it: the client that was
    running fails with "worker node lost", and the slot's next task goes to another
    (``SlotLost``). A replacement actor that no node has room for within ``REPLACE_S``
    is given up the same way, so no task waits for an actor that cannot start.
    """

    def __init__(self, ray: Any, actor_class: Any, options: dict[str, Any],
                 client_fn_ref: Any, state_dir: str | None) -> None:
        self._ray = ray
        self._actor_class = actor_class
        self._options = options
        self._client_fn_ref = client_fn_ref
        self._state_dir = state_dir
        self.node_id: str | None = None  # the node the actor runs on, once it is up
        self._ready = False
        self._lost: str | None = None  # why the slot is gone for good
        self._spawn()

    def _spawn(self) -> None:
        self.actor = self._actor_class.options(**self._options).remote(
            [self._client_fn_ref], self._state_dir)
        self._ready = False

    def _await_ready(self, timeout: float) -> None:
        self.node_id = self._ray.get(self.actor.node.remote(), timeout=timeout)
        self._ready = True

    def wait_ready(self) -> None:
        try:
            self._await_ready(ACTOR_START_S)
        except Exception as exc:
            raise WorkerStartError(f"a Ray actor could not load client_fn: "
                                   f"{_first_line(exc)}") from exc

    def run(self, task: Task, timeout: float | None) -> Outcome:
        if self._lost is None and not self._ready:
            try:
                self._await_ready(REPLACE_S)
            except Exception as exc:  # not placed in time, or died while starting
                self._ray.kill(self.actor)
                self._lost = (f"no node of the cluster could start its actor within "
                              f"{REPLACE_S:g} s ({_first_line(exc)})")
        if self._lost is not None:
            raise SlotLost(self._lost)
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
            if not self._node_reachable():
                self._lost = f"worker node lost (Ray node {self.node_id})"
                raise ClientDisconnected(task.cid, f"worker node lost: the Ray node that ran "
                                                   f"its actor left the cluster during {kind}"
                                         ) from None
            self._spawn()
            raise ClientDisconnected(task.cid, f"its actor died during {kind} "
                                               f"({_first_line(exc)}); a fresh actor "
                                               "replaces it") from None
        except exceptions.RayTaskError as exc:
            raise ClientDisconnected(task.cid, f"its actor failed during {kind}: "
                                               f"{_first_line(exc)}") from None
        return outcome

    def _node_reachable(self) -> bool:
        """Whether the actor's node is still in the cluster: alive for Ray's control store,
        and its raylet accepting connections (the store notices a dead node only after
        several missed health checks; a refused connection is seen at once)."""
        for node in self._ray.nodes():
            if node.get("NodeID") != self.node_id:
                continue
            if not node.get("Alive"):
                return False
            try:
                socket.create_connection((node["NodeManagerAddress"],
                                          int(node["NodeManagerPort"])),
                                         timeout=NODE_PROBE_S).close()
            except (OSError, KeyError, ValueError):
                return False
            return True
        return False

    def close(self) -> None:
        self._ray.kill(self.actor)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
