"""`tpfit verify`: start or reach a vLLM server, compare its memory with the plan, load it, give a verdict."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tpfit.cli.options import (
    ConcurrencyOpt, ContextOpt, DtypeOpt, GpusOpt, PpOpt, TpOpt, check_server_url, finite,
)
from tpfit.errors import UsageError
from tpfit.kinds import ModelDtype


def verify(
    model: Annotated[Optional[str], typer.Argument(help="The model (default: what the server reports it loaded).")] = None,
    url: Annotated[Optional[str], typer.Option("--url", help="A running vLLM server, e.g. http://127.0.0.1:8000")] = None,
    launch: Annotated[bool, typer.Option("--launch", help="Start vLLM here with the given flags, verify, stop it.")] = False,
    docker: Annotated[bool, typer.Option("--docker", help="With --launch: run the official vLLM image "
                                         "(the `tpfit deploy --format docker` command) instead of a local process.")] = False,
    vllm_args: Annotated[Optional[str], typer.Option("--vllm-args", help="Extra flags for --launch, one string.")] = None,
    vllm_python: Annotated[Optional[str], typer.Option("--vllm-python", envvar="TPFIT_VLLM_PYTHON",
                                                       help="Python that has vLLM, for --launch.")] = None,
    log: Annotated[Optional[Path], typer.Option("--log", help="The server's start-up log (for --url).")] = None,
    gpus: GpusOpt = None,
    tp: TpOpt = None,
    pp: PpOpt = None,
    dtype: DtypeOpt = ModelDtype.AUTO,
    kv_cache_memory_bytes: Annotated[Optional[str], typer.Option("--kv-cache-memory-bytes",
                                                                 help="As given to vLLM (e.g. 64M).")] = None,
    context: ContextOpt = None,
    concurrency: ConcurrencyOpt = 4,
    output_tokens: Annotated[Optional[int], typer.Option("--output-tokens", min=1)] = None,
    requests: Annotated[Optional[int], typer.Option("--requests", min=1, help="Default: 3 x concurrency.")] = None,
    ttft_p99: Annotated[Optional[float], typer.Option("--ttft-p99", min=0, callback=finite,
                                                      help="SLO in seconds.")] = None,
    itl_p99: Annotated[Optional[float], typer.Option("--itl-p99", min=0, callback=finite,
                                                     help="SLO in seconds.")] = None,
    timeout: Annotated[float, typer.Option("--timeout", min=1, max=86_400, callback=finite,
                                           help="Seconds for start-up, for each request and for the load.")] = 600,
    as_json: Annotated[bool, typer.Option("--json", help="Print the verify report as JSON.")] = False,
) -> None:
    """Start or reach a vLLM server, compare its memory with the plan, load it, and give a verdict."""
    from tpfit.live.verify_run import VerifyRequest, run_verify
    from tpfit.units import parse_size

    if bool(url) == bool(launch):
        raise UsageError("give exactly one of --url URL or --launch", flag="--url")
    if url:
        check_server_url(url)
    if launch and not model:
        raise UsageError("--launch needs MODEL", flag="MODEL")
    if docker and not launch:
        raise UsageError("--docker goes with --launch", flag="--docker")
    if vllm_args is not None and not launch:
        raise UsageError("--vllm-args goes with --launch (a server given by --url already runs with its flags)",
                         flag="--vllm-args")
    kv_bytes = None
    if kv_cache_memory_bytes:
        try:
            kv_bytes = parse_size(kv_cache_memory_bytes)
        except ValueError as err:
            raise UsageError(str(err), flag="--kv-cache-memory-bytes", value=kv_cache_memory_bytes) from None
    request = VerifyRequest(model=model, url=url, launch=launch, docker=docker, vllm_args=vllm_args,
                            vllm_python=vllm_python, log=log, gpus=gpus, tp=tp, pp=pp, dtype=dtype,
                            kv_cache_memory_bytes=kv_cache_memory_bytes, kv_bytes=kv_bytes, context=context,
                            concurrency=concurrency, output_tokens=output_tokens, requests=requests,
                            ttft_p99=ttft_p99, itl_p99=itl_p99, timeout=timeout)
    report = run_verify(request, say=None if as_json else (lambda line: typer.echo(line, err=True)))
    if as_json:
        import json

        typer.echo(json.dumps(report, indent=1, default=str))
    else:
        from rich.console import Console

        from tpfit.report.verify import render_verify

        render_verify(report, Console())
    raise typer.Exit(0 if report["verdict"]["passed"] else 1)
