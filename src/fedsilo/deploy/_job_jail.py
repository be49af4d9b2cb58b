"""The first process of a job's PID namespace: builds what the job sees, runs it, ends it whole.

Usage (as the runner calls it, inside ``unshare --user --map-root-user --pid --fork
--kill-child --mount``)::

    python _job_jail.py '{"root": STAGE | null, "ro": [...], "rw": [...], "cwd": DIR}' \\
        -- PROGRAM ARGS...

It is PID 1 of the job's namespace, and the namespace lives exactly as long as it does: when it
exits, or is killed, the kernel kills every other process in the namespace, a daemon that
double-forked and called ``setsid`` included. It leaves when the program does.

With ``root`` it first builds a new root filesystem on a tmpfs at STAGE: the ``ro`` paths
(the Python installation, system libraries, a few files of ``/etc``, the job's channels)
bound read-only at their own paths, the ``rw`` paths (the job's unpacked code, model and output
directories) bound writable, a fresh ``/proc`` of the job's namespace, ``/tmp`` and a minimal
``/dev``; then it changes root into it. Anything else on the machine (the site's keys and
policy, other channels, other jobs, other sites, a CA key) is simply not there. Without
``root`` only ``/proc`` is replaced (the job still cannot see the agent's processes).

Before the program runs, every capability is dropped (bounding and ambient sets, no new
privileges), so the job cannot undo the mounts, change root again or mount anything.
Standard library only; runs as a plain script.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
from pathlib import Path

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC, MS_RELATIME = 1024, 2048, 4096, 16384, 1 << 21
ST_RELATIME = 4096
PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 24, 38, 47, 4
DEVICES = ("null", "zero", "random", "urandom")
JAIL_FAILED = 125

_libc = ctypes.CDLL(None, use_errno=True)


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    if _libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None,
                   ctypes.c_ulong(flags), data.encode() or None) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"mount {source} on {target}: {os.strerror(errno)}")


def _bind(source: Path, stage: Path, *, writable: bool) -> None:
    target = stage / source.relative_to("/")
    if source.is_symlink():  # /bin -> usr/bin and the like: the same link inside
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists() and not target.is_symlink():
            target.symlink_to(os.readlink(source))
        return
    if source.is_dir():
        target.mkdir(parents=True, exist_ok=True)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.touch()
    _mount(str(source), str(target), None, MS_BIND | MS_REC)
    if not writable:  # a remount must keep the flags the source mount is locked with
        kept = os.statvfs(source).f_flag & (MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME
                                            | MS_NODIRATIME)
        relatime = MS_RELATIME if os.statvfs(source).f_flag & ST_RELATIME else 0
        _mount("none", str(target), None, MS_REMOUNT | MS_BIND | MS_RDONLY | kept | relatime)


def build_root(stage: Path, read_only: list[Path], writable: list[Path]) -> None:
    """A tmpfs at ``stage`` holding only the given paths, /proc, /tmp and a few devices."""
    _mount("tmpfs", str(stage), "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
    for scratch in ("tmp", "dev/shm"):  # first: the job's own paths may lie under /tmp
        (stage / scratch).mkdir(parents=True, exist_ok=True)
        _mount("tmpfs", str(stage / scratch), "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    bound: list[Path] = []
    for path in sorted(read_only, key=lambda p: len(p.parts)):
        if any(path.is_relative_to(b) for b in bound):
            continue  # already there, inside a directory bound before
        if path.exists() or path.is_symlink():
            _bind(path, stage, writable=False)
            if not path.is_symlink():
                bound.append(path)
    for path in sorted(writable, key=lambda p: len(p.parts)):
        _bind(path, stage, writable=True)
    for device in DEVICES:
        _bind(Path("/dev") / device, stage, writable=True)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        (stage / "dev" / name).symlink_to(target)
    (stage / "proc").mkdir(exist_ok=True)
    _mount("proc", str(stage / "proc"), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    os.chroot(stage)


def drop_capabilities() -> None:
    """No capability survives the next exec: empty bounding and ambient sets, no new privileges."""
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    for cap in range(last + 1):
        _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
    _libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")


def run_as_init(command: list[str], cwd: str) -> int:
    """Run ``command`` as the namespace's init: pass on stop signals, reap orphans, and return
    (ending the namespace) when the program itself ends."""
    program = os.fork()
    if program == 0:
        try:
            os.setpgid(0, 0)  # stop signals reach the program through this init, once
            os.chdir(cwd)
            drop_capabilities()
            os.execvp(command[0], command)
        except OSError as exc:
            print(f"job could not start: {exc}", file=sys.stderr)
        os._exit(127)
    try:  # set from both sides, so a signal right after the fork finds the group
        os.setpgid(program, program)
    except OSError:
        pass  # the child has already exec'd, its group set

    def forward(signum: int, _frame: object) -> None:
        try:
            os.killpg(program, signum)  # the program and the children in its group
        except ProcessLookupError:
            pass

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    while True:
        pid, status = os.wait()
        if pid == program:
            if os.WIFSIGNALED(status):
                return 128 + os.WTERMSIG(status)
            return os.WEXITSTATUS(status)


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: _job_jail.py SPEC_JSON -- PROGRAM [ARGS...]", file=sys.stderr)
        return 2
    spec = json.loads(argv[0])
    try:
        if spec.get("root"):
            build_root(Path(spec["root"]), [Path(p) for p in spec["ro"]],
                       [Path(p) for p in spec["rw"]])
        else:
            _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except OSError as exc:
        print(f"job isolation failed: {exc}", file=sys.stderr)
        return JAIL_FAILED
    return run_as_init(argv[2:], spec["cwd"])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
