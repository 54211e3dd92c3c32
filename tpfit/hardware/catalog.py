"""GPU facts from tpfit/data/gpus.json (built from shared/gpu-catalog.json); MiB become bytes here."""

from __future__ import annotations

from functools import lru_cache

from msgspec import Struct

from tpfit.data import load_data
from tpfit.units import MIB


GENERIC_ID_PREFIX = "generic-"
"""The id of a GPU given only by its size starts so (`generic-24gb`): no catalog id does."""


class GpuSpec(Struct, frozen=True, kw_only=True):
    """One GPU model."""

    id: str
    name: str
    memory_bytes: int
    """Total memory as nvidia-smi reports it (81559 MiB on an H100 80GB)."""
    cuda_total_bytes: int
    """Total memory as CUDA reports it (cudaMemGetInfo): what vLLM multiplies by gpu_memory_utilization."""
    cuda_total_measured: bool = False
    """True where cuda_total_bytes was read on real hardware, False where it is scaled from one that was."""
    mem_bw_bytes_per_s: int = 0
    bf16_flops_per_s: int = 0
    fp8_flops_per_s: int = 0
    """Dense FP8 tensor-core peak (0 = none or unknown)."""
    fp8_supported: bool = False
    compute_capability: float | None = None
    nvlink: bool = False
    nvlink_bytes_per_s: int = 0
    """NVLink bytes/s per direction per GPU (the catalog's GB/s), 0 = none."""
    nvlink_pairs_only: bool = False
    """NVLink only through a bridge between two cards (the catalog's note says "bridge")."""
    pcie_gen: int = 4
    p2p: bool = True
    """Peer-to-peer access over PCIe: NVIDIA disables it on GeForce cards (vLLM then skips its custom all-reduce)."""
    nvml_names: tuple[str, ...] = ()
    vendor: str = "NVIDIA"

    @property
    def is_a100(self) -> bool:
        return "a100" in self.id

    @property
    def has_speed_figures(self) -> bool:
        """Whether speed can be predicted on it: a CPU, or a GPU given only by its size (`--gpus 2x24GB`), has no
        memory bandwidth to predict with (plans then hold memory figures only)."""
        return self.vendor != "CPU" and self.mem_bw_bytes_per_s > 0

    @property
    def short_name(self) -> str:
        """The card as the one-line answer names it (`3090`, `H100`, `24GB`): its catalog id without RTX, or the
        size a GPU given only by its size was given as (not `GENERIC-24GB`)."""
        return self.id.removeprefix(GENERIC_ID_PREFIX).replace("rtx-", "").upper()


def _catalog() -> dict:
    return load_data("gpus.json")


def _to_spec(g: dict) -> GpuSpec:
    cc = g.get("compute_capability")
    link = g.get("nvlink") or {}
    note = (link.get("note") or "").lower()
    return GpuSpec(
        id=g["id"], name=g["name"], memory_bytes=g["memory_mib"] * MIB, cuda_total_bytes=g["cuda_total_mib"] * MIB,
        cuda_total_measured=g["cuda_total_measured"], mem_bw_bytes_per_s=int((g["mem_bw_gbs"] or 0) * 1e9),
        bf16_flops_per_s=int((g["bf16_dense_tflops"] or 0) * 1e12), fp8_supported=bool(g["fp8_supported"]),
        fp8_flops_per_s=int((g.get("fp8_dense_tflops") or 0) * 1e12),
        compute_capability=float(cc) if cc else None, nvlink=bool(link.get("supported")),
        nvlink_bytes_per_s=int((link.get("gbs_per_direction") or (link.get("gbs_total") or 0) / 2) * 1e9),
        nvlink_pairs_only="bridge" in note and not ("nvswitch" in note or "sxm" in note),
        pcie_gen=int((g.get("pcie") or {}).get("gen") or 4), p2p="GeForce" not in g["name"],
        nvml_names=tuple(g["nvml_names"]), vendor=g["vendor"],
    )


def _norm(text: str) -> str:
    return text.lower().replace("_", "-").replace(" ", "-").replace("geforce-", "").replace("nvidia-", "")


@lru_cache(maxsize=None)
def _alias_index() -> dict[str, dict]:
    index: dict[str, dict] = {}
    for g in _catalog()["gpus"]:
        for alias in g["aliases"]:
            index[_norm(alias)] = g
            index[_norm(alias).replace("-", "")] = g
    return index


def find_gpu(name: str) -> GpuSpec | None:
    """A GPU by alias ("3090", "h100", "H100-80GB", "a100-40gb") or None."""
    key = _norm(name)
    g = _alias_index().get(key) or _alias_index().get(key.replace("-", ""))
    return _to_spec(g) if g else None


def find_gpu_by_nvml_name(nvml_name: str) -> GpuSpec | None:
    for g in _catalog()["gpus"]:
        if nvml_name in g["nvml_names"]:
            return _to_spec(g)
    return None


def gpu_aliases() -> list[str]:
    """The short names `--gpus` accepts, for help and error messages."""
    return sorted({a for g in _catalog()["gpus"] for a in g["aliases"] if "-" not in a or a.startswith(("h1", "a1"))})


def generic_gpu(memory_gib: float) -> GpuSpec:
    """A GPU known only by its size ("24GB"): CUDA total scaled like the catalog's estimated entries."""
    smi = int(memory_gib * 1024) * MIB
    measured = find_gpu("h100")  # the one measured card the catalog scales the others by
    ratio = measured.cuda_total_bytes / measured.memory_bytes
    return GpuSpec(id=f"{GENERIC_ID_PREFIX}{memory_gib:g}gb", name=f"{memory_gib:g} GB GPU", memory_bytes=smi,
                   cuda_total_bytes=int(smi * ratio) // MIB * MIB)


def catalog_gpus() -> list[GpuSpec]:
    """Every GPU of the catalog, in its order (the web page's GPU picker)."""
    return [_to_spec(g) for g in _catalog()["gpus"]]
