"""`tpfit explain`: which vLLM failure a log shows, and the fix."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from tpfit.errors import UsageError
from tpfit.live.log_file import read_log_file, read_log_tail

DEFAULT_GPUS = "8xh100"
"""GPUs assumed for the TP sizes a model accepts when --gpus is not given."""
GpusForModelOpt = Annotated[Optional[str], typer.Option(
    "--gpus", help=f"With --model: the GPUs, for the context that fits (2x3090, 4xH100, 2x8xH100; the TP sizes are "
                   f"read for {DEFAULT_GPUS} without it).")]


def explain(
    logfile: Annotated[Optional[str], typer.Argument(help="A vLLM log file, or - / nothing for stdin.")] = None,
    model: Annotated[Optional[str], typer.Option("--model", help="The model, for the planner's figures.")] = None,
    gpus: GpusForModelOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the diagnoses as JSON.")] = False,
) -> None:
    """Read a vLLM log: which mistake it was, and the fix."""
    from tpfit.live.explain import Context, context_for, explain as diagnose

    if gpus is not None and not model:  # the planner's figures need the model; the GPUs alone were dropped
        raise UsageError("only goes with --model MODEL (the planner's figures are the model's on those GPUs); give "
                         "both, or leave --gpus out", flag="--gpus", value=gpus)
    if logfile is None and sys.stdin.isatty():
        raise UsageError("LOGFILE missing: give a vLLM log file, or pipe one in: vllm serve ... 2>&1 | tpfit explain -",
                         flag="LOGFILE")
    if logfile in (None, "-"):
        text = read_log_tail(sys.stdin.buffer)
    else:
        text = read_log_file(logfile, flag="LOGFILE", hint=", or pipe one in: ... | tpfit explain -")
    context = Context()
    if model:
        from tpfit.hardware.cluster import Cluster
        from tpfit.model.load import load_model

        context = context_for(load_model(model), Cluster.parse(gpus or DEFAULT_GPUS), plan_gpus=bool(gpus))
    found = diagnose(text, context)
    if as_json:
        import json

        typer.echo(json.dumps({"diagnoses": [d.to_dict() for d in found]}, indent=1))
    else:
        from tpfit.report.explain import explain_text

        typer.echo(explain_text(found))
    raise typer.Exit(0 if found else 1)
