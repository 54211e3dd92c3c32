"""The `tpfit` command: parse options, build values, call the library, render."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from tpfit.cli.options import (
    AllOpt, BatchedOpt, ConcurrencyOpt, ContextOpt, DpOpt, DtypeOpt, EagerOpt, EpOpt, GmuOpt, GpusOpt, HtmlOpt,
    InputTokensOpt, JsonOpt, KvDtypeOpt, MaxModelLenOpt, ModelArg, ObjectiveOpt, OutputTokensOpt, PpOpt, QuantOpt,
    SeqsOpt, TpotOpt, TpOpt, TtftOpt, VersionOpt,
)
from tpfit.cli.monitoring import AlertLabelOpt, JobOpt, MonitoringOpt, ThresholdOpt
from tpfit.errors import TpfitError, UsageError
from tpfit.kinds import FindingStatus, KvCacheDtype, ModelDtype, Objective, Verdict
from tpfit.vllm_facts import DEFAULT_CUDA, CudaBuild

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


def _gpu_speed(cluster):
    """The GPU's calibration (the user's `tpfit calibrate` file, else a built-in one) as speed figures."""
    from tpfit.core.perf import make_gpu_speed
    from tpfit.hardware.calibration import find_calibration

    return make_gpu_speed(cluster.gpu, find_calibration(cluster.gpu.id))


def _make_plan(model, gpus, tp, pp, dp, enable_expert_parallel, context, concurrency, max_model_len,
               gpu_memory_utilization, kv_cache_dtype, quantization, dtype, max_num_seqs, max_num_batched_tokens,
               enforce_eager, vllm_version, input_tokens=None, output_tokens=None, objective=Objective.THROUGHPUT,
               ttft=None, tpot=None):
    from tpfit import EngineArgs, Workload, make_plan
    from tpfit.core.layout import Layout, enumerate_layouts
    from tpfit.model.load import load_model
    from tpfit.core.engine import normalize_vllm_version
    from tpfit.vllm_facts import CURRENT_VLLM_VERSION

    if context and max_model_len and context != max_model_len:
        raise UsageError(f"--context {context} and --max-model-len {max_model_len} disagree; give one of them",
                         flag="--context")
    if quantization not in (None, "fp8"):
        raise UsageError("tpfit models online --quantization fp8; for AWQ/GPTQ/FP8 checkpoints give the "
                         "quantized model itself (its config says how it is stored)", flag="--quantization",
                         value=quantization)
    version = CURRENT_VLLM_VERSION if vllm_version is None else normalize_vllm_version(vllm_version)
    engine = EngineArgs(vllm_version=version, gpu_memory_utilization=gpu_memory_utilization,
                        max_model_len=max_model_len or context, max_num_seqs=max_num_seqs,
                        max_num_batched_tokens=max_num_batched_tokens, kv_cache_dtype=kv_cache_dtype,
                        quantization=quantization, dtype=dtype, enforce_eager=enforce_eager)
    workload = Workload(context=context or max_model_len, concurrency=concurrency, input_tokens=input_tokens,
                        output_tokens=output_tokens, objective=objective, ttft_s=ttft, tpot_s=tpot)
    cluster = _cluster(gpus)
    spec = load_model(model)
    layouts = tuple(
        lay for lay in enumerate_layouts(cluster.num_gpus, is_moe=spec.is_moe or bool(enable_expert_parallel))
        if (tp is None or lay.tp == tp) and (pp is None or lay.pp == pp) and (dp is None or lay.dp == dp)
        and (enable_expert_parallel is None or lay.enable_expert_parallel == enable_expert_parallel)
    ) or (Layout(tp=tp or 1, pp=pp or 1, dp=dp or 1, enable_expert_parallel=bool(enable_expert_parallel)),)
    return make_plan(spec, cluster, workload, engine, layouts=layouts, gpu_speed=_gpu_speed(cluster))


@app.command()
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
    result = _make_plan(model, gpus, tp, pp, dp, enable_expert_parallel, context, concurrency, max_model_len,
                        gpu_memory_utilization, kv_cache_dtype, quantization, dtype, max_num_seqs,
                        max_num_batched_tokens, enforce_eager, vllm_version, input_tokens, output_tokens, objective,
                        ttft, tpot)
    if as_json:
        import json

        from tpfit.report.json import plan_to_dict

        typer.echo(json.dumps(plan_to_dict(result), indent=1))
    else:
        from rich.console import Console

        from tpfit.report.terminal import render_plan

        render_plan(result, Console(), show_all=show_all)
    if html is not None:
        from tpfit.cli.plan_form import write_report

        write_report(html, result, ctx.params)
    best = result.best
    raise typer.Exit(0 if best is not None and best.memory.verdict is Verdict.STARTS else 1)


@app.command()
def deploy(
    model: Annotated[Optional[str], typer.Argument(help="As for `tpfit plan` (omit with --plan).")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="serve, docker, compose, k8s, lws, ray; alerts "
                                     "(Prometheus rules) or grafana (dashboard JSON).")] = "serve",
    plan_file: Annotated[Optional[Path], typer.Option("--plan", help="A `tpfit plan --json` file to deploy.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Write the files into this folder.")] = None,
    cuda: Annotated[CudaBuild, typer.Option("--cuda", help="Image CUDA build (13.0: the -cu130 tag).")] = DEFAULT_CUDA,
    driver: Annotated[Optional[str], typer.Option("--driver", help="Host driver version: picks the image CUDA.")] = None,
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8000,
    gpu_ids: Annotated[Optional[str], typer.Option("--gpu-ids", help="Host GPU indices, e.g. 0,1 (default: all).")] = None,
    served_model_name: Annotated[Optional[str], typer.Option("--served-model-name")] = None,
    shm_size: Annotated[Optional[str], typer.Option("--shm-size", help="Use --shm-size instead of --ipc=host.")] = None,
    gpus: GpusOpt = None,
    tp: TpOpt = None,
    pp: PpOpt = None,
    dp: DpOpt = None,
    context: ContextOpt = None,
    concurrency: ConcurrencyOpt = 1,
    max_model_len: MaxModelLenOpt = None,
    gpu_memory_utilization: GmuOpt = None,
    kv_cache_dtype: KvDtypeOpt = KvCacheDtype.AUTO,
    quantization: QuantOpt = None,
    max_num_seqs: SeqsOpt = None,
    enforce_eager: EagerOpt = False,
    vllm_version: VersionOpt = None,
    monitoring: MonitoringOpt = False,
    job: JobOpt = None,
    threshold: ThresholdOpt = None,
    alert_label: AlertLabelOpt = None,
) -> None:
    """Deployment files for the recommended layout: vllm serve, docker run, compose, Kubernetes, Ray; its
    Prometheus alerting rules and Grafana dashboard."""
    import shlex

    from tpfit.deploy import checks
    from tpfit.deploy.common import deployment_from_plan_dict
    from tpfit.deploy.render import FORMATS, MONITORED_FORMATS, MONITORING_FORMATS, render
    from tpfit.vllm_facts import cuda_for_driver

    if fmt not in FORMATS:
        raise UsageError(f"use one of {', '.join(FORMATS)}", flag="--format", value=fmt)
    ids = checks.parse_gpu_ids(gpu_ids) if gpu_ids is not None else ()
    if shm_size is not None:
        shm_size = checks.check_shm_size(shm_size)
    if driver is not None:
        checks.parse_driver(driver)
    if out is not None:
        checks.check_out_dir(out)
    if monitoring and fmt not in MONITORED_FORMATS:
        raise UsageError(f"--monitoring goes with --format {', '.join(MONITORED_FORMATS)} (for rules alone: "
                         "--format alerts)", flag="--monitoring")
    if plan_file is not None:
        from tpfit.model.folder import read_json

        if model is not None:
            raise UsageError(f"give MODEL or --plan, not both (the plan file already names its model; MODEL "
                             f"{model!r} would be ignored)", flag="--plan", value=str(plan_file))
        doc = read_json(plan_file, "plan")
        checks.check_plan_doc(doc, plan_file)
    elif model is None:
        raise UsageError("give MODEL (and --gpus) or --plan plan.json", flag="MODEL")
    else:
        from tpfit.report.json import plan_to_dict

        doc = plan_to_dict(_make_plan(model, gpus, tp, pp, dp, None, context, concurrency, max_model_len,
                                      gpu_memory_utilization, kv_cache_dtype, quantization, ModelDtype.AUTO, max_num_seqs,
                                      None, enforce_eager, vllm_version))
    if driver:
        cuda = cuda_for_driver(driver)
    command = shlex.join(["tpfit", "deploy", *sys.argv[2:]]) if sys.argv[1:2] == ["deploy"] else "tpfit deploy"
    path_model = model if model and Path(model).exists() else None
    try:
        d = deployment_from_plan_dict(doc, command=command, cuda=cuda, port=port, gpu_ids=ids,
                                      served_model_name=served_model_name, model_path=path_model, shm_size=shm_size)
    except (KeyError, TypeError, IndexError, AttributeError, ValueError) as err:
        if isinstance(err, UsageError) or plan_file is None:
            raise
        raise UsageError(f"not a complete `tpfit plan --json` file ({type(err).__name__}: {err}); save the plan "
                         "again with tpfit plan --json", flag="--plan", value=str(plan_file)) from None
    checks.check_format(d, fmt, gpu_id=str(doc["cluster"]["gpu"]))
    if ids:
        checks.check_gpu_ids(ids, d, text=gpu_ids)
    if fmt == "lws" and d.nodes == 1:
        typer.echo("note: a single-node plan; the LeaderWorkerSet has one pod per replica", err=True)
    watched = None
    if monitoring or fmt in MONITORING_FORMATS:
        from tpfit.cli.monitoring import make_monitoring

        watched = make_monitoring(doc, d, job=job, threshold=threshold, alert_label=alert_label)
    files = render(d, fmt, watched)
    if out is None:
        for name, text in files.items():
            if len(files) > 1:
                typer.echo(f"# ---- {name}")
            typer.echo(text, nl=False)
        return
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (out / name).write_text(text)
            if name.endswith(".sh"):
                (out / name).chmod(0o755)
            typer.echo(f"wrote {out / name}", err=True)
    except OSError as err:
        raise UsageError(f"cannot write there ({err.strerror or err})", flag="--out", value=str(out)) from None


@app.command()
def doctor(
    as_json: JsonOpt = False,
    image: Annotated[Optional[str], typer.Option("--image", help="The vllm/vllm-openai tag you will run "
                                                 "(its CUDA build is checked against the driver).")] = None,
    probe: Annotated[bool, typer.Option("--probe", help="Also run a tiny GPU container (docker run --gpus all).")] = False,
    gpu_memory_utilization: GmuOpt = None,
    plan_gpus: Annotated[Optional[int], typer.Option("--plan-gpus", min=1, help="GPUs the plan will use.")] = None,
    nodes: Annotated[Optional[str], typer.Option("--nodes", help="Multi-node: HEAD_IP,WORKER_IP,... (run on each "
                                                 "node): this node's address, the head's Ray and master ports, "
                                                 "the vLLM version.")] = None,
    ray_port: Annotated[int, typer.Option("--ray-port", min=1, max=65535, help="The Ray head's port.")] = 6379,
    master_port: Annotated[int, typer.Option("--master-port", min=1, max=65535,
                                             help="vLLM's --master-port (--nnodes launcher).")] = 29501,
) -> None:
    """Check this host before launching vLLM: driver, GPUs, memory, links, docker, shared memory."""
    import json

    from tpfit.live.doctor import Finding, check_host, exit_code, report_dict
    from tpfit.live.read_host import read_host, run_probe
    from tpfit.vllm_facts import CUDA_PROBE_IMAGE, CURRENT_VLLM_VERSION, default_gpu_memory_utilization

    host = read_host()
    findings = check_host(host, image=image, gpu_memory_utilization=gpu_memory_utilization
                          or default_gpu_memory_utilization(CURRENT_VLLM_VERSION),
                          plan_gpus=plan_gpus)
    if probe:
        ok, evidence = run_probe(image or CUDA_PROBE_IMAGE)
        findings.append(Finding(check="probe", status=FindingStatus.OK if ok else FindingStatus.FAIL,
                                title="GPU container probe",
                                evidence=evidence, fix="" if ok else "see the docker and nvidia_runtime findings"))
    if nodes is not None:
        from tpfit.live import nodes as multi

        listed = multi.parse_nodes(nodes)
        findings += multi.check_nodes(listed, multi.read_nodes(listed, ray_port=ray_port, master_port=master_port),
                                      multi.local_addresses(), local_vllm=multi.local_vllm_version(),
                                      expected_vllm=CURRENT_VLLM_VERSION)
    if as_json:
        typer.echo(json.dumps(report_dict(host, findings), indent=1))
    else:
        from rich.console import Console

        from tpfit.report.doctor import render_findings

        render_findings(host, findings, Console())
    raise typer.Exit(exit_code(findings))


from tpfit.cli.calibrate import calibrate  # noqa: E402
from tpfit.cli.check import check  # noqa: E402
from tpfit.cli.speed import speed  # noqa: E402
from tpfit.cli.ui import ui  # noqa: E402
from tpfit.cli.verify import explain, verify  # noqa: E402
from tpfit.cli.watch import watch  # noqa: E402

app.command()(verify)
app.command()(explain)
app.command()(ui)
app.command()(calibrate)
app.command()(check)
app.command()(watch)
app.command()(speed)


_BAD_CHOICE = re.compile(r"Invalid value for '(?P<flag>[^']+)'.*?: (?:Value error, )?'(?P<value>.*)' is not one of "
                         r"(?P<choices>.*)\.")


def usage_error_line(exc: typer.TyperException) -> str:
    """Click's usage error as tpfit's one line, naming the flag (also shown by the web page beside its field)."""
    hint = getattr(exc, "param_hint", None) or getattr(getattr(exc, "param", None), "opts", None)
    message = exc.format_message()
    choice = _BAD_CHOICE.fullmatch(message)
    if choice:  # an enum option: the same one line as tpfit's own usage errors
        return f"{choice['flag']} {choice['value']}: use one of {choice['choices'].replace(chr(39), '')}"
    if hint and "Invalid value" not in message:
        return f"{hint if isinstance(hint, str) else '/'.join(hint)}: {message}"
    return message


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
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(130)
    except typer.TyperException as exc:  # click's usage errors, as typer vendors them
        typer.echo(f"error: {usage_error_line(exc)}", err=True)
        sys.exit(2 if exc.exit_code == 2 else exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
