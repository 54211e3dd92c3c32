"""Pick a format, render it: one function per file, all from the same Deployment."""

from __future__ import annotations

from tpfit.deploy.common import Deployment
from tpfit.deploy.compose import compose_dict, compose_file
from tpfit.deploy.k8s import leader_worker_set, manifests_yaml, single_node
from tpfit.deploy.monitoring import Monitoring, monitoring_files, prometheus_rule, prometheus_service, service_monitor
from tpfit.deploy.ray import nnodes_script, ray_script
from tpfit.deploy.shell import docker_command, serve_command

FORMATS = ("serve", "docker", "compose", "k8s", "lws", "ray", "alerts", "grafana")
MONITORING_FORMATS = ("alerts", "grafana")
"""Formats made from the plan's monitoring settings (render() needs them)."""
MONITORED_FORMATS = ("compose", "k8s", "lws")
"""Formats that `--monitoring` extends with a scrape config and the rules."""


def render(d: Deployment, fmt: str, monitoring: Monitoring | None = None) -> dict[str, str]:
    """{file name: text} for one format; `monitoring` adds the scrape config and rules (compose, k8s, lws),
    and is what `alerts` and `grafana` are made from."""
    if fmt in MONITORING_FORMATS:
        if monitoring is None:
            raise ValueError(f"--format {fmt} needs the plan's monitoring settings")
        return monitoring_files(d, monitoring, fmt)
    if monitoring is not None and fmt in MONITORED_FORMATS:
        return _monitored(d, fmt, monitoring)
    if fmt == "serve":
        return {"serve.sh": "#!/usr/bin/env bash\n" + serve_command(d)}
    if fmt == "docker":
        return {"docker-run.sh": "#!/usr/bin/env bash\n" + docker_command(d)}
    if fmt == "compose":
        return {"compose.yaml": compose_file(d)}
    if fmt == "k8s":
        return {"k8s.yaml": manifests_yaml(d, single_node(d))}
    if fmt == "lws":
        return {"lws.yaml": manifests_yaml(d, leader_worker_set(d))}
    if fmt == "ray":
        files = {"ray-cluster.sh": ray_script(d)}
        native = nnodes_script(d)
        if native:
            files["nnodes.sh"] = native
        return files
    raise ValueError(f"--format {fmt}: use one of {', '.join(FORMATS)}")


def _monitored(d: Deployment, fmt: str, m: Monitoring) -> dict[str, str]:
    from tpfit.deploy.shell import comment
    from tpfit.deploy.yamlout import dump

    if fmt == "compose":
        doc = compose_dict(d)
        doc["services"]["prometheus"] = prometheus_service()
        return {"compose.yaml": comment(d.header) + dump(doc), **monitoring_files(d, m, "compose")}
    objects = single_node(d) if fmt == "k8s" else leader_worker_set(d)
    return {f"{fmt}.yaml": manifests_yaml(d, objects + [service_monitor(d, m), prometheus_rule(d, m)])}
