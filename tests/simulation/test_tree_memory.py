"""The memory helper behind the simulation's memory tests counts each process once."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil

from tests.simulation.memory import tree_processes

SLEEPER = "import time; time.sleep(60)"
# Forks a copy of itself that never runs a program of its own, starts a program, prints
# both pids and sleeps.
PARENT = f"""
import os, subprocess, sys, time
copy = os.fork()
if copy == 0:
    time.sleep(60)
    os._exit(0)
started = subprocess.Popen([sys.executable, "-c", {SLEEPER!r}])
print(copy, started.pid, flush=True)
time.sleep(60)
"""


def test_a_started_program_is_counted_and_an_unexecuted_copy_is_not() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    root = psutil.Process(parent.pid)
    try:
        assert parent.stdout is not None
        copy, started = map(int, parent.stdout.readline().split())
        deadline = time.monotonic() + 10
        while psutil.Process(started).cmdline()[-1:] != [SLEEPER]:
            assert time.monotonic() < deadline, "the program did not start"
            time.sleep(0.01)
        assert {child.pid for child in root.children()} == {copy, started}
        counted = {pid for pid, _, _ in tree_processes(root)}
        # The copy shares its parent's memory until it runs a program: counting it would
        # count that memory twice.
        assert counted == {parent.pid, started}
        assert {pid for pid, _, _ in tree_processes(root, frozenset({started}))} == {parent.pid}
    finally:
        for process in [*root.children(recursive=True), root]:
            process.kill()
        parent.wait()
