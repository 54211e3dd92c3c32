"""Plan -> terminal report (rich): summary, memory bars, accepted and refused layouts, flags."""

from __future__ import annotations

import io

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from tpfit.core.memory import GpuMemory
from tpfit.core.plan import Candidate, Plan
from tpfit.core.recommend import make_flags, summarize
from tpfit.kinds import Verdict
from tpfit.units import format_gib

BAR_WIDTH = 60
_SEGMENTS = (("weights", "blue"), ("activation", "magenta"), ("non-torch", "yellow"), ("graphs", "cyan"),
             ("KV cache", "green"), ("free", "white"))
_VERDICT_STYLE = {Verdict.STARTS: "green", Verdict.INSUFFICIENT_CONCURRENCY: "yellow",
                  Verdict.OVERFLOWS_AT_RUNTIME: "red", Verdict.REFUSED_AT_START: "red"}
DEFAULT_ROWS = 12


def memory_bar(g: GpuMemory) -> Text:
    """weights | activation | non-torch | graphs | KV | free, scaled to the card's total."""
    graphs = g.cuda_graph_bytes
    parts = [g.weight_bytes, g.activation_bytes, g.non_torch_bytes, graphs, max(g.kv_cache_bytes, 0),
             max(g.free_bytes, 0)]
    scale = max(g.total_bytes, sum(parts))  # weights alone may exceed the card: then the bar shows the need
    text = Text()
    for (label, style), size in zip(_SEGMENTS, parts):
        cells = round(BAR_WIDTH * size / scale)
        text.append(("█" if label != "free" else "░") * cells, style=style)
    return text


def _legend() -> Text:
    text = Text()
    for label, style in _SEGMENTS:
        text.append("█ " if label != "free" else "░ ", style=style).append(label + "  ")
    return text


def _accepted_table(plan: Plan, rows: list[Candidate]) -> Table:
    t = Table(title="Layouts that pass vLLM's rules (GiB per GPU)", title_justify="left")
    for name in ("layout", "weights", "activ.", "non-torch", "graphs", "KV", "KV tokens", "max conc.",
                 "max len"):
        t.add_column(name, justify="left" if name == "layout" else "right", no_wrap=True)
    t.add_column("verdict")
    best = plan.best
    for c in rows:
        m, w = c.memory, c.memory.worst
        style = _VERDICT_STYLE[m.verdict]
        t.add_row(("★ " if c is best else "  ") + str(c.layout), format_gib(w.weight_bytes),
                  format_gib(w.activation_bytes), format_gib(w.non_torch_bytes), format_gib(w.cuda_graph_bytes),
                  format_gib(w.kv_cache_bytes), f"{m.kv_cache_tokens:,}", f"{m.max_concurrency:.2f}",
                  f"{m.max_model_len_fit:,}", Text(m.verdict.replace("_", " "), style=style))
    return t


def _refused_table(rows: list[Candidate]) -> Table:
    t = Table(title="Layouts vLLM refuses", title_justify="left")
    t.add_column("layout", no_wrap=True)
    t.add_column("why")
    t.add_column("fix")
    for c in rows:
        v = c.violations[0]
        t.add_row(str(c.layout), escape(v.detail), escape(v.fix))
    return t


def render_plan(plan: Plan, console: Console, *, show_all: bool = False) -> None:
    spec, cl = plan.model, plan.cluster
    console.print(f"[bold]{escape(spec.model_id)}[/] ({escape(spec.architecture)}, {spec.dtype}"
                  f"{', ' + spec.quant.method if spec.quant else ''}) on {cl.num_gpus}× {escape(cl.gpu.name)} "
                  f"({format_gib(cl.gpu.cuda_total_bytes)} GiB each as CUDA reports it), vLLM {plan.engine.vllm_version}")
    console.print(escape(summarize(plan)), style="bold")
    for note in plan.notes:
        console.print(f"note: {escape(note)}", style="dim")
    best = plan.best
    if best is not None:
        console.print()
        console.print(f"Per-GPU memory for {best.layout} (vLLM's accounting):")
        for g in best.memory.gpus:
            console.print(Text(f"  stage {g.pp_rank} ").append(memory_bar(g)).append(
                f" {format_gib(g.kv_cache_bytes)} GiB KV, {format_gib(g.free_bytes)} GiB free"))
        console.print(Text("  ").append(_legend()))
        for reason in best.memory.reasons:
            console.print(f"  ! {escape(reason)}", style=_VERDICT_STYLE[best.memory.verdict])
    ranked = sorted((c for c in plan.accepted if c.memory), key=lambda c: (c is not best, -c.memory.max_concurrency))
    refused = list(plan.rejected)
    limit = None if show_all else DEFAULT_ROWS
    console.print()
    if ranked:
        console.print(_accepted_table(plan, ranked[:limit]))
    if refused:
        console.print(_refused_table(refused[:limit]))
    hidden = max(0, len(ranked) - DEFAULT_ROWS) + max(0, len(refused) - DEFAULT_ROWS)
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
