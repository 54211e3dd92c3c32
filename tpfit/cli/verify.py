"""`tpfit verify` and `tpfit explain`: the live commands."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Optional

import typer

from tpfit.cli.options import ConcurrencyOpt, ContextOpt, DtypeOpt, GpusOpt, PpOpt, TpOpt
from tpfit.errors import UsageError
from tpfit.kinds import ModelDtype
from tpfit.vllm_facts import CURRENT_VLLM_VERSION


def _plan_for_server(facts, model: str | None, gpus: str | None, tp, pp, dtype: str, kv_bytes: int | None,
                     concurrency: int, input_tokens: int | None = None, output_tokens: int | None = None):
    from tpfit import EngineArgs, Workload, make_plan
    from tpfit.core.layout import Layout
    from tpfit.hardware.cluster import Cluster
    from tpfit.model.load import load_model
    from tpfit.units import GIB

    spec = load_model(model or facts.model_root)
    kv = kv_bytes or (facts.kv_cache_memory_bytes if facts.device == "cpu" or gpus is None else None)
    cluster = Cluster.parse(gpus) if gpus else Cluster.cpu(64 * GIB, workers=(tp or 1) * (pp or 1))
    version = facts.version.split("+")[0] or CURRENT_VLLM_VERSION
    engine = EngineArgs(vllm_version=version, max_model_len=facts.max_model_len, dtype=dtype,
                        kv_cache_memory_bytes=kv, block_size=facts.block_size,
                        gpu_memory_utilization=facts.gpu_memory_utilization)
    layout = Layout(tp=tp or 1, pp=pp or 1)
    work = Workload(context=facts.max_model_len, concurrency=concurrency, input_tokens=input_tokens,
                    output_tokens=output_tokens)
    return make_plan(spec, cluster, work, engine, layouts=(layout,))


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
    ttft_p99: Annotated[Optional[float], typer.Option("--ttft-p99", min=0, help="SLO in seconds.")] = None,
    itl_p99: Annotated[Optional[float], typer.Option("--itl-p99", min=0, help="SLO in seconds.")] = None,
    timeout: Annotated[float, typer.Option("--timeout", min=1, max=86_400,
                                           help="Seconds for start-up, for each request and for the load.")] = 600,
    as_json: Annotated[bool, typer.Option("--json", help="Print the verify report as JSON.")] = False,
) -> None:
    """Start or reach a vLLM server, compare its memory with the plan, load it, and give a verdict."""
    from tpfit.units import parse_size

    if bool(url) == bool(launch):
        raise UsageError("give exactly one of --url URL or --launch", flag="--url")
    if url and not url.startswith(("http://", "https://")):
        example = f"http://{url}" if "://" not in url else "http://127.0.0.1:8000"
        raise UsageError(f"a server URL starts with http:// or https://, e.g. {example}", flag="--url", value=url)
    if url:
        from urllib.parse import urlparse

        try:
            parsed = urlparse(url)
            parsed.port  # noqa: B018 - raises ValueError for a port out of range
        except ValueError:
            parsed = None
        if parsed is None or not parsed.hostname:
            raise UsageError("not a server URL; use http://HOST:PORT such as http://127.0.0.1:8000", flag="--url",
                             value=url)
    if launch and not model:
        raise UsageError("--launch needs MODEL", flag="MODEL")
    if docker and not launch:
        raise UsageError("--docker goes with --launch", flag="--docker")
    kv_bytes = None
    if kv_cache_memory_bytes:
        try:
            kv_bytes = parse_size(kv_cache_memory_bytes)
        except ValueError as err:
            raise UsageError(str(err), flag="--kv-cache-memory-bytes", value=kv_cache_memory_bytes) from None
    proc = run_dir = None
    if launch:
        import shlex

        from tpfit.live.launch import VllmProcess, default_python, free_port, server_argv, short_temp_dir

        flags = shlex.split(vllm_args or "")
        if dtype is not ModelDtype.AUTO:
            flags += ["--dtype", dtype]
        if kv_cache_memory_bytes:
            flags += ["--kv-cache-memory-bytes", kv_cache_memory_bytes]
        if context:
            flags += ["--max-model-len", str(context)]
        for flag, value in (("--tensor-parallel-size", tp), ("--pipeline-parallel-size", pp)):
            if value:
                flags += [flag, str(value)]
        if docker:
            proc = _docker_process(model, flags)
        else:
            python = vllm_python or default_python()
            if not shutil.which(python):
                raise UsageError("no such Python (or not executable); give the Python that has vLLM installed, "
                                 "e.g. --vllm-python ~/vllm-venv/bin/python", flag="--vllm-python", value=python)
            run_dir = Path(tempfile.mkdtemp(prefix="tpfit-verify-", dir=short_temp_dir()))
            proc = VllmProcess(argv=server_argv(python, model, flags, port=free_port(),
                                                served_name=None),
                               log_path=run_dir / "server.log",
                               env={"TMPDIR": str(run_dir), "VLLM_HOST_IP": "127.0.0.1", "VLLM_NO_USAGE_STATS": "1",
                                    "DO_NOT_TRACK": "1"})
        url = proc.url
    try:
        if proc:
            proc.start()
            _progress(f"starting vLLM ({url})", as_json)
            proc.wait_ready(timeout_s=timeout, on_progress=None if as_json else _startup_line)
        log_text = proc.log_text() if proc else (log.read_text(errors="replace") if log else None)
        report = asyncio.run(_verify(url, model, gpus, tp, pp, dtype, kv_bytes, context, concurrency, output_tokens,
                                     requests, ttft_p99, itl_p99, timeout, log_text, as_json))
    finally:
        if proc:
            proc.stop()
    if run_dir:  # the log was read into the report; a failed start keeps it (its path is in the error)
        shutil.rmtree(run_dir, ignore_errors=True)
    if as_json:
        typer.echo(json.dumps(report, indent=1, default=str))
    else:
        _render(report)
    raise typer.Exit(0 if report["verdict"]["passed"] else 1)


def _docker_process(model: str, flags: list[str]):
    """The docker run of `tpfit deploy --format docker` for these flags, on a free local port."""
    from tpfit.deploy.common import Deployment
    from tpfit.vllm_facts import image_for
    from tpfit.deploy.shell import docker_argv
    from tpfit.live.launch import DockerVllm, free_port

    port = free_port()
    tp = int(flags[flags.index("--tensor-parallel-size") + 1]) if "--tensor-parallel-size" in flags else 1
    pp = int(flags[flags.index("--pipeline-parallel-size") + 1]) if "--pipeline-parallel-size" in flags else 1
    d = Deployment(model=model, served_model_name=None, engine_args=tuple(flags), tensor_parallel_size=tp,
                   pipeline_parallel_size=pp, data_parallel_size=1, gpus_per_node=tp * pp, nodes=1,
                   image=image_for(CURRENT_VLLM_VERSION), vllm_version=CURRENT_VLLM_VERSION, port=port)
    argv = [a.replace("${HOME}", str(Path.home())) for part in docker_argv(d) for a in part]
    if Path(model).exists():  # a local model folder: visible in the container at the same path
        path = str(Path(model).resolve())
        argv[argv.index(d.image):argv.index(d.image)] = ["-v", f"{path}:{path}:ro"]
    return DockerVllm(argv=argv, name=f"tpfit-verify-{port}", port=port)


_KEY_LINES = ("KV cache size", "Maximum concurrency", "Model loading took", "Available KV cache", "init engine",
              "Explicitly set", "Starting vLLM", "Error", "error")


def _startup_line(line: str) -> None:
    if any(k in line for k in _KEY_LINES):
        typer.echo("  | " + line[-160:], err=True)


def _progress(text: str, quiet: bool) -> None:
    if not quiet:
        typer.echo(text, err=True)


async def _verify(url, model, gpus, tp, pp, dtype, kv_bytes, context, concurrency, output_tokens, requests,
                  ttft_p99, itl_p99, timeout, log_text, quiet) -> dict:
    from tpfit.live.client import VllmClient, request_timeout
    from tpfit.live.load import LoadSpec, run_load
    from tpfit.live.server_facts import read_server_facts
    from tpfit.live.verify import compare, compare_speed, judge

    async with VllmClient(url, max_connections=max(8, concurrency * 2), timeout=request_timeout(timeout)) as client:
        facts = await read_server_facts(client, log_text=log_text)
        ctx = context or facts.max_model_len
        out_tokens = output_tokens or max(1, min(128, ctx // 4))
        if out_tokens >= ctx:
            raise UsageError(f"--output-tokens {out_tokens} leaves no room for a prompt in {ctx} tokens",
                             flag="--output-tokens")
        plan = _plan_for_server(facts, model, gpus, tp, pp, dtype, kv_bytes, concurrency,
                                input_tokens=ctx - out_tokens if ctx <= facts.max_model_len else None,
                                output_tokens=out_tokens if ctx <= facts.max_model_len else None)
        candidate = plan.candidates[0]
        rows = compare(candidate.memory, facts) if candidate.memory else ()
        spec = LoadSpec(model=facts.model_id, prompt_tokens=ctx - out_tokens, output_tokens=out_tokens,
                        concurrency=concurrency, requests=requests or 3 * concurrency, timeout_s=timeout)

        def progress(done: int, total: int, in_flight: int) -> None:
            if not quiet:
                print(f"\r  load: {done}/{total} requests done, {in_flight} in flight   ", end="", file=sys.stderr,
                      flush=True)
        load = await run_load(client, spec, on_progress=progress)
        if not quiet:
            print(file=sys.stderr)
    capacity = None
    if facts.max_concurrency is not None and facts.max_model_len:
        capacity = facts.max_concurrency * facts.max_model_len / ctx  # the same KV at this context
    verdict = judge(load, concurrency=concurrency, context=ctx, kv_capacity_requests=capacity, ttft_p99_s=ttft_p99,
                    itl_p99_s=itl_p99)
    speed_rows = compare_speed(candidate.speed, load) if candidate.speed else ()
    return {"server": facts.to_dict(), "comparison": [r.to_dict() for r in rows],
            "speed": {"predicted": candidate.speed.to_dict() if candidate.speed else None,
                      "comparison": [r.to_dict() for r in speed_rows]},
            "load_spec": asdict(spec),
            "load": load.to_dict(), "verdict": verdict.to_dict(),
            "plan_verdict": candidate.memory.verdict if candidate.memory else "refused"}


def _render(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    s = report["server"]
    console.print(f"vLLM {s['version']} at {s['url']}: {s['model_id']} (max_model_len {s['max_model_len']})")
    t = Table(title="predicted vs actual", title_justify="left")
    for c in ("quantity", "predicted", "actual", "error %"):
        t.add_column(c, justify="left" if c == "quantity" else "right")
    for r in report["comparison"]:
        fmt = lambda v: "—" if v is None else (f"{v:,}" if isinstance(v, int) else f"{v:,.2f}")  # noqa: E731
        t.add_row(r["quantity"], fmt(r["predicted"]), fmt(r["actual"]),
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
    console.print(("[green]PASS[/]" if v["passed"] else "[red]FAIL[/]") + ": " + "; ".join(v["reasons"]))


def explain(
    logfile: Annotated[Optional[str], typer.Argument(help="A vLLM log file, or - / nothing for stdin.")] = None,
    model: Annotated[Optional[str], typer.Option("--model", help="The model, for the planner's figures.")] = None,
    gpus: GpusOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the diagnoses as JSON.")] = False,
) -> None:
    """Read a vLLM log: which mistake it was, and the fix."""
    from tpfit.live.explain import KNOWN_FAILURES, explain as diagnose

    if logfile is None and sys.stdin.isatty():
        raise UsageError("LOGFILE missing: give a vLLM log file, or pipe one in: vllm serve ... 2>&1 | tpfit explain -",
                         flag="LOGFILE")
    if logfile in (None, "-"):
        text = sys.stdin.read()
    else:
        try:
            text = Path(logfile).read_text(errors="replace")
        except OSError as err:
            raise UsageError(f"cannot read it ({err.strerror or err})", flag="LOGFILE", value=logfile) from None
    found = diagnose(text, _explain_context(model, gpus))
    if as_json:
        typer.echo(json.dumps({"diagnoses": [d.to_dict() for d in found]}, indent=1))
    elif not found:
        typer.echo(f"no known vLLM failure in this log (tpfit explain knows: {', '.join(KNOWN_FAILURES)})")
    else:
        for d in found:
            typer.echo(f"{d.kind}: {d.cause}\n  fix: {d.fix}\n  log: {d.evidence[:300]}")
    raise typer.Exit(0 if found else 1)


def _explain_context(model: str | None, gpus: str | None):
    from tpfit.live.explain import Context

    if not model:
        return Context()
    from tpfit.core.engine import EngineArgs
    from tpfit.core.layout import Layout
    from tpfit import make_plan
    from tpfit.core.rules import check_layout
    from tpfit.core.weights import padded_vocab
    from tpfit.hardware.cluster import Cluster
    from tpfit.model.load import load_model

    spec = load_model(model)
    cluster = Cluster.parse(gpus) if gpus else Cluster.parse("8xh100")
    valid = tuple(tp for tp in range(1, cluster.gpus_per_node + 1)
                  if not check_layout(spec, Layout(tp=tp), cluster, EngineArgs()))
    suggested = None
    if gpus:
        best = make_plan(spec, cluster).best
        suggested = best.memory.max_model_len_fit if best and best.memory else None
    return Context(num_attention_heads=spec.num_attention_heads, num_key_value_heads=spec.num_key_value_heads,
                   padded_vocab=padded_vocab(spec.vocab_size), valid_tps=valid, gpus=cluster.num_gpus,
                   suggested_max_model_len=suggested)
