"""Multi-node recipes: a Ray cluster (vLLM's run_cluster.sh, made to wait for its nodes) and vLLM's own
`--nnodes/--node-rank/--master-addr` launcher.

Both scripts were run on loopback as two "nodes" with the real vLLM CPU build
(tests/realserver/test_multinode_real.py): the nnodes launcher forms the cluster and serves; Ray forms
its cluster, and vLLM's CPU build then refuses the Ray executor ("current platform cpu does not support
ray."), so the Ray path is proven up to `vllm serve` only and needs GPUs beyond that.
"""

from __future__ import annotations

import shlex

from tpfit.deploy.common import Deployment
from tpfit.deploy.shell import CACHE_VOLUME_SHELL, bind_mount, comment
from tpfit.deployment.flags import flag_table

RAY_PORT = 6379
"""The Ray head's GCS port in vLLM's run_cluster.sh and multi-node-serving.sh."""
MASTER_PORT = 29501
"""`ParallelConfig.master_port`'s default (vllm/config/parallel.py, 0.26-0.33): the head's torch.distributed store."""
JOIN_TIMEOUT_S = 600
"""How long a head waits for its workers (and a worker for its head) before it gives up with a message."""
CONTAINER = "vllm-ray-node"
RAY_SHM_SIZE = "10.24g"
"""The node container's /dev/shm in vLLM's run_cluster.sh, unless `--shm-size` says otherwise."""

# Shared by both scripts: which address and interface this node uses to reach the others. On the head the
# address is HEAD_IP itself; on a worker, the source address of its route to HEAD_IP. The interface is the
# one holding that address (NCCL and Gloo otherwise pick the first non-loopback one, often the wrong NIC).
_NETWORK = r'''die() { echo "$(basename "$0"): $*" >&2; exit 2; }
: "${HEAD_IP:?set HEAD_IP to the head node address (the same value on every node)}"
if [ -z "${VLLM_HOST_IP:-}" ]; then
  command -v ip >/dev/null || die "set VLLM_HOST_IP to this node's address (no 'ip' command to find it)"
  if [ "$IS_HEAD" = 1 ]; then VLLM_HOST_IP=$HEAD_IP
  else VLLM_HOST_IP=$(ip -o route get "$HEAD_IP" 2>/dev/null | sed -n 's/.* src \([^ ]*\).*/\1/p')
    [ -n "$VLLM_HOST_IP" ] || die "no route from this node to HEAD_IP=$HEAD_IP: check the address"; fi
fi
if command -v ip >/dev/null; then
  IFACE=$(ip -o addr show to "$VLLM_HOST_IP" | awk '{print $2; exit}')
  [ -n "$IFACE" ] || die "VLLM_HOST_IP=$VLLM_HOST_IP is not an address of this node ($(hostname -I 2>/dev/null || echo 'see ip addr'));${HEAD_HINT}"
  export NCCL_SOCKET_IFNAME=${NCCL_SOCKET_IFNAME:-$IFACE} GLOO_SOCKET_IFNAME=${GLOO_SOCKET_IFNAME:-$IFACE}
fi
export VLLM_HOST_IP
echo "node address $VLLM_HOST_IP, interface ${NCCL_SOCKET_IFNAME:-unknown} (set VLLM_HOST_IP / NCCL_SOCKET_IFNAME / GLOO_SOCKET_IFNAME to override)"
wait_port() {  # wait_port HOST PORT WHAT: until a TCP connect succeeds, or JOIN_TIMEOUT_S passes
  local start=$SECONDS
  until (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; do
    (( SECONDS - start < JOIN_TIMEOUT_S )) || { echo "$3 at $1:$2 did not answer in ${JOIN_TIMEOUT_S}s: start the head first, and check that this node reaches that port (tpfit doctor --nodes $1)" >&2; exit 1; }
    (( (SECONDS - start) % 15 == 0 )) && echo "waiting for $3 at $1:$2 ..."
    sleep 1
  done
}'''


def ray_script(d: Deployment) -> str:
    """`--head` on the first node (starts Ray, waits for every node, then runs `vllm serve`), `--worker` on
    the others, `--stop` on each to tear down. RUNTIME=host runs Ray and vLLM installed on the host."""
    serve = shlex.join(["vllm", "serve", *d.vllm_argv()])
    lines = [
        "#!/usr/bin/env bash",
        comment(d.header).rstrip("\n"),
        f"# A Ray cluster of {d.nodes_used} nodes for one vLLM server (TP within a node, PP across nodes), as vLLM's",
        "# run_cluster.sh. Run on every node, the head first, and keep each running:",
        "#   head:    HEAD_IP=10.0.0.1 bash ray-cluster.sh --head     (waits for all nodes, then runs vllm serve)",
        "#   workers: HEAD_IP=10.0.0.1 bash ray-cluster.sh --worker",
        "#   stop:    bash ray-cluster.sh --stop                        (on each node)",
        "# Extra `vllm serve` arguments may follow --head. VLLM_HOST_IP (this node's address on the network the",
        "# nodes share; unencrypted traffic) and NCCL_SOCKET_IFNAME / GLOO_SOCKET_IFNAME default to the route to",
        "# HEAD_IP. RUNTIME=host uses Ray and vLLM installed on the host instead of the container.",
        "# vLLM's CPU build refuses the Ray executor: this recipe needs GPUs (nnodes.sh runs without Ray).",
        "# HF_TOKEN is read from your environment, never stored here.",
        "set -euo pipefail",
        f"NODES={d.nodes_used} RAY_PORT=${{RAY_PORT:-{RAY_PORT}}} JOIN_TIMEOUT_S=${{JOIN_TIMEOUT_S:-{JOIN_TIMEOUT_S}}}",
        f"RUNTIME=${{RUNTIME:-docker}} CONTAINER={CONTAINER} IMAGE={shlex.quote(d.image)}",
        'ROLE=${1:-}; shift || true',
        'case "$ROLE" in --head) IS_HEAD=1 ;; --worker) IS_HEAD=0 ;; --stop) ;;',
        '  *) echo "ray-cluster.sh: first argument: --head, --worker or --stop" >&2; exit 2 ;; esac',
        'case "$RUNTIME" in docker|host) ;; *) echo "ray-cluster.sh: RUNTIME=$RUNTIME: use docker or host" >&2; exit 2 ;; esac',
        'in_node() { if [ "$RUNTIME" = docker ]; then docker exec -i "$CONTAINER" "$@"; else "$@"; fi; }',
        'if [ "$ROLE" = --stop ]; then',
        '  if [ "$RUNTIME" = docker ]; then docker rm -f "$CONTAINER"; else ray stop --force; fi',
        '  exit 0',
        'fi',
        "HEAD_HINT=' run --head on the node whose address is HEAD_IP'",
        _NETWORK,
        'if [ "$IS_HEAD" = 1 ]; then RAY=(ray start --head "--node-ip-address=$VLLM_HOST_IP" "--port=$RAY_PORT")',
        'else wait_port "$HEAD_IP" "$RAY_PORT" "the Ray head"',
        '  RAY=(ray start "--address=$HEAD_IP:$RAY_PORT" "--node-ip-address=$VLLM_HOST_IP"); fi',
        'if [ "$RUNTIME" = docker ]; then',
        f'  docker run -d --name "$CONTAINER" --entrypoint /bin/bash --network host '
        f'--shm-size {shlex.quote(d.shm_size or RAY_SHM_SIZE)} --gpus all \\',
        f'    -v {CACHE_VOLUME_SHELL} -e HF_TOKEN \\',
        *([f"    --mount {shlex.quote(bind_mount(d.model))} \\"] if d.local_model else []),
        '    -e "VLLM_HOST_IP=$VLLM_HOST_IP" -e "RAY_NODE_IP_ADDRESS=$VLLM_HOST_IP" -e "RAY_OVERRIDE_NODE_IP_ADDRESS=$VLLM_HOST_IP" \\',
        '    -e "NCCL_SOCKET_IFNAME=${NCCL_SOCKET_IFNAME:-}" -e "GLOO_SOCKET_IFNAME=${GLOO_SOCKET_IFNAME:-}" \\',
        '    "$IMAGE" -c "$(printf "%q " "${RAY[@]}") --block" >/dev/null',
        'else "${RAY[@]}" >/dev/null; fi',
        'if [ "$IS_HEAD" = 0 ]; then echo "joined the Ray cluster at $HEAD_IP:$RAY_PORT; stop with: bash ray-cluster.sh --stop"; exit 0; fi',
        '# the head: wait until every node is in `ray status`, then serve (vLLM spreads its ranks over the nodes)',
        'start=$SECONDS',
        'while :; do',
        "  joined=$(in_node ray status \"--address=$VLLM_HOST_IP:$RAY_PORT\" 2>/dev/null | awk '/^Active:/{a=1;next} /^[A-Z]/{a=0} a && /node_/{n++} END{print n+0}') || joined=0",
        '  [ "$joined" -ge "$NODES" ] && break',
        '  (( SECONDS - start < JOIN_TIMEOUT_S )) || { echo "only $joined of $NODES nodes joined in ${JOIN_TIMEOUT_S}s: run ray-cluster.sh --worker on the others with HEAD_IP=$HEAD_IP; they must reach port $RAY_PORT here (tpfit doctor --nodes $HEAD_IP)" >&2; exit 1; }',
        '  echo "$joined of $NODES nodes in the Ray cluster; waiting ..."; sleep 5',
        'done',
        'echo "all $NODES nodes joined; starting vllm serve"',
        'if [ "$RUNTIME" = docker ]; then',
        f'  exec docker exec -i "$CONTAINER" {serve} "$@"',
        'fi',
        f'exec {serve} "$@"',
    ]
    return "\n".join(lines) + "\n"


def nnodes_script(d: Deployment) -> str | None:
    """vLLM's own multi-node launcher (no Ray), where the version has it; None otherwise. The same script on
    every node: NODE_RANK=0 serves the API, the others run `--headless`; a worker waits for the head first."""
    if not flag_table(d.vllm_version).has("--nnodes"):  # read from each release's arg_utils.py
        return None
    serve = shlex.join(["vllm", "serve", *d.vllm_argv(ray=False), "--nnodes", str(d.nodes_used)])
    lines = [
        "#!/usr/bin/env bash",
        comment(d.header).rstrip("\n"),
        f"# vLLM's own multi-node launcher (no Ray): the same script on each of the {d.nodes_used} nodes, the head "
        "first;",
        "# keep each running. NODE_RANK 0 is the head and serves the API; the others run headless.",
        "#   head:     HEAD_IP=10.0.0.1 NODE_RANK=0 bash nnodes.sh",
        f"#   worker k: HEAD_IP=10.0.0.1 NODE_RANK=k bash nnodes.sh      (k = 1..{d.nodes_used - 1})",
        "#   stop:     NODE_RANK=k bash nnodes.sh --stop",
        "# Extra `vllm serve` arguments may follow. VLLM_HOST_IP and NCCL_SOCKET_IFNAME / GLOO_SOCKET_IFNAME default",
        f"# to the route to HEAD_IP; MASTER_PORT (default {MASTER_PORT}) must be open on the head.",
        "# HF_TOKEN is read from your environment, never stored here.",
        "set -euo pipefail",
        f"NODES={d.nodes_used} MASTER_PORT=${{MASTER_PORT:-{MASTER_PORT}}} "
        f"JOIN_TIMEOUT_S=${{JOIN_TIMEOUT_S:-{JOIN_TIMEOUT_S}}}",
        'NODE_RANK=${NODE_RANK:?set NODE_RANK: 0 on the head, 1.."$((NODES - 1))" on the workers}',
        '[[ "$NODE_RANK" =~ ^[0-9]+$ ]] && (( NODE_RANK < NODES )) || { echo "nnodes.sh: NODE_RANK=$NODE_RANK: use 0..$((NODES - 1))" >&2; exit 2; }',
        'PID_FILE=${PID_FILE:-${TMPDIR:-/tmp}/tpfit-vllm-node$NODE_RANK.pid}',
        'if [ "${1:-}" = --stop ]; then',
        '  [ -f "$PID_FILE" ] && kill -TERM "$(cat "$PID_FILE")" 2>/dev/null && rm -f "$PID_FILE" && echo "stopped node $NODE_RANK" && exit 0',
        '  echo "nnodes.sh: no running node $NODE_RANK started by this script ($PID_FILE)" >&2; exit 1',
        'fi',
        'IS_HEAD=$(( NODE_RANK == 0 ))',
        "HEAD_HINT=' NODE_RANK=0 runs on the node whose address is HEAD_IP'",
        _NETWORK,
        'ROLE_ARGS=(--node-rank "$NODE_RANK" --master-addr "$HEAD_IP" --master-port "$MASTER_PORT")',
        'if [ "$IS_HEAD" = 1 ]; then',
        '  echo "head: the API answers once the $((NODES - 1)) other node(s) have joined at $HEAD_IP:$MASTER_PORT"',
        'else',
        '  wait_port "$HEAD_IP" "$MASTER_PORT" "the head (NODE_RANK=0)"',
        '  ROLE_ARGS+=(--headless)',
        'fi',
        'echo $$ >"$PID_FILE"',
        f'exec {serve} "${{ROLE_ARGS[@]}}" "$@"',
    ]
    return "\n".join(lines) + "\n"
