"""A Docker Compose file (compose specification): GPU reservations, ipc/shm, cache volume, health check."""

from __future__ import annotations

from tpfit.deploy.common import HF_CACHE_CONTAINER, HF_CACHE_HOST_COMPOSE, Deployment, k8s_name
from tpfit.deploy.shell import comment
from tpfit.deploy.yamlout import dump
from tpfit.vllm_facts import HEALTH_PATH


def compose_dict(d: Deployment) -> dict:
    device = {"driver": "nvidia", "capabilities": ["gpu"]}
    if d.gpu_ids:
        device["device_ids"] = [str(i) for i in d.gpu_ids]  # exclusive with count
    else:
        device["count"] = d.gpus_per_replica_node
    service = {
        "image": d.image,
        "command": [a.replace("$", "$$") for a in d.server_argv()],  # compose interpolates a bare $
        "ports": [f"{d.port}:{d.port}"],
        "volumes": [f"{HF_CACHE_HOST_COMPOSE}:{HF_CACHE_CONTAINER}", "vllm-cache:/root/.cache/vllm"] + (
            [{"type": "bind", "source": d.model.replace("$", "$$"), "target": d.model, "read_only": True}]
            if d.local_model else []),
        "environment": {"HF_TOKEN": "${HF_TOKEN:-}"},  # interpolated from the caller's environment
        "deploy": {"resources": {"reservations": {"devices": [device]}}},
        "healthcheck": {
            "test": ["CMD", "curl", "-fsS", f"http://localhost:{d.port}{HEALTH_PATH}"],
            "interval": "15s", "timeout": "5s", "retries": 5, "start_period": f"{d.start_wait_s}s",
        },
    }
    if d.shm_size:
        service["shm_size"] = d.shm_size
    else:
        service["ipc"] = "host"
    return {"services": {k8s_name(d.model): service}, "volumes": {"vllm-cache": {}}}


def compose_file(d: Deployment) -> str:
    return comment(d.header) + dump(compose_dict(d))
