"""Hides directories from a job before it starts: run inside new user and mount namespaces.

Usage (as the runner calls it)::

    unshare --user --map-root-user --mount --propagation private \\
        python _job_jail.py '{"hide": [H...], "keep": [K...]}' -- PROGRAM ARGS...

For each hidden directory H, an empty tmpfs is prepared next to it, the kept paths that lie
inside H are bind-mounted into it at the same relative places, and the tmpfs is moved over H.
The program then sees H holding only what it was given: its own job directory and channels,
not the rest of its site nor any other site. Standard library only; runs as a plain script.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True)


def hide(hidden: Path, keep: list[Path]) -> None:
    stage = Path(tempfile.mkdtemp(prefix=".fedsilo-jail-", dir=hidden.parent))
    _mount("-t", "tmpfs", "-o", "mode=0755", "tmpfs", str(stage))
    inside = sorted((p for p in keep if p.exists() and p.is_relative_to(hidden) and p != hidden),
                    key=lambda p: len(p.parts))
    for path in inside:  # parents first: a nested path then lands inside its parent's bind
        target = stage / path.relative_to(hidden)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch()
        _mount("--bind", str(path), str(target))
    _mount("--move", str(stage), str(hidden))
    stage.rmdir()  # the mount moved away: this removes the empty directory left on disk


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: _job_jail.py SPEC_JSON -- PROGRAM [ARGS...]", file=sys.stderr)
        return 2
    spec = json.loads(argv[0])
    keep = [Path(p) for p in spec["keep"]]
    try:
        for hidden in spec["hide"]:
            hide(Path(hidden), keep)
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"job isolation failed: {exc}", file=sys.stderr)
        return 125
    os.execvp(argv[2], argv[2:])
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
