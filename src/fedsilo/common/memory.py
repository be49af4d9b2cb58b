"""glibc malloc settings for processes that move model-sized messages.

Two settings, both process-wide and both through ``mallopt``; other C libraries are left as
they are.

**A server's arena cap** keeps a long-running server's resident memory close to what it
actually uses.

glibc gives each thread that allocates its own malloc arena (up to 8 per core). A federation
server receives model-sized messages on many gRPC threads, so every arena ends up holding
freed blocks of model size that are never returned. In a federation of 10 echo clients the
server's peak RSS was 2.06 GB with the default and 1.83 GB with two arenas at 10M float32
parameters, and 0.50 GB against 0.30 GB at 1M (the same run each way, on 2 cores).
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
``FEDSILO_MALLOC_REUSE=0`` leaves malloc's defaults alone. Servers keep the defaults: they
hold many clients' messages at once, and keeping them raised a server's peak RSS from 0.5 to
0.8 GB in the same runs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
from collections.abc import Callable

log = logging.getLogger("fedsilo")

__all__ = ["DEFAULT_ARENAS", "limit_malloc_arenas", "reuse_buffers_up_to"]

DEFAULT_ARENAS = 2
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
