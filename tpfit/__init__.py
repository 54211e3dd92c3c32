"""tpfit: plan multi-GPU vLLM deployments with vLLM's own arithmetic.

    from tpfit import load_model, Cluster, Workload, make_plan
    plan = make_plan(load_model("llama-3.1-70b"), Cluster.parse("2xH100"), Workload(context=8192, concurrency=16))
"""

from __future__ import annotations

from tpfit.core.engine import EngineArgs
from tpfit.core.layout import Layout
from tpfit.core.memory_model import MemoryModel
from tpfit.core.perf import GpuSpeed
from tpfit.core.plan import Candidate, Plan, Workload
from tpfit.core.plan import make_plan as _make_plan
from tpfit.errors import NvmlError, OfflineError, SourceError, SpecError, TpfitError, UsageError
from tpfit.hardware.cluster import Cluster
from tpfit.model.load import load_model
from tpfit.model.spec import ModelSpec

__version__ = "0.1.0"

__all__ = [
    "Candidate", "Cluster", "EngineArgs", "Layout", "MemoryModel", "ModelSpec", "NvmlError", "OfflineError", "Plan",
    "SourceError", "SpecError", "TpfitError", "UsageError", "Workload", "__version__", "load_model", "make_plan",
]


def make_plan(model: ModelSpec, cluster: Cluster, workload: Workload | None = None, engine: EngineArgs | None = None,
              *, layouts: tuple[Layout, ...] | None = None, memory_model: MemoryModel | None = None,
              gpu_speed: GpuSpeed | None = None) -> Plan:
    """Every layout (or the given ones) with vLLM's verdict, memory and speed. The library's entry point: the
    pure core (`tpfit.core.plan.make_plan`) with the memory model tpfit ships, read here unless one is given;
    `gpu_speed` (perf.make_gpu_speed of a calibration) replaces the spec-sheet figures."""
    from tpfit.data import load_memory_model

    return _make_plan(model, cluster, workload, engine, layouts=layouts,
                      memory_model=memory_model or load_memory_model(), gpu_speed=gpu_speed)
