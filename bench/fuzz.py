"""The bad-input property suite (tests/test_fuzz.py) in its long mode: fresh random rounds for N minutes.

    nice -n 10 python bench/fuzz.py --minutes 10

Each of the five input properties (mutated real configs, --gpus strings, plan flag values, deploy flag values,
saved plan files) gets an equal share of the time; the script prints how many examples each tried and every
failure pytest reports. CI runs the same properties once, with a fixed seed (see tests/test_fuzz.py).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROPERTIES = 5


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="Total time over the five properties.")
    parser.add_argument("--examples", type=int, default=50, help="Examples per round (fresh seed each round).")
    args = parser.parse_args()
    report = Path(tempfile.mkdtemp(prefix="tpfit-fuzz-")) / "counts.json"
    env = {**os.environ, "TPFIT_FUZZ_SECONDS": str(args.minutes * 60 / PROPERTIES),
           "TPFIT_FUZZ_EXAMPLES": str(args.examples), "TPFIT_FUZZ_REPORT": str(report), "COLUMNS": "100"}
    start = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_fuzz.py"],
                         cwd=ROOT, env=env, capture_output=True, text=True)
    elapsed = time.monotonic() - start
    counts = json.loads(report.read_text()) if report.exists() else {}
    print(f"tpfit bad-input fuzz: {elapsed / 60:.1f} min, {sum(counts.values()):,} examples")
    for prop, n in counts.items():
        print(f"  {prop:<14} {n:>7,}")
    failures = [line for line in run.stdout.splitlines() if line.startswith(("FAILED", "E   "))]
    print("failures:" if failures else "failures: none", *failures[:40], sep="\n  " if failures else "")
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())
