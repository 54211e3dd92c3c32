"""Shared option aliases, so `--gpus` means the same in every command, and the checks of option values that several
commands share (a server URL, a file to write, plan options beside --plan, finite durations)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tpfit.errors import UsageError
from tpfit.kinds import KvCacheDtype, ModelDtype, Objective
from tpfit.limits import MAX_NUM_BATCHED_TOKENS, MAX_NUM_SEQS, MAX_PARALLEL_SIZE

ModelArg = Annotated[str, typer.Argument(
    help="Bundled model (llama-3.1-70b, qwen3-32b, ...), a local folder or config.json, or a Hugging Face id.")]
GpusOpt = Annotated[Optional[str], typer.Option(
    "--gpus", help="GPUs: 2x3090, 4xH100, 8xH100-80GB, 2x24GB, 2x8xH100 (2 nodes). Default: detected via NVML.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the plan as JSON (the contract in the README).")]
"""`tpfit plan --json`; other commands say what their own --json prints."""
TpOpt = Annotated[Optional[int], typer.Option("--tp", "--tensor-parallel-size", min=1, max=MAX_PARALLEL_SIZE,
                                              help="Only this TP size.")]
PpOpt = Annotated[Optional[int], typer.Option("--pp", "--pipeline-parallel-size", min=1, max=MAX_PARALLEL_SIZE,
                                              help="Only this PP size.")]
DpOpt = Annotated[Optional[int], typer.Option("--dp", "--data-parallel-size", min=1, max=MAX_PARALLEL_SIZE,
                                              help="Only this DP size.")]
EpOpt = Annotated[Optional[bool], typer.Option("--enable-expert-parallel/--no-expert-parallel",
                                               help="Only layouts with (or without) expert parallel.")]
ContextOpt = Annotated[Optional[int], typer.Option(
    "--context", min=1, help="Tokens per request (prompt + output); sets --max-model-len.")]
ConcurrencyOpt = Annotated[int, typer.Option("--concurrency", min=1, help="Requests served at once.")]
MaxModelLenOpt = Annotated[Optional[int], typer.Option("--max-model-len", min=1, help="vLLM's --max-model-len.")]
GmuOpt = Annotated[Optional[float], typer.Option(
    "--gpu-memory-utilization", min=0.01, max=1.0, help="vLLM's fraction of each GPU (default: the version's).")]
KvDtypeOpt = Annotated[KvCacheDtype, typer.Option("--kv-cache-dtype", case_sensitive=False,
                                                   help="vLLM's --kv-cache-dtype.")]
QuantOpt = Annotated[Optional[str], typer.Option(
    "--quantization", "-q", help="vLLM's --quantization; fp8 = online FP8 of a bf16 checkpoint.")]
DtypeOpt = Annotated[ModelDtype, typer.Option("--dtype", case_sensitive=False, help="vLLM's --dtype.")]
SeqsOpt = Annotated[Optional[int], typer.Option("--max-num-seqs", min=1, max=MAX_NUM_SEQS,
                                                help="vLLM's --max-num-seqs.")]
BatchedOpt = Annotated[Optional[int], typer.Option("--max-num-batched-tokens", min=1, max=MAX_NUM_BATCHED_TOKENS,
                                                   help="vLLM's --max-num-batched-tokens.")]
EagerOpt = Annotated[bool, typer.Option("--enforce-eager", help="No CUDA graphs (vLLM's --enforce-eager).")]
LanguageOnlyOpt = Annotated[bool, typer.Option("--language-model-only",
                                               help="A multimodal model without its vision tower (vLLM's flag).")]
VersionOpt = Annotated[Optional[str], typer.Option("--vllm-version", help="Plan for this vLLM release.")]
AllOpt = Annotated[bool, typer.Option("--all", help="Show every layout, not only the first rows.")]
HtmlOpt = Annotated[Optional[Path], typer.Option(
    "--html", help="Also write the plan as one self-contained HTML page (opens offline).")]
InputTokensOpt = Annotated[Optional[int], typer.Option(
    "--input-tokens", min=1, help="Prompt tokens per request for the speed figures (default: context - output).")]
OutputTokensOpt = Annotated[Optional[int], typer.Option(
    "--output-tokens", min=1, help="Answer tokens per request for the speed figures (default: 256).")]
ObjectiveOpt = Annotated[Objective, typer.Option(
    "--objective", case_sensitive=False,
    help="Rank layouts by throughput (output tok/s at --concurrency) or latency (per request).")]
TtftOpt = Annotated[Optional[float], typer.Option("--ttft", help="Target time to first token, seconds (above 0).")]
TpotOpt = Annotated[Optional[float], typer.Option("--tpot", help="Target time per output token, seconds (above 0).")]


def check_plan_options(ctx: typer.Context, *, model: str | None, plan_file: Path | None) -> None:
    """Plan options make a plan of MODEL: beside `--plan` (a file holds its own) or without MODEL they would be
    dropped without a word, so they are refused naming the first one given."""
    if model is not None and plan_file is None:
        return
    from tpfit.request import PlanRequest  # the options that make a plan are its fields

    plan_options = set(PlanRequest.__struct_fields__) - {"model"}
    given = [p for p in ctx.command.params if p.name in plan_options  # by name: typer vendors its own click
             and getattr(ctx.get_parameter_source(p.name), "name", None) == "COMMANDLINE"]
    if given:
        why = "the --plan file holds its own plan" if plan_file is not None else "it plans MODEL, which is not given"
        flag, value = given[0].opts[0], ctx.params[given[0].name]
        shown = flag if isinstance(value, bool) else f"{flag} {getattr(value, 'value', value)}"
        raise UsageError(f"{shown}: goes with MODEL ({why})", flag=flag)


MAX_INTERVAL_S = 3600.0
"""The longest `watch --interval` and `--scrape-timeout`: an hour, against Prometheus' 15-60 s scrapes."""


def finite(value: float | None) -> float | None:
    """A typer callback: click's ranges let `nan` through (every comparison with it is false), and `inf` where no
    maximum is set; a duration of either would never end or raise deep inside asyncio."""
    import math

    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a number of seconds; give one such as 2 or 0.5")
    return value


def check_server_url(url: str, *, flag: str = "--url") -> str:
    """A vLLM server's base URL as `watch`, `verify` and `check` take it, or UsageError naming the flag: http or
    https, a host, a port from 1 to 65535 when given, no spaces or control characters, an IP address that is one.

    Valid: "http://127.0.0.1:8000", "https://vllm.example.com", "http://[::1]:8000".
    Not valid: "127.0.0.1:8000" (no scheme), "http://:8000" (no host), "http://h:99999", "http://256.1.1.1"."""
    from urllib.parse import urlsplit

    if not url.lower().startswith(("http://", "https://")):
        example = f"http://{url}" if "://" not in url else "http://127.0.0.1:8000"
        raise UsageError(f"a server URL starts with http:// or https://, e.g. {example}", flag=flag, value=url)
    why = "a space or control character in it" if any(c.isspace() or not c.isprintable() for c in url) else None
    if why is None:
        import httpx  # what the client will parse it with: its refusals (a bad IP address, port or bracket) too

        try:
            port, host = urlsplit(url).port, httpx.URL(url).host
        except (ValueError, httpx.InvalidURL) as err:
            port, host, why = None, "", str(err).rstrip(".")
        if why is None and not host:
            why = "no host"
        elif why is None and port == 0:
            why = "port 0"
    if why is not None:
        raise UsageError(f"not a server URL ({why}); use http://HOST:PORT such as http://127.0.0.1:8000", flag=flag,
                         value=url)
    return url


def server_key(url: str) -> tuple:
    """What tells two server URLs apart (a checked one: check_server_url): scheme, host without case, port with
    the scheme's default, path without its trailing slash. `http://Host:80/` and `http://host` are one server."""
    import httpx

    u = httpx.URL(url)
    return u.scheme, u.host.lower(), u.port or {"http": 80, "https": 443}[u.scheme], u.path.rstrip("/")


def check_writable(path: Path, flag: str, *, make_folders: bool = False) -> None:
    """Refuse an output path that cannot be written (a folder, a path under a file, a missing or read-only folder)
    before the work whose result goes there: open it for appending (`make_folders`: in the folders the command makes
    for it), and remove it again if it was new."""
    if str(path) == "-":  # taken literally, it wrote a file named "-" in the current folder
        raise UsageError("this writes a file, not standard output (which holds the command's own report); give "
                         "a file name", flag=flag, value=str(path))
    try:
        existed = path.exists()  # inside: a name too long for the file system raises here (ENAMETOOLONG)
        if make_folders:
            path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a"):
            pass
    except OSError as err:
        raise UsageError(f"cannot write it ({err.strerror or err}); give a file in a writable folder", flag=flag,
                         value=str(path)) from None
    if not existed:
        path.unlink(missing_ok=True)
