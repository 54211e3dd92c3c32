"""tpfit: plan multi-GPU vLLM deployments with vLLM's own arithmetic.

    from tpfit import load_model, Cluster, Workload, make_plan
    plan = make_plan(load_model("llama-3.1-70b"), Cluster.parse("2xH100"), Workload(context=8192, concurrency=16))
"""

from tpfit.core.engine import EngineArgs
from tpfit.core.layout import Layout
from tpfit.core.plan import Candidate, Plan, Workload, make_plan
from tpfit.errors import NvmlError, OfflineError, SourceError, SpecError, TpfitError, UsageError
from tpfit.hardware.cluster import Cluster
from tpfit.model.load import load_model
from tpfit.model.spec import ModelSpec

__version__ = "0.1.0"

__all__ = [
    "Candidate", "Cluster", "EngineArgs", "Layout", "ModelSpec", "NvmlError", "OfflineError", "Plan", "SourceError",
    "SpecError", "TpfitError", "UsageError", "Workload", "__version__", "load_model", "make_plan",
]
