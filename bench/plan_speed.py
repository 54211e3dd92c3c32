"""How fast `tpfit plan` answers: the whole process from cold, and the layout search alone.

    python bench/plan_speed.py

Goals (issue #11): the cold `tpfit plan --json` process at most 1.25x a bare `python -c "import typer, rich"`
process timed in the same run (alternating, so load on the machine hits both alike); the layout search at most
20 ms for 1, 8 and 64 GPUs (DeepSeek-V3 on 8x8 H100 is the hard case). Measured and printed side by side; a
search over its goal is followed by where its CPU time goes, step by step (sampled: `where_ms`).

"Cold" is a fresh process, with tpfit's bytecode compiled as `pip install` leaves it: the script compiles it first,
since a machine that sets PYTHONDONTWRITEBYTECODE would otherwise recompile every tpfit module in every timed run
while typer and rich load from their installed bytecode.
"""

from __future__ import annotations

import compileall
import resource
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from types import FrameType

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
NO_SPEED_GPUS = "8x8x80GB"
"""The same 64 GPUs given by their size alone (`--gpus 8x8x80GB`): no bandwidth, so no speed figures. The search as
it was when the goal was set (the speed model came after): it shows what of a 64-GPU search the speed model takes."""


LIBRARY = f"{BASELINE}; from tpfit import Plan, load_model"
"""Where the rest of the time goes: the planning library's import (msgspec, the core, the model loader), before any
option is parsed or any layout planned. A process of its own, so it also pays what `tpfit plan` skips
(tpfit/cli/app.py `run`): msgspec's import of typing_extensions and the garbage collector's passes at exit."""
COLD_REPEATS = 15


def cold_s() -> tuple[dict[str, float], dict[str, float]]:
    """Fresh processes run in turn: `tpfit plan ... --json`, `python -c BASELINE` and `python -c LIBRARY`.

    Returns the median wall time of each and its median CPU time (user + system, the child's own rusage): the wall
    time is the goal's measure, the CPU time says how much of it is the process's own work on a shared machine.
    """
    plan = [sys.executable, "-m", "tpfit", "plan", "llama-3.1-70b", "--gpus", "2xH100", "--context", "8192", "--json"]
    commands = {"plan": plan, "base": [sys.executable, "-c", BASELINE], "library": [sys.executable, "-c", LIBRARY]}
    wall: dict[str, list[float]] = {name: [] for name in commands}
    cpu: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(COLD_REPEATS):
        for name, cmd in commands.items():
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t = time.perf_counter()
            subprocess.run(cmd, capture_output=True, cwd=ROOT, check=True)  # a failing run would look fast
            wall[name].append(time.perf_counter() - t)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu[name].append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return ({name: statistics.median(t) for name, t in wall.items()},
            {name: statistics.median(t) for name, t in cpu.items()})


def search_ms(model: str, gpus: str) -> tuple[float, float, int]:
    """Median wall and CPU milliseconds of one `make_plan` (the CPU time moves less when others load the machine)."""
    spec, cluster = find_in_catalog(model), Cluster.parse(gpus)
    make_plan(spec, cluster, Workload(context=8192), EngineArgs())  # warm caches (catalog JSON, constants)
    times, cpu = [], []
    for _ in range(REPEATS):
        t, c = time.perf_counter(), time.process_time()
        plan = make_plan(spec, cluster, Workload(context=8192), EngineArgs())
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return statistics.median(times) * 1000, statistics.median(cpu) * 1000, len(plan.candidates)


PHASES = {("rules.py", "check"): "layout rules", ("weights.py", "group_weights"): "weights",
          ("memory.py", "make_memory_plan"): "memory plans", ("perf.py", "make_speed"): "speed model",
          ("rank.py", "pick_best"): "ranking", ("layout.py", "enumerate_layouts"): "enumeration"}
"""The steps of a search, by the function that is each (the first found walking out from the running frame);
the rest is make_plan's own loop: keys, caches, the Candidate values, and the garbage collector's passes, which
run where objects are made."""
SAMPLE_S = 0.0002
"""CPU seconds between two samples of what a search is doing."""


def where_ms(model: str, gpus: str, search_cpu_ms: float, runs: int = 60) -> dict[str, float]:
    """Where one `make_plan`'s CPU time goes, by step (PHASES): a SIGPROF every SAMPLE_S of CPU notes the step
    running, over `runs` searches; each step's share of the samples times the search's median CPU time."""
    spec, cluster = find_in_catalog(model), Cluster.parse(gpus)
    counts: Counter[str] = Counter()

    def sample(signum: int, frame: FrameType | None) -> None:
        while frame is not None:
            code = frame.f_code
            where = (Path(code.co_filename).name, code.co_name)
            if where in PHASES or where == ("plan.py", "make_plan"):
                counts[PHASES.get(where, "the loop and the rest")] += 1
                return
            frame = frame.f_back

    old = signal.signal(signal.SIGPROF, sample)
    signal.setitimer(signal.ITIMER_PROF, SAMPLE_S, SAMPLE_S)
    try:
        for _ in range(runs):
            make_plan(spec, cluster, Workload(context=8192), EngineArgs())
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        signal.signal(signal.SIGPROF, old)
    total = sum(counts.values())
    return {step: search_cpu_ms * n / total for step, n in counts.most_common()}


def main() -> int:
    compileall.compile_dir(ROOT / "tpfit", quiet=1)
    wall, cpu = cold_s()
    cli, base, library = wall["plan"], wall["base"], wall["library"]
    print(f"cold `tpfit plan --json` process: {cli:.3f} s; `python -c \"{BASELINE}\"`: {base:.3f} s; ratio "
          f"{cli / base:.2f}x   goal <= {COLD_GOAL_RATIO}x")
    print(f"  (`python -c \"{LIBRARY}\"`, the library's import alone: {library:.3f} s = {library / base:.2f}x; "
          f"CPU time: plan {cpu['plan']:.3f} s, baseline {cpu['base']:.3f} s = {cpu['plan'] / cpu['base']:.2f}x, "
          f"library {cpu['library'] / cpu['base']:.2f}x)")
    for model in ("llama-3.1-70b", "deepseek-v3"):
        for gpus in ("1xh100", "8xh100", "8x8xh100", NO_SPEED_GPUS):
            ms, cpu_ms, n = search_ms(model, gpus)
            print(f"search {model:14s} {gpus:9s}: {ms:7.2f} ms (CPU {cpu_ms:7.2f} ms) for {n:4d} layouts   "
                  f"goal <= {SEARCH_GOAL_MS} ms" + ("   (no speed figures: GPUs given by their size)"
                                                     if gpus == NO_SPEED_GPUS else ""))
            if cpu_ms > SEARCH_GOAL_MS and gpus != NO_SPEED_GPUS:
                steps = where_ms(model, gpus, cpu_ms)
                print("  where its CPU ms go (sampled): " + ", ".join(f"{step} {t:.1f}" for step, t in steps.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
