"""`tpfit speed`: predicted throughput and latency of every layout across a range of concurrencies."""

from __future__ import annotations

from typing import Annotated

import typer

from tpfit.cli.options import (
    AllOpt, ContextOpt, GpusOpt, InputTokensOpt, KvDtypeOpt, ModelArg, OutputTokensOpt, QuantOpt, VersionOpt,
)
from tpfit.errors import UsageError
from tpfit.kinds import KvCacheDtype

DEFAULT_CONCURRENCIES = "1,4,16,64,256"
MAX_POINTS = 12


def _concurrencies(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        values = ()
    if not values or min(values) < 1 or len(values) > MAX_POINTS:
        raise UsageError(f"use up to {MAX_POINTS} comma-separated counts >= 1, such as {DEFAULT_CONCURRENCIES}",
                         flag="--concurrency", value=text)
    return tuple(sorted(set(values)))


def speed(
    model: ModelArg,
    gpus: GpusOpt = None,
    concurrency: Annotated[str, typer.Option(
        "--concurrency", help="Concurrent requests to predict for, comma-separated.")] = DEFAULT_CONCURRENCIES,
    context: ContextOpt = None,
    input_tokens: InputTokensOpt = None,
    output_tokens: OutputTokensOpt = None,
    kv_cache_dtype: KvDtypeOpt = KvCacheDtype.AUTO,
    quantization: QuantOpt = None,
    vllm_version: VersionOpt = None,
    show_all: AllOpt = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print each layout's predictions, concurrency by "
                                          "concurrency, as JSON.")] = False,
) -> None:
    """Predicted output tok/s, TPOT and TTFT of every layout of MODEL on GPUS, concurrency by concurrency."""
    from tpfit.request import PlanRequest

    requests = [PlanRequest(model=model, gpus=gpus, context=context, concurrency=n, kv_cache_dtype=kv_cache_dtype,
                            quantization=quantization, vllm_version=vllm_version, input_tokens=input_tokens,
                            output_tokens=output_tokens, for_speed=True) for n in _concurrencies(concurrency)]
    plans = tuple(r.make() for r in requests)
    if as_json:
        import json

        from tpfit.report.speed import sweep_to_dict

        typer.echo(json.dumps(sweep_to_dict(plans), indent=1))
    else:
        from rich.console import Console

        from tpfit.report.speed import render_sweep

        render_sweep(plans, Console(), show_all=show_all)
    if all(p.best is None for p in plans):  # no layout serves at any concurrency: a failed answer, as plan's
        raise typer.Exit(1)
