"""Kubernetes manifests: Deployment + Service + PVC for one node; LeaderWorkerSet for several."""

from __future__ import annotations

import math

from tpfit.deployment.containers import size_or_none
from tpfit.deploy.common import HF_CACHE_CONTAINER, Deployment, k8s_name
from tpfit.deploy.shell import comment
from tpfit.deploy.yamlout import dump_all
from tpfit.units import GIB
from tpfit.vllm_facts import HEALTH_PATH

TOKEN_SECRET = "hf-token"
PROBE_PERIOD_S = 10
HF_CACHE_MIN_GIB = 200
"""The smallest Hugging Face cache volume tpfit writes (GiB): room for a model of the size most deployments serve."""
HF_CACHE_HEADROOM = 1.25
"""The cache volume holds the checkpoint and a quarter more: its tokenizer and configs, the Hub's chunk cache
(hf_xet), the files a new revision changes."""
HF_CACHE_HOST_PATH = "/var/cache/huggingface"
"""Where a LeaderWorkerSet's pods keep the Hugging Face cache on their node (as vLLM's run_cluster.sh mounts the
host's cache into each node's container): a restarted pod does not download its stage again."""


def k8s_args(argv: list[str]) -> list[str]:
    # kubelet expands $(VAR) in args; $$( keeps it literal
    return [a.replace("$(", "$$(") for a in argv]


def cache_volume_size(d: Deployment) -> str:
    """The Hugging Face cache volume's size, a Kubernetes quantity: the first start's download with headroom, in
    steps of 10 GiB, at least HF_CACHE_MIN_GIB (a fixed 200Gi could not hold DeepSeek-V3's 627 GiB of weights: the
    download stopped with 'No space left on device')."""
    need = math.ceil(d.download_bytes * HF_CACHE_HEADROOM / GIB / 10) * 10
    return f"{max(HF_CACHE_MIN_GIB, need)}Gi"


def _token_env() -> list[dict]:
    return [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": TOKEN_SECRET, "key": "token",
                                                                "optional": True}}}]


def startup_probe(port: int, wait_s: int, *, period_s: int = PROBE_PERIOD_S) -> dict:
    """A startup probe that waits `wait_s` (download, load, profiling and graph capture: startup.wait_seconds) for
    vLLM's health endpoint; `tpfit check --fix` writes the same one."""
    return {"httpGet": {"path": HEALTH_PATH, "port": port}, "periodSeconds": period_s,
            "failureThreshold": -(-wait_s // period_s)}


def _probes(d: Deployment) -> dict:
    """Startup probe: download, load, profiling and graph capture (`d.start_wait_s`), then readiness and liveness."""
    get = {"httpGet": {"path": HEALTH_PATH, "port": d.port}}
    return {
        "startupProbe": startup_probe(d.port, d.start_wait_s),
        "readinessProbe": {**get, "periodSeconds": 5},
        "livenessProbe": {**get, "periodSeconds": 10, "failureThreshold": 3},
    }


def _shm_volume(d: Deployment) -> dict:
    """/dev/shm in memory: `--shm-size` when given (in bytes, a Kubernetes quantity), else 16 GiB."""
    size = str(size_or_none(d.shm_size)) if d.shm_size else "16Gi"
    return {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": size}}


def _model_volume(d: Deployment) -> list[dict]:
    """A model folder given as a path: the same path on the node (copy it there), checked to be a folder."""
    return [{"name": "model", "hostPath": {"path": d.model, "type": "Directory"}}] if d.local_model else []


def _model_mount(d: Deployment) -> list[dict]:
    return [{"name": "model", "mountPath": d.model, "readOnly": True}] if d.local_model else []


def single_node(d: Deployment) -> list[dict]:
    name = k8s_name(d.model)
    labels = {"app": name}
    container = {
        "name": "vllm",
        "image": d.image,
        "args": k8s_args(d.server_argv()),
        "ports": [{"containerPort": d.port, "name": "http"}],
        "env": _token_env(),
        "resources": {"limits": {"nvidia.com/gpu": d.gpus_per_replica_node}},
        "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"},
                         {"name": "hf-cache", "mountPath": HF_CACHE_CONTAINER}] + _model_mount(d),
        **_probes(d),
    }
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {
                "containers": [container],
                "volumes": [_shm_volume(d),
                            {"name": "hf-cache", "persistentVolumeClaim": {"claimName": f"{name}-hf-cache"}}]
                + _model_volume(d),
            }},
        },
    }
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": labels},
               "spec": {"selector": labels, "ports": [{"name": "http", "port": d.port, "targetPort": d.port}]}}
    pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": f"{name}-hf-cache"},
           "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": cache_volume_size(d)}}}}
    return [pvc, deployment, service]


def leader_worker_set(d: Deployment) -> list[dict]:
    """A LeaderWorkerSet: one pod per node the layout uses (a leader and the workers), joined through Ray."""
    import shlex

    name = k8s_name(d.model)
    serve = shlex.join(["vllm", "serve", *d.vllm_argv()])
    leader_cmd = ("bash /vllm-workspace/examples/online_serving/multi-node-serving.sh leader "
                  "--ray_cluster_size=$(LWS_GROUP_SIZE); " + serve.replace("$(", "$$("))
    worker_cmd = "bash /vllm-workspace/examples/online_serving/multi-node-serving.sh worker --ray_address=$(LWS_LEADER_ADDRESS)"

    def pod(role: str, command: str, probes: bool) -> dict:
        c = {"name": f"vllm-{role}", "image": d.image, "command": ["sh", "-c", command], "env": _token_env(),
             "resources": {"limits": {"nvidia.com/gpu": d.gpus_per_replica_node}},
             "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"},
                              {"name": "hf-cache", "mountPath": HF_CACHE_CONTAINER}] + _model_mount(d)}
        if probes:
            c["ports"] = [{"containerPort": d.port, "name": "http"}]
            c.update(_probes(d))
        cache = {"name": "hf-cache", "hostPath": {"path": HF_CACHE_HOST_PATH, "type": "DirectoryOrCreate"}}
        return {"metadata": {"labels": {"role": role}},
                "spec": {"containers": [c], "volumes": [_shm_volume(d), cache] + _model_volume(d)}}

    lws = {
        "apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet", "metadata": {"name": name},
        "spec": {"replicas": 1, "leaderWorkerTemplate": {
            "size": d.nodes_used, "restartPolicy": "RecreateGroupOnPodRestart",
            "leaderTemplate": pod("leader", leader_cmd, True), "workerTemplate": pod("worker", worker_cmd, False),
        }},
    }
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"{name}-leader", "labels": {"app": name}},
               "spec": {"selector": {"leaderworkerset.sigs.k8s.io/name": name, "role": "leader"},
                        "ports": [{"name": "http", "port": d.port, "targetPort": d.port}]}}
    return [lws, service]


def manifests_yaml(d: Deployment, objects: list[dict]) -> str:
    note = ("Token: kubectl create secret generic hf-token --from-literal=token=\"$HF_TOKEN\" "
            "(the manifest only references it)",)
    return comment(d.header + note) + dump_all(objects)
