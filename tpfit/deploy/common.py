"""One deployment, as every format renders it: the model, the vLLM argv, GPUs, image, header.

Built once from a plan (or a plan's JSON), so `vllm serve`, docker, compose, Kubernetes and Ray
files all carry the same flags (shared/reference/deploy-conventions.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

DEFAULT_PORT = 8000
HF_CACHE_HOST = "~/.cache/huggingface"
HF_CACHE_CONTAINER = "/root/.cache/huggingface"
CUDA_VARIANTS = ("12.9", "13.0")
MIN_DRIVER_FOR_CUDA = {"12.9": (575, 51, 3), "13.0": (580, 65, 6)}
"""Minimum Linux driver per image CUDA (CUDA toolkit release notes, deploy-conventions.md §1.2)."""

_DNS_LABEL = re.compile(r"[^a-z0-9-]+")


def k8s_name(text: str) -> str:
    """A Kubernetes object name (RFC 1123 label) derived from a model id: 'meta-llama/Llama-3.1-8B' -> 'llama-3-1-8b'."""
    name = _DNS_LABEL.sub("-", text.split("/")[-1].lower()).strip("-")
    return (name or "vllm")[:50].rstrip("-")


def image_for(vllm_version: str, cuda: str = "12.9") -> str:
    """The pinned official image: `vllm/vllm-openai:vX.Y.Z`, `-cu130` for the CUDA 13.0 build."""
    suffix = "-cu130" if cuda == "13.0" else ""
    return f"vllm/vllm-openai:v{vllm_version}{suffix}"


def cuda_for_driver(driver: str | None) -> str:
    """The newest image CUDA this host driver runs (12.9 when the driver is unknown)."""
    if not driver:
        return "12.9"
    try:
        parts = tuple(int(p) for p in driver.split("."))
    except ValueError:
        return "12.9"
    return "13.0" if parts >= MIN_DRIVER_FOR_CUDA["13.0"] else "12.9"


@dataclass(frozen=True, slots=True, kw_only=True)
class Deployment:
    """Everything a deployment file needs; no format recomputes any of it."""

    model: str
    """What vLLM loads: a Hugging Face id or a path."""
    served_model_name: str | None
    engine_args: tuple[str, ...]
    """The plan's vLLM flags, in order (`--tensor-parallel-size 2 --max-model-len 8192 ...`)."""
    tensor_parallel_size: int
    pipeline_parallel_size: int
    data_parallel_size: int
    gpus_per_node: int
    nodes: int
    image: str
    vllm_version: str
    port: int = DEFAULT_PORT
    gpu_ids: tuple[int, ...] = ()
    """Host GPU indices to use; empty = all."""
    shm_size: str | None = None
    """`--shm-size` instead of `--ipc=host` when set."""
    header: tuple[str, ...] = field(default=())
    """Comment lines: model, layout, predicted KV tokens and concurrency, tpfit version, command."""

    @property
    def gpus_per_replica_node(self) -> int:
        """GPUs one node of one replica uses: TP within a node (PP across nodes when multi-node)."""
        if self.nodes > 1:
            return self.tensor_parallel_size
        return self.tensor_parallel_size * self.pipeline_parallel_size * self.data_parallel_size

    @property
    def multi_node(self) -> bool:
        return self.nodes > 1 and self.tensor_parallel_size * self.pipeline_parallel_size > self.gpus_per_node

    def vllm_argv(self) -> list[str]:
        """`vllm serve` arguments after the program name: the model, then the flags."""
        argv = [self.model]
        if self.served_model_name:
            argv += ["--served-model-name", self.served_model_name]
        argv += list(self.engine_args)
        if self.port != DEFAULT_PORT:
            argv += ["--port", str(self.port)]
        return argv

    def server_argv(self) -> list[str]:
        """Arguments after the image (its entrypoint is the OpenAI server): `--model` first."""
        return ["--model", *self.vllm_argv()]


def deployment_from_plan_dict(plan: dict, *, command: str, cuda: str = "12.9", port: int = DEFAULT_PORT,
                              gpu_ids: tuple[int, ...] = (), served_model_name: str | None = None,
                              model_path: str | None = None, shm_size: str | None = None) -> Deployment:
    """A Deployment from `tpfit plan --json` output (the same dict `tpfit deploy` builds in-process)."""
    from tpfit.errors import UsageError

    index = plan.get("recommended")
    if index is None:
        raise UsageError("the plan has no layout that vLLM accepts; nothing to deploy (see its summary: "
                         f"{plan.get('summary', '')})", flag="--plan")
    best = plan["candidates"][index]
    lay, mem = best["layout"], best["memory"]
    if mem["verdict"] == "refused_at_start":
        raise UsageError(f"nothing to deploy: vLLM would refuse every layout ({plan.get('summary', '')})",
                         flag="--plan" if command.startswith("tpfit deploy --plan") else "MODEL")
    argv: list[str] = []
    for f in best["flags"]:
        if f.get("optional"):
            continue
        argv += [f["flag"]] if f["value"] is None else [f["flag"], str(f["value"])]
    cluster = plan["cluster"]
    if cluster["nodes"] > 1 and lay["tp"] * lay["pp"] > cluster["gpus_per_node"]:
        argv += ["--distributed-executor-backend", "ray"]
    version = plan["engine"]["vllm_version"]
    model = model_path or plan["model"]["id"]
    from tpfit import __version__

    header = (
        f"Generated by tpfit {__version__}: {command}",
        f"model {plan['model']['id']} on {cluster['nodes']} node(s) x {cluster['gpus_per_node']} {cluster['gpu']}, "
        f"layout TP={lay['tp']} PP={lay['pp']} DP={lay['dp']}" + (f" EP={lay['ep']}" if lay["ep"] > 1 else ""),
        f"predicted by vLLM {version}'s arithmetic: {mem['kv_cache_tokens']:,} KV tokens, max concurrency "
        f"{mem['max_concurrency']:.2f} at {mem['max_model_len']} tokens ({mem['verdict']})",
    ) + tuple(f"WARNING: {reason}" for reason in mem["reasons"])
    return Deployment(
        model=model, served_model_name=served_model_name, engine_args=tuple(argv), tensor_parallel_size=lay["tp"],
        pipeline_parallel_size=lay["pp"], data_parallel_size=lay["dp"], gpus_per_node=cluster["gpus_per_node"],
        nodes=cluster["nodes"], image=image_for(version, cuda), vllm_version=version, port=port, gpu_ids=gpu_ids,
        shm_size=shm_size, header=header,
    )
