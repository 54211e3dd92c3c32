"""Can this deployment be written in this format, with these flags? One UsageError line each, naming the flag.

Checked before any file is written: `--gpu-ids`, `--shm-size`, `--driver`, a
multi-node layout in a single-node format, and a GPU whose vendor the container formats do not serve.
"""

from __future__ import annotations

import re
from pathlib import Path

from tpfit.deploy.common import Deployment
from tpfit.deployment.containers import size_or_none
from tpfit.errors import UsageError
from tpfit.units import format_gib
from tpfit.vllm_facts import MIN_SHM_BYTES, CudaBuild, driver_requirements

SINGLE_NODE_FORMATS = ("serve", "docker", "compose", "k8s")
"""Formats that start one server on one machine; a layout across nodes needs `lws` or `ray`."""
CONTAINER_FORMATS = ("docker", "compose", "k8s", "lws", "ray")
"""Formats that pin the CUDA image `vllm/vllm-openai` and NVIDIA's device plumbing."""
MAX_GPU_INDEX = 1023
IMAGE_OPTIONS = {"--cuda": "no image to pick a CUDA build for", "--driver": "no image to pick a CUDA build for",
                 "--shm-size": "no container whose /dev/shm to size (vLLM gets the host's)"}
"""Options that shape the container, and why `serve`, which starts vLLM installed on the host, has nothing for them.
(alerts and grafana take the server's options, unused, so one command line serves every format.)"""

"""docker's `RAMInBytes` grammar (go-units): `16g`, `16GB`, `16gib`, `1024m`, `17179869184`."""
_DRIVER = re.compile(r"^\d{2,4}(\.\d{1,3}){1,2}$")


def parse_gpu_ids(text: str) -> tuple[int, ...]:
    """`--gpu-ids 0,1` -> (0, 1). Not valid: "0,0" (twice), "-1", "a,b", ""."""
    parts = [p.strip() for p in text.split(",")]
    if not all(p.isdigit() and int(p) <= MAX_GPU_INDEX for p in parts):
        raise UsageError("use comma-separated GPU indices such as 0,1 (as nvidia-smi numbers them)",
                         flag="--gpu-ids", value=text)
    ids = tuple(int(p) for p in parts)
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise UsageError(f"GPU {twice[0]} is named twice; two vLLM ranks on one GPU fail (NCCL: 'Duplicate GPU "
                         "detected'); name each GPU once", flag="--gpu-ids", value=text)
    return ids


GPU_ID_FORMATS = ("serve", "docker", "compose")
"""Formats that start the server on a host whose GPUs tpfit can name (Kubernetes and Ray assign their own)."""


def check_gpu_ids(ids: tuple[int, ...], d: Deployment, *, text: str, fmt: str) -> None:
    """The indices must name exactly the GPUs one node of the layout uses, in a format that can pin them."""
    if fmt not in GPU_ID_FORMATS and fmt not in ("alerts", "grafana"):
        who = ("Kubernetes assigns them to the pod through nvidia.com/gpu; a nodeSelector picks the nodes"
               if fmt in ("k8s", "lws") else "Ray gives each node's container all of its GPUs")
        raise UsageError(f"--format {fmt} cannot pin host GPUs ({who}); use --format {', '.join(GPU_ID_FORMATS)}, "
                         "or leave --gpu-ids out", flag="--gpu-ids", value=text)
    need = d.gpus_per_replica_node
    if ids and len(ids) != need:
        layout = f"TP{d.tensor_parallel_size} PP{d.pipeline_parallel_size} DP{d.data_parallel_size}"
        example = ",".join(map(str, range(need)))
        raise UsageError(f"names {len(ids)} GPU{'s' if len(ids) != 1 else ''}, the layout {layout} uses {need} GPUs "
                         f"per node; give {need} indices such as {example}", flag="--gpu-ids", value=text)


def check_format_options(fmt: str, given: dict[str, str | None]) -> None:
    """Refuse an option the format would drop: `--cuda`, `--driver` or `--shm-size` with `--format serve`."""
    for option, nothing in IMAGE_OPTIONS.items():
        if fmt == "serve" and given.get(option) is not None:
            raise UsageError(f"--format serve runs vLLM installed on this host: {nothing}; use --format "
                             f"{', '.join(CONTAINER_FORMATS)}, or leave {option} out", flag=option, value=given[option])


def check_shm_for_layout(d: Deployment, fmt: str) -> None:
    """A `--shm-size` smaller than a multi-GPU server needs is refused: tpfit check reports such a container as an
    error ('Bus error'), so deploy would write a file its own check calls broken."""
    size = size_or_none(d.shm_size)
    if fmt in CONTAINER_FORMATS and size is not None and d.num_gpus > 1 and size < MIN_SHM_BYTES:
        layout = f"TP{d.tensor_parallel_size} PP{d.pipeline_parallel_size} DP{d.data_parallel_size}"
        raise UsageError(f"{layout} runs {d.num_gpus} worker processes, which exchange tensors through /dev/shm: "
                         f"vLLM needs at least {format_gib(MIN_SHM_BYTES, 0)} GiB there ('Bus error' below); use 16g, "
                         "or leave --shm-size out for --ipc=host", flag="--shm-size", value=d.shm_size)


def check_shm_size(text: str) -> str:
    """docker's size syntax, above zero: `16g`, `10.24gb`, `1024m` (read as check reads a compose file's shm_size:
    deployment/containers.py `size_or_none`)."""
    if not size_or_none(text.strip()):
        raise UsageError("use a size docker understands, such as 16g or 1024m", flag="--shm-size", value=text)
    return text.strip()


def parse_driver(text: str) -> tuple[int, ...]:
    """`--driver 580.65.06` -> (580, 65, 6); refused when not a version or too old for every image tpfit writes."""
    if not _DRIVER.match(text.strip()):
        raise UsageError("use the driver version nvidia-smi prints, such as 580.65.06", flag="--driver", value=text)
    version = tuple(int(p) for p in text.strip().split("."))
    if not any(version >= c.min_driver for c in CudaBuild):
        raise UsageError(f"too old for the vLLM images tpfit writes ({driver_requirements()}); update the host "
                         "driver", flag="--driver", value=text)
    return version


def check_format(d: Deployment, fmt: str, *, gpu_id: str) -> None:
    """Refuse a format that would silently deploy something else than the plan."""
    if fmt in SINGLE_NODE_FORMATS and d.nodes_used > 1:
        raise UsageError(f"the plan spans {d.nodes_used} nodes (TP{d.tensor_parallel_size} x "
                         f"PP{d.pipeline_parallel_size} x DP{d.data_parallel_size} on {d.gpus_per_node} GPUs per "
                         f"node); {fmt} starts one node's server; use --format lws or --format ray", flag="--format",
                         value=fmt)
    if fmt in ("lws", "ray") and d.nodes_used > 1:
        _check_multi_node(d, fmt)
    from tpfit.hardware.catalog import find_gpu

    gpu = find_gpu(gpu_id)
    vendor = gpu.vendor if gpu is not None else "NVIDIA"  # a GPU given by size ("24GB") is planned as NVIDIA's
    if fmt in CONTAINER_FORMATS and vendor != "NVIDIA":
        raise UsageError(f"{vendor} GPUs need vLLM's ROCm image (vllm/vllm-openai-rocm, --device /dev/kfd --device "
                         f"/dev/dri), which tpfit does not write; --format {fmt} writes NVIDIA's CUDA image; use "
                         "--format serve on a host with vLLM for ROCm installed", flag="--gpus", value=gpu_id)


def _check_multi_node(d: Deployment, fmt: str) -> None:
    """What Ray and LWS cannot start as planned: replicas of an engine that itself spans nodes, a share of the
    GPUs per node that splits an engine or leaves them idle, replicas over nodes before vLLM could place them."""
    from tpfit.deployment.flags import flag_table

    engine = d.tensor_parallel_size * d.pipeline_parallel_size
    layout = f"TP{d.tensor_parallel_size} PP{d.pipeline_parallel_size} DP{d.data_parallel_size}"
    if d.engine_spans_nodes and d.data_parallel_size > 1:
        why = f"each of its {d.data_parallel_size} engines spans nodes ({engine} GPUs)"
    elif d.num_gpus % d.nodes_used or (d.data_parallel_spans_nodes and d.gpus_per_replica_node % engine):
        why = f"its {d.num_gpus} GPUs do not split into whole engines per node over {d.nodes_used} nodes"
    elif d.data_parallel_spans_nodes and not flag_table(d.vllm_version).has("--data-parallel-backend"):
        why = f"vLLM {d.vllm_version} cannot place data-parallel engines on other nodes (no --data-parallel-backend)"
    else:
        return
    raise UsageError(f"the layout {layout} on {d.gpus_per_node} GPUs per node cannot be written as one {fmt} "
                     f"deployment: {why}; plan with --dp 1 and run one deployment per replica, or choose --tp/--pp/"
                     "--dp that fill whole nodes", flag="--format", value=fmt)


def check_out_dir(out: Path) -> None:
    """`--out` is a folder to write into: an existing file is refused before anything is written."""
    if out.exists() and not out.is_dir():
        raise UsageError("is a file; give a folder to write the deployment files into", flag="--out", value=str(out))
