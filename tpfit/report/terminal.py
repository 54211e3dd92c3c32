"""Plan -> terminal report (rich): summary, memory bars, accepted and refused layouts, flags."""

from __future__ import annotations

import io

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from tpfit.core.memory import GpuMemory
from tpfit.core.plan import Candidate, Plan
from tpfit.core.rank import rank_accepted
from tpfit.core.recommend import closest, make_flags, summarize
from tpfit.kinds import Verdict
from tpfit.units import format_gib

BAR_WIDTH = 60
MIN_BAR_WIDTH = 10
_SEGMENTS = (("weights", "blue"), ("activation", "magenta"), ("non-torch", "yellow"), ("graphs", "cyan"),
             ("KV cache", "green"), ("free", "white"))
_VERDICT_STYLE = {Verdict.STARTS: "green", Verdict.INSUFFICIENT_CONCURRENCY: "yellow",
                  Verdict.OVERFLOWS_AT_RUNTIME: "red", Verdict.REFUSED_AT_START: "red"}
DEFAULT_ROWS = 12


def memory_bar(g: GpuMemory, width: int = BAR_WIDTH) -> Text:
    """weights | activation | non-torch | graphs | KV | free, scaled to the card's total, `width` cells long."""
    graphs = g.cuda_graph_bytes
    parts = [g.weight_bytes, g.activation_bytes, g.non_torch_bytes, graphs, max(g.kv_cache_bytes, 0),
             max(g.free_bytes, 0)]
    scale = max(g.total_bytes, sum(parts))  # weights alone may exceed the card: then the bar shows the need
    text = Text()
    for (label, style), size in zip(_SEGMENTS, parts):
        cells = round(width * size / scale)
        text.append(("█" if label != "free" else "░") * cells, style=style)
    return text


def _legend() -> Text:
    text = Text()
    for label, style in _SEGMENTS:
        text.append("█ " if label != "free" else "░ ", style=style).append(label + "  ")
    return text


_DROP_FIRST = ("activ.", "non-torch", "graphs", "max len", "weights", "KV")
"""Columns left out, in this order, when the terminal is too narrow; layout, KV tokens, concurrency and the
verdict always stay."""


def fitted_table(title: str, columns: list[str], rows: list[dict], *, drop_first: tuple[str, ...],
                  left: tuple[str, ...], width: int | None) -> Table:
    """A table of `rows` (column name -> cell), leaving out the `drop_first` columns in order until it fits
    `width` (all of them when `width` is None or nothing narrower fits). When even the narrowest is too wide,
    the `left` text columns after the first (verdict, bound) wrap, so the layout and the figures are never cut."""
    from rich.measure import Measurement

    for dropped in range(len(drop_first) + 1):
        shown = [name for name in columns if name not in drop_first[:dropped]]
        last = dropped == len(drop_first)
        t = Table(title=title, title_justify="left")
        for name in shown:
            wraps = last and name in left and name != shown[0]
            t.add_column(name, justify="left" if name in left else "right", no_wrap=not wraps)
        for cells in rows:
            t.add_row(*(cells[name] for name in shown))
        if width is None:
            return t
        probe = Console(width=10_000, file=io.StringIO())
        if Measurement.get(probe, probe.options, t).maximum <= width:
            return t
    return t


def _accepted_table(plan: Plan, rows: list[Candidate], width: int | None = None) -> Table:
    columns = ["layout", "weights", "activ.", "non-torch", "graphs", "KV", "KV tokens", "max conc.", "max len",
               "verdict"]
    cells = []
    for c in rows:
        m, w = c.memory, c.memory.worst
        cells.append({"layout": ("★ " if c is plan.best else "  ") + str(c.layout),
                      "weights": format_gib(w.weight_bytes), "activ.": format_gib(w.activation_bytes),
                      "non-torch": format_gib(w.non_torch_bytes), "graphs": format_gib(w.cuda_graph_bytes),
                      "KV": format_gib(w.kv_cache_bytes), "KV tokens": f"{m.kv_cache_tokens:,}",
                      "max conc.": f"{m.max_concurrency:.2f}", "max len": f"{m.max_model_len_fit:,}",
                      "verdict": Text(m.verdict.replace("_", " "), style=_VERDICT_STYLE[m.verdict])})
    # a DP layout runs several engines: its KV tokens and concurrency are one engine's, as the answer says
    each = "; KV tokens and max conc. per replica" if any(c.layout.dp > 1 for c in rows) else ""
    return fitted_table(f"Layouts that pass vLLM's rules (GiB per GPU{each})", columns, cells, drop_first=_DROP_FIRST,
                         left=("layout", "verdict"), width=width)


def _refused_table(rows: list[Candidate]) -> Table:
    t = Table(title="Layouts vLLM refuses", title_justify="left")
    t.add_column("layout", no_wrap=True)
    t.add_column("why", overflow="fold")
    t.add_column("fix", overflow="fold")
    for c in rows:
        v = c.violations[0]
        t.add_row(str(c.layout), escape(v.detail), escape(v.fix))
    return t


_SPEED_DROP_FIRST = ("tok/s per request", "bound", "TTFT (s)")
"""Speed columns left out, in this order, when the terminal is too narrow."""


def _speed_table(plan: Plan, rows: list[Candidate], width: int | None = None) -> Table:
    """Predicted speed of the layouts that serve, in the order tpfit ranks them (core/rank.py)."""
    work = plan.speed_workload()
    title = (f"Predicted speed at {work.concurrency} concurrent ({work.input_tokens:,} prompt + "
             f"{work.output_tokens:,} output tokens; {rows[0].speed.calibration})")
    columns = ["layout", "output tok/s", "tok/s per request", "TTFT (s)", "TPOT (ms)", "bound"]
    cells = [{"layout": ("★ " if c is plan.best else "  ") + str(c.layout),
              "output tok/s": f"{c.speed.total_output_tok_s:,.0f}",
              "tok/s per request": f"{c.speed.request_output_tok_s:,.0f}", "TTFT (s)": f"{c.speed.ttft_s:.2f}",
              "TPOT (ms)": f"{c.speed.tpot_s * 1e3:.1f}", "bound": c.speed.bound.value} for c in rows]
    return fitted_table(title, columns, cells, drop_first=_SPEED_DROP_FIRST, left=("layout", "bound"), width=width)


def render_plan(plan: Plan, console: Console, *, show_all: bool = False) -> None:
    spec, cl = plan.model, plan.cluster
    console.print(f"[bold]{escape(spec.model_id)}[/] ({escape(spec.architecture)}, {spec.dtype}"
                  f"{', ' + spec.quant.method if spec.quant else ''}) on {cl.num_gpus}× {escape(cl.gpu.name)} "
                  f"({format_gib(cl.gpu.cuda_total_bytes)} GiB each as CUDA reports it), vLLM {plan.engine.vllm_version}")
    console.print(escape(summarize(plan)), style="bold")
    for note in plan.notes:
        console.print(f"note: {escape(note)}", style="dim")
    best = plan.best
    near = closest(plan)
    if best is None and near is not None:
        console.print(f"Closest layout {near.layout}: {near.memory.verdict.replace('_', ' ')}",
                      style=_VERDICT_STYLE[near.memory.verdict])
        for reason in near.memory.reasons:
            console.print(f"  ! {escape(reason)}", style=_VERDICT_STYLE[near.memory.verdict])
    if best is not None:
        console.print()
        console.print(f"Per-GPU memory for {best.layout} (vLLM's accounting):")
        for rank, g in enumerate(best.memory.gpus):
            head = f"  stage {rank} "
            tail = f" {format_gib(g.kv_cache_bytes)} GiB KV, {format_gib(g.free_bytes)} GiB free"
            # a narrow terminal gets a shorter bar, not a figure wrapped onto the next line
            width = max(MIN_BAR_WIDTH, min(BAR_WIDTH, console.width - len(head) - len(tail)))
            console.print(Text(head).append(memory_bar(g, width)).append(tail))
        console.print(Text("  ").append(_legend()))
        for reason in best.memory.reasons:
            console.print(f"  ! {escape(reason)}", style=_VERDICT_STYLE[best.memory.verdict])
    ranked = sorted((c for c in plan.accepted if c.memory), key=lambda c: (c is not best, -c.memory.max_concurrency))
    refused = list(plan.rejected)
    limit = None if show_all else DEFAULT_ROWS
    console.print()
    if ranked:
        console.print(_accepted_table(plan, ranked[:limit], width=console.width))
    fast = [plan.candidates[i] for i in rank_accepted(plan.cluster, plan.candidates, plan.workload)
            if plan.candidates[i].speed is not None and plan.candidates[i].memory.verdict.serves]
    fast.sort(key=lambda c: c is not best)  # the recommendation first (a tie may have put it below)
    if fast:
        console.print(_speed_table(plan, fast[:limit], width=console.width))
    if refused:
        console.print(_refused_table(refused[:limit]))
    hidden = max(0, len(ranked) - DEFAULT_ROWS) + max(0, len(refused) - DEFAULT_ROWS) + max(0, len(fast) - DEFAULT_ROWS)
    if hidden and not show_all:
        console.print(f"({hidden} more layouts: --all shows them, --json lists every one)", style="dim")
    thumb = plan.rule_of_thumb
    if best is not None:
        m = best.memory
        exact_weights = sum(best.weight_bytes_per_gpu[: best.layout.world_size])
        exact_kv = m.kv_bytes_per_token * m.max_model_len * best.layout.tp * best.layout.pp
        t = Table(title="Rule of thumb vs vLLM's arithmetic", title_justify="left")
        for name in ("quantity", "guide says", "vLLM", "why they differ"):
            t.add_column(name, justify="right" if name in ("guide says", "vLLM") else "left")
        t.add_row("weights (GiB)", format_gib(thumb.weights_bytes), format_gib(exact_weights),
                  "vocab padding, quantized shards, replicated layers")
        t.add_row(f"KV for one {m.max_model_len:,}-token request (GiB)", format_gib(thumb.kv_bytes_at_context),
                  format_gib(exact_kv), f"{m.kv_bytes_per_token:,} B/token/GPU from layers x KV heads x head dim")
        console.print(t)
        ft = Table(title=f"vLLM flags for {best.layout}", title_justify="left")
        ft.add_column("flag", no_wrap=True)
        ft.add_column("why")
        for f in make_flags(plan, best):
            ft.add_row(escape(" ".join(f.argv())), ("consider: " if f.optional else "") + escape(f.reason))
        console.print(ft)


def render_to_text(plan: Plan, width: int = 120, **kw) -> str:
    """The report as plain text, for tests and files."""
    console = Console(width=width, record=True, color_system=None, force_terminal=False, file=io.StringIO())
    render_plan(plan, console, **kw)
    return console.export_text()
