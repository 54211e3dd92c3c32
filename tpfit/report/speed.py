"""Speed sweep -> terminal table with a throughput sparkline per layout, or plain JSON (`tpfit speed`)."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

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
    work = first.workload.speed_workload()
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
    work = first.workload.speed_workload()
    cl = first.cluster
    console.print(f"[bold]{escape(first.model.model_id)}[/] on {cl.num_gpus}× {escape(cl.gpu.name)}: "
                  f"requests of {work.input_tokens:,} prompt + {work.output_tokens:,} output tokens")
    rows = sweep_rows(plans)
    if not rows:
        console.print("no layout starts and serves; `tpfit plan` says why", style="red")
        return
    top = max(c.speed.total_output_tok_s for _, cands in rows for c in cands if c)
    t = Table(title="Output tok/s across replicas (TPOT ms) by concurrency; ★ = recommended", title_justify="left")
    t.add_column("layout", no_wrap=True)
    for p in plans:
        t.add_column(f"{p.workload.concurrency}", justify="right", no_wrap=True)
    t.add_column("tok/s vs concurrency", no_wrap=True)
    t.add_column(f"bound at {plans[-1].workload.concurrency}", no_wrap=True)
    for name, cands in rows[: None if show_all else DEFAULT_ROWS]:
        cells = []
        for p, c in zip(plans, cands):
            star = "★" if c is not None and p.best is c else ""
            cells.append("—" if c is None else f"{star}{c.speed.total_output_tok_s:,.0f} ({c.speed.tpot_s * 1e3:.0f})")
        last = next(c for c in reversed(cands) if c)
        t.add_row(name, *cells, _spark([c.speed.total_output_tok_s if c else None for c in cands], top),
                  last.speed.bound.value)
    console.print(t)
    hidden = len(rows) - DEFAULT_ROWS
    if hidden > 0 and not show_all:
        console.print(f"({hidden} more layouts: --all shows them)", style="dim")
    console.print(f"figures: {escape(last.speed.calibration)}; — = the layout does not start or serve there",
                  style="dim")
