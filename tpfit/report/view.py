"""What the web page and the HTML report show: `tpfit plan --json`'s object plus the deploy files of its plan.

Built from the plan itself (never from a recomputation), as `tpfit plan --json` and `tpfit deploy` are, so the
page, the report and those commands carry the same figures and the same files.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from tpfit.core.plan import Plan
from tpfit.deploy.monitoring import default_monitoring
from tpfit.deploy.render import FORMATS
from tpfit.errors import UsageError

VIEW_SCHEMA_VERSION = 1


def deploy_command(deploy_args: Sequence[str] | None, fmt: str) -> str:
    """The `tpfit deploy` line that writes the same file: the plan's own arguments where `deploy` takes them
    all, else the saved plan (`--plan plan.json`)."""
    args = ["--plan", "plan.json"] if deploy_args is None else list(deploy_args)
    return shlex.join(["tpfit", "deploy", *args, "--format", fmt])


def deploy_files(plan: Plan, doc: dict, *, deploy_args: Sequence[str] | None, model_path: str | None = None) -> dict:
    """{"formats": {format: {file name: text}}, "commands": {format: the `tpfit deploy` line}, "refused":
    {format: why}} for every `tpfit deploy --format`, each written (or refused: a plan across nodes in a single-node
    format, an engine Ray cannot place) by deploy's own deploy/files.py, or "error": why when there is nothing to
    deploy (`doc`: the plan's JSON, which the monitoring rules read). The page shows each format's command from
    here: not every file has a header to read it from (grafana's JSON)."""
    from tpfit.deploy.common import DEFAULT_PORT
    from tpfit.deploy.files import deployment_files

    files: dict[str, dict[str, str]] = {}
    commands: dict[str, str] = {}
    refused: dict[str, str] = {}
    for fmt in FORMATS:
        command = deploy_command(deploy_args, fmt)
        try:
            files[fmt] = deployment_files(
                plan, fmt, command=command, cuda=None, driver=None, port=DEFAULT_PORT, gpu_ids=(), gpu_ids_text=None,
                served_model_name=None, model_path=model_path, shm_size=None, monitoring=False,
                monitoring_for=default_monitoring, doc=doc)
        except UsageError as err:
            if err.flag in ("--plan", "MODEL"):  # deployment_from_plan: nothing to deploy in any format
                return {"error": str(err).split(": ", 1)[-1], "formats": {}, "commands": {}, "refused": {}}
            refused[fmt] = str(err)
            continue
        commands[fmt] = command
    return {"error": None, "formats": files, "commands": commands, "refused": refused}


def make_view(plan: Plan, *, plan_args: Sequence[str], deploy_args: Sequence[str] | None,
              model_path: str | None = None) -> dict:
    """The page's data: the inputs as `tpfit plan` arguments, the plan's JSON, and its deploy files.

    Args:
        plan: the plan; the page shows its `tpfit plan --json` object (report/json.py `plan_to_dict`).
        plan_args: the arguments after `tpfit plan` that made it.
        deploy_args: the arguments after `tpfit deploy` that make the same plan, or None where `deploy`
            cannot take them (its header then names `--plan plan.json`).
    """
    from tpfit.report.json import plan_to_dict

    doc = plan_to_dict(plan)
    return {
        "view_schema_version": VIEW_SCHEMA_VERSION,
        "plan_args": list(plan_args),
        "plan_command": shlex.join(["tpfit", "plan", *plan_args]),
        "plan": doc,
        "deploy": deploy_files(plan, doc, deploy_args=deploy_args, model_path=model_path),
    }
