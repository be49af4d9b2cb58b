"""Runs a job's program and records how it ended, so the agent can learn it after a restart.

Usage: ``python _job_wrapper.py EXIT_FILE -- PROGRAM ARGS...``. The wrapper is the job's
process-group leader; it passes SIGTERM and SIGINT on to the program, waits for it and writes
``{"returncode": N}`` to EXIT_FILE (atomically). Its child is killed if the wrapper dies
(``PR_SET_PDEATHSIG``), so a job contained in its own PID namespace never outlives it. Standard
library only: it runs as a plain script, without importing fedsilo.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
from types import FrameType

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: _job_wrapper.py EXIT_FILE -- PROGRAM [ARGS...]", file=sys.stderr)
        return 2
    exit_file, command = argv[0], argv[2:]
    child = subprocess.Popen(command, preexec_fn=_die_with_parent)

    def forward(signum: int, frame: FrameType | None) -> None:
        if child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    returncode = child.wait()
    partial = exit_file + ".partial"
    with open(partial, "w") as handle:
        json.dump({"returncode": returncode}, handle)
    os.replace(partial, exit_file)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
