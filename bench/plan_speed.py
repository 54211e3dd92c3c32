"""How fast `tpfit plan` answers: the whole process from cold, and the layout search alone.

    python bench/plan_speed.py

Goals (issue #11): the cold `tpfit plan --json` process at most 1.25x a bare `python -c "import typer, rich"`
process timed in the same run (alternating, so load on the machine hits both alike); the layout search at most
20 ms for 1, 8 and 64 GPUs (DeepSeek-V3 on 8x8 H100 is the hard case). Measured and printed side by side.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tpfit import EngineArgs, Workload, make_plan  # noqa: E402
from tpfit.hardware.cluster import Cluster  # noqa: E402
from tpfit.model.catalog import find_in_catalog  # noqa: E402

REPEATS = 7


BASELINE = "import typer, rich"
"""What every typer + rich command pays before doing anything: the floor of the cold-start ratio."""
COLD_GOAL_RATIO = 1.25
SEARCH_GOAL_MS = 20


def cold_cli_s() -> tuple[float, float]:
    """Median wall time of a fresh `python -m tpfit plan ... --json` process, and of `python -c BASELINE`."""
    cmd = [sys.executable, "-m", "tpfit", "plan", "llama-3.1-70b", "--gpus", "2xH100", "--context", "8192", "--json"]
    times, base = [], []
    for _ in range(REPEATS):
        t = time.perf_counter()
        subprocess.run(cmd, capture_output=True, cwd=ROOT, check=False)
        times.append(time.perf_counter() - t)
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", BASELINE], capture_output=True, check=False)
        base.append(time.perf_counter() - t)
    return statistics.median(times), statistics.median(base)


def typer_floor_s() -> float:
    """Median start of `import typer, rich` plus the pydantic adapters typer 0.29 builds for every option of a
    command (typer._adapters): what any typer command pays before its own code runs."""
    times = []
    for _ in range(REPEATS):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", f"{BASELINE}, typer._adapters"], capture_output=True, check=False)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


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
    cli, base = cold_cli_s()
    print(f"cold `tpfit plan --json` process: {cli:.3f} s; `python -c \"{BASELINE}\"`: {base:.3f} s; ratio "
          f"{cli / base:.2f}x   goal <= {COLD_GOAL_RATIO}x")
    floor = typer_floor_s()
    print(f"  (typer's own option adapters, `{BASELINE}, typer._adapters`: {floor:.3f} s = {floor / base:.2f}x; "
          f"tpfit plan over that floor: {cli / floor:.2f}x)")
    for model in ("llama-3.1-70b", "deepseek-v3"):
        for gpus in ("1xh100", "8xh100", "8x8xh100"):
            ms, n = search_ms(model, gpus)
            print(f"search {model:14s} {gpus:9s}: {ms:7.2f} ms for {n:4d} layouts   goal <= {SEARCH_GOAL_MS} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
