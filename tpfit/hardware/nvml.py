"""The only import of pynvml (nvidia-ml-py): this host's driver, GPUs and NVLink pairs, read once into values.

`tpfit plan` without `--gpus` (hardware/detect.py) and `tpfit doctor` (live/read_host.py) both read through
`read_nvml`; `GpuState` is also what nvidia-smi's XML is parsed into (live/host.py), so captured hosts replay
through the same values.
"""

from __future__ import annotations

from msgspec import Struct

from tpfit.errors import NvmlError


class GpuProcess(Struct, frozen=True, kw_only=True):
    pid: int
    name: str
    used_bytes: int


class GpuState(Struct, frozen=True, kw_only=True):
    """One GPU as the driver reports it (NVML, or `nvidia-smi -q -x`); empty / None where it could not be read."""

    index: int
    name: str
    bus_id: str = ""
    total_bytes: int = 0
    used_bytes: int = 0
    free_bytes: int = 0
    reserved_bytes: int = 0
    """The driver's own reservation, apart from "used" (NVML memory v2)."""
    mig_mode: str = "N/A"
    ecc_mode: str = "N/A"
    pcie_gen_max: int | None = None
    pcie_gen_current: int | None = None
    pcie_width_max: int | None = None
    pcie_width_current: int | None = None
    processes: tuple[GpuProcess, ...] = ()


class NvmlHost(Struct, frozen=True, kw_only=True):
    """What NVML says of this host."""

    driver_version: str
    cuda_driver_version: str
    """Highest CUDA the driver supports ("13.0")."""
    gpus: tuple[GpuState, ...]
    nvlink_pairs: frozenset[tuple[int, int]]
    """GPU index pairs joined by an active NVLink."""


def read_nvml() -> NvmlHost:
    """This host through NVML; NvmlError saying why when it cannot be read (no nvidia-ml-py, no driver)."""
    try:
        import pynvml
    except ImportError as err:
        raise NvmlError("nvidia-ml-py is not installed (pip install 'tpfit[gpu]')") from err
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as err:
        raise NvmlError(f"no NVIDIA driver or GPU found ({err})") from err
    try:
        cuda = pynvml.nvmlSystemGetCudaDriverVersion_v2()
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        return NvmlHost(driver_version=_text(pynvml.nvmlSystemGetDriverVersion()),
                        cuda_driver_version=f"{cuda // 1000}.{cuda % 1000 // 10}",
                        gpus=tuple(_gpu(pynvml, i, h) for i, h in enumerate(handles)),
                        nvlink_pairs=_nvlink_pairs(pynvml, handles))
    except pynvml.NVMLError as err:
        raise NvmlError(f"reading GPUs through NVML failed ({err})") from err
    finally:
        pynvml.nvmlShutdown()


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _gpu(pynvml, index: int, h) -> GpuState:
    def optional(fn, *args, default=None):
        try:
            return fn(h, *args)
        except pynvml.NVMLError:
            return default

    try:  # v2 reports the driver's reservation apart from "used"
        mem = pynvml.nvmlDeviceGetMemoryInfo(h, version=pynvml.nvmlMemory_v2)
        reserved = mem.reserved
    except (pynvml.NVMLError, AttributeError, TypeError):
        mem, reserved = pynvml.nvmlDeviceGetMemoryInfo(h), 0
    mig = optional(pynvml.nvmlDeviceGetMigMode)
    ecc = optional(pynvml.nvmlDeviceGetEccMode)
    procs = tuple(GpuProcess(pid=p.pid, name="", used_bytes=p.usedGpuMemory or 0)
                  for p in optional(pynvml.nvmlDeviceGetComputeRunningProcesses, default=[]) or [])
    return GpuState(
        index=index, name=_text(pynvml.nvmlDeviceGetName(h)), bus_id=_text(pynvml.nvmlDeviceGetPciInfo(h).busId),
        total_bytes=mem.total, used_bytes=mem.used, free_bytes=mem.free, reserved_bytes=reserved,
        mig_mode="Enabled" if mig and mig[0] else "Disabled", ecc_mode="Enabled" if ecc and ecc[0] else "Disabled",
        pcie_gen_max=optional(pynvml.nvmlDeviceGetMaxPcieLinkGeneration),
        pcie_gen_current=optional(pynvml.nvmlDeviceGetCurrPcieLinkGeneration),
        pcie_width_max=optional(pynvml.nvmlDeviceGetMaxPcieLinkWidth),
        pcie_width_current=optional(pynvml.nvmlDeviceGetCurrPcieLinkWidth), processes=procs)


def _nvlink_pairs(pynvml, handles: list) -> frozenset[tuple[int, int]]:
    """Pairs whose peer-to-peer path is NVLink, as NVML's P2P status says (`nvidia-smi topo -p2p n`).

    Not by matching a link's remote PCI bus with the peer's: on HGX boards every link ends at an NVSwitch, and in
    a VM the remote bus reads FFFFFFFF:FF:FF.0 (both seen on the lent 2x H200: 18 active links per GPU, each to a
    switch, none naming the peer)."""
    pairs = set()
    for i, first in enumerate(handles):
        for j in range(i + 1, len(handles)):
            try:
                status = pynvml.nvmlDeviceGetP2PStatus(first, handles[j], pynvml.NVML_P2P_CAPS_INDEX_NVLINK)
            except pynvml.NVMLError:
                continue  # a driver that cannot say: no NVLink assumed (the slower link, a safe plan)
            if status == pynvml.NVML_P2P_STATUS_OK:
                pairs.add((i, j))
    return frozenset(pairs)