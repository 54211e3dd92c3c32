"""`tpfit watch`: a running server's KV headroom, queue and latency beside its plan."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Optional

import typer

from tpfit.cli.monitoring import PlanFileOpt, ThresholdOpt, plan_document, plan_targets
from tpfit.cli.options import (
    MAX_INTERVAL_S, ConcurrencyOpt, ContextOpt, DpOpt, GmuOpt, GpusOpt, InputTokensOpt, OutputTokensOpt, PpOpt,
    TpotOpt, TpOpt, TtftOpt, VersionOpt, check_plan_options, check_server_url, finite, server_key,
)
from tpfit.errors import UsageError

def watch(
    ctx: typer.Context,
    model: Annotated[Optional[str], typer.Argument(help="Plan MODEL on --gpus to compare with (or --plan).")] = None,
    url: Annotated[Optional[list[str]], typer.Option(
        "--url", help="A vLLM server, e.g. http://127.0.0.1:8000; repeat for several (summed, and per engine).")] = None,
    plan_file: PlanFileOpt = None,
    interval: Annotated[float, typer.Option("--interval", min=0.1, max=MAX_INTERVAL_S, callback=finite,
                                            help="Seconds between scrapes.")] = 2.0,
    once: Annotated[bool, typer.Option("--once", help="Two scrapes --interval apart, one report; exit 1 when "
                                       "an alert condition holds (durations are not waited out).")] = False,
    duration: Annotated[Optional[float], typer.Option("--duration", min=0, callback=finite,
                                                      help="Stop after this many seconds.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON: one object per scrape round (one line each).")] = False,
    threshold: ThresholdOpt = None,
    scrape_timeout: Annotated[float, typer.Option("--scrape-timeout", min=0.1, max=MAX_INTERVAL_S, callback=finite,
                                                  help="Seconds before a scrape counts as stalled.")] = 5.0,
    gpus: GpusOpt = None,
    tp: TpOpt = None,
    pp: PpOpt = None,
    dp: DpOpt = None,
    context: ContextOpt = None,
    concurrency: ConcurrencyOpt = 1,
    gpu_memory_utilization: GmuOpt = None,
    vllm_version: VersionOpt = None,
    input_tokens: InputTokensOpt = None,
    output_tokens: OutputTokensOpt = None,
    ttft: TtftOpt = None,
    tpot: TpotOpt = None,
) -> None:
    """Watch running vLLM servers: KV cache usage and headroom, queue, preemptions, latency, tokens/s, each
    beside the plan's figure, with the fix when a threshold is crossed."""
    from tpfit.core.monitoring import Thresholds
    from tpfit.live.watch import watch as run_watch

    if not url:
        raise UsageError("give at least one server: --url http://HOST:PORT", flag="--url")
    seen: dict[tuple, str] = {}
    for u in url:
        check_server_url(u)
        key = server_key(u)
        if key in seen:  # the view sums servers: one given twice would count its KV cache and requests twice
            raise UsageError(f"names the server {seen[key]} again; give each server once (several --url are summed)",
                             flag="--url", value=u)
        seen[key] = u
    check_plan_options(ctx, model=model, plan_file=plan_file)
    thresholds = Thresholds.parse(threshold or [])
    doc = plan_document(plan_file, model, dict(
        gpus=gpus, tp=tp, pp=pp, dp=dp, enable_expert_parallel=None, context=context, concurrency=concurrency,
        max_model_len=None, gpu_memory_utilization=gpu_memory_utilization, kv_cache_dtype="auto", quantization=None,
        dtype="auto", max_num_seqs=None, max_num_batched_tokens=None, enforce_eager=False, vllm_version=vllm_version,
        input_tokens=input_tokens, output_tokens=output_tokens, ttft=ttft, tpot=tpot))
    targets = plan_targets(doc, "--plan" if plan_file else "MODEL")

    if as_json:
        def show(view) -> None:
            typer.echo(json.dumps(view.to_dict(), default=str))

        view = asyncio.run(run_watch(url, thresholds=thresholds, targets=targets, interval_s=interval,
                                     duration_s=duration, once=once, scrape_timeout_s=scrape_timeout, on_view=show))
    else:
        from rich.console import Console
        from rich.live import Live

        from tpfit.report.watch import render_watch, watch_renderable

        console = Console()
        if once:
            view = asyncio.run(run_watch(url, thresholds=thresholds, targets=targets, interval_s=interval,
                                         once=True, scrape_timeout_s=scrape_timeout))
            render_watch(view, console)
        else:
            with Live(console=console, auto_refresh=False, transient=False) as live:
                def show(view) -> None:
                    live.update(watch_renderable(view), refresh=True)

                try:
                    view = asyncio.run(run_watch(url, thresholds=thresholds, targets=targets, interval_s=interval,
                                                 duration_s=duration, scrape_timeout_s=scrape_timeout, on_view=show))
                except KeyboardInterrupt:
                    raise typer.Exit(130) from None
    raise typer.Exit(1 if view.alerting else 0)
