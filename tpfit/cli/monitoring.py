"""Options and helpers shared by `tpfit watch` and the monitoring formats of `tpfit deploy`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tpfit.errors import UsageError

ThresholdOpt = Annotated[Optional[list[str]], typer.Option(
    "--threshold", help="NAME=VALUE, repeatable: kv_cache_usage=0.9, kv_cache_usage_for=5m, waiting=0, "
    "waiting_for=1m, preemptions_per_min=0, preemptions_for=1m, ttft_p99=2s, itl_p99=100ms, latency_for=5m, "
    "kv_capacity_shortfall=5%, down_for=1m, window=5m.")]
PlanFileOpt = Annotated[Optional[Path], typer.Option("--plan", help="A `tpfit plan --json` file.")]


def plan_document(plan_file: Path | None, model: str | None, plan_args: dict) -> dict | None:
    """The plan as `tpfit plan --json` writes it: read from --plan, made from MODEL, or None."""
    if plan_file is not None and model is not None:
        raise UsageError("give MODEL (with --gpus) or --plan plan.json, not both", flag="--plan")
    if plan_file is not None:
        from tpfit.report.json import plan_to_dict, read_plan_file

        return plan_to_dict(read_plan_file(plan_file))
    if model is None:
        return None
    from tpfit.report.json import plan_to_dict
    from tpfit.request import PlanRequest

    return plan_to_dict(PlanRequest.from_options({**plan_args, "model": model}).make())


def plan_targets(doc: dict | None, flag: str):
    """PlanTargets from a plan document; a plan with no layout to run is a usage error."""
    from tpfit.core.monitoring import PlanTargets

    if doc is None:
        return None
    if doc.get("recommended") is None:
        raise UsageError(f"the plan has no layout that vLLM accepts, nothing to hold a server to "
                         f"({doc.get('summary', '')})", flag=flag)
    try:
        return PlanTargets.from_plan_dict(doc)
    except (KeyError, TypeError, ValueError, IndexError) as err:
        raise UsageError(f"not a `tpfit plan --json` file ({type(err).__name__}: {err})", flag=flag) from None

JobOpt = Annotated[Optional[str], typer.Option(
    "--job", help="Prometheus job the rules and dashboard select (default: the name tpfit's scrape configs use).")]
AlertLabelOpt = Annotated[Optional[list[str]], typer.Option(
    "--alert-label", help="KEY=VALUE added to every alert's labels, repeatable (e.g. team=ml).")]
MonitoringOpt = Annotated[bool, typer.Option(
    "--monitoring", help="compose: add Prometheus with a scrape config and the rules; k8s/lws: add a "
    "ServiceMonitor and a PrometheusRule (Prometheus Operator).")]


def parse_labels(items: list[str] | None) -> tuple[tuple[str, str], ...]:
    """`--alert-label team=ml` -> (("team", "ml"),); a Prometheus label name is [a-zA-Z_][a-zA-Z0-9_]*, and not one
    the alerts already carry (alerts.OWN_LABELS)."""
    import re

    from tpfit.deploy.alerts import OWN_LABELS

    out = []
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", key) or key.startswith("__"):
            raise UsageError("use KEY=VALUE with a Prometheus label name as KEY, e.g. team=ml",
                             flag="--alert-label", value=item)
        if key in OWN_LABELS:
            raise UsageError(f"every alert already has a {key} label of its own ({', '.join(OWN_LABELS)}); "
                             "add a label of another name, e.g. team=ml", flag="--alert-label", value=item)
        out.append((key, value))
    return tuple(out)


def make_monitoring(doc: dict, d, *, job: str | None, threshold: list[str] | None, alert_label: list[str] | None):
    """The Monitoring `tpfit deploy` renders alerts, dashboards and scrape configs from."""
    from tpfit.core.monitoring import Thresholds
    from tpfit.deploy.alerts import AlertSettings
    from tpfit.deploy.monitoring import Monitoring, default_job

    if job is not None and not job.strip():
        raise UsageError("a Prometheus job name, e.g. vllm", flag="--job", value=job)
    settings = AlertSettings(job=job or default_job(d), labels=parse_labels(alert_label),
                             thresholds=Thresholds.parse(threshold or []))
    return Monitoring(targets=plan_targets(doc, "--plan"), settings=settings)
