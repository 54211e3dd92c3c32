"""Parallel layouts: TP x PP x DP (+ expert parallel), and how vLLM splits layers over PP stages."""

from __future__ import annotations

from itertools import accumulate
from operator import attrgetter

from msgspec import Struct

from tpfit.units import cdiv


class Layout(Struct, frozen=True, kw_only=True, gc=False):
    """One way to place a model on GPUs: `--tensor-parallel-size`, `--pipeline-parallel-size`,
    `--data-parallel-size`, `--enable-expert-parallel`."""

    tp: int = 1
    pp: int = 1
    dp: int = 1
    enable_expert_parallel: bool = False

    @property
    def world_size(self) -> int:
        """GPUs of one engine (vLLM's world_size = pp x tp; DP replicas are separate engines)."""
        return self.tp * self.pp

    @property
    def num_gpus(self) -> int:
        return self.tp * self.pp * self.dp

    @property
    def moe_parallel_size(self) -> int:
        """vLLM flattens TP across DP for the experts (`FusedMoEParallelConfig.make`)."""
        return self.tp * self.dp

    @property
    def ep(self) -> int:
        return self.moe_parallel_size if self.enable_expert_parallel else 1

    def requests_per_replica(self, concurrency: int) -> int:
        """One engine's share of `concurrency` requests: DP replicas are separate engines that share the requests
        out, so a memory plan and its --max-num-seqs are for cdiv(concurrency, dp) of them (9 over DP 4: 3)."""
        return cdiv(concurrency, self.dp)

    def __str__(self) -> str:
        parts = [f"TP{self.tp}", f"PP{self.pp}"]
        if self.dp > 1:
            parts.append(f"DP{self.dp}")
        if self.enable_expert_parallel:
            parts.append(f"EP{self.ep}")
        return " ".join(parts)

    def to_dict(self) -> dict:
        return {"tp": self.tp, "pp": self.pp, "dp": self.dp, "ep": self.ep}


shard_of = attrgetter("tp", "dp", "enable_expert_parallel")
"""A layout's shard, (TP, DP, expert parallel): all of it but the PP size, all that one GPU's share of a layer depends
on (TP, and the expert split TP x DP or whole experts). A search keys what its layouts share by it (an attrgetter:
the tuple is built in C, ~1500 times a 64-GPU search)."""


def pp_layer_split(num_layers: int, pp: int) -> tuple[int, ...]:
    """Layers per stage, as vLLM `get_pp_indices` splits them.

    The remainder goes to the stages before the last, from the second-to-last backwards, so the
    last stage (final norm + lm_head) never gets an extra layer:
    61 layers, pp=4 -> (15, 15, 16, 15); 62 -> (15, 16, 16, 15); 63 -> (16, 16, 16, 15).
    """
    per, rem = divmod(num_layers, pp)
    parts = [per] * pp
    for i in range(2, rem + 2):
        parts[-i] += 1
    return tuple(parts)


class StageGroup(Struct, frozen=True, kw_only=True, gc=False):
    """Pipeline stages of one PP split that hold alike layers: as many layers of each distinct layer shape, and
    the same ends (the first stage holds the embedding, the last the lm_head). A stage's weights, activation peak
    and step time depend on that alone, so a search works each out once per group, not once per stage (DeepSeek-V3
    at PP=61 has 61 stages in 4 groups)."""

    ranks: tuple[int, ...]
    """PP ranks of the stages, ascending."""
    layers: tuple[range, ...]
    """Each rank's layers (which KV-cache groups a stage touches may depend on where its layers sit)."""
    counts: tuple[tuple[int, int], ...]
    """(distinct layer shape, how many of the stage's layers have it), by shape: weights.distinct_layers' index."""
    first: bool
    last: bool


def stage_groups(index: tuple[int, ...], pp: int, cache: dict | None = None) -> tuple[StageGroup, ...]:
    """The stages of a `pp`-way split (pp_layer_split) of layers whose distinct shapes are `index`, grouped; in
    the order of each group's first rank. `cache`: a dict kept across the PP sizes of one search."""
    cache = {} if cache is None else cache
    found = cache.get(("stage_groups", pp))
    if found is not None:
        return found
    runs = cache.get(("shape_runs",))
    if runs is None:
        runs = cache[("shape_runs",)] = _shape_runs(index)
    prefix, run_end = runs
    groups: dict[tuple, tuple[list[int], list[range]]] = {}
    start = 0
    one_shape = len(prefix) == 1  # then a stage's counts are its number of layers, n
    last = pp - 1
    for rank, n in enumerate(pp_layer_split(len(index), pp)):
        end = start + n
        if one_shape:
            counts = n
        elif n and run_end[start] >= end:  # the stage's layers are all of its first layer's shape
            counts = ((index[start], n),)
        else:
            counts = tuple([(shape, k) for shape, before in enumerate(prefix) if (k := before[end] - before[start])])
        kind = (counts, rank == 0, rank == last)
        group = groups.get(kind)
        if group is None:
            group = groups[kind] = ([], [])
        group[0].append(rank)
        group[1].append(range(start, end))
        start = end
    out = []
    for (counts, first, last_stage), (ranks, ranges) in groups.items():
        if one_shape:
            counts = ((0, counts),) if counts else ()
        out.append(StageGroup(ranks=tuple(ranks), layers=tuple(ranges), counts=counts, first=first, last=last_stage))
    cache[("stage_groups", pp)] = out = tuple(out)
    return out


def _shape_runs(index: tuple[int, ...]) -> tuple[tuple[tuple[int, ...], ...], tuple[int, ...]]:
    """What stage_groups reads of the layers' shapes, for every PP size: how many layers of each shape come before
    layer i, for every i (a stage's counts are two look-ups a shape), and where the run of layers of layer i's shape
    ends (a stage within one run has one shape: most stages, ~1900 of a 64-GPU search's)."""
    prefix = tuple(tuple(accumulate((i == shape for i in index), initial=0))
                   for shape in range(max(index, default=-1) + 1))
    run_end = [len(index)] * len(index)
    for i in range(len(index) - 2, -1, -1):
        run_end[i] = run_end[i + 1] if index[i] == index[i + 1] else i + 1
    return prefix, tuple(run_end)


def enumerate_layouts(num_gpus: int, *, is_moe: bool, max_tp: int | None = None) -> tuple[Layout, ...]:
    """Every TP x PP x DP that fits in `num_gpus` (not only powers of two), EP variants for MoE."""
    out = []
    for tp in range(1, (max_tp or num_gpus) + 1):
        for pp in range(1, num_gpus // tp + 1):
            for dp in range(1, num_gpus // (tp * pp) + 1):
                out.append(Layout(tp=tp, pp=pp, dp=dp))
                if is_moe and tp * dp > 1:
                    out.append(Layout(tp=tp, pp=pp, dp=dp, enable_expert_parallel=True))
    return tuple(out)
