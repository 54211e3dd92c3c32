"""Which accepted layout tpfit recommends: vLLM's verdict first, then its deployment conventions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tpfit.hardware.cluster import Cluster

if TYPE_CHECKING:
    from tpfit.core.plan import Candidate

PP_DISCOUNT = 0.8
"""Weight of each extra pipeline stage when ranking by capacity (PP adds a bubble; TP keeps one step)."""


def _score(cluster: Cluster, c: Candidate) -> tuple:
    m = c.memory
    cross_node_tp = c.layout.tp > cluster.gpus_per_node
    capacity = m.max_concurrency * c.layout.dp
    # starts first; then no TP across nodes (vLLM: TP within a node, PP across nodes); then every GPU put to
    # work; then the most concurrent requests, each extra pipeline stage discounted 20 % (it adds a bubble);
    # then, among layouts that don't fit, the one closest to fitting
    # Without NVLink between the GPUs, vLLM's docs prefer PP to TP: there the TP all-reduce is what costs
    stages = c.layout.pp - 1 if has_nvlink(cluster) else (c.layout.tp > 1) * 1.0
    return (m.verdict.rank, cross_node_tp, -c.layout.num_gpus,
            -round(capacity * PP_DISCOUNT ** stages, 1), c.layout.pp, -m.worst.kv_cache_bytes)


def has_nvlink(cluster: Cluster) -> bool:
    """NVLink between the GPUs of a node: detected pairs when NVML read them, else the catalog's word."""
    n = cluster.gpus_per_node
    if cluster.source == "nvml":
        return n == 1 or len(cluster.nvlink_pairs) >= n * (n - 1) // 2
    return n == 1 or cluster.gpu.nvlink


def rank_accepted(cluster: Cluster, candidates: tuple[Candidate, ...]) -> list[int]:
    """Indices of the layouts that pass vLLM's rules, best first (whatever their memory verdict)."""
    return sorted((i for i, c in enumerate(candidates) if c.accepted and c.memory),
                  key=lambda i: _score(cluster, candidates[i]))


def pick_best(cluster: Cluster, candidates: tuple[Candidate, ...]) -> int | None:
    """Index of the layout tpfit recommends, or None when none starts and keeps serving (every layout refused
    by a rule, refused at start, or out of memory at its first requests): `Plan.best` is then None."""
    ranked = [i for i in rank_accepted(cluster, candidates) if candidates[i].memory.verdict.serves]
    return ranked[0] if ranked else None
