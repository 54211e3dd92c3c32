"""`tpfit check`: lint an existing vLLM deployment (a command line, docker run, compose, Kubernetes) before it runs."""

from __future__ import annotations

import stat
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from tpfit.cli.options import GpusOpt, check_server_url
from tpfit.kinds import ModelDtype
from tpfit.errors import UsageError

FORMATS = ("text", "json", "sarif")
ServerTpOpt = Annotated[Optional[int], typer.Option("--tp", "--tensor-parallel-size", min=1, help=(
    "With --url: the server's --tensor-parallel-size (a server does not report it)."))]
ServerPpOpt = Annotated[Optional[int], typer.Option("--pp", "--pipeline-parallel-size", min=1, help=(
    "With --url: the server's --pipeline-parallel-size."))]
ServerDtypeOpt = Annotated[ModelDtype, typer.Option("--dtype", case_sensitive=False, help=(
    "With --url: the server's --dtype (a server does not report it)."))]


def _read(file: str) -> bytes:
    from tpfit.deployment.read import MAX_BYTES

    if file == "-":
        return sys.stdin.buffer.read(MAX_BYTES + 1)
    path = Path(file)
    try:
        kind = path.stat().st_mode
    except OSError as err:  # missing, a dangling link, a loop of links, no permission
        raise UsageError(f"cannot read it ({err.strerror})", flag="FILE", value=file) from None
    if stat.S_ISDIR(kind):
        raise UsageError("is a folder; give the deployment file in it (a shell script, compose file or Kubernetes "
                         "manifest)", flag="FILE", value=file)
    if not stat.S_ISREG(kind):
        raise UsageError("is not a regular file (a pipe or device); give a file, or - to read stdin", flag="FILE",
                         value=file)
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


def _server(url: str, log: Optional[Path], tp: Optional[int], pp: Optional[int], dtype: str):
    from tpfit.deployment.read_server import read_server, server_deployment

    from tpfit.live.log_file import read_log_file

    log_text = None if log is None else read_log_file(log, flag="--log")
    facts = read_server(url, log_text=log_text)
    return server_deployment(facts, tp=tp, pp=pp, dtype=dtype), facts


def check(
    file: Annotated[Optional[str], typer.Argument(help="A shell script or command line, a compose file or "
                                                       "Kubernetes manifests; - reads stdin.")] = None,
    url: Annotated[Optional[str], typer.Option("--url", help="Check a running vLLM server instead of a file.")] = None,
    log: Annotated[Optional[Path], typer.Option("--log", help="With --url: the server's start-up log.")] = None,
    tp: ServerTpOpt = None,
    pp: ServerPpOpt = None,
    dtype: ServerDtypeOpt = ModelDtype.AUTO,
    gpus: GpusOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the findings as JSON.")] = False,
    fmt: Annotated[str, typer.Option("--format", help="text, json or sarif (SARIF 2.1.0 for code scanning).")] = "text",
    driver: Annotated[Optional[str], typer.Option("--driver", help="The host's NVIDIA driver (e.g. 570.133.20): "
                                                  "checks the image's CUDA build against it.")] = None,
    fix: Annotated[bool, typer.Option("--fix", help="Write the corrected file beside FILE (NAME.fixed.EXT).")] = False,
    in_place: Annotated[bool, typer.Option("--in-place", help="With --fix: overwrite FILE itself.")] = False,
) -> None:
    """Check a deployment against vLLM's own rules before it runs: flags, layout, memory, GPUs, /dev/shm, probes,
    secrets, caches. Exit 1 on an error finding."""
    import json

    from tpfit import __version__
    from tpfit.check.run import check_cluster, check_deployment
    from tpfit.deployment.read import read_deployment
    from tpfit.report.check import render_text, report_dict, sarif_dict

    if fmt not in FORMATS:
        raise UsageError(f"use one of {', '.join(FORMATS)}", flag="--format", value=fmt)
    if in_place and not fix:
        raise UsageError("--in-place only goes with --fix", flag="--in-place")
    fmt = "json" if as_json else fmt
    if driver is not None:
        from tpfit.vllm_facts import parse_driver

        if not parse_driver(driver):
            raise UsageError("use a driver version such as 570.133.20 (nvidia-smi prints it)", flag="--driver",
                             value=driver)
    if file is not None and url is not None:
        raise UsageError(f"give FILE or --url, not both (FILE {file!r} and --url {url})", flag="FILE")
    if url is None and (log is not None or tp or pp or dtype is not ModelDtype.AUTO):
        raise UsageError("--log, --tp, --pp and --dtype describe a running server: they go with --url "
                         "(a file says its own)", flag="--url")
    if file is None and url is None:
        raise UsageError("give the deployment to check: a shell script, compose file or Kubernetes manifest (- reads "
                         "stdin), or --url of a running server", flag="FILE")
    if url is not None:
        check_server_url(url)
    if url is not None and fix:
        raise UsageError("a running server has no file to fix", flag="--fix")
    facts = None
    if url is not None:
        dep, facts = _server(url, log, tp, pp, dtype.value)
    else:
        dep = read_deployment(_read(file), "stdin" if file == "-" else file)
    cluster = check_cluster(gpus, kv_cache_memory_bytes=facts.kv_cache_memory_bytes if facts else None,
                            workers=(tp or 1) * (pp or 1))
    report = check_deployment(dep, gpus=cluster, host_driver=driver)
    to_stderr = fix and file == "-"  # `tpfit check - --fix` is a filter: the corrected text alone on stdout
    if fmt == "json":
        typer.echo(json.dumps(report_dict(report), indent=1), err=to_stderr)
    elif fmt == "sarif":
        typer.echo(json.dumps(sarif_dict(report, version=__version__), indent=1), err=to_stderr)
    else:
        typer.echo(render_text(report), nl=False, err=to_stderr)
    if fix:
        from tpfit.check.fix import fix_text

        text, applied, manual = fix_text(dep, report.findings)
        target = _fixed_path(file, in_place)
        if target is None:
            sys.stdout.write(text)
        else:
            try:
                target.write_text(text)
            except OSError as err:
                raise UsageError(f"cannot write the fixed file there ({err.strerror})",
                                 flag="--in-place" if in_place else "--fix", value=str(target)) from None
            by_hand = f"; by hand: {'; '.join(manual)}" if manual else ""
            typer.echo(f"wrote {target}: {len(applied)} edit(s){by_hand}", err=True)
    raise typer.Exit(report.exit_code)
