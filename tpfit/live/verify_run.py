"""`tpfit verify`'s run, below its option parsing: start vLLM (a local process or the official image) or reach
one, read what it loaded, plan that, load it, and judge. `run_verify` returns the report as a dict (the JSON
contract); `tpfit.report.verify` renders it."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from tpfit.errors import UsageError
from tpfit.kinds import ModelDtype
from tpfit.live.log_file import read_log_file
from tpfit.vllm_facts import CURRENT_VLLM_VERSION, build_release

KEY_LINES = ("KV cache size", "Maximum concurrency", "Model loading took", "Available KV cache", "init engine",
             "Explicitly set", "Starting vLLM", "Error", "error")
"""Start-up log lines worth showing while vLLM loads."""


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyRequest:
    """What `tpfit verify` is asked (its options, checked)."""

    model: str | None
    url: str | None
    launch: bool = False
    docker: bool = False
    vllm_args: str | None = None
    vllm_python: str | None = None
    log: Path | None = None
    gpus: str | None = None
    tp: int | None = None
    pp: int | None = None
    dtype: ModelDtype = ModelDtype.AUTO
    kv_cache_memory_bytes: str | None = None
    """As given to vLLM (`64M`)."""
    kv_bytes: int | None = None
    """The same, parsed."""
    context: int | None = None
    concurrency: int = 4
    output_tokens: int | None = None
    requests: int | None = None
    ttft_p99: float | None = None
    itl_p99: float | None = None
    timeout: float = 600

    def __post_init__(self) -> None:
        """Every option is checked here, before a server starts (a launch takes minutes): --vllm-args as the shell
        would split it, --gpus as the plan will read it, --log only for a server tpfit does not start."""
        self.launch_flags()
        if self.gpus:
            from tpfit.hardware.cluster import Cluster

            gpus = Cluster.parse(self.gpus).num_gpus
            ranks = (self.tp or 1) * (self.pp or 1)
            if ranks > gpus:  # the plan of such a server is vLLM's refusal, and verify compared nothing with it
                flag, value = ("--tp", self.tp) if self.tp and self.tp > 1 else ("--pp", self.pp)
                raise UsageError(f"TP{self.tp or 1} x PP{self.pp or 1} runs {ranks} ranks, --gpus {self.gpus} has "
                                 f"{gpus} GPU{'s' if gpus > 1 else ''}; give the server's own --tp/--pp and GPUs",
                                 flag=flag, value=value)
        if self.log is not None and self.launch:
            raise UsageError("goes with --url: with --launch, tpfit reads the log of the server it starts",
                             flag="--log", value=str(self.log))

    def launch_flags(self) -> list[str]:
        """The vLLM flags `--launch` starts it with: --vllm-args, then the options tpfit knows."""
        import shlex

        try:
            flags = shlex.split(self.vllm_args or "")
        except ValueError as err:
            raise UsageError(f"not a command line ({err}); quote it as the shell would, e.g. "
                             "--vllm-args \"--max-num-seqs 8 --enforce-eager\"", flag="--vllm-args",
                             value=self.vllm_args) from None
        if self.dtype is not ModelDtype.AUTO:
            flags += ["--dtype", self.dtype]
        if self.kv_cache_memory_bytes:
            flags += ["--kv-cache-memory-bytes", self.kv_cache_memory_bytes]
        if self.context:
            flags += ["--max-model-len", str(self.context)]
        for flag, value in (("--tensor-parallel-size", self.tp), ("--pipeline-parallel-size", self.pp)):
            if value:
                flags += [flag, str(value)]
        return flags


def run_verify(req: VerifyRequest, *, say: Callable[[str], None] | None = None) -> dict:
    """Start (with --launch) or reach the server, verify, stop what was started. `say` gets progress lines."""
    import asyncio

    proc, run_dir, url = None, None, req.url
    if req.launch:
        proc, run_dir = _launch(req)
        url = proc.url
    try:
        if proc:
            proc.start()
            if say:
                say(f"starting vLLM ({url})")
            proc.wait_ready(timeout_s=req.timeout, on_progress=(lambda line: _startup_line(line, say)) if say else None)
        log_text = proc.log_text() if proc else (read_log_file(req.log, flag="--log") if req.log else None)
        report = asyncio.run(_verify(url, req, log_text, say))
    finally:
        if proc:
            proc.stop()
    if run_dir:  # the log was read into the report; a failed start keeps it (its path is in the error)
        shutil.rmtree(run_dir, ignore_errors=True)
    return report


def _launch(req: VerifyRequest):
    from tpfit.live.launch import VllmProcess, default_python, free_port, server_argv, short_temp_dir

    flags = req.launch_flags()
    if req.docker:
        return docker_process(req.model, flags), None
    python = req.vllm_python or default_python()
    if not shutil.which(python):
        raise UsageError("no such Python (or not executable); give the Python that has vLLM installed, "
                         "e.g. --vllm-python ~/vllm-venv/bin/python", flag="--vllm-python", value=python)
    run_dir = Path(tempfile.mkdtemp(prefix="tpfit-verify-", dir=short_temp_dir()))
    proc = VllmProcess(argv=server_argv(python, req.model, flags, port=free_port(), served_name=None),
                       log_path=run_dir / "server.log",
                       env={"TMPDIR": str(run_dir), "VLLM_HOST_IP": "127.0.0.1", "VLLM_NO_USAGE_STATS": "1",
                            "DO_NOT_TRACK": "1"})
    return proc, run_dir


def docker_process(model: str, flags: list[str]):
    """The docker run of `tpfit deploy --format docker` for these flags, on a free local port."""
    from tpfit.deploy.common import Deployment
    from tpfit.deploy.shell import docker_argv
    from tpfit.live.launch import DockerVllm, free_port
    from tpfit.model.load import existing_path
    from tpfit.vllm_facts import image_for

    port = free_port()
    tp = int(flags[flags.index("--tensor-parallel-size") + 1]) if "--tensor-parallel-size" in flags else 1
    pp = int(flags[flags.index("--pipeline-parallel-size") + 1]) if "--pipeline-parallel-size" in flags else 1
    folder = existing_path(model)  # a local model folder (~ expanded, as the plan loads it): bound at the same path
    local = folder is not None
    d = Deployment(model=str(folder.resolve()) if local else model, served_model_name=None,
                   engine_args=tuple(flags), tensor_parallel_size=tp, pipeline_parallel_size=pp, data_parallel_size=1,
                   gpus_per_node=tp * pp, image=image_for(CURRENT_VLLM_VERSION),
                   vllm_version=CURRENT_VLLM_VERSION, port=port, local_model=local)
    cache = os.environ.get("HF_HOME") or str(Path.home() / ".cache" / "huggingface")  # as the script's shell reads it
    argv = [a for part in docker_argv(d, cache_host=cache) for a in part]
    return DockerVllm(argv=argv, name=f"tpfit-verify-{port}", port=port)


def _startup_line(line: str, say: Callable[[str], None]) -> None:
    if any(k in line for k in KEY_LINES):
        say("  | " + line[-160:])


def server_release(facts) -> str:
    """The release to plan a running server with: the one its /version names, a development build's as the
    release it leads to (vllm_facts.build_release); a UsageError naming --url for one older than tpfit models."""
    from tpfit.core.engine import MODELLED_VLLM_VERSIONS, outside_modelled

    try:
        version = build_release(facts.version)
    except ValueError:
        return CURRENT_VLLM_VERSION
    if outside_modelled(version) < 0:
        low, high = MODELLED_VLLM_VERSIONS
        raise UsageError(f"the server runs vLLM {facts.version}; tpfit models {low} to {high}, so it has no plan to "
                         "verify it against", flag="--url", value=facts.url)
    return version


def plan_for_server(facts, req: VerifyRequest, *, input_tokens: int | None = None,
                    output_tokens: int | None = None):
    """The plan of what the server loaded: its model, max_model_len, block size and KV budget, one layout; its
    speed for requests of `input_tokens` + `output_tokens`."""
    from tpfit import EngineArgs, Workload, make_plan
    from tpfit.core.layout import Layout
    from tpfit.hardware.cluster import Cluster
    from tpfit.model.load import load_model
    from tpfit.units import GIB

    spec = load_model(req.model or facts.model_root)
    kv = req.kv_bytes or (facts.kv_cache_memory_bytes if facts.device == "cpu" or req.gpus is None else None)
    cluster = Cluster.parse(req.gpus) if req.gpus else Cluster.cpu(64 * GIB, workers=(req.tp or 1) * (req.pp or 1))
    version = server_release(facts)
    engine = EngineArgs(vllm_version=version, max_model_len=facts.max_model_len, dtype=req.dtype,
                        kv_cache_memory_bytes=kv, block_size=facts.block_size,
                        gpu_memory_utilization=facts.gpu_memory_utilization)
    work = Workload(context=facts.max_model_len, concurrency=req.concurrency, input_tokens=input_tokens,
                    output_tokens=output_tokens)
    return make_plan(spec, cluster, work, engine, layouts=(Layout(tp=req.tp or 1, pp=req.pp or 1),))


async def _verify(url: str, req: VerifyRequest, log_text: str | None, say: Callable[[str], None] | None) -> dict:
    from tpfit.live.client import VllmClient, request_timeout
    from tpfit.live.load import LoadSpec, run_load
    from tpfit.live.server_facts import read_server_facts
    from tpfit.live.verify import compare, compare_speed, judge

    async with VllmClient(url, max_connections=max(8, req.concurrency * 2),
                          timeout=request_timeout(req.timeout)) as client:
        facts = await read_server_facts(client, log_text=log_text)
        ctx = req.context or facts.max_model_len
        out_tokens = req.output_tokens or max(1, min(128, ctx // 4))
        if out_tokens >= ctx:
            raise UsageError(f"--output-tokens {out_tokens} leaves no room for a prompt in {ctx} tokens",
                             flag="--output-tokens")
        fits = ctx <= facts.max_model_len
        plan = plan_for_server(facts, req, input_tokens=ctx - out_tokens if fits else None,
                               output_tokens=out_tokens if fits else None)
        candidate = plan.candidates[0]
        rows = compare(candidate.memory, facts) if candidate.memory else ()
        spec = LoadSpec(model=facts.model_id, prompt_tokens=ctx - out_tokens, output_tokens=out_tokens,
                        concurrency=req.concurrency, requests=req.requests or 3 * req.concurrency,
                        timeout_s=req.timeout)

        def progress(done: int, total: int, in_flight: int) -> None:
            if say:
                print(f"\r  load: {done}/{total} requests done, {in_flight} in flight   ", end="", file=sys.stderr,
                      flush=True)
        load = await run_load(client, spec, on_progress=progress)
        if say:
            print(file=sys.stderr)
    capacity = None
    if facts.max_concurrency is not None and facts.max_model_len:
        capacity = facts.max_concurrency * facts.max_model_len / ctx  # the same KV at this context
    verdict = judge(load, concurrency=req.concurrency, context=ctx, kv_capacity_requests=capacity,
                    ttft_p99_s=req.ttft_p99, itl_p99_s=req.itl_p99)
    speed_rows = compare_speed(candidate.speed, load) if candidate.speed else ()
    return {"server": facts.to_dict(), "comparison": [r.to_dict() for r in rows],
            "speed": {"predicted": candidate.speed.to_dict() if candidate.speed else None,
                      "comparison": [r.to_dict() for r in speed_rows]},
            "load_spec": asdict(spec),
            "load": load.to_dict(), "verdict": verdict.to_dict(),
            "plan_verdict": candidate.memory.verdict if candidate.memory else "refused"}
