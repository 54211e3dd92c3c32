"""Multi-node with Ray (vLLM's run_cluster.sh recipe) or with vLLM's own --nnodes launcher."""

from __future__ import annotations

import shlex

from tpfit.vllm_facts import parse_version
from tpfit.deploy.common import HF_CACHE_CONTAINER, Deployment
from tpfit.deploy.shell import comment

NNODES_SINCE = (0, 26, 0)
"""`--nnodes/--node-rank/--master-addr` read in vLLM 0.26.0's and 0.33.0's arg_utils.py."""


def ray_script(d: Deployment) -> str:
    """A bash script: `--head` on the first node, `--worker` on the others, then `vllm serve` on the head."""
    serve = shlex.join(["vllm", "serve", *d.vllm_argv()])
    image = shlex.quote(d.image)
    lines = [
        "#!/usr/bin/env bash",
        comment(d.header).rstrip("\n"),
        "# Usage, on every node (TP within a node, PP across nodes):",
        "#   head:    HEAD_IP=10.0.0.1 VLLM_HOST_IP=10.0.0.1 bash ray-cluster.sh --head",
        "#   workers: HEAD_IP=10.0.0.1 VLLM_HOST_IP=<this node's IP> bash ray-cluster.sh --worker",
        "# VLLM_HOST_IP: this node's address on the private network the nodes share (unencrypted traffic).",
        "# NCCL_SOCKET_IFNAME / GLOO_SOCKET_IFNAME: that network's interface (e.g. eth0) when hosts have several.",
        "# HF_TOKEN is read from your environment, never stored here.",
        "set -euo pipefail",
        'ROLE=${1:?--head or --worker}',
        ': "${HEAD_IP:?set HEAD_IP to the head node address}" "${VLLM_HOST_IP:?set VLLM_HOST_IP to this node address}"',
        'IFACE_ARGS=()',
        '[ -n "${NCCL_SOCKET_IFNAME:-}" ] && IFACE_ARGS+=(-e "NCCL_SOCKET_IFNAME=$NCCL_SOCKET_IFNAME")',
        '[ -n "${GLOO_SOCKET_IFNAME:-}" ] && IFACE_ARGS+=(-e "GLOO_SOCKET_IFNAME=$GLOO_SOCKET_IFNAME")',
        'if [ "$ROLE" = --head ]; then RAY="ray start --block --head --node-ip-address=$HEAD_IP --port=6379";',
        'else RAY="ray start --block --address=$HEAD_IP:6379"; fi',
        'docker run -d --name vllm-ray-node --entrypoint /bin/bash --network host --shm-size 10.24g --gpus all \\',
        f'    -v "${{HF_HOME:-$HOME/.cache/huggingface}}":{HF_CACHE_CONTAINER} -e HF_TOKEN \\',
        '    -e "VLLM_HOST_IP=$VLLM_HOST_IP" -e "RAY_NODE_IP_ADDRESS=$VLLM_HOST_IP" -e "RAY_OVERRIDE_NODE_IP_ADDRESS=$VLLM_HOST_IP" \\',
        f'    "${{IFACE_ARGS[@]}}" {image} -c "$RAY"',
        'if [ "$ROLE" = --head ]; then',
        f'  echo "when all {d.nodes} nodes show in ray status, run:"',
        f"  echo {shlex.quote('docker exec -it vllm-ray-node ' + serve)}",
        "fi",
    ]
    return "\n".join(lines) + "\n"


def nnodes_commands(d: Deployment) -> str | None:
    """vLLM's own multi-node launcher (no Ray), where the version has it; None otherwise."""
    if parse_version(d.vllm_version) < NNODES_SINCE:
        return None
    argv = [a for a in d.vllm_argv()]
    if "--distributed-executor-backend" in argv:
        i = argv.index("--distributed-executor-backend")
        del argv[i:i + 2]
    out = [comment(d.header).rstrip("\n"), "# Without Ray: vLLM's own launcher, one command per node."]
    for rank in range(d.pipeline_parallel_size if d.nodes > 1 else 1):
        extra = ["--nnodes", str(d.nodes), "--node-rank", str(rank)] + (["--headless"] if rank else [])
        out.append(f"# node {rank}:")
        out.append(shlex.join(["vllm", "serve", *argv, *extra]) + ' --master-addr "$HEAD_IP"')
    return "\n".join(out) + "\n"
