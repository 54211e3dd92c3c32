"""The layout search's shortcuts give the direct computation's answers, exactly.

`make_plan` works out what many layouts share once (rule verdicts per TP size, layer bytes per expert split,
activation peaks per stage shape, stage groups per PP size, layer costs for the speed model) so a 64-GPU search
stays fast (bench/plan_speed.py times it). Each shortcut is checked here against the plain function called on one
layout with nothing shared.
"""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from msgspec.structs import replace

from tests.conftest import ALL_CONFIGS, load_config
from tpfit import EngineArgs, Workload, make_plan
from tpfit.core.engine import semantics_for
from tpfit.core.kv import kv_bytes_per_element, make_kv_geometry
from tpfit.core.layout import Layout, enumerate_layouts, pp_layer_split, shard_of, stage_groups
from tpfit.core.memory import (
    _largest_len, _largest_len_search, _take, activation_bytes, batch_defaults, make_memory_plan, safe_utilization,
)
from tpfit.core.perf import make_gpu_speed, make_speed
from tpfit.core import rules
from tpfit.core.rules import LAYOUT_RULES, RULE_FACTORS, check_layout, layout_checker
from tpfit.core.weights import distinct_layers, layer_weight_bytes, stage_ends_bytes, stage_weights
from tpfit.data import load_memory_model
from tpfit.hardware.cluster import Cluster
from tpfit.kinds import Verdict

SIXTEEN = Cluster.parse("2x8xh100")


def test_every_layout_rule_says_what_its_verdict_reads():
    assert set(LAYOUT_RULES) <= set(RULE_FACTORS)


@pytest.mark.parametrize("config", ALL_CONFIGS)
def test_layout_checker_answers_as_check_layout(config):
    spec = load_config(config)
    # EP variants on dense models too (refused), a --max-model-len above the model's (refused everywhere)
    layouts = enumerate_layouts(SIXTEEN.num_gpus, is_moe=True) + (Layout(tp=32), Layout(pp=spec.num_hidden_layers + 1))
    for engine in (EngineArgs(), EngineArgs(max_model_len=spec.max_model_len * 2)):
        check = layout_checker(spec, SIXTEEN, engine)
        for layout in layouts:
            assert check(layout) == check_layout(spec, layout, SIXTEEN, engine), (config, layout)


def test_what_a_shards_rules_read_is_the_same_for_every_layout_of_the_shard():
    """layout_checker decides the rules whose RULE_FACTORS are in _SHARD_READS once per shard (layout.shard_of)."""
    layouts = enumerate_layouts(24, is_moe=True) + tuple(Layout(tp=t, pp=p, dp=d, enable_expert_parallel=e)
                                                          for t in (1, 3) for p in (1, 5, 70) for d in (1, 7)
                                                          for e in (False, True))
    for read in rules._SHARD_READS:
        seen: dict = {}
        for layout in layouts:
            assert seen.setdefault(shard_of(layout), read(layout)) == read(layout), (read, layout)
    assert {RULE_FACTORS[r][0] for r in LAYOUT_RULES} - rules._SHARD_READS == {rules._gpus, rules._pp}


def test_the_reads_written_as_one_product_are_what_they_stand_for():
    for layout in enumerate_layouts(24, is_moe=True) + (Layout(tp=3, pp=70, dp=7),):
        assert rules._gpus(layout) == (layout.num_gpus, layout.world_size), layout
        assert rules._expert_split(layout) == (layout.tp, rules._moe_split(layout)), layout
        assert rules._moe_split(layout) == (1 if layout.enable_expert_parallel else layout.moe_parallel_size), layout


def test_layout_checker_joins_messages_per_layout_when_they_do_not_read_alike(monkeypatch):
    """A shard whose per-layout messages do not all read one thing, or come after the shard's own, is joined per
    layout: no rule is listed so today, so the quant rule's message is made to read the whole layout."""
    monkeypatch.setitem(RULE_FACTORS, rules.check_quant_alignment, (rules._expert_split, rules._whole_layout))
    spec, engine = load_config("deepseek-ai--DeepSeek-V3.json"), EngineArgs()
    check = layout_checker(spec, SIXTEEN, engine)
    for layout in enumerate_layouts(SIXTEEN.num_gpus, is_moe=True):
        assert check(layout) == check_layout(spec, layout, SIXTEEN, engine), layout


@pytest.mark.parametrize("config", ["deepseek-ai--DeepSeek-V3.json", "google--gemma-2-9b-it.json",
                                    "meta-llama--Llama-3.2-3B.json", "Qwen--Qwen3-Next-80B-A3B-Thinking.json"])
def test_stage_weights_are_each_stages_layers_plus_its_ends(config):
    spec = load_config(config)
    n = spec.num_hidden_layers
    for layout in (Layout(tp=2, pp=pp) for pp in sorted({1, 2, 3, 5, 7, n // 2, n - 1, n})):
        stages = stage_weights(spec, layout)
        split = pp_layer_split(n, layout.pp)
        assert [s.pp_rank for s in stages] == list(range(layout.pp))
        assert [s.layer_end - s.layer_start for s in stages] == list(split)
        for s in stages:
            layers = sum(layer_weight_bytes(spec.layers[i], spec, layout) for i in range(s.layer_start, s.layer_end))
            ends = stage_ends_bytes(spec, layout.tp)[2 * (s.pp_rank == 0) + (s.pp_rank == layout.pp - 1)]
            assert s.weight_bytes == layers + ends, (config, layout, s)


@pytest.mark.parametrize("config", ["deepseek-ai--DeepSeek-V3.json", "google--gemma-2-9b-it.json",
                                    "meta-llama--Llama-3.2-3B.json", "Qwen--Qwen3-Next-80B-A3B-Thinking.json",
                                    "RedHatAI--Llama-4-Scout-17B-16E-Instruct-FP8-dynamic.json"])
def test_stage_groups_are_the_stages_grouped_by_their_layers_shapes_and_ends(config):
    """Every PP size, one cache for all (as a search keeps it): each stage's counts taken from its own layers."""
    index = distinct_layers(load_config(config).layers)[0]
    cache: dict = {}
    for pp in range(1, len(index) + 1):
        plain: dict[tuple, list[tuple[int, range]]] = {}
        start = 0
        for rank, n in enumerate(pp_layer_split(len(index), pp)):
            layers = range(start, start + n)
            counts = tuple(sorted(Counter(index[i] for i in layers).items()))
            plain.setdefault((counts, rank == 0, rank == pp - 1), []).append((rank, layers))
            start += n
        got = {(g.counts, g.first, g.last): list(zip(g.ranks, g.layers)) for g in stage_groups(index, pp, cache)}
        assert got == plain, (config, pp)
        assert [g.ranks[0] for g in stage_groups(index, pp)] == sorted(g.ranks[0] for g in stage_groups(index, pp))


CASES = [
    ("deepseek-ai--DeepSeek-V3.json", "2x8xh100", Workload(context=8192, concurrency=4), EngineArgs()),
    ("meta-llama--Llama-3.1-70B.json", "2x8xh100", Workload(context=8192, concurrency=16), EngineArgs()),
    ("Qwen--Qwen3-Next-80B-A3B-Thinking.json", "8xh100", Workload(context=8192, concurrency=8), EngineArgs()),
    ("google--gemma-2-9b-it.json", "4xa100", Workload(context=4096, concurrency=32), EngineArgs()),
    ("openai--gpt-oss-120b.json", "8xh100", Workload(context=16384, concurrency=8), EngineArgs()),
    ("mistralai--Mixtral-8x7B-v0.1.json", "8xh100", Workload(context=8192), EngineArgs(vllm_version="0.6.3")),
]


@pytest.mark.parametrize("config,gpus,workload,engine", CASES, ids=[c[0] for c in CASES])
def test_search_gives_each_layout_what_the_direct_computation_gives(config, gpus, workload, engine):
    spec, cluster, mm = load_config(config), Cluster.parse(gpus), load_memory_model()
    plan = make_plan(spec, cluster, workload, engine)
    spec, engine = plan.model, plan.engine
    sem, gpu_speed = semantics_for(engine.vllm_version), make_gpu_speed(cluster.gpu)
    kv_bytes = kv_bytes_per_element(spec, engine)
    checked = 0
    for c in plan.candidates:
        lay = c.layout
        if lay.pp <= spec.num_hidden_layers:
            per_gpu = tuple(s.weight_bytes for s in stage_weights(spec, lay) for _ in range(lay.tp)) * lay.dp
            assert c.weight_bytes_per_gpu == per_gpu, lay
        if not c.accepted:
            continue
        per_replica = -(-workload.concurrency // lay.dp)
        memory = make_memory_plan(spec, lay, cluster, engine, sem, memory_model=mm, concurrency=per_replica)
        if memory.verdict is Verdict.OVERFLOWS_AT_RUNTIME and engine.gpu_memory_utilization is None:
            lower = make_memory_plan(spec, lay, cluster,
                                     replace(engine, gpu_memory_utilization=safe_utilization(memory)), sem,
                                     memory_model=mm, concurrency=per_replica)
            memory = lower if lower.verdict.serves else memory
        assert c.memory == memory, lay
        # each stage's GPU, as its own layers make it (the plan keeps one value per group of alike stages, and
        # layouts that read alike share a plan): weights, bytes per block, the activation peak, kept in parts (the
        # forward's per TP, the MoE workspace per DP and expert split)
        batch = batch_defaults(cluster, engine, sem, memory.max_model_len)
        geometry = make_kv_geometry(spec, tp=lay.tp, kv_bytes=kv_bytes, block_size=engine.block_size)
        assert len(c.memory.gpus) == lay.pp, lay
        for stage, gpu in zip(stage_weights(spec, lay), c.memory.gpus):
            layers = range(stage.layer_start, stage.layer_end)
            assert gpu.weight_bytes == stage.weight_bytes, (lay, stage.pp_rank)
            assert gpu.bytes_per_block == geometry.bytes_per_block(layers), (lay, stage.pp_rank)
            assert gpu.activation_bytes == activation_bytes(
                spec, lay, layers, last_stage=stage.pp_rank == lay.pp - 1, batch=batch, sem=sem, mm=mm), (
                lay, stage.pp_rank)
        # the GPU that limits the cache: the fewest blocks
        assert c.memory.to_dict()["num_gpu_blocks"] == min(gpu.num_blocks for gpu in c.memory.gpus), lay
        if c.speed is not None:
            assert c.speed == make_speed(spec, lay, memory, cluster, gpu_speed, workload.speed_workload(),
                                         kv_bytes=kv_bytes), lay
            checked += 1
    assert checked > 0


@settings(max_examples=200, deadline=None)
@given(usable=st.integers(-50, 5000), max_len=st.integers(1, 200_000), in_flight=st.integers(1, 20000),
       config=st.sampled_from(["meta-llama--Llama-3.1-8B.json", "deepseek-ai--DeepSeek-V3.json"]),
       block_size=st.sampled_from([None, 16, 32, 64]))
def test_longest_request_in_one_step_is_the_binary_searchs(usable, max_len, in_flight, config, block_size):
    spec = load_config(config)
    geometry = make_kv_geometry(spec, tp=1, kv_bytes=2, block_size=block_size)
    assert _largest_len(geometry, usable, max_len, in_flight) == _largest_len_search(geometry, usable, max_len,
                                                                                       in_flight)


def test_each_stage_takes_the_gpu_memory_made_for_its_group_and_bytes_per_block():
    # a memory plan makes one GpuMemory per stage group and bytes per block, in the order of their first stage, and
    # hands them to the stages by a pattern worked out once per split (make_memory_plan's `take`)
    ranks = [(0,), (1, 3, 4), (2, 5)]
    per_block = [None, [10, 20, 10], [30, 30]]
    made = ["first", "middle at 10", "middle at 20", "last"]
    assert _take(ranks, per_block, 6)(made) == ("first", "middle at 10", "last", "middle at 20", "middle at 10", "last")
    # one value per group, its ranks in a row
    assert _take([(0,), (1, 2, 3), (4,)], [None] * 3, 5)(["a", "b", "c"]) == ("a", "b", "b", "b", "c")
    # each stage its own value, in rank order: the values as made
    assert _take([(0,), (1,), (2,)], [None] * 3, 3) is None
    assert _take([(0, 2), (1,)], [[5, 6], None], 3)(["x", "y", "z"]) == ("x", "z", "y")
