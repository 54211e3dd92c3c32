"""Which accepted layout tpfit recommends: vLLM's verdict first, then its deployment conventions, then the
predicted speed by the workload's objective."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tpfit.hardware.cluster import Cluster
from tpfit.kinds import Objective

if TYPE_CHECKING:
    from tpfit.core.plan import Candidate, Workload

SPEED_TIE = 0.05
"""Predicted speeds within 5 % are a tie (bench/speed_accuracy.py ranks within this band): the simpler layout
wins, fewer pipeline stages then less TP, i.e. replicas first, as vLLM's maintainers advise for models that fit."""


def _score(cluster: Cluster, c: Candidate, workload: Workload | None) -> tuple:
    m, sp = c.memory, c.speed
    cross_node_tp = c.layout.tp > cluster.gpus_per_node
    # starts first; then no TP across nodes (vLLM: TP within a node, PP across nodes); then the layouts that meet
    # the --ttft/--tpot targets; then the objective on the predicted speed (core/perf.py); then the fewest
    # pipeline stages; among layouts that don't fit, the one closest to fitting
    if sp is None or workload is None:
        return (m.verdict.rank, cross_node_tp, 0, 0.0, c.layout.pp, -m.worst.kv_cache_bytes)
    misses = (workload.ttft_s is not None and sp.ttft_s > workload.ttft_s) + \
             (workload.tpot_s is not None and sp.tpot_s > workload.tpot_s)
    key = -sp.total_output_tok_s if workload.objective is Objective.THROUGHPUT else sp.request_s
    return (m.verdict.rank, cross_node_tp, misses, key, c.layout.pp, -m.worst.kv_cache_bytes)


def rank_accepted(cluster: Cluster, candidates: tuple[Candidate, ...], workload: Workload | None = None) -> list[int]:
    """Indices of the layouts that pass vLLM's rules, best first (whatever their memory verdict)."""
    return sorted((i for i, c in enumerate(candidates) if c.accepted and c.memory),
                  key=lambda i: _score(cluster, candidates[i], workload))


def pick_best(cluster: Cluster, candidates: tuple[Candidate, ...], workload: Workload | None = None) -> int | None:
    """Index of the layout tpfit recommends, or None when none starts and keeps serving (every layout refused
    by a rule, refused at start, or out of memory at its first requests): `Plan.best` is then None.

    Among the best by the objective, predicted speeds within SPEED_TIE count as equal: the simpler layout wins."""
    scores = {i: _score(cluster, c, workload) for i, c in enumerate(candidates)
              if c.accepted and c.memory and c.memory.verdict.serves}
    ranked = sorted(scores, key=scores.__getitem__)  # as rank_accepted, less the layouts that don't serve
    if not ranked or candidates[ranked[0]].speed is None:
        return ranked[0] if ranked else None
    top = scores[ranked[0]]
    tied = [i for i in ranked if scores[i][:3] == top[:3]
            and abs(top[3]) / (1 + SPEED_TIE) <= abs(scores[i][3]) <= abs(top[3]) * (1 + SPEED_TIE)]
    place = {i: n for n, i in enumerate(tied)}
    return min(tied, key=lambda i: (candidates[i].layout.pp, candidates[i].layout.tp, place[i]))
