"""The terminal view of `tpfit watch`: each figure beside the plan's, a status per line, the fix per alert."""

from __future__ import annotations

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from tpfit.live.watch import Line, ScrapeState, Status, WatchView

STYLE = {Status.OK: "green", Status.WARN: "yellow", Status.ALERT: "bold red", Status.UNKNOWN: "dim"}


def format_value(value: float | None, unit: str) -> str:
    """`format_value(0.953, '%') == '95.3 %'`, `format_value(264000, 'tokens') == '264,000'`,
    `format_value(0.0123, 's') == '12.3 ms'`; None is '-'."""
    if value is None:
        return "-"
    if unit == "%":
        return f"{value * 100:.1f} %"
    if unit in ("tokens", "requests"):
        return f"{value:,.0f}"
    if unit == "s":
        return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"
    if unit == "tok/s":
        return f"{value:,.0f} tok/s"
    if unit == "/min":
        return f"{value:.1f} /min"
    return f"{value:g} {unit}"


def _lines_table(lines: tuple[Line, ...]) -> Table:
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    table.add_column("figure", no_wrap=True)
    table.add_column("now", justify="right", no_wrap=True)
    table.add_column("plan", justify="right", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("note")
    for x in lines:
        plan = format_value(x.plan, x.unit) if x.plan is not None else ""
        table.add_row(x.label, format_value(x.value, x.unit), plan, Text(x.status.value, style=STYLE[x.status]),
                      Text(x.note, style="dim"))
    return table


def _engines_table(view: WatchView) -> Table:
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for name in ("engine", "KV usage", "free KV tokens", "capacity", "running", "waiting", "preemptions"):
        table.add_column(name, justify="left" if name == "engine" else "right", no_wrap=True)
    for e in view.engines:
        table.add_row(Text(f"{e.url} #{e.engine}"), format_value(e.kv_cache_usage, "%"),
                      format_value(e.free_kv_tokens, "tokens"), format_value(e.kv_cache_tokens, "tokens"),
                      format_value(e.running, "requests"), format_value(e.waiting, "requests"),
                      format_value(e.preemptions_per_min, "/min"))
    return table


def watch_renderable(view: WatchView) -> RenderableType:
    """The whole view as one rich renderable (for `Live` or a one-off print)."""
    parts: list[RenderableType] = []
    t = view.targets
    title = Text("tpfit watch", style="bold")
    if t:
        title.append(f" · plan: {t.model_id} on {t.gpus}, {t.concurrency} x {t.context_tokens:,} tokens, "
                     f"{t.kv_cache_tokens:,} KV tokens per engine (vLLM {t.vllm_version})")
    else:
        title.append(" · no plan (give --plan plan.json or MODEL --gpus SPEC to compare)")
    title.append(f" · window {view.window_s:.0f} s · round {view.rounds}", style="dim")
    parts.append(title)
    for s in view.servers:
        style = "green" if s.state is ScrapeState.OK else "bold red"
        line = Text(f"{s.url}  ")
        line.append(s.message, style=style)
        if s.info.version or s.info.model:
            line.append(f"  · vLLM {s.info.version or '?'} serving {s.info.model or '?'}", style="dim")
        parts.append(line)
    parts.append(Text(""))
    parts.append(_lines_table(view.lines))
    if len(view.engines) > 1:
        parts.append(Text(""))
        parts.append(_engines_table(view))
    for a in view.alerts:
        head = Text("\n")
        head.append("ALERT " if a.firing else "pending ", style="bold red" if a.firing else "yellow")
        head.append(f"{a.kind.value} ({a.severity}, {a.scope}): {a.message}")
        parts.append(head)
        parts.append(Text(f"  fix: {a.fix}", style="cyan"))
    return Group(*parts)


def render_watch(view: WatchView, console: Console) -> None:
    console.print(watch_renderable(view))
