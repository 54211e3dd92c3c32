"""What `tpfit calibrate` measured on one host's GPUs, and where those measurements are kept.

The values are plain data (the speed model in `tpfit/core/perf.py` consumes them); the readers at the bottom are
the I/O edge: the user's calibration folder first, then the built-in files measured on the lent GPUs.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import msgspec
from msgspec import Struct, field
from msgspec.structs import force_setattr

from tpfit.data import DATA_DIR
from tpfit.errors import SourceError, UsageError

SCHEMA_VERSION = 1
"""Version of the calibration file layout; `from_dict` refuses any other."""

GEMM_KEYS = ("bf16_decode", "bf16_prefill", "fp8_decode", "fp8_prefill")
"""Keys of `GpuCalibration.gemm_flops_per_s`: dtype x matrix shape (decode: few tokens; prefill: thousands)."""

ALLREDUCE_BACKENDS = ("nccl", "gloo", "custom")
"""What an all-reduce was measured with: NCCL on GPUs, gloo on CPU, vLLM's custom all-reduce."""

CALIBRATION_DIR_ENV = "TPFIT_CALIBRATION_DIR"
"""Environment variable that replaces the platform folder calibration files are written to and read from."""


def _check_positive(name: str, value: float | None, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise UsageError(f"calibration field {name} must be a positive number, got {value!r}")


class AllReduceFit(Struct, frozen=True, kw_only=True):
    """One collective's cost on this host: time(n bytes) = latency_s + n / bus_bytes_per_s (fitted to measured sizes)."""

    world_size: int
    """Ranks taking part (the tensor-parallel size it stands for)."""
    latency_s: float
    """Fixed cost of one all-reduce, seconds: the fit's intercept (small messages, as decode's, pay mostly this)."""
    bus_bytes_per_s: float
    """Effective algorithm bandwidth: bytes of the message per second (the fit's inverse slope)."""
    backend: str
    """"nccl" | "gloo" | "custom": what was measured."""

    def __post_init__(self) -> None:
        if isinstance(self.world_size, bool) or not isinstance(self.world_size, int) or self.world_size < 2:
            raise UsageError(f"calibration field allreduce.world_size must be an integer >= 2, got {self.world_size!r}")
        if not isinstance(self.latency_s, (int, float)) or not math.isfinite(self.latency_s) or self.latency_s < 0:
            raise UsageError(f"calibration field allreduce.latency_s must be >= 0 seconds, got {self.latency_s!r}")
        _check_positive("allreduce.bus_bytes_per_s", self.bus_bytes_per_s)
        if self.backend not in ALLREDUCE_BACKENDS:
            raise UsageError(f"calibration field allreduce.backend must be one of {', '.join(ALLREDUCE_BACKENDS)}, "
                             f"got {self.backend!r}")

    def time_s(self, message_bytes: int) -> float:
        """Seconds for one all-reduce of `message_bytes` bytes, by the fitted line."""
        return self.latency_s + message_bytes / self.bus_bytes_per_s

    def to_dict(self) -> dict:
        return {"world_size": self.world_size, "latency_s": self.latency_s,
                "bus_bytes_per_s": self.bus_bytes_per_s, "backend": self.backend}


class GpuCalibration(Struct, frozen=True, kw_only=True):
    """Measured speed figures of one GPU model on one host (what `tpfit calibrate` writes)."""

    gpu_name: str
    """As torch/NVML reports it, e.g. "NVIDIA H200"."""
    gpu_id: str | None
    """tpfit catalog id (tpfit/data/gpus.json "id") when the name matched one, else None."""
    source: str
    """One line: "tpfit calibrate on 2x NVIDIA H200, torch 2.11.0, 2026-11-30"."""
    mem_bw_bytes_per_s: float
    """Device-memory bandwidth of a large copy: bytes read + bytes written per second."""
    gemm_flops_per_s: Mapping[str, float] = field(default_factory=dict)
    """Matmul throughput by GEMM_KEYS ("bf16_decode", ...); a missing key was not measured (no fp8 on this GPU)."""
    allreduce: tuple[AllReduceFit, ...] = ()
    """One fit per world size measured (2, 4, 8 ...), ascending; empty on a one-GPU host."""
    p2p_bytes_per_s: float | None = None
    """GPU-to-GPU copy bandwidth, bytes per second; None when the host has one GPU or no peer access."""
    step_overhead_s: float | None = None
    """Per decode step overhead of a real vLLM run (scheduler, sampling, launches), seconds; None when not run."""
    vllm_version: str | None = None
    """The vLLM release `step_overhead_s` was measured with (the overhead changes between releases)."""
    num_gpus: int = 1
    """GPUs the host had when measured (bounds the all-reduce world sizes)."""

    def __post_init__(self) -> None:
        for name in ("gpu_name", "source"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name).strip():
                raise UsageError(f"calibration field {name} must be a non-empty string")
        if self.gpu_id is not None and not isinstance(self.gpu_id, str):
            raise UsageError(f"calibration field gpu_id must be a string or null, got {self.gpu_id!r}")
        _check_positive("mem_bw_bytes_per_s", self.mem_bw_bytes_per_s)
        _check_positive("p2p_bytes_per_s", self.p2p_bytes_per_s, optional=True)
        _check_positive("step_overhead_s", self.step_overhead_s, optional=True)
        if self.vllm_version is not None and (not isinstance(self.vllm_version, str) or not self.vllm_version.strip()):
            raise UsageError(f"calibration field vllm_version must be a non-empty string or null, got {self.vllm_version!r}")
        if isinstance(self.num_gpus, bool) or not isinstance(self.num_gpus, int) or self.num_gpus < 1:
            raise UsageError(f"calibration field num_gpus must be an integer >= 1, got {self.num_gpus!r}")
        for key, value in self.gemm_flops_per_s.items():
            if key not in GEMM_KEYS:
                raise UsageError(f"calibration field gemm_flops_per_s has unknown key {key!r}; "
                                 f"use {', '.join(GEMM_KEYS)}")
            _check_positive(f"gemm_flops_per_s.{key}", value)
        # A read-only copy, so the frozen value cannot be changed through the caller's dict.
        force_setattr(self, "gemm_flops_per_s", MappingProxyType(dict(self.gemm_flops_per_s)))
        sizes = [fit.world_size for fit in self.allreduce]
        if sizes != sorted(set(sizes)):
            raise UsageError(f"calibration field allreduce needs one fit per world size, ascending; got {sizes}")

    def allreduce_fit(self, world_size: int) -> AllReduceFit | None:
        """The fit measured at `world_size` ranks, or None when that size was not measured."""
        return next((fit for fit in self.allreduce if fit.world_size == world_size), None)

    def to_dict(self) -> dict:
        return {
            "schema_version": SCHEMA_VERSION, "gpu_name": self.gpu_name, "gpu_id": self.gpu_id, "source": self.source,
            "num_gpus": self.num_gpus, "mem_bw_bytes_per_s": self.mem_bw_bytes_per_s,
            "gemm_flops_per_s": dict(self.gemm_flops_per_s),
            "allreduce": [fit.to_dict() for fit in self.allreduce],
            "p2p_bytes_per_s": self.p2p_bytes_per_s, "step_overhead_s": self.step_overhead_s,
            "vllm_version": self.vllm_version,
        }

    @classmethod
    def from_dict(cls, data: object, *, where: str = "calibration") -> GpuCalibration:
        """Check and build a calibration; a wrong or missing field raises SourceError naming `where` and the field."""
        if not isinstance(data, dict):
            raise SourceError(f"{where}: expected a JSON object, got {type(data).__name__}", source=where)
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise SourceError(f"{where}: schema_version is {version!r}, this tpfit reads {SCHEMA_VERSION}; "
                              f"run `tpfit calibrate` again", source=where)
        for name in ("gpu_name", "source", "mem_bw_bytes_per_s"):
            if name not in data:
                raise SourceError(f"{where}: field {name} is missing", source=where)
        fits = data.get("allreduce") or []
        gemm = data.get("gemm_flops_per_s") or {}
        if not isinstance(fits, list) or not all(isinstance(f, dict) for f in fits):
            raise SourceError(f"{where}: field allreduce must be a list of objects", source=where)
        if not isinstance(gemm, dict):
            raise SourceError(f"{where}: field gemm_flops_per_s must be an object", source=where)
        try:
            return cls(
                gpu_name=data["gpu_name"], gpu_id=data.get("gpu_id"), source=data["source"],
                num_gpus=data.get("num_gpus", 1), mem_bw_bytes_per_s=data["mem_bw_bytes_per_s"], gemm_flops_per_s=gemm,
                allreduce=tuple(AllReduceFit(world_size=f.get("world_size"), latency_s=f.get("latency_s"),
                                             bus_bytes_per_s=f.get("bus_bytes_per_s"), backend=f.get("backend"))
                                for f in fits),
                p2p_bytes_per_s=data.get("p2p_bytes_per_s"), step_overhead_s=data.get("step_overhead_s"),
                vllm_version=data.get("vllm_version"),
            )
        except UsageError as err:
            raise SourceError(f"{where}: {err}", source=where) from err


# ---- I/O: where calibration files live ---------------------------------------------------------


def calibration_dir() -> Path:
    """The folder `tpfit calibrate` writes to: $TPFIT_CALIBRATION_DIR, else the platform's tpfit app folder."""
    override = os.environ.get(CALIBRATION_DIR_ENV)
    if override:
        return Path(override).expanduser()
    import typer  # the CLI's own dependency; imported here so the core never needs it

    return Path(typer.get_app_dir("tpfit")) / "calibration"


def read_calibration(path: Path) -> GpuCalibration:
    """One calibration file; SourceError naming the file and the field when it cannot be used."""
    import json  # for its error's line number; the built-in files below are read by msgspec

    try:
        data = json.loads(Path(path).read_text())
    except OSError as err:
        raise SourceError(f"cannot read calibration file {path}: {err.strerror or err}", source=str(path)) from err
    except json.JSONDecodeError as err:
        raise SourceError(f"{path}: not JSON ({err.msg} at line {err.lineno}); delete it or run `tpfit calibrate` "
                          f"again", source=str(path)) from err
    return GpuCalibration.from_dict(data, where=str(path))


def read_calibrations(directory: Path) -> tuple[GpuCalibration, ...]:
    """Every `*.json` calibration in `directory`, by file name; an absent folder holds none."""
    directory = Path(directory)
    if not directory.is_dir():
        return ()
    return tuple(read_calibration(path) for path in sorted(directory.glob("*.json")))


def builtin_calibrations() -> tuple[GpuCalibration, ...]:
    """The calibrations shipped in tpfit/data/calibration/, measured with `tpfit calibrate` on lent GPUs."""
    folder = DATA_DIR / "calibration"
    if not folder.is_dir():
        return ()
    return tuple(GpuCalibration.from_dict(msgspec.json.decode((folder / name).read_bytes()),
                                          where=f"tpfit/data/calibration/{name}")
                 for name in sorted(os.listdir(folder)) if name.endswith(".json"))  # glob compiles a regex


def find_calibration(gpu_id: str, directory: Path | None = None) -> GpuCalibration | None:
    """The calibration for catalog GPU `gpu_id`: the user's own (calibration_dir()) before the built-in one.

    Among the user's files for that GPU, the one measured on the most GPUs wins (it has the most all-reduce sizes).
    """
    own = [c for c in read_calibrations(directory if directory is not None else calibration_dir()) if c.gpu_id == gpu_id]
    if own:
        return max(own, key=lambda c: c.num_gpus)
    return next((c for c in builtin_calibrations() if c.gpu_id == gpu_id), None)
