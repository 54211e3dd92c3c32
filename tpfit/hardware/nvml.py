"""The only import of pynvml (nvidia-ml-py): GPU names, memory and NVLink pairs of this host."""

from __future__ import annotations

from dataclasses import dataclass

from tpfit.errors import NvmlError

NO_GPU_HINT = "describe the GPUs instead, e.g. --gpus 2x3090, --gpus 4xH100 or --gpus 2x24GB"


@dataclass(frozen=True, slots=True, kw_only=True)
class NvmlGpu:
    index: int
    name: str
    total_bytes: int
    free_bytes: int
    used_bytes: int


def read_gpus() -> tuple[tuple[NvmlGpu, ...], frozenset[tuple[int, int]]]:
    """Every GPU NVML sees, and the index pairs joined by an active NVLink."""
    try:
        import pynvml
    except ImportError as err:
        raise NvmlError(f"GPU detection needs nvidia-ml-py (pip install 'tpfit[gpu]'); or {NO_GPU_HINT}") from err
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as err:
        raise NvmlError(f"no NVIDIA driver or GPU found ({err}); {NO_GPU_HINT}") from err
    try:
        gpus, handles = [], []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            handles.append(h)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            name = pynvml.nvmlDeviceGetName(h)
            gpus.append(NvmlGpu(index=i, name=name.decode() if isinstance(name, bytes) else name,
                                total_bytes=mem.total, free_bytes=mem.free, used_bytes=mem.used))
        pairs = set()
        for i, h in enumerate(handles):
            for link in range(18):
                try:
                    if not pynvml.nvmlDeviceGetNvLinkState(h, link):
                        continue
                    bus = pynvml.nvmlDeviceGetNvLinkRemotePciInfo_v2(h, link).busId
                except pynvml.NVMLError:
                    break
                for j, other in enumerate(handles):
                    if j != i and pynvml.nvmlDeviceGetPciInfo(other).busId == bus:
                        pairs.add((min(i, j), max(i, j)))
        return tuple(gpus), frozenset(pairs)
    except pynvml.NVMLError as err:
        raise NvmlError(f"reading GPUs through NVML failed ({err}); {NO_GPU_HINT}") from err
    finally:
        pynvml.nvmlShutdown()
