"""Long fuzzing run of fedsilo's message decoders, tensor decoder and chunk assembler.

    python bench/fuzz.py [--seconds 60] [--target NAME ...] [--engine atheris|hypothesis]

Each target (see tests/reliability/fuzz_targets.py) takes bytes and must return or raise one
of fedsilo's documented errors (ProtocolError, SerializationError, ClientFailure). With
atheris (coverage-guided, libFuzzer) each target runs in its own process for ``--seconds``,
starting from the valid seed inputs; without it, hypothesis draws random and mutated inputs
for the same time. Any other exception is a finding: the run prints it and exits non-zero.
The servicer over a real gRPC channel is fuzzed in tests/reliability/test_fuzz.py.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]


def run_atheris_target(name: str, seconds: int) -> None:
    """Run inside the child process: fuzz one target with atheris until time is up."""
    import atheris

    with atheris.instrument_imports(include=["fedsilo"]):
        from tests.reliability import fuzz_targets

    function = fuzz_targets.TARGETS[name]

    def one_input(data: bytes) -> None:
        try:
            function(data)
        except fuzz_targets.EXPECTED_ERRORS:
            pass

    corpus = Path(tempfile.mkdtemp(prefix=f"fedsilo-fuzz-{name}-"))
    for index, seed in enumerate(fuzz_targets.seeds()[name]):
        (corpus / f"seed-{index}").write_bytes(seed)
    atheris.Setup([sys.argv[0], f"-max_total_time={seconds}", "-rss_limit_mb=4096",
                   "-print_final_stats=1", str(corpus)], one_input)
    atheris.Fuzz()


def run_hypothesis(names: list[str], seconds: int) -> int:
    failures = 0
    for name in names:
        count, finding = _hypothesis_target(name, seconds)
        if finding is None:
            print(f"{name}: {count} inputs in {seconds} s, no finding")
        else:
            failures += 1
            print(f"{name}: FINDING after {count} inputs: {type(finding).__name__}: {finding}")
    return failures


def _hypothesis_target(name: str, seconds: int) -> tuple[int, BaseException | None]:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from tests.reliability import fuzz_targets
    from tests.reliability.test_fuzz import mutated

    function = fuzz_targets.TARGETS[name]
    deadline = time.monotonic() + seconds
    count = 0

    @settings(max_examples=10**9, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.one_of(st.binary(max_size=4096), mutated(fuzz_targets.seeds()[name])))
    def check(data: bytes) -> None:
        nonlocal count
        count += 1
        if time.monotonic() > deadline:
            raise _TimeUp
        try:
            function(data)
        except fuzz_targets.EXPECTED_ERRORS:
            pass

    try:
        check()
    except _TimeUp:
        return count, None
    except Exception as exc:  # a finding
        return count, exc
    return count, None


class _TimeUp(Exception):
    pass


def main() -> None:
    from tests.reliability.fuzz_targets import TARGETS

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=60, help="per target")
    parser.add_argument("--target", action="append", choices=sorted(TARGETS))
    parser.add_argument("--engine", choices=["atheris", "hypothesis"])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_atheris_target(args.child, args.seconds)
        return
    names = args.target or sorted(TARGETS)
    engine = args.engine or ("atheris" if importlib.util.find_spec("atheris") else "hypothesis")
    print(f"engine: {engine}, {args.seconds} s per target, targets: {', '.join(names)}")
    if engine == "hypothesis":
        sys.exit(1 if run_hypothesis(names, args.seconds) else 0)
    findings = 0
    for name in names:
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, __file__, "--child", name, "--seconds", str(args.seconds)],
            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
        stats = [line for line in done.stderr.splitlines()
                 if line.startswith(("stat::number_of_executed_units", "stat::peak_rss_mb"))]
        runs = next((s.split(":")[-1].strip() for s in stats if "executed_units" in s), "?")
        status = "no finding" if done.returncode == 0 else f"FINDING (exit {done.returncode})"
        print(f"{name}: {runs} inputs in {time.monotonic() - started:.0f} s, {status}")
        if done.returncode != 0:
            findings += 1
            print(done.stderr[-4000:])
    sys.exit(1 if findings else 0)


if __name__ == "__main__":
    main()
