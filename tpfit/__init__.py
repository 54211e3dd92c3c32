"""tpfit: plan multi-GPU vLLM deployments with vLLM's own arithmetic.

    from tpfit import load_model, Cluster, Workload, make_plan
    plan = make_plan(load_model("llama-3.1-70b"), Cluster.parse("2xH100"), Workload(context=8192, concurrency=16))
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from tpfit.errors import NvmlError, OfflineError, SourceError, SpecError, TpfitError, UsageError

if TYPE_CHECKING:
    from tpfit.core.engine import EngineArgs
    from tpfit.core.layout import Layout
    from tpfit.core.memory_model import MemoryModel
    from tpfit.core.perf import GpuSpeed
    from tpfit.core.plan import Candidate, Plan, Workload
    from tpfit.hardware.cluster import Cluster
    from tpfit.model.load import load_model
    from tpfit.model.spec import ModelSpec

__version__ = "0.1.0"

__all__ = [
    "Candidate", "Cluster", "EngineArgs", "Layout", "MemoryModel", "ModelSpec", "NvmlError", "OfflineError", "Plan",
    "SourceError", "SpecError", "TpfitError", "UsageError", "Workload", "__version__", "load_model", "make_plan",
]

_LAZY = {
    "EngineArgs": "tpfit.core.engine", "Layout": "tpfit.core.layout", "MemoryModel": "tpfit.core.memory_model",
    "GpuSpeed": "tpfit.core.perf", "Candidate": "tpfit.core.plan", "Plan": "tpfit.core.plan",
    "Workload": "tpfit.core.plan", "Cluster": "tpfit.hardware.cluster", "load_model": "tpfit.model.load",
    "ModelSpec": "tpfit.model.spec",
}
"""The public names imported on first use (PEP 562): `import tpfit` alone, which the `tpfit` command does before
anything else (`python -m tpfit`, the console script), imports only the errors, so the command decides how the
planning library is loaded (tpfit/cli/app.py `run`)."""


def __getattr__(name: str) -> object:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tpfit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


def make_plan(model: ModelSpec, cluster: Cluster, workload: Workload | None = None, engine: EngineArgs | None = None,
              *, layouts: tuple[Layout, ...] | None = None, memory_model: MemoryModel | None = None,
              gpu_speed: GpuSpeed | None = None) -> Plan:
    """Every layout (or the given ones) with vLLM's verdict, memory and speed. The library's entry point: the
    pure core (`tpfit.core.plan.make_plan`) with the memory model tpfit ships, read here unless one is given;
    `gpu_speed` (perf.make_gpu_speed of a calibration) replaces the spec-sheet figures."""
    from tpfit.core.plan import make_plan as _make_plan
    from tpfit.data import load_memory_model

    return _make_plan(model, cluster, workload, engine, layouts=layouts,
                      memory_model=memory_model or load_memory_model(), gpu_speed=gpu_speed)
