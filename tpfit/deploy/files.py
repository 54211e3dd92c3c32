"""A Plan -> the files of one deployment format, checked: what `tpfit deploy` writes, below its option parsing.
The plan is made in-process or read back exactly from a saved `tpfit plan --json` (report/json.py
`read_plan_file`); both render from the same Plan, so they write the same files."""

from __future__ import annotations

from collections.abc import Callable

from tpfit.deploy import checks
from tpfit.deploy.common import Deployment, deployment_from_plan
from tpfit.deploy.render import MONITORED_FORMATS, MONITORING_FORMATS, render
from tpfit.core.plan import Plan
from tpfit.errors import UsageError
from tpfit.report.json import plan_to_dict
from tpfit.vllm_facts import CudaBuild, cuda_for_driver


def deployment_files(plan: Plan, fmt: str, *, command: str, cuda: CudaBuild, driver: str | None, port: int,
                     gpu_ids: tuple[int, ...], gpu_ids_text: str | None, served_model_name: str | None,
                     model_path: str | None, shm_size: str | None, monitoring: bool,
                     monitoring_for: Callable[[dict, Deployment], object]) -> dict[str, str]:
    """File name -> text for `fmt`. `monitoring_for(doc, deployment)` makes the Prometheus side
    (deploy/monitoring.py) from the plan's document when the format or --monitoring asks."""
    if monitoring and fmt not in MONITORED_FORMATS:
        raise UsageError(f"--monitoring goes with --format {', '.join(MONITORED_FORMATS)} (for rules alone: "
                         "--format alerts)", flag="--monitoring")
    if driver:
        cuda = cuda_for_driver(driver)
    d = deployment_from_plan(plan, command=command, cuda=cuda, port=port, gpu_ids=gpu_ids,
                             served_model_name=served_model_name, model_path=model_path, shm_size=shm_size)
    checks.check_format(d, fmt, gpu_id=plan.cluster.gpu.id)
    if gpu_ids:
        checks.check_gpu_ids(gpu_ids, d, text=gpu_ids_text)
    if not (monitoring or fmt in MONITORING_FORMATS):
        return render(d, fmt, None)
    return render(d, fmt, monitoring_for(plan_to_dict(plan), d))
