"""This host's GPUs as a Cluster (NVML), with their free memory."""

from __future__ import annotations

from msgspec.structs import replace

from tpfit.errors import NvmlError
from tpfit.hardware.catalog import GpuSpec, find_gpu_by_nvml_name
from tpfit.hardware.cluster import Cluster
from tpfit.hardware.nvml import GpuState, read_nvml
from tpfit.units import MIB

NO_GPU_HINT = "describe the GPUs instead, e.g. --gpus 2x3090, --gpus 4xH100 or --gpus 2x24GB"


def cluster_from_gpus(gpus: tuple[GpuState, ...], nvlink_pairs: frozenset = frozenset()) -> Cluster:
    """A Cluster from NVML readings (real, or nvidia-smi captures parsed into the same values): catalog facts,
    the driver's memory."""
    if not gpus:
        raise NvmlError(f"NVML sees no GPU; {NO_GPU_HINT}")
    first = gpus[0]
    known = find_gpu_by_nvml_name(first.name)
    # CUDA's total = NVML's total minus the driver's reservation, which NVML reports as used at idle
    cuda_total = first.total_bytes - (known.memory_bytes - known.cuda_total_bytes if known else 480 * MIB)
    if known is None:
        gpu = GpuSpec(id=first.name, name=first.name, memory_bytes=first.total_bytes, cuda_total_bytes=cuda_total,
                      nvlink=bool(nvlink_pairs))
    else:
        # every catalog fact (FP8 peak, NVLink and PCIe speeds, P2P) as `--gpus` would give it; what the driver
        # measured (name, memory) and whether NVLink joins these GPUs, from the driver
        gpu = replace(known, name=first.name, memory_bytes=first.total_bytes, cuda_total_bytes=cuda_total,
                      nvlink=bool(nvlink_pairs),
                      nvlink_bytes_per_s=known.nvlink_bytes_per_s if nvlink_pairs else 0)
    return Cluster(gpu=gpu, gpus_per_node=len(gpus), free_bytes=tuple(g.free_bytes for g in gpus),
                   nvlink_pairs=nvlink_pairs, source="nvml")


def detect_cluster() -> Cluster:
    """This host's GPUs (`tpfit plan` without --gpus); NvmlError saying how to describe them instead."""
    try:
        host = read_nvml()
    except NvmlError as err:
        raise NvmlError(f"{err}; {NO_GPU_HINT}") from err
    return cluster_from_gpus(host.gpus, host.nvlink_pairs)
