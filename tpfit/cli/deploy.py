"""`tpfit deploy`: the recommended layout as vllm serve, docker, compose, Kubernetes, LWS or Ray files, and its
Prometheus rules and Grafana dashboard."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from tpfit.cli.monitoring import AlertLabelOpt, JobOpt, MonitoringOpt, ThresholdOpt, make_monitoring
from tpfit.cli.options import (
    ConcurrencyOpt, ContextOpt, DpOpt, EagerOpt, GmuOpt, GpusOpt, InputTokensOpt, KvDtypeOpt, LanguageOnlyOpt,
    MaxModelLenOpt, ObjectiveOpt, OutputTokensOpt, PpOpt, QuantOpt, SeqsOpt, TpOpt, TpotOpt, TtftOpt, VersionOpt,
    check_plan_options,
)
from tpfit.errors import UsageError
from tpfit.kinds import KvCacheDtype, Objective
from tpfit.vllm_facts import DEFAULT_CUDA, DEFAULT_PORT, CudaBuild


def deploy(
    ctx: typer.Context,
    model: Annotated[Optional[str], typer.Argument(help="As for `tpfit plan` (omit with --plan).")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="serve, docker, compose, k8s, lws, ray; alerts "
                                     "(Prometheus rules) or grafana (dashboard JSON).")] = "serve",
    plan_file: Annotated[Optional[Path], typer.Option("--plan", help="A `tpfit plan --json` file to deploy.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Write the files into this folder.")] = None,
    cuda: Annotated[Optional[CudaBuild], typer.Option("--cuda", help="Image CUDA build (13.0: the -cu130 tag; default "
                                                      f"{DEFAULT_CUDA}, or what --driver runs).")] = None,
    driver: Annotated[Optional[str], typer.Option("--driver", help="Host driver version: picks the image CUDA.")] = None,
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = DEFAULT_PORT,
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
    language_model_only: LanguageOnlyOpt = False,
    vllm_version: VersionOpt = None,
    input_tokens: InputTokensOpt = None,
    output_tokens: OutputTokensOpt = None,
    objective: ObjectiveOpt = Objective.THROUGHPUT,
    ttft: TtftOpt = None,
    tpot: TpotOpt = None,
    monitoring: MonitoringOpt = False,
    job: JobOpt = None,
    threshold: ThresholdOpt = None,
    alert_label: AlertLabelOpt = None,
) -> None:
    """Deployment files for the recommended layout: vllm serve, docker run, compose, Kubernetes, Ray; its
    Prometheus alerting rules and Grafana dashboard. The workload and objective options are plan's, so the layout
    deployed (replicas included) is the one `tpfit plan` recommends for them."""
    import shlex

    from tpfit.deploy import checks
    from tpfit.deploy.files import deployment_files
    from tpfit.deploy.render import FORMATS, MONITORED_FORMATS, MONITORING_FORMATS

    if fmt not in FORMATS:
        raise UsageError(f"use one of {', '.join(FORMATS)}", flag="--format", value=fmt)
    given = [(flag, value if isinstance(value, str) else value[0])
             for flag, value in (("--threshold", threshold), ("--job", job), ("--alert-label", alert_label)) if value]
    if given and not (monitoring or fmt in MONITORING_FORMATS):
        raise UsageError(f"goes with --format {' or '.join(MONITORING_FORMATS)}, or --monitoring with --format "
                         f"{', '.join(MONITORED_FORMATS)} (--format {fmt} writes no alerting rules)", flag=given[0][0],
                         value=given[0][1])
    checks.check_format_options(fmt, {"--cuda": cuda.value if cuda else None, "--driver": driver,
                                      "--shm-size": shm_size})
    ids = checks.parse_gpu_ids(gpu_ids) if gpu_ids is not None else ()
    if shm_size is not None:
        shm_size = checks.check_shm_size(shm_size)
    if driver is not None:
        checks.parse_driver(driver)
    if out is not None:
        checks.check_out_dir(out)
    check_plan_options(ctx, model=model, plan_file=plan_file if model is None else None)
    if plan_file is not None:
        from tpfit.report.json import read_plan_file

        if model is not None:
            raise UsageError(f"give MODEL or --plan, not both (the plan file already names its model; MODEL "
                             f"{model!r} would be ignored)", flag="--plan", value=str(plan_file))
        plan = read_plan_file(plan_file)
    elif model is None:
        raise UsageError("give MODEL (and --gpus) or --plan plan.json", flag="MODEL")
    else:
        from tpfit.request import PlanRequest

        plan = PlanRequest.from_options(ctx.params).make()
    command = shlex.join(["tpfit", "deploy", *sys.argv[2:]]) if sys.argv[1:2] == ["deploy"] else "tpfit deploy"
    files = deployment_files(
        plan, fmt, command=command, cuda=cuda, driver=driver, port=port, gpu_ids=ids, gpu_ids_text=gpu_ids,
        served_model_name=served_model_name,
        model_path=str(Path(plan.model.local_path).absolute()) if plan.model.local_path else None,
        shm_size=shm_size, monitoring=monitoring,
        monitoring_for=lambda doc, d: make_monitoring(doc, d, job=job, threshold=threshold, alert_label=alert_label))
    if fmt == "lws" and plan.cluster.nodes == 1:
        typer.echo("note: a single-node plan; the LeaderWorkerSet has one pod per replica", err=True)
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
