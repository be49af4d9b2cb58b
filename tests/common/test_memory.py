"""The malloc arena cap is applied in a fresh process and can be turned off."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fedsilo.common.memory import limit_malloc_arenas

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="glibc's mallopt exists on Linux only")


def _in_fresh_process(code: str, **env: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env={**__import__("os").environ, **env}, check=True)
    return done.stdout.strip()


def test_cap_takes_effect_with_glibc() -> None:
    out = _in_fresh_process("from fedsilo.common.memory import limit_malloc_arenas as f; "
                            "print(f())")
    assert out == "True"


def test_zero_turns_it_off() -> None:
    out = _in_fresh_process("from fedsilo.common.memory import limit_malloc_arenas as f; "
                            "print(f())", FEDSILO_MALLOC_ARENAS="0")
    assert out == "False"
    assert limit_malloc_arenas(0) is False


_REUSE_PROBE = """
import resource
from fedsilo.common.memory import reuse_buffers_up_to
size = 40 << 20
tuned = reuse_buffers_up_to(size)
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(2):  # the first messages map their memory once
    message = b"x" * size
    del message
before = faults()
for _ in range(10):
    message = b"x" * size  # a bytes object from malloc, written page by page
    del message
print(tuned, faults() - before)
"""


def test_buffer_reuse_spares_the_faults_of_every_message() -> None:
    """Ten 40 MiB messages one after another: with reuse they land in memory already
    mapped; with malloc's defaults (which serve anything over 32 MiB with mmap) each one
    maps its 10,240 pages afresh."""
    pages = (40 << 20) // 4096
    tuned, faults = _in_fresh_process(_REUSE_PROBE).split()
    assert tuned == "True"
    assert int(faults) < pages  # fewer than one message's worth, over ten messages
    tuned, faults = _in_fresh_process(_REUSE_PROBE, FEDSILO_MALLOC_REUSE="0").split()
    assert tuned == "False"
    assert int(faults) >= 9 * pages


def test_buffer_reuse_only_ever_grows() -> None:
    out = _in_fresh_process(
        "from fedsilo.common.memory import reuse_buffers_up_to as f; "
        "print(f(100), f(8 << 20), f(9 << 20), f(4 << 20), f(11 << 20))")
    # below 1 MiB malloc keeps up by itself; a size within a quarter of the last, or
    # smaller, changes nothing
    assert out == "False True False False True"


def test_messages_beyond_what_mallopt_takes_are_capped() -> None:
    """mallopt takes a C int: a 4 GiB model sets the largest threshold it can, no error."""
    out = _in_fresh_process(
        "from fedsilo.common.memory import reuse_buffers_up_to as f; print(f(4 << 30))")
    assert out == "True"
