"""`tpfit explain`: which vLLM failure a log shows, and the fix."""

from __future__ import annotations

import os
import stat
import sys
from collections import deque
from typing import Annotated, BinaryIO, Optional

import typer

from tpfit.cli.options import GpusOpt
from tpfit.errors import UsageError
from tpfit.limits import MAX_LOG_BYTES

DEFAULT_GPUS = "8xh100"
"""GPUs assumed for the TP sizes a model accepts when --gpus is not given."""


def read_log_tail(stream: BinaryIO, limit: int = MAX_LOG_BYTES) -> str:
    """A log's last `limit` bytes as text (the end holds vLLM's refusal): a file is read from there; a pipe is read
    to its end, keeping only the last chunks, so a log of any length takes at most `limit` bytes of memory."""
    if stream.seekable():
        size = stream.seek(0, os.SEEK_END)
        stream.seek(max(0, size - limit))
    chunks: deque[bytes] = deque()
    held = 0
    while chunk := stream.read(1 << 20):
        chunks.append(chunk)
        held += len(chunk)
        while held - len(chunks[0]) >= limit:
            held -= len(chunks.popleft())
    return b"".join(chunks)[-limit:].decode(errors="replace")


def explain(
    logfile: Annotated[Optional[str], typer.Argument(help="A vLLM log file, or - / nothing for stdin.")] = None,
    model: Annotated[Optional[str], typer.Option("--model", help="The model, for the planner's figures.")] = None,
    gpus: GpusOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the diagnoses as JSON.")] = False,
) -> None:
    """Read a vLLM log: which mistake it was, and the fix."""
    from tpfit.live.explain import Context, context_for, explain as diagnose

    if logfile is None and sys.stdin.isatty():
        raise UsageError("LOGFILE missing: give a vLLM log file, or pipe one in: vllm serve ... 2>&1 | tpfit explain -",
                         flag="LOGFILE")
    if logfile in (None, "-"):
        text = read_log_tail(sys.stdin.buffer)
    else:
        try:
            with open(logfile, "rb") as log:
                if not stat.S_ISREG(mode := os.fstat(log.fileno()).st_mode) and not stat.S_ISFIFO(mode):
                    raise UsageError("not a log file (a device or other special file); give a vLLM log file, or "
                                     "pipe one in: ... | tpfit explain -", flag="LOGFILE", value=logfile)
                text = read_log_tail(log)
        except OSError as err:
            raise UsageError(f"cannot read it ({err.strerror or err})", flag="LOGFILE", value=logfile) from None
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
