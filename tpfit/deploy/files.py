"""A plan (`tpfit plan --json`'s document) -> the files of one deployment format, checked: what `tpfit deploy`
writes, below its option parsing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tpfit.deploy import checks
from tpfit.deploy.common import Deployment, deployment_from_plan_dict
from tpfit.deploy.render import MONITORED_FORMATS, MONITORING_FORMATS, render
from tpfit.errors import UsageError
from tpfit.vllm_facts import CudaBuild, cuda_for_driver


def deployment_files(doc: dict, fmt: str, *, command: str, cuda: CudaBuild, driver: str | None, port: int,
                     gpu_ids: tuple[int, ...], gpu_ids_text: str | None, served_model_name: str | None,
                     model_path: str | None, shm_size: str | None, plan_file: Path | None, monitoring: bool,
                     monitoring_for: Callable[[Deployment], object]) -> dict[str, str]:
    """File name -> text for `fmt`; a plan file that is not a complete plan is a usage error naming --plan.
    `monitoring_for` makes the Prometheus side (deploy/monitoring.py) when the format or --monitoring asks."""
    if monitoring and fmt not in MONITORED_FORMATS:
        raise UsageError(f"--monitoring goes with --format {', '.join(MONITORED_FORMATS)} (for rules alone: "
                         "--format alerts)", flag="--monitoring")
    if driver:
        cuda = cuda_for_driver(driver)
    try:
        d = deployment_from_plan_dict(doc, command=command, cuda=cuda, port=port, gpu_ids=gpu_ids,
                                      served_model_name=served_model_name, model_path=model_path, shm_size=shm_size)
    except (KeyError, TypeError, IndexError, AttributeError, ValueError) as err:
        if isinstance(err, UsageError) or plan_file is None:
            raise
        raise UsageError(f"not a complete `tpfit plan --json` file ({type(err).__name__}: {err}); save the plan "
                         "again with tpfit plan --json", flag="--plan", value=str(plan_file)) from None
    checks.check_format(d, fmt, gpu_id=str(doc["cluster"]["gpu"]))
    if gpu_ids:
        checks.check_gpu_ids(gpu_ids, d, text=gpu_ids_text)
    return render(d, fmt, monitoring_for(d) if monitoring or fmt in MONITORING_FORMATS else None)
