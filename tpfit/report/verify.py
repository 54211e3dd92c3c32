"""`tpfit verify`'s report (the dict run_verify returns) -> terminal tables."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table


def _number(v: float | int | None) -> str:
    return "—" if v is None else (f"{v:,}" if isinstance(v, int) else f"{v:,.2f}")


def render_verify(report: dict, console: Console) -> None:
    s = report["server"]
    console.print(f"vLLM {escape(str(s['version']))} at {escape(str(s['url']))}: {escape(str(s['model_id']))} "
                  f"(max_model_len {s['max_model_len']})")
    t = Table(title="predicted vs actual", title_justify="left")
    for c in ("quantity", "predicted", "actual", "error %"):
        t.add_column(c, justify="left" if c == "quantity" else "right")
    for r in report["comparison"]:
        t.add_row(r["quantity"], _number(r["predicted"]), _number(r["actual"]),
                  "—" if r["error_pct"] is None else f"{r['error_pct']:+.2f}")
    console.print(t)
    load = report["load"]
    lt = Table(title="load", title_justify="left")
    for c in ("", "p50", "p90", "p99"):
        lt.add_column(c, justify="right")
    for name, key in (("TTFT (ms)", "ttft_s"), ("inter-token (ms)", "itl_s"), ("end-to-end (ms)", "e2e_s")):
        lt.add_row(name, *(f"{load[key][q] * 1000:.1f}" for q in ("p50", "p90", "p99")))
    console.print(lt)
    console.print(f"{load['requests_ok']} ok, {load['requests_failed']} failed, {load['output_tokens_per_s']:.0f} "
                  f"output tokens/s, KV peak {load['kv_usage_peak']:.0%}, {load['preemptions']:.0f} preemptions, "
                  f"{load['waiting_peak']:.0f} waiting at most")
    sp = report.get("speed") or {}
    if sp.get("comparison"):
        st = Table(title=f"speed: predicted ({sp['predicted']['calibration']}) vs this load", title_justify="left")
        for c in ("quantity", "predicted", "measured", "error %"):
            st.add_column(c, justify="left" if c == "quantity" else "right")
        for r in sp["comparison"]:
            st.add_row(r["quantity"], f"{r['predicted']:,.4g}", "—" if r["actual"] is None else f"{r['actual']:,.4g}",
                       "—" if r["error_pct"] is None else f"{r['error_pct']:+.1f}")
        console.print(st)
        console.print("measured TTFT and inter-token time are medians; tokens/s spans the whole load, ramp included",
                      style="dim")
    v = report["verdict"]
    console.print(("[green]PASS[/]" if v["passed"] else "[red]FAIL[/]") + ": " + escape("; ".join(v["reasons"])))
