"""Facts about vLLM releases and their images that several parts of tpfit use, each in one place:
the newest release tpfit reads, the default `--gpu-memory-utilization` per release, the image's CUDA
builds and the host driver each needs."""

from __future__ import annotations

from tpfit.kinds import Kind

CURRENT_VLLM_VERSION = "0.33.0"
"""Newest vLLM release read for tpfit's rules (shared/reference/vllm-internals.md): the default target."""

GPU_MEMORY_UTILIZATION_DEFAULT = 0.92
"""`CacheConfig.gpu_memory_utilization` default from vLLM 0.20 (0.19.0 / 0.20.0 wheels' config/cache.py)."""
GPU_MEMORY_UTILIZATION_DEFAULT_BEFORE_0_20 = 0.9
"""The same default before 0.20."""


def parse_version(text: str) -> tuple[int, int, int]:
    """`"0.26.0" -> (0, 26, 0)`; also accepts "0.26", "v0.26.0" and local builds ("0.26.0+cpu").

    Not valid: "", "abc", "0.26.0.1".
    """
    parts = text.strip().lstrip("v").split("+")[0].split(".")
    try:
        nums = [int(p) for p in parts[:3]]
    except ValueError:
        raise ValueError(f"not a vLLM version: {text!r}; use a release such as 0.26.0") from None
    if not nums or len(parts) > 3:
        raise ValueError(f"not a vLLM version: {text!r}; use a release such as 0.26.0")
    return tuple(nums + [0] * (3 - len(nums)))  # type: ignore[return-value]


def default_gpu_memory_utilization(version: str) -> float:
    """vLLM's `--gpu-memory-utilization` when the flag is not given, for that release."""
    return GPU_MEMORY_UTILIZATION_DEFAULT if parse_version(version) >= (0, 20, 0) \
        else GPU_MEMORY_UTILIZATION_DEFAULT_BEFORE_0_20


class CudaBuild(Kind):
    """The CUDA builds of the official `vllm/vllm-openai` image: the plain tag, and `-cu130`."""

    CU129 = "12.9"
    CU130 = "13.0"

    @property
    def min_driver(self) -> tuple[int, int, int]:
        """Minimum Linux driver (CUDA toolkit release notes, shared/reference/deploy-conventions.md §1.2)."""
        return _MIN_DRIVER[self]

    @property
    def tag_suffix(self) -> str:
        return "-cu130" if self is CudaBuild.CU130 else ""


_MIN_DRIVER = {CudaBuild.CU129: (575, 51, 3), CudaBuild.CU130: (580, 65, 6)}
DEFAULT_CUDA = CudaBuild.CU129
"""The CUDA of the plain `vllm/vllm-openai:vX.Y.Z` tag."""
CUDA_PROBE_IMAGE = f"nvidia/cuda:{DEFAULT_CUDA}.0-base-ubuntu24.04"
"""A tiny image that proves a container sees the GPUs (`tpfit doctor --probe`)."""


def image_for(vllm_version: str, cuda: CudaBuild = DEFAULT_CUDA) -> str:
    """The pinned official image: `vllm/vllm-openai:vX.Y.Z`, `-cu130` for the CUDA 13.0 build."""
    return f"vllm/vllm-openai:v{vllm_version}{CudaBuild(cuda).tag_suffix}"


def cuda_of_image(image: str | None) -> CudaBuild:
    """The CUDA build of a vllm/vllm-openai tag: `-cu130` -> 13.0, otherwise the default."""
    return CudaBuild.CU130 if image and CudaBuild.CU130.tag_suffix.lstrip("-") in image else DEFAULT_CUDA


def parse_driver(version: str | None) -> tuple[int, ...]:
    """`"580.65.06" -> (580, 65, 6)`; `()` when absent or not a driver version."""
    try:
        return tuple(int(p) for p in (version or "").split("."))
    except ValueError:
        return ()


def cuda_for_driver(driver: str | None) -> CudaBuild:
    """The newest image CUDA this host driver runs (the default when the driver is unknown)."""
    have = parse_driver(driver)
    runs = [c for c in CudaBuild if have and have >= c.min_driver]
    return max(runs, key=lambda c: c.min_driver) if runs else DEFAULT_CUDA


def driver_requirements() -> str:
    """`CUDA 12.9 images need >= 575.51.03, -cu130 images >= 580.65.06`, for messages."""
    return ", ".join(f"{'CUDA ' + c.value if not c.tag_suffix else c.tag_suffix} images "
                     f"{'need ' if i == 0 else ''}>= {c.min_driver[0]}.{c.min_driver[1]:02d}.{c.min_driver[2]:02d}"
                     for i, c in enumerate(CudaBuild))
