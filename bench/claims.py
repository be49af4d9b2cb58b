"""Reading the raw provider fraud files: seconds and peak memory of the aggregation.

    python bench/claims.py                    # generated files at the real row counts
    python bench/claims.py --dir PATH         # files already there (the real ones, say)
    python bench/claims.py --scale 0.1        # a tenth of the real row counts

Without ``--dir`` the four files are generated first (5,410 providers, 138,556
beneficiaries, 40,474 inpatient and 517,737 outpatient claims, every column of the public
layout) into a temporary directory. The aggregation then runs ``--repeat`` times, each in a
fresh interpreter, and the script prints each run's seconds (import excluded) and peak
resident memory (the whole process, interpreter and libraries included), against the aims
of 20 s and 1.5 GB on two cores. No other library reads this layout, so there is no
reference program to set beside it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from fedsilo.examples.fraud.claims_fixture import scaled, write_claims_files

AIM_SECONDS = 20.0
AIM_PEAK_MIB = 1536.0

# Runs in a fresh interpreter so that its peak memory is the aggregation's alone.
_CHILD = """
import json, sys, time
from fedsilo.examples.fraud.claims import aggregate_claims, find_claims_files
started = time.perf_counter()
table = aggregate_claims(find_claims_files(sys.argv[1]))
seconds = time.perf_counter() - started
# VmHWM: this program's own peak. ru_maxrss would carry the generating parent's peak, which
# Linux keeps across fork and exec.
status = open("/proc/self/status").read()
peak_mib = int(status.split("VmHWM:")[1].split()[0]) / 1024
print(json.dumps({"seconds": seconds, "peak_mib": peak_mib, "providers": len(table)}))
"""


def measure(directory: Path) -> dict[str, float]:
    """One aggregation of the files in ``directory``, in its own process."""
    done = subprocess.run([sys.executable, "-c", _CHILD, str(directory)], check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, help="the four files (default: generate them)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="fraction of the real row counts to generate")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fedsilo-claims-") as scratch:
        directory = args.dir
        if directory is None:
            size = scaled(args.scale)
            directory = Path(scratch)
            print(f"generating {size} ...", flush=True)
            write_claims_files(directory, size, seed=0)
        mib = sum(p.stat().st_size for p in directory.glob("*.csv")) / 2**20
        print(f"files: {directory} ({mib:.0f} MiB of CSV)")
        runs = [measure(directory) for _ in range(args.repeat)]
    for i, run in enumerate(runs, 1):
        print(f"run {i}: {run['seconds']:.2f} s, peak {run['peak_mib']:.0f} MiB, "
              f"{run['providers']:.0f} providers")
    best = min(r["seconds"] for r in runs)
    peak = max(r["peak_mib"] for r in runs)
    print(f"best {best:.2f} s (aim < {AIM_SECONDS:.0f} s, ratio {best / AIM_SECONDS:.2f}); "
          f"peak {peak:.0f} MiB (aim < {AIM_PEAK_MIB:.0f} MiB, ratio "
          f"{peak / AIM_PEAK_MIB:.2f})")


if __name__ == "__main__":
    main()
