"""`tpfit calibrate`: measure this host's GPUs and write a calibration file that `plan` and `speed` pick up."""

from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from msgspec.structs import replace

from tpfit.cli.options import check_writable
from tpfit.kinds import CalibrationDevice


def calibrate(
    out: Annotated[Optional[Path], typer.Option("--out", help="Write the calibration here "
                                                "(default: the calibration folder, one file per GPU model).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Also print the calibration (raw timings included) as "
                                          "JSON on stdout.")] = False,
    quick: Annotated[bool, typer.Option("--quick", help="Fewer shapes and sizes: seconds instead of a minute.")] = False,
    device: Annotated[CalibrationDevice, typer.Option(
        "--device", case_sensitive=False, help="auto (CUDA when torch sees a GPU), cuda or cpu.")] = CalibrationDevice.AUTO,
    world_size: Annotated[Optional[list[int]], typer.Option(
        "--world-size", help="All-reduce over this many GPUs (repeatable; default every size the host can form).")] = None,
    vllm_model: Annotated[Optional[Path], typer.Option(
        "--vllm-model", help="Also run vLLM itself on one GPU (a model folder with a config.json; dummy weights, a "
        "single stream of a few hundred tokens) and fit the per-step overhead of that vLLM release.")] = None,
    vllm_python: Annotated[Optional[str], typer.Option(
        "--vllm-python", help="The Python that has vLLM, for --vllm-model (default: this one).")] = None,
) -> None:
    """Measure memory bandwidth, GEMM TFLOP/s, all-reduce and P2P on this host's GPUs (needs torch: the calibrate extra);
    with --vllm-model, also vLLM's per-step overhead."""
    from tpfit.errors import UsageError
    from tpfit.hardware.calibration import calibration_dir
    from tpfit.live.calibrate import (
        calibration_document, calibration_filename, catalog_id, check_world_sizes, default_world_sizes,
        describe_source, make_calibration, plan_steps, read_host_facts, sizes_for,
    )

    python = vllm_python or sys.executable
    if out is not None:
        check_writable(out, "--out", make_folders=True)  # before a minute of measuring, and before torch is imported
    if vllm_model is not None:
        from tpfit.live.vllm_step import check_vllm_model

        check_vllm_model(vllm_model, python)  # before a minute of measuring
    elif vllm_python is not None:
        raise UsageError("only goes with --vllm-model DIR (the model vLLM runs)", flag="--vllm-python",
                         value=vllm_python)
    facts = read_host_facts(device)  # the install line (exit 2) when torch is missing
    world_sizes = tuple(world_size) if world_size else default_world_sizes(facts, quick=quick)
    check_world_sizes(facts, world_sizes)
    gpu_id = catalog_id(facts.gpu_name)
    path = out or calibration_dir() / calibration_filename(facts.gpu_name, gpu_id)
    if out is None:
        check_writable(path, "--out", make_folders=True)
    samples, failed = _run_with_progress(plan_steps(facts, sizes_for(facts, quick=quick), world_sizes), quiet=as_json)
    cal = make_calibration(samples, gpu_name=facts.gpu_name, gpu_id=gpu_id, num_gpus=facts.num_gpus,
                           source=describe_source(facts, datetime.date.today().isoformat()))
    vllm_run = None
    if vllm_model is not None:
        cal, vllm_run = _fit_vllm_overhead(cal, vllm_model, python, facts, quiet=as_json, failed=failed)
    document = calibration_document(cal, samples, vllm_run)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document, indent=1) + "\n")
    except OSError as err:
        raise UsageError(f"cannot write the calibration ({err.strerror or err}); give a writable --out FILE",
                         flag="--out", value=str(path)) from None
    if as_json:
        typer.echo(json.dumps(document, indent=1))
        typer.echo(f"wrote {path}", err=True)
    else:
        from rich.console import Console

        from tpfit.report.calibration import render_calibration

        render_calibration(cal, Console(), written_to=str(path))
    if failed:
        typer.echo(f"error: these measurements failed and are missing from {path}: {', '.join(failed)}", err=True)
        raise typer.Exit(1)


def _run_with_progress(steps, *, quiet: bool):
    """Run each step under a progress bar, logging what it measured; a failing step is logged and skipped."""
    import time

    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from tpfit.live.calibrate import describe_samples

    samples, failed = [], []
    console = Console(stderr=True, soft_wrap=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, disable=quiet) as progress:
        task = progress.add_task("calibrating", total=len(steps))
        for step in steps:
            progress.update(task, description=step.name)
            start = time.monotonic()
            try:
                got = step.run()
            except Exception as err:  # a kernel or a worker that failed: keep the other measurements
                failed.append(step.name)
                console.print(f"{escape(step.name)}: failed: {escape(type(err).__name__)}: {escape(str(err)[:300])}",
                              highlight=False)
            else:
                samples.extend(got)
                console.print(f"{escape(step.name)} ({time.monotonic() - start:.1f} s): "
                              f"{escape(describe_samples(got))}", highlight=False)
            progress.advance(task)
        progress.update(task, description="done")
    return samples, failed


def _fit_vllm_overhead(cal, model: Path, python: str, facts, *, quiet: bool, failed: list[str]):
    """Run vLLM on `model` (a spinner while it starts and generates), fit step_overhead_s from its TPOT; on failure
    log the reason, add it to `failed` and keep the calibration without it."""
    import contextlib

    from rich.console import Console
    from rich.markup import escape

    from tpfit.errors import CalibrationError, SourceError, SpecError
    from tpfit.live.calibrate import release_device_memory
    from tpfit.live.vllm_step import OUTPUT_TOKENS, PROMPT_TOKENS, fit_step_overhead, run_vllm

    console = Console(stderr=True, soft_wrap=True)
    name = "vLLM single stream"
    release_device_memory(facts.device)
    try:
        with console.status(f"{name}: {escape(str(model))}, {PROMPT_TOKENS} -> {OUTPUT_TOKENS} tokens "
                            f"(engine start-up takes minutes on a GPU)", spinner="dots") if not quiet else contextlib.nullcontext():
            run = run_vllm(model, python, facts.device)
        fit = fit_step_overhead(run, cal, cal.gpu_id)
    except (CalibrationError, SourceError, SpecError) as err:
        failed.append(name)
        console.print(f"{name}: failed: {escape(str(err))}", highlight=False)
        return cal, None
    console.print(f"{name} (vLLM {escape(run.vllm_version)}, engine {run.engine_s:.0f} s): TPOT "
                  f"{run.tpot_s * 1e3:.3f} ms measured, {fit.predicted_without_overhead_s * 1e3:.3f} ms predicted "
                  f"without overhead: step overhead {fit.step_overhead_s * 1e3:.3f} ms", highlight=False)
    return (replace(cal, step_overhead_s=fit.step_overhead_s, vllm_version=run.vllm_version),
            {**run.to_dict(), **fit.to_dict()})

