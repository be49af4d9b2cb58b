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
