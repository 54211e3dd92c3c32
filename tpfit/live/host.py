"""What a host looks like to vLLM: GPUs, driver, links, container runtime, shared memory, environment.

`HostSnapshot` is a frozen value. Readers fill it from the live host (NVML through hardware/nvml.py first,
nvidia-smi as the fallback, docker, /dev/shm) or from captured files (`nvidia-smi -q -x`, `nvidia-smi topo -m` / `-p2p r`),
so tests replay real captures through the same parsers.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

import msgspec

from tpfit.hardware.nvml import GpuProcess, GpuState
from tpfit.units import MIB


@dataclass(frozen=True, slots=True, kw_only=True)
class DockerState:
    present: bool = False
    reachable: bool = False
    runtimes: tuple[str, ...] = ()
    server_version: str = ""
    ctk_version: str = ""
    error: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class HostSnapshot:
    """Everything doctor reads; empty fields mean "could not be read", with `unseen` saying why."""

    source: str
    driver_version: str = ""
    cuda_driver_version: str = ""
    """Highest CUDA the driver supports ("13.0")."""
    gpus: tuple[GpuState, ...] = ()
    links: dict[str, str] = field(default_factory=dict)
    """"0-1" -> nvidia-smi topo level: NV18, PIX, PXB, PHB, NODE, SYS."""
    p2p_read: dict[str, str] = field(default_factory=dict)
    """"0-1" -> OK, CNS, GNS, TNS, NS, U (nvidia-smi topo -p2p r)."""
    docker: DockerState = field(default_factory=DockerState)
    shm_bytes: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    """CUDA_VISIBLE_DEVICES, NVIDIA_VISIBLE_DEVICES and NCCL_* variables."""
    torch_version: str = ""
    vllm_version: str = ""
    iommu_groups: int | None = None
    unseen: tuple[str, ...] = ()
    """What could not be read, and why (no GPU, no docker, no nvidia-smi...)."""

    def to_dict(self) -> dict:
        return msgspec.to_builtins(self)  # the dataclass and its GpuState Structs (hardware/nvml.py) alike


# ---- parsers of captured text -------------------------------------------------------------


def _mib(text: str | None) -> int:
    m = re.match(r"\s*(\d+)\s*MiB", text or "")
    return int(m.group(1)) * MIB if m else 0


def _int(text: str | None) -> int | None:
    m = re.match(r"\s*(\d+)", text or "")
    return int(m.group(1)) if m else None


def parse_smi_xml(text: str) -> tuple[str, str, tuple[GpuState, ...]]:
    """`nvidia-smi -q -x` -> (driver version, CUDA version, GPUs)."""
    root = ET.fromstring(text)
    gpus = []
    for i, g in enumerate(root.findall("gpu")):
        def t(path: str) -> str:
            e = g.find(path)
            return (e.text or "").strip() if e is not None and e.text else ""
        procs = tuple(
            GpuProcess(pid=int(p.findtext("pid", "0")), name=(p.findtext("process_name") or "").strip(),
                       used_bytes=_mib(p.findtext("used_memory")))
            for p in g.findall("processes/process_info"))
        link = "pci/pci_gpu_link_info/"
        gpus.append(GpuState(
            index=_int(t("minor_number")) if t("minor_number").isdigit() else i, name=t("product_name"),
            bus_id=g.get("id", t("pci/pci_bus_id")), total_bytes=_mib(t("fb_memory_usage/total")),
            used_bytes=_mib(t("fb_memory_usage/used")), free_bytes=_mib(t("fb_memory_usage/free")),
            reserved_bytes=_mib(t("fb_memory_usage/reserved")), mig_mode=t("mig_mode/current_mig") or "N/A",
            ecc_mode=t("ecc_mode/current_ecc") or "N/A", pcie_gen_max=_int(t(link + "pcie_gen/max_link_gen")),
            pcie_gen_current=_int(t(link + "pcie_gen/current_link_gen")),
            pcie_width_max=_int(t(link + "link_widths/max_link_width")),
            pcie_width_current=_int(t(link + "link_widths/current_link_width")), processes=procs))
    return (root.findtext("driver_version") or "").strip(), (root.findtext("cuda_version") or "").strip(), tuple(gpus)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _matrix(block: str) -> dict[str, str]:
    rows = [_ANSI.sub("", line).split() for line in block.splitlines()]
    rows = [r for r in rows if r]
    if not rows or not rows[0] or not rows[0][0].startswith("GPU"):
        return {}
    header = [h for h in rows[0] if re.fullmatch(r"GPU\d+", h)]  # not "GPU NUMA ID"'s "GPU"
    out = {}
    for r in rows[1:]:
        if not re.fullmatch(r"GPU\d+", r[0]) or len(r) < len(header) + 1:
            continue
        i = int(r[0][3:])
        for j, value in enumerate(r[1:len(header) + 1]):
            if i < j:
                out[f"{i}-{j}"] = value
    return out


def parse_topo(text: str) -> tuple[dict[str, str], dict[str, str]]:
    """`nvidia-smi topo -m` (+ an optional `---p2p-r` section holding `topo -p2p r`) -> (links, p2p read)."""
    main, _, rest = text.partition("---p2p-r")
    links = _matrix(main.split("Legend")[0])
    p2p = _matrix(rest.split("Legend")[0]) if rest else {}
    return links, p2p


def parse_docker_info(text: str) -> tuple[tuple[str, ...], str]:
    """`docker info --format '{{json .}}'` -> (runtimes, server version)."""
    import json

    data = json.loads(text)
    return tuple(sorted((data.get("Runtimes") or {}).keys())), str(data.get("ServerVersion", ""))
