"""Speed sweep -> terminal table with a throughput sparkline per layout, or plain JSON (`tpfit speed`)."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from tpfit.core.plan import Plan

SPARK = "▁▂▃▄▅▆▇█"
"""Eight bar heights: a layout's output tok/s at each concurrency, scaled to the sweep's best."""
DEFAULT_ROWS = 10


def sweep_rows(plans: tuple[Plan, ...]) -> list[tuple[str, list]]:
    """(layout, one Candidate or None per plan), layouts ordered by their best throughput in the sweep."""
    by_layout: dict[str, list] = {}
    for k, plan in enumerate(plans):
        for c in plan.accepted:
            if c.speed is not None and c.memory.verdict.serves:
                by_layout.setdefault(str(c.layout), [None] * len(plans))[k] = c
    return sorted(by_layout.items(), key=lambda kv: -max(c.speed.total_output_tok_s for c in kv[1] if c))


def sweep_to_dict(plans: tuple[Plan, ...]) -> dict:
    first = plans[0]
    work = first.speed_workload()
    return {
        "model": first.model.model_id, "cluster": first.cluster.to_dict(),
        "input_tokens": work.input_tokens, "output_tokens": work.output_tokens,
        "concurrency": [p.workload.concurrency for p in plans],
        "recommended": [str(p.best.layout) if p.best else None for p in plans],
        "layouts": [{"layout": (next(c for c in cands if c)).layout.to_dict(),
                     "speed": [c.speed.to_dict() if c else None for c in cands]}
                    for _, cands in sweep_rows(plans)],
    }


def _spark(values: list[float | None], top: float) -> str:
    return "".join(" " if v is None else SPARK[min(len(SPARK) - 1, int(v / top * len(SPARK)))] for v in values)


def render_sweep(plans: tuple[Plan, ...], console: Console, *, show_all: bool = False) -> None:
    first = plans[0]
    work = first.speed_workload()
    cl = first.cluster
    console.print(f"[bold]{escape(first.model.model_id)}[/] on {cl.num_gpus}× {escape(cl.gpu.name)}: "
                  f"requests of {work.input_tokens:,} prompt + {work.output_tokens:,} output tokens")
    rows = sweep_rows(plans)
    if not rows:
        console.print("no layout starts and serves; `tpfit plan` says why", style="red")
        return
    from tpfit.report.terminal import fitted_table

    top = max(c.speed.total_output_tok_s for _, cands in rows for c in cands if c)
    spark, bound = "tok/s vs concurrency", f"bound at {plans[-1].workload.concurrency}"
    levels = [f"{p.workload.concurrency}" for p in plans]
    cells = []
    for name, cands in rows[: None if show_all else DEFAULT_ROWS]:
        row = {"layout": name, spark: _spark([c.speed.total_output_tok_s if c else None for c in cands], top)}
        for level, p, c in zip(levels, plans, cands):
            star = "★" if c is not None and p.best is c else ""
            row[level] = "—" if c is None else f"{star}{c.speed.total_output_tok_s:,.0f} ({c.speed.tpot_s * 1e3:.0f})"
        last = next(c for c in reversed(cands) if c)
        row[bound] = last.speed.bound.value
        cells.append(row)
    console.print(fitted_table("Output tok/s across replicas (TPOT ms) by concurrency; ★ = recommended",
                               ["layout", *levels, spark, bound], cells, drop_first=(spark, bound),
                               left=("layout", spark, bound), width=console.width))
    hidden = len(rows) - DEFAULT_ROWS
    if hidden > 0 and not show_all:
        console.print(f"({hidden} more layouts: --all shows them)", style="dim")
    console.print(f"figures: {escape(last.speed.calibration)}; — = the layout does not start or serve there",
                  style="dim")
