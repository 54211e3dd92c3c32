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
from tpfit.vllm_facts import DEFAULT_CUDA, CudaBuild, cuda_for_driver, parse_driver


def image_cuda(cuda: CudaBuild | None, driver: str | None) -> CudaBuild:
    """The image's CUDA build: `--cuda` as given (None: not given), checked against `--driver` when both are; the
    newest build the driver runs when only it is given; the plain tag otherwise. A driver too old for the asked
    build is refused rather than silently written as another build (or as one the host cannot run)."""
    if not driver:
        return cuda or DEFAULT_CUDA
    runs = cuda_for_driver(driver)
    if cuda is None:
        return runs
    if parse_driver(driver) < cuda.min_driver:
        raise UsageError(f"the CUDA {cuda} image needs driver >= {cuda.min_driver_text}, --driver {driver} runs CUDA {runs}; use "
                         f"--cuda {runs} (or leave --cuda out: --driver picks it)", flag="--cuda", value=cuda.value)
    return cuda


def deployment_files(plan: Plan, fmt: str, *, command: str, cuda: CudaBuild | None, driver: str | None, port: int,
                     gpu_ids: tuple[int, ...], gpu_ids_text: str | None, served_model_name: str | None,
                     model_path: str | None, shm_size: str | None, monitoring: bool,
                     monitoring_for: Callable[[dict, Deployment], object], doc: dict | None = None) -> dict[str, str]:
    """File name -> text for `fmt` (`cuda`: None when not given, see image_cuda). `monitoring_for(doc, deployment)`
    makes the Prometheus side (deploy/monitoring.py) from the plan's document when the format or --monitoring
    asks; `doc`: that document (report/json.py `plan_to_dict`) where the caller has it already."""
    if monitoring and fmt not in MONITORED_FORMATS:
        raise UsageError(f"--monitoring goes with --format {', '.join(MONITORED_FORMATS)} (for rules alone: "
                         "--format alerts)", flag="--monitoring")
    cuda = image_cuda(cuda, driver)
    d = deployment_from_plan(plan, command=command, cuda=cuda, port=port, gpu_ids=gpu_ids,
                             served_model_name=served_model_name, model_path=model_path, shm_size=shm_size)
    checks.check_format(d, fmt, gpu_id=plan.cluster.gpu.id)
    checks.check_shm_for_layout(d, fmt)
    if gpu_ids:
        checks.check_gpu_ids(gpu_ids, d, text=gpu_ids_text, fmt=fmt)
    if not (monitoring or fmt in MONITORING_FORMATS):
        return render(d, fmt, None)
    return render(d, fmt, monitoring_for(plan_to_dict(plan) if doc is None else doc, d))
