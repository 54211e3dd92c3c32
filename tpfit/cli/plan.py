"""`tpfit plan`: every layout of MODEL on GPUS, what vLLM accepts, its memory and speed, and the flags.

No `from __future__ import annotations` here: typer reads the signature with `typing.get_type_hints`, which would
compile and evaluate each of the 27 annotations from its string at every start (about 1 ms).
"""

import typer

from tpfit.cli.options import (
    AllOpt, BatchedOpt, ConcurrencyOpt, ContextOpt, DpOpt, DtypeOpt, EagerOpt, EpOpt, GmuOpt, GpusOpt, HtmlOpt,
    InputTokensOpt, JsonOpt, KvDtypeOpt, LanguageOnlyOpt, MaxModelLenOpt, ModelArg, ObjectiveOpt, OutputTokensOpt, PpOpt,
    QuantOpt, SeqsOpt, TpotOpt, TpOpt, TtftOpt, VersionOpt, check_writable,
)
from tpfit.kinds import KvCacheDtype, ModelDtype, Objective


def plan(
    ctx: typer.Context,
    model: ModelArg,
    gpus: GpusOpt = None,
    tp: TpOpt = None,
    pp: PpOpt = None,
    dp: DpOpt = None,
    enable_expert_parallel: EpOpt = None,
    context: ContextOpt = None,
    concurrency: ConcurrencyOpt = 1,
    max_model_len: MaxModelLenOpt = None,
    gpu_memory_utilization: GmuOpt = None,
    kv_cache_dtype: KvDtypeOpt = KvCacheDtype.AUTO,
    quantization: QuantOpt = None,
    dtype: DtypeOpt = ModelDtype.AUTO,
    max_num_seqs: SeqsOpt = None,
    max_num_batched_tokens: BatchedOpt = None,
    enforce_eager: EagerOpt = False,
    language_model_only: LanguageOnlyOpt = False,
    vllm_version: VersionOpt = None,
    input_tokens: InputTokensOpt = None,
    output_tokens: OutputTokensOpt = None,
    objective: ObjectiveOpt = Objective.THROUGHPUT,
    ttft: TtftOpt = None,
    tpot: TpotOpt = None,
    show_all: AllOpt = False,
    as_json: JsonOpt = False,
    html: HtmlOpt = None,
) -> None:
    """Every TP x PP x DP layout for MODEL on GPUS: what vLLM accepts, its memory, its speed, and the flags."""
    from tpfit.kinds import Verdict
    from tpfit.request import PlanRequest

    if html is not None:
        check_writable(html, "--html")  # before the plan is printed: no answer on stdout beside exit 2
    result = PlanRequest.from_options(ctx.params).make()
    if as_json:
        from tpfit.report.json import plan_json

        typer.echo(plan_json(result))
    else:
        from rich.console import Console

        from tpfit.report.terminal import render_plan

        render_plan(result, Console(), show_all=show_all)
    if html is not None:
        from tpfit.cli.plan_form import write_report

        write_report(html, result, ctx.params)
    best = result.best
    raise typer.Exit(0 if best is not None and best.memory.verdict is Verdict.STARTS else 1)
