"""The `tpfit` command: parse options, build values, call the library, render."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from tpfit.cli.options import (
    AllOpt, BatchedOpt, ConcurrencyOpt, ContextOpt, DpOpt, DtypeOpt, EagerOpt, EpOpt, GmuOpt, GpusOpt, JsonOpt,
    KvDtypeOpt, MaxModelLenOpt, ModelArg, PpOpt, QuantOpt, SeqsOpt, TpOpt, VersionOpt,
)
from tpfit.errors import TpfitError, UsageError

app = typer.Typer(no_args_is_help=True, pretty_exceptions_show_locals=False, add_completion=False,
                  help="Plan multi-GPU vLLM deployments with vLLM's own arithmetic.")


def _version(value: bool) -> None:
    if value:
        from tpfit import __version__

        typer.echo(f"tpfit {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True,
                                                 help="Print the version and exit.")) -> None:
    """Plan multi-GPU vLLM deployments with vLLM's own arithmetic."""


def _cluster(gpus: Optional[str]):
    from tpfit.hardware.cluster import Cluster

    if gpus is not None:
        return Cluster.parse(gpus)
    from tpfit.hardware.detect import detect_cluster

    return detect_cluster()


@app.command()
def plan(
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
    kv_cache_dtype: KvDtypeOpt = "auto",
    quantization: QuantOpt = None,
    dtype: DtypeOpt = "auto",
    max_num_seqs: SeqsOpt = None,
    max_num_batched_tokens: BatchedOpt = None,
    enforce_eager: EagerOpt = False,
    vllm_version: VersionOpt = None,
    show_all: AllOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Every TP x PP x DP layout for MODEL on GPUS: what vLLM accepts, its memory, and the flags to use."""
    from tpfit.core.engine import CURRENT_VLLM_VERSION, KV_CACHE_DTYPES, EngineArgs, parse_version
    from tpfit.core.layout import enumerate_layouts
    from tpfit.core.plan import Workload, make_plan
    from tpfit.model.load import load_model

    if context and max_model_len and context != max_model_len:
        raise UsageError(f"--context {context} and --max-model-len {max_model_len} disagree; give one of them",
                         flag="--context")
    if kv_cache_dtype not in KV_CACHE_DTYPES:
        raise UsageError(f"use one of {', '.join(KV_CACHE_DTYPES)}", flag="--kv-cache-dtype", value=kv_cache_dtype)
    if dtype not in ("auto", "bfloat16", "float16", "half", "float32", "float"):
        raise UsageError("use auto, bfloat16, float16 or float32", flag="--dtype", value=dtype)
    if quantization not in (None, "fp8"):
        raise UsageError("tpfit models online --quantization fp8; for AWQ/GPTQ/FP8 checkpoints give the "
                         "quantized model itself (its config says how it is stored)", flag="--quantization",
                         value=quantization)
    version = vllm_version or CURRENT_VLLM_VERSION
    try:
        parse_version(version)
    except ValueError as err:
        raise UsageError(str(err), flag="--vllm-version", value=version) from None
    cluster = _cluster(gpus)
    spec = load_model(model)
    engine = EngineArgs(vllm_version=version, gpu_memory_utilization=gpu_memory_utilization,
                        max_model_len=max_model_len or context, max_num_seqs=max_num_seqs,
                        max_num_batched_tokens=max_num_batched_tokens, kv_cache_dtype=kv_cache_dtype,
                        quantization=quantization, dtype=dtype, enforce_eager=enforce_eager)
    layouts = tuple(
        lay for lay in enumerate_layouts(cluster.num_gpus, is_moe=spec.is_moe or bool(enable_expert_parallel))
        if (tp is None or lay.tp == tp) and (pp is None or lay.pp == pp) and (dp is None or lay.dp == dp)
        and (enable_expert_parallel is None or lay.enable_expert_parallel == enable_expert_parallel)
    )
    if not layouts:
        from tpfit.core.layout import Layout

        layouts = (Layout(tp=tp or 1, pp=pp or 1, dp=dp or 1, enable_expert_parallel=bool(enable_expert_parallel)),)
    result = make_plan(spec, cluster, Workload(context=context or max_model_len, concurrency=concurrency), engine,
                       layouts=layouts)
    if as_json:
        import json

        from tpfit.report.json import plan_to_dict

        typer.echo(json.dumps(plan_to_dict(result), indent=1))
    else:
        from rich.console import Console

        from tpfit.report.terminal import render_plan

        render_plan(result, Console(), show_all=show_all)
    best = result.best
    raise typer.Exit(0 if best is not None and best.memory.verdict == "starts" else 1)


def main() -> None:
    """Console-script entry point: one error line instead of a traceback (`--debug` keeps it)."""
    debug = "--debug" in sys.argv
    if debug:
        sys.argv.remove("--debug")
    try:
        code = app(standalone_mode=False)
    except TpfitError as err:
        if debug:
            raise
        typer.echo(f"error: {err}", err=True)
        sys.exit(err.exit_code)
    except ValueError as err:  # a value object refusing a flag value
        if debug:
            raise
        typer.echo(f"error: {err}", err=True)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(130)
    except typer.TyperException as exc:  # click's usage errors, as typer vendors them
        hint = getattr(exc, "param_hint", None) or getattr(getattr(exc, "param", None), "opts", None)
        message = exc.format_message()
        if hint and "Invalid value" not in message:
            message = f"{hint if isinstance(hint, str) else '/'.join(hint)}: {message}"
        typer.echo(f"error: {message}", err=True)
        sys.exit(2 if exc.exit_code == 2 else exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
