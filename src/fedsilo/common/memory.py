"""Memory for processes that move model-sized messages: glibc malloc settings and pools.

Two malloc settings, both process-wide and both through ``mallopt``; other C libraries are
left as they are.

**A server's arena cap** keeps a long-running server's resident memory close to what it
actually uses.

glibc gives each thread that allocates its own malloc arena (up to 8 per core). A federation
server receives model-sized messages on many gRPC threads, so every arena ends up holding
freed blocks of model size that are never returned. In a federation of 10 echo clients the
server's peak RSS was 2.06 GB with the default and 1.83 GB with two arenas at 10M float32
parameters, and 0.50 GB against 0.30 GB at 1M (the same run each way, on 2 cores).

The server now keeps one arena. With a second one, the event loop's thread allocated in an
arena of its own, which gives an emptied heap back to the system whatever the trim threshold
(glibc's rule for a thread's arena): every round at 10 x 10M, some of gRPC's 4 MiB frame
buffers landed in fresh memory again, 42 to 16,700 page faults per round on the event loop
(3 federations of fedsilo clients), against none with one arena, and the server's peak RSS
was 502-508 MB against 464-473 MB. With 10 Flower clients, whose replies are not paced, the
peak was 992-1,028 MB with one arena against 1,048-1,155 MB with two. These figures come
from 2 cores; with one arena every thread that allocates shares one lock, so on a machine
with many cores busy receiving at once a few arenas may serve better.
``FEDSILO_MALLOC_ARENAS`` overrides the count; 0 leaves malloc's default alone.

**A client's buffer reuse** spares it a page fault per 4 KiB of every message. glibc serves a
block of 128 KiB or more (its threshold rises to 32 MiB at most) with a fresh ``mmap`` and
returns it on ``free``, and it gives the top of its heap back to the system once more than
twice that threshold is free there. A client receives, decodes, encodes and sends one
model-sized message after another, so each of them lands in memory the kernel has to map
again, page by page; in a virtual machine each of those faults cost about 3.5 us, and the
faults took more of a client's CPU than copying the bytes did. Once a client has seen a
message of S bytes, ``reuse_buffers_up_to(S)`` has malloc serve blocks up to 1.25 S from its
heap and keep up to 4 x that free before trimming, so the next round's buffers are the same,
already mapped memory. Measured in federations of 10 echo clients on 2 cores, a client's CPU
per fit went from 116-133 ms to 71-82 ms at 10M float32 parameters, with its peak RSS from
about 280 to about 320 MB. The price is that memory: between rounds a client keeps the
freed buffers of the last round (a few models' worth) instead of returning them.
``FEDSILO_MALLOC_REUSE=0`` leaves malloc's defaults alone. A server raises the same settings
for the largest model it sends in frames: it builds the model's frames and serializes each
new global model every round. It reads fedsilo clients' large replies a few at a time (see
the servicer), so what it keeps freed stays within a few models; Flower clients' replies are
not paced, and with many of them the freed memory kept can reach one model per client.

**Buffer pools** (``BufferPool``) keep model-sized numpy buffers for the next message of the
same size, whatever malloc's settings: a server's reply buffers and the float64 sums of its
rounds, a client's model buffer. A buffer is handed out again only once nothing refers to it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

log = logging.getLogger("fedsilo")

__all__ = ["DEFAULT_ARENAS", "BufferPool", "limit_malloc_arenas", "reuse_buffers_up_to"]

DEFAULT_ARENAS = 1
# mallopt parameter numbers, from glibc's malloc.h
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
_MIN_REUSE = 1 << 20  # below this, malloc's own dynamic threshold already keeps up
_MAX_THRESHOLD = 2**31 - 1  # mallopt takes a C int

_reuse_size = 0  # the message size the settings were last raised for


@functools.cache
def _mallopt() -> Callable[[int, int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        function: Callable[[int, int], int] = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # not glibc: nothing to tune
        return None
    return function


def reuse_buffers_up_to(size: int) -> bool:
    """Keep freed blocks of up to about ``size`` bytes for reuse; True if the settings changed.

    Only ever raises the settings, and only when ``size`` grows by more than a quarter, so
    calling it for every message costs a comparison.
    """
    global _reuse_size
    if size < _MIN_REUSE or size * 4 <= _reuse_size * 5:
        return False
    if os.environ.get("FEDSILO_MALLOC_REUSE", "1") == "0":
        return False
    _reuse_size = size  # also when refused: not asked again until messages grow
    mallopt = _mallopt()
    if mallopt is None:
        return False
    threshold = min(size + size // 4, _MAX_THRESHOLD)
    trim = min(4 * threshold, _MAX_THRESHOLD)
    # the threshold first: setting either one fixes both, ending malloc's own adjustment
    if not mallopt(_M_MMAP_THRESHOLD, threshold):
        log.debug("mallopt(M_MMAP_THRESHOLD, %d) was refused", threshold)
        return False
    if not mallopt(_M_TRIM_THRESHOLD, trim):
        log.debug("mallopt(M_TRIM_THRESHOLD, %d) was refused", trim)
    return True


def limit_malloc_arenas(arenas: int | None = None) -> bool:
    """Cap glibc's malloc arenas for threads that start from now on; True if it took effect."""
    if arenas is None:
        arenas = int(os.environ.get("FEDSILO_MALLOC_ARENAS", DEFAULT_ARENAS))
    if arenas <= 0:
        return False
    mallopt = _mallopt()
    if mallopt is None:
        return False
    accepted = bool(mallopt(_M_ARENA_MAX, arenas))
    if not accepted:
        log.debug("mallopt(M_ARENA_MAX, %d) was refused", arenas)
    return accepted


class BufferPool:
    """Model-sized byte buffers, filled again by the next message of the same size once
    nothing refers to them.

    A buffer of a few MiB or more comes from a fresh ``mmap``, which the kernel maps and
    zeroes page by page as the message fills it; for a peer that receives a model-sized
    message after another, that costs more CPU than copying the bytes in. The pool keeps
    the last ``keep`` buffers it handed out and hands one out again only once nothing else
    holds it (no tensor, array or view of it is alive), so a message never overwrites
    another that is still in use. Safe from any thread.
    """

    def __init__(self, keep: int) -> None:
        if keep < 1:
            raise ValueError(f"a buffer pool keeps at least 1 buffer, got {keep}")
        self._keep = keep
        self._lock = threading.Lock()
        self._buffers: list[Any] = []  # the most recently handed out last

    def take(self, size: int) -> Any:
        """A uint8 array of ``size`` bytes: a kept one nothing else holds, or a new one."""
        with self._lock:
            index = self._free(size)
            if index is not None:
                buffer = self._buffers.pop(index)
            else:
                buffer = np.empty(size, dtype=np.uint8)
                if len(self._buffers) >= self._keep:
                    # The oldest free buffer goes (freed now), else the oldest (freed once
                    # whatever holds it lets go).
                    oldest_free = self._free()
                    del self._buffers[0 if oldest_free is None else oldest_free]
            self._buffers.append(buffer)
            return buffer

    def discard(self, buffer: Any) -> None:
        """Keep ``buffer`` no longer (a message that was abandoned halfway)."""
        with self._lock:
            self._buffers = [kept for kept in self._buffers if kept is not buffer]

    def _free(self, size: int | None = None) -> int | None:
        """The index of the oldest buffer nothing else holds (of ``size`` bytes, if given)."""
        for index in range(len(self._buffers)):
            if size is not None and len(self._buffers[index]) != size:
                continue
            # Two references: the list and getrefcount's argument. Any view of the buffer
            # that is still alive (a tensor, an array made from one) holds one more, and
            # only this pool could hand out a new one.
            if sys.getrefcount(self._buffers[index]) == 2:
                return index
        return None

    @property
    def kept(self) -> int:
        """How many buffers the pool holds (in use or not)."""
        return len(self._buffers)

    def __getstate__(self) -> dict[str, int]:
        # A copy (pickled, or deep-copied with what holds the pool) starts empty: buffers
        # are memory to reuse, not state.
        return {"keep": self._keep}

    def __setstate__(self, state: dict[str, int]) -> None:
        self.__init__(state["keep"])  # type: ignore[misc]
