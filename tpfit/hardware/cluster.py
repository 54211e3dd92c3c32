"""Cluster: the GPUs a plan may use, parsed from `--gpus` or detected through NVML."""

from __future__ import annotations

import re

from msgspec import Struct

from tpfit.errors import UsageError
from tpfit.hardware.catalog import GpuSpec, find_gpu, generic_gpu, gpu_aliases
from tpfit.limits import MAX_GPU_MEMORY_GIB, MAX_GPUS, MAX_GPUS_PER_NODE, MAX_NODES
from tpfit.units import GIB

_SPEC = re.compile(r"^\s*(?:(\d+)\s*[xX×*]\s*)?(?:(\d+)\s*[xX×*]\s*)?([A-Za-z0-9][A-Za-z0-9 ._-]*?)\s*$")
"""COUNTxGPU or NODESxCOUNTxGPU. Both cases spelled out rather than re.IGNORECASE, whose Unicode case folding makes
this one compile in 0.7 ms instead of 0.2 (at every `tpfit plan` start)."""
_COUNT_AS_NAME = re.compile(r"^\d+\s*[xX×*]$")
"""What is left as the GPU name when none was given: "2x" or "2x2x"."""
_POPULAR = ("h100", "h200", "b200", "a100", "l40s", "l4", "a10g", "4090", "3090", "mi300x")
"""Named in the unknown-GPU message; the full list is long and the close matches come first."""
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*[gG][iI]?[bB]$")


class Cluster(Struct, frozen=True, kw_only=True):
    """`nodes` machines with `gpus_per_node` identical GPUs each."""

    gpu: GpuSpec
    gpus_per_node: int = 1
    nodes: int = 1
    free_bytes: tuple[int, ...] = ()
    """Free memory per GPU at detection time (NVML), empty when described by hand."""
    nvlink_pairs: frozenset[tuple[int, int]] = frozenset()
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
        Not valid: "2xfoo" (unknown GPU), "0x3090", "x3090", "2x", "", "10000xH100" (over `tpfit.limits`).
        """
        m = _SPEC.match(text or "") if len(text or "") <= 100 else None
        if not m or _COUNT_AS_NAME.match(m.group(3)):
            raise UsageError("cannot read it; use COUNTxGPU such as 2xH100, 4x3090, 2x24GB or 2x8xH100 (2 nodes)",
                             flag="--gpus", value=text)
        first, second, name = m.group(1), m.group(2), m.group(3)
        nodes, per_node = (int(first), int(second)) if second else (1, int(first or 1))
        if nodes < 1 or per_node < 1:
            raise UsageError("GPU and node counts must be at least 1, e.g. 2x3090", flag="--gpus", value=text)
        if nodes > MAX_NODES or per_node > MAX_GPUS_PER_NODE or nodes * per_node > MAX_GPUS:
            raise UsageError(f"tpfit plans at most {MAX_NODES} nodes, {MAX_GPUS_PER_NODE} GPUs per node and "
                             f"{MAX_GPUS} GPUs in all, e.g. 16x8xH100", flag="--gpus", value=text)
        size = _SIZE.match(name.strip())
        if size:
            memory_gib = float(size.group(1))
            if not 1 <= memory_gib <= MAX_GPU_MEMORY_GIB:
                raise UsageError(f"a GPU size from 1 to {MAX_GPU_MEMORY_GIB} GB, e.g. 2x24GB", flag="--gpus",
                                 value=text)
            gpu = generic_gpu(memory_gib)
        else:
            gpu = find_gpu(name)
            if gpu is None:
                import difflib

                close = difflib.get_close_matches(name.lower(), gpu_aliases(), n=3, cutoff=0.5)
                hint = f"did you mean {' or '.join(close)}? " if close else ""
                raise UsageError(f"unknown GPU {name!r}; {hint}known GPUs include {', '.join(_POPULAR)}; or give a "
                                 "size such as 2x24GB", flag="--gpus", value=text)
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
