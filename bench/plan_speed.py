"""How fast `tpfit plan` answers: the whole process from cold, and the layout search alone.

    python bench/plan_speed.py

Goal (issue #2): cold CLI <= 0.3 s; search <= 20 ms for 1, 8 and 64 GPUs. Both are measured here,
side by side in one run, and printed with the goal beside them.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tpfit.core.engine import EngineArgs  # noqa: E402
from tpfit import Workload, make_plan  # noqa: E402
from tpfit.hardware.cluster import Cluster  # noqa: E402
from tpfit.model.catalog import find_in_catalog  # noqa: E402

REPEATS = 7


def cold_cli_s() -> tuple[float, float]:
    """Median wall time of a fresh `python -m tpfit plan ... --json` process, and of bare `python -c pass`."""
    cmd = [sys.executable, "-m", "tpfit", "plan", "llama-3.1-70b", "--gpus", "2xH100", "--context", "8192", "--json"]
    times, base = [], []
    for _ in range(REPEATS):
        t = time.perf_counter()
        subprocess.run(cmd, capture_output=True, cwd=ROOT, check=False)
        times.append(time.perf_counter() - t)
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], capture_output=True, check=False)
        base.append(time.perf_counter() - t)
    return statistics.median(times), statistics.median(base)


def search_ms(model: str, gpus: str) -> tuple[float, int]:
    spec, cluster = find_in_catalog(model), Cluster.parse(gpus)
    make_plan(spec, cluster, Workload(context=8192), EngineArgs())  # warm caches (catalog JSON, constants)
    times = []
    for _ in range(REPEATS):
        t = time.perf_counter()
        plan = make_plan(spec, cluster, Workload(context=8192), EngineArgs())
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000, len(plan.candidates)


def main() -> int:
    cli, python = cold_cli_s()
    print(f"cold `tpfit plan --json` process: {cli:.3f} s (bare python start: {python:.3f} s)   goal <= 0.3 s")
    for model in ("llama-3.1-70b", "deepseek-v3"):
        for gpus in ("1xh100", "8xh100", "8x8xh100"):
            ms, n = search_ms(model, gpus)
            print(f"search {model:14s} {gpus:9s}: {ms:7.2f} ms for {n:4d} layouts   goal <= 20 ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
