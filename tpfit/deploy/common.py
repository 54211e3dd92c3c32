"""One deployment, as every format renders it: the model, the vLLM argv, GPUs, image, header.

Built once from a plan, so `vllm serve`, docker, compose, Kubernetes and Ray
files all carry the same flags (shared/reference/deploy-conventions.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tpfit.core.plan import Plan
from tpfit.deploy.startup import MIN_START_WAIT_S, download_bytes, wait_seconds
from tpfit.vllm_facts import DEFAULT_CUDA, DEFAULT_PORT, CudaBuild, image_for

HF_CACHE_HOST_SHELL = "${HF_HOME:-$HOME/.cache/huggingface}"
"""The host's Hugging Face cache as a shell script names it: HF_HOME where the caller sets it (as huggingface_hub
reads it), else the default under HOME."""
HF_CACHE_HOST_COMPOSE = "${HF_HOME:-~/.cache/huggingface}"
"""The same folder as a compose file names it: compose interpolates `${HF_HOME:-...}` and expands `~` in a bind
source itself."""
HF_CACHE_CONTAINER = "/root/.cache/huggingface"
_DNS_LABEL = re.compile(r"[^a-z0-9-]+")


def k8s_name(text: str) -> str:
    """A Kubernetes object name (RFC 1123 label) derived from a model id: 'meta-llama/Llama-3.1-8B' -> 'llama-3-1-8b'."""
    name = _DNS_LABEL.sub("-", text.split("/")[-1].lower()).strip("-")
    return (name or "vllm")[:50].rstrip("-")


@dataclass(frozen=True, slots=True, kw_only=True)
class Deployment:
    """Everything a deployment file needs; no format recomputes any of it."""

    model: str
    """What vLLM loads: a Hugging Face id or a path."""
    served_model_name: str | None
    engine_args: tuple[str, ...]
    """The plan's vLLM flags, in order (`--tensor-parallel-size 2 --max-model-len 8192 ...`); the executor backend
    is `vllm_argv`'s, since it depends on the launcher."""
    tensor_parallel_size: int
    pipeline_parallel_size: int
    data_parallel_size: int
    gpus_per_node: int
    image: str
    vllm_version: str
    port: int = DEFAULT_PORT
    gpu_ids: tuple[int, ...] = ()
    """Host GPU indices to use; empty = all."""
    shm_size: str | None = None
    """`--shm-size` instead of `--ipc=host` when set."""
    local_model: bool = False
    """`model` is a folder on this machine: containers bind it read-only at the same path (vLLM in a container
    sees no host path otherwise)."""
    download_bytes: int = 0
    """What a first start downloads into the Hugging Face cache (deploy/startup.py `download_bytes`; 0 for a model
    folder given by its path): the cache volume must hold it."""
    start_wait_s: int = MIN_START_WAIT_S
    """How long the startup probe and health check let the server start (deploy/startup.py `wait_seconds`)."""
    header: tuple[str, ...] = field(default=())
    """Comment lines: model, layout, predicted KV tokens and concurrency, tpfit version, command."""

    @property
    def num_gpus(self) -> int:
        return self.tensor_parallel_size * self.pipeline_parallel_size * self.data_parallel_size

    @property
    def nodes_used(self) -> int:
        """Nodes the layout runs on: one when its GPUs fit a node, else as many as they fill (vLLM numbers its
        ranks TP first, then PP, then DP, and fills each node before the next)."""
        return max(1, -(-self.num_gpus // self.gpus_per_node))

    @property
    def gpus_per_replica_node(self) -> int:
        """GPUs each node (container, pod) of the layout uses: all of them on one node, else an equal share (TP=8
        PP=2 on 2x8: 8 each; TP=1 DP=16 on 2x8: 8 each)."""
        return -(-self.num_gpus // self.nodes_used)

    @property
    def engine_spans_nodes(self) -> bool:
        """One engine's TP x PP ranks do not fit on one node's share: vLLM needs the Ray executor (or --nnodes)."""
        return self.tensor_parallel_size * self.pipeline_parallel_size > self.gpus_per_replica_node

    @property
    def data_parallel_spans_nodes(self) -> bool:
        """The data-parallel engines run on several nodes: under Ray, vLLM places them with
        `--data-parallel-backend ray`, this node's share given as `--data-parallel-size-local`."""
        return self.nodes_used > 1 and self.data_parallel_size > 1

    def vllm_argv(self, *, ray: bool = True) -> list[str]:
        """`vllm serve` arguments after the program name: the model, then the flags; with the Ray executor when
        the engine spans nodes and Ray's data-parallel placement when its replicas do, unless `ray` is False
        (vLLM's own `--nnodes` launcher needs neither: it places both itself)."""
        argv = [self.model]
        if self.served_model_name:
            argv += ["--served-model-name", self.served_model_name]
        argv += list(self.engine_args)
        if ray and self.engine_spans_nodes:
            argv += ["--distributed-executor-backend", "ray"]
        if ray and self.data_parallel_spans_nodes:
            per_node = self.gpus_per_replica_node // (self.tensor_parallel_size * self.pipeline_parallel_size)
            argv += ["--data-parallel-backend", "ray", "--data-parallel-size-local", str(per_node)]
        if self.port != DEFAULT_PORT:
            argv += ["--port", str(self.port)]
        return argv

    def server_argv(self) -> list[str]:
        """Arguments after the image (its entrypoint is the OpenAI server): `--model` first."""
        return ["--model", *self.vllm_argv()]


def deployment_from_plan(plan: Plan, *, command: str, cuda: CudaBuild = DEFAULT_CUDA, port: int = DEFAULT_PORT,
                         gpu_ids: tuple[int, ...] = (), served_model_name: str | None = None,
                         model_path: str | None = None, shm_size: str | None = None) -> Deployment:
    """The Deployment of a plan's recommended layout, read from the Plan itself (made in-process or read back
    from a saved `tpfit plan --json` by report/json.py `read_plan_file`): its flags are `make_flags`', as the
    JSON's are."""
    from tpfit import __version__
    from tpfit.core.recommend import make_flags, summarize
    from tpfit.errors import UsageError

    best = plan.best
    if best is None:
        raise UsageError("nothing to deploy: vLLM would refuse every layout or run out of memory (the plan's summary: "
                         f"{summarize(plan)})", flag="--plan")
    lay, mem, cluster = best.layout, best.memory, plan.cluster
    if not mem.verdict.serves:
        raise UsageError(f"nothing to deploy: vLLM would refuse every layout ({summarize(plan)})",
                         flag="--plan" if command.startswith("tpfit deploy --plan") else "MODEL")
    argv = [arg for f in make_flags(plan, best) if not f.optional for arg in f.argv()]
    version = plan.engine.vllm_version
    header = (
        f"Generated by tpfit {__version__}: {command}",
        f"model {plan.model.model_id} on {cluster.nodes} node(s) x {cluster.gpus_per_node} {cluster.gpu.id}, "
        f"layout TP={lay.tp} PP={lay.pp} DP={lay.dp}" + (f" EP={lay.ep}" if lay.ep > 1 else ""),
        f"predicted by vLLM {version}'s arithmetic: {mem.kv_cache_tokens:,} KV tokens, max concurrency "
        f"{round(mem.max_concurrency, 2):.2f} at {mem.max_model_len} tokens"
        + (f" per replica, {lay.dp} replicas" if lay.dp > 1 else "") + f" ({mem.verdict.value})",
    ) + tuple(f"WARNING: {reason}" for reason in mem.reasons)
    model = model_path or plan.model.model_id
    return Deployment(
        model=model, served_model_name=served_model_name, engine_args=tuple(argv), tensor_parallel_size=lay.tp,
        pipeline_parallel_size=lay.pp, data_parallel_size=lay.dp, gpus_per_node=cluster.gpus_per_node,
        image=image_for(version, cuda), vllm_version=version, port=port, gpu_ids=gpu_ids,
        shm_size=shm_size, header=header, start_wait_s=wait_seconds(plan, best, downloads=model_path is None),
        download_bytes=0 if model_path is not None else download_bytes(plan),
        local_model=model_path is not None,
    )
