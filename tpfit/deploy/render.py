"""Pick a format, render it: one function per file, all from the same Deployment."""

from __future__ import annotations

from tpfit.deploy.common import Deployment
from tpfit.deploy.compose import compose_file
from tpfit.deploy.k8s import leader_worker_set, manifests_yaml, single_node
from tpfit.deploy.ray import nnodes_commands, ray_script
from tpfit.deploy.shell import docker_command, serve_command

FORMATS = ("serve", "docker", "compose", "k8s", "lws", "ray")


def render(d: Deployment, fmt: str) -> dict[str, str]:
    """{file name: text} for one format."""
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
        native = nnodes_commands(d)
        if native:
            files["nnodes.sh"] = "#!/usr/bin/env bash\n" + native
        return files
    raise ValueError(f"--format {fmt}: use one of {', '.join(FORMATS)}")
