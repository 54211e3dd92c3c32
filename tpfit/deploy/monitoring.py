"""Monitoring beside a deployment (`--monitoring`, `--format alerts|grafana`): the Prometheus
Operator's ServiceMonitor and PrometheusRule for Kubernetes, a scrape config and a Prometheus service for
compose, the rules file and the dashboard on their own. Every scrape job is named `job`, the name the rules
select."""

from __future__ import annotations

from dataclasses import dataclass

from tpfit.core.monitoring import PlanTargets
from tpfit.deploy.alerts import AlertSettings, alert_rules, alerts_file
from tpfit.deploy.common import Deployment, k8s_name
from tpfit.deploy.grafana import dashboard_file
from tpfit.deploy.yamlout import dump

PROMETHEUS_IMAGE = "prom/prometheus:v2.53.0"
"""Pinned Prometheus for the compose file (2.53 is a long-term-support release)."""
SCRAPE_INTERVAL = "15s"


@dataclass(frozen=True, slots=True, kw_only=True)
class Monitoring:
    """What the monitoring files are made from: the plan's figures and the rules' settings."""

    targets: PlanTargets | None
    settings: AlertSettings


def default_job(d: Deployment) -> str:
    """The job name tpfit's scrape configs give the servers: the Kubernetes name of the model."""
    return k8s_name(d.model)


def default_monitoring(plan: dict, d: Deployment) -> Monitoring:
    """Monitoring with the default thresholds for a `tpfit plan --json` document and its Deployment."""
    return Monitoring(targets=PlanTargets.from_plan_dict(plan), settings=AlertSettings(job=default_job(d)))


def service_monitor(d: Deployment, m: Monitoring) -> dict:
    """Scrapes the Service labelled `app: <name>` on its `http` port; `jobLabel: app` makes the job
    that label's value, the job the rules select by default; another `--job` is set by relabelling the target's
    `job` (the rules would select a job no target has)."""
    name = k8s_name(d.model)
    endpoint: dict = {"port": "http", "path": "/metrics", "interval": SCRAPE_INTERVAL}
    if m.settings.job != name:
        endpoint["relabelings"] = [{"targetLabel": "job", "replacement": m.settings.job}]
    return {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"jobLabel": "app", "selector": {"matchLabels": {"app": name}}, "endpoints": [endpoint]},
    }


def prometheus_rule(d: Deployment, m: Monitoring) -> dict:
    return {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
        "metadata": {"name": f"{k8s_name(d.model)}-tpfit", "labels": {"app": k8s_name(d.model)}},
        "spec": alert_rules(m.targets, m.settings),
    }


def scrape_config(d: Deployment, m: Monitoring, *, service: str) -> dict:
    """prometheus.yml for compose: the server by its service name, the rules beside it."""
    return {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "rule_files": ["alerts.yaml"],
        "scrape_configs": [{"job_name": m.settings.job, "metrics_path": "/metrics",
                            "static_configs": [{"targets": [f"{service}:{d.port}"]}]}],
    }


def prometheus_service() -> dict:
    """The compose service that runs Prometheus with the scrape config and rules tpfit wrote."""
    return {
        "image": PROMETHEUS_IMAGE,
        "volumes": ["./prometheus.yml:/etc/prometheus/prometheus.yml:ro",
                    "./alerts.yaml:/etc/prometheus/alerts.yaml:ro"],
        "ports": ["9090:9090"],
    }


def monitoring_files(d: Deployment, m: Monitoring, fmt: str) -> dict[str, str]:
    """The extra files of a format: alerts.yaml (+ prometheus.yml for compose); grafana.json."""
    if fmt == "alerts":
        return {"alerts.yaml": alerts_file(m.targets, m.settings, d.header)}
    if fmt == "grafana":
        return {"grafana.json": dashboard_file(m.targets, m.settings)}
    if fmt == "compose":
        return {"prometheus.yml": dump(scrape_config(d, m, service=k8s_name(d.model))),
                "alerts.yaml": alerts_file(m.targets, m.settings, d.header)}
    return {}
