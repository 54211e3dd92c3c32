"""What the web page and the HTML report show: `tpfit plan --json`'s object plus the deploy files of its plan.

Built from the plan's JSON (never from a recomputation), so the page, the report and `tpfit deploy`
carry the same figures and the same files.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from tpfit.deploy.common import deployment_from_plan_dict
from tpfit.deploy.monitoring import default_monitoring
from tpfit.deploy.render import FORMATS, MONITORING_FORMATS, render
from tpfit.errors import UsageError

VIEW_SCHEMA_VERSION = 1


def deploy_command(deploy_args: Sequence[str] | None, fmt: str) -> str:
    """The `tpfit deploy` line that writes the same file: the plan's own arguments where `deploy` takes them
    all, else the saved plan (`--plan plan.json`)."""
    args = ["--plan", "plan.json"] if deploy_args is None else list(deploy_args)
    return shlex.join(["tpfit", "deploy", *args, "--format", fmt])


def deploy_files(plan: dict, *, deploy_args: Sequence[str] | None, model_path: str | None = None) -> dict:
    """{format: {file name: text}} for every `tpfit deploy --format`, or {"error": why} when there is none."""
    files: dict[str, dict[str, str]] = {}
    for fmt in FORMATS:
        command = deploy_command(deploy_args, fmt)
        try:
            d = deployment_from_plan_dict(plan, command=command, model_path=model_path)
        except UsageError as err:
            return {"error": str(err).split(": ", 1)[-1], "formats": {}}
        files[fmt] = render(d, fmt, default_monitoring(plan, d) if fmt in MONITORING_FORMATS else None)
    return {"error": None, "formats": files}


def make_view(plan: dict, *, plan_args: Sequence[str], deploy_args: Sequence[str] | None,
              model_path: str | None = None) -> dict:
    """The page's data: the inputs as `tpfit plan` arguments, the plan's JSON, and its deploy files.

    Args:
        plan: `tpfit plan --json`'s object (report/json.py `plan_to_dict`).
        plan_args: the arguments after `tpfit plan` that made it.
        deploy_args: the arguments after `tpfit deploy` that make the same plan, or None where `deploy`
            cannot take them (its header then names `--plan plan.json`).
    """
    return {
        "view_schema_version": VIEW_SCHEMA_VERSION,
        "plan_args": list(plan_args),
        "plan_command": shlex.join(["tpfit", "plan", *plan_args]),
        "plan": plan,
        "deploy": deploy_files(plan, deploy_args=deploy_args, model_path=model_path),
    }
