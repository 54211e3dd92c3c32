"""`tpfit check`: lint an existing vLLM deployment (a command line, docker run, compose, Kubernetes) before it runs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from tpfit.cli.options import GpusOpt
from tpfit.errors import NvmlError, UsageError

FORMATS = ("text", "json", "sarif")


def _read(file: str) -> bytes:
    from tpfit.deployment.read import MAX_BYTES

    if file == "-":
        return sys.stdin.buffer.read(MAX_BYTES + 1)
    path = Path(file)
    if not path.is_file():
        raise UsageError("no such file", flag="FILE", value=file)
    try:
        with path.open("rb") as fh:
            return fh.read(MAX_BYTES + 1)
    except OSError as err:
        raise UsageError(f"cannot read it ({err.strerror})", flag="FILE", value=file) from None


def _fixed_path(file: str, in_place: bool) -> Path | None:
    if file == "-":
        return None
    path = Path(file)
    return path if in_place else path.with_name(f"{path.stem}.fixed{path.suffix}")


def check(
    file: Annotated[str, typer.Argument(help="A shell script or command line, a compose file or Kubernetes "
                                              "manifests; - reads stdin.")],
    gpus: GpusOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the findings as JSON.")] = False,
    fmt: Annotated[str, typer.Option("--format", help="text, json or sarif (SARIF 2.1.0 for code scanning).")] = "text",
    fix: Annotated[bool, typer.Option("--fix", help="Write the corrected file beside FILE (NAME.fixed.EXT).")] = False,
    in_place: Annotated[bool, typer.Option("--in-place", help="With --fix: overwrite FILE itself.")] = False,
) -> None:
    """Check a deployment against vLLM's own rules before it runs: flags, layout, memory, GPUs, /dev/shm, probes,
    secrets, caches. Exit 1 on an error finding."""
    import json

    from tpfit import __version__
    from tpfit.check.run import check_deployment
    from tpfit.deployment.read import read_deployment
    from tpfit.report.check import render_text, report_dict, sarif_dict

    if fmt not in FORMATS:
        raise UsageError(f"use one of {', '.join(FORMATS)}", flag="--format", value=fmt)
    if in_place and not fix:
        raise UsageError("--in-place only goes with --fix", flag="--in-place")
    fmt = "json" if as_json else fmt
    dep = read_deployment(_read(file), "stdin" if file == "-" else file)
    cluster = None
    if gpus is not None:
        from tpfit.hardware.cluster import Cluster

        cluster = Cluster.parse(gpus)
    else:
        try:
            from tpfit.hardware.detect import detect_cluster

            cluster = detect_cluster()
        except (NvmlError, ImportError):
            cluster = None  # the manifest's node labels, else "GPUs unknown" findings say to give --gpus
    report = check_deployment(dep, gpus=cluster)
    if fmt == "json":
        typer.echo(json.dumps(report_dict(report), indent=1))
    elif fmt == "sarif":
        typer.echo(json.dumps(sarif_dict(report, version=__version__), indent=1))
    else:
        typer.echo(render_text(report), nl=False)
    if fix:
        from tpfit.check.fix import fix_text

        text, applied, manual = fix_text(dep, report.findings)
        target = _fixed_path(file, in_place)
        if target is None:
            sys.stdout.write(text)
        else:
            target.write_text(text)
            typer.echo(f"wrote {target}: {len(applied)} edit(s)" + (f"; by hand: {'; '.join(manual)}" if manual else ""),
                       err=True)
    raise typer.Exit(report.exit_code)
