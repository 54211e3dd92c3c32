"""Cluster: the GPUs a plan may use, parsed from `--gpus` or detected through NVML."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tpfit.errors import UsageError
from tpfit.hardware.catalog import GpuSpec, find_gpu, generic_gpu, gpu_aliases
from tpfit.units import GIB

_SPEC = re.compile(r"^\s*(?:(\d+)\s*[x×*]\s*)?(?:(\d+)\s*[x×*]\s*)?([A-Za-z0-9][A-Za-z0-9 ._-]*?)\s*$")
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*gi?b$", re.IGNORECASE)


@dataclass(frozen=True, slots=True, kw_only=True)
class Cluster:
    """`nodes` machines with `gpus_per_node` identical GPUs each."""

    gpu: GpuSpec
    gpus_per_node: int = 1
    nodes: int = 1
    free_bytes: tuple[int, ...] = field(default=())
    """Free memory per GPU at detection time (NVML), empty when described by hand."""
    nvlink_pairs: frozenset[tuple[int, int]] = field(default=frozenset())
    """GPU index pairs joined by NVLink (detected), empty when unknown."""
    source: str = "--gpus"

    def __post_init__(self) -> None:
        if self.gpus_per_node < 1 or self.nodes < 1:
            raise UsageError("a cluster needs at least one GPU", flag="--gpus", value=self.describe())

    @property
    def num_gpus(self) -> int:
        return self.gpus_per_node * self.nodes

    def describe(self) -> str:
        nodes = f"{self.nodes}x" if self.nodes > 1 else ""
        return f"{nodes}{self.gpus_per_node}x{self.gpu.id}"

    @classmethod
    def parse(cls, text: str) -> Cluster:
        """Parse a GPU description.

        Valid: "2x3090", "4xH100", "8xH100-80GB", "2x24GB", "2x8xH100" (2 nodes of 8), "h100", "1x4090".
        Not valid: "2xfoo" (unknown GPU), "0x3090", "x3090", "".
        """
        m = _SPEC.match(text or "")
        if not m:
            raise UsageError(f"cannot read {text!r}; use COUNTxGPU such as 2x3090, 4xH100 or 2x8xH100",
                             flag="--gpus", value=text)
        first, second, name = m.group(1), m.group(2), m.group(3)
        nodes, per_node = (int(first), int(second)) if second else (1, int(first or 1))
        if nodes < 1 or per_node < 1:
            raise UsageError("GPU and node counts must be at least 1, e.g. 2x3090", flag="--gpus", value=text)
        size = _SIZE.match(name.strip())
        if size:
            gpu = generic_gpu(float(size.group(1)))
        else:
            gpu = find_gpu(name)
            if gpu is None:
                raise UsageError(
                    f"unknown GPU {name!r}; known: {', '.join(gpu_aliases())}, or a size such as 24GB",
                    flag="--gpus", value=text,
                )
        return cls(gpu=gpu, gpus_per_node=per_node, nodes=nodes)

    @classmethod
    def cpu(cls, memory_bytes: int, workers: int = 1) -> Cluster:
        """vLLM's CPU backend: `workers` ranks (one per TP x PP rank), KV cache set by --kv-cache-memory-bytes."""
        return cls(gpu=GpuSpec(id="cpu", name="CPU", memory_bytes=memory_bytes, cuda_total_bytes=memory_bytes,
                               vendor="CPU"), gpus_per_node=workers, source="cpu")

    def to_dict(self) -> dict:
        return {
            "gpu": self.gpu.id,
            "gpu_name": self.gpu.name,
            "gpus_per_node": self.gpus_per_node,
            "nodes": self.nodes,
            "memory_gib_per_gpu": round(self.gpu.cuda_total_bytes / GIB, 2),
            "memory_measured": self.gpu.cuda_total_measured,
            "free_gib": [round(b / GIB, 2) for b in self.free_bytes],
            "source": self.source,
        }
