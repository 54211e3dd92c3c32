"""KV geometry and vLLM's memory budget, against hand arithmetic and real vLLM logs."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from msgspec.structs import replace

from tests.conftest import load_config
from tpfit.core.engine import EngineArgs, semantics_for
from tpfit.core.kv import attention_page_bytes_per_token, make_kv_geometry
from tpfit.core.layout import Layout
from tpfit.core.memory import make_memory_plan
from tpfit.data import load_memory_model
from tpfit import make_plan
from tpfit.hardware.cluster import Cluster
from tpfit.units import GIB

H100 = Cluster.parse("8xh100")

MM = load_memory_model()


def page_per_token(config: str, tp: int, kv_bytes: int = 2) -> int:
    spec = load_config(config)
    layer = next(l for l in spec.layers if l.attention.has_kv_cache)
    return attention_page_bytes_per_token(layer, spec, tp, kv_bytes)


def test_gqa_bytes_per_token():
    # Qwen3-32B: 64 layers x 8 KV heads / TP 2 x 128 dim x 2 (K,V) x 2 bytes = 131,072 B per token per GPU
    assert 64 * page_per_token("Qwen--Qwen3-32B.json", tp=2) == 131_072


def test_mla_bytes_per_token_on_every_rank():
    # DeepSeek-V3: (kv_lora_rank 512 + qk_rope_head_dim 64) x 2 bytes = 1,152 B per token per layer, not split by TP
    for tp in (1, 2, 8):
        assert page_per_token("deepseek-ai--DeepSeek-V3.json", tp=tp) == 1152


def test_fp8_kv_halves_the_page():
    assert page_per_token("meta-llama--Llama-3.1-8B.json", tp=1, kv_bytes=1) * 2 == \
        page_per_token("meta-llama--Llama-3.1-8B.json", tp=1, kv_bytes=2)


def test_kv_heads_replicated_when_tp_exceeds_them():
    # Qwen2.5-7B has 4 KV heads: at TP=8 each GPU still holds one whole KV head (max(1, 4 // 8))
    assert page_per_token("Qwen--Qwen2.5-7B.json", tp=8) == page_per_token("Qwen--Qwen2.5-7B.json", tp=4) == 1 * 2 * 128 * 2


def test_sliding_window_groups_and_blocks():
    # gemma-2-9b: 21 sliding (window 4096) + 21 full layers -> 2 groups of 21; a request of 8192 tokens needs
    # cdiv(8192,16) = 512 full blocks + cdiv(min(4095 + in_flight, 8192), 16) + 1 = 513 sliding blocks
    geo = make_kv_geometry(load_config("google--gemma-2-9b-it.json"), tp=1, kv_bytes=2)
    assert sorted(g.kind for g in geo.groups) == ["full", "sliding"]
    assert geo.group_size == 21
    assert geo.blocks_per_request(8192, in_flight_tokens=2 * 8192, state_blocks=2) == 512 + 513
    # with a short context the window no longer matters
    assert geo.blocks_per_request(1024, in_flight_tokens=0, state_blocks=2) == 64 + 65


def test_logged_v026_llama8b_tp1():
    # calibration/vllm-0.26-h100/l8-tp1.log: "Available KV cache memory: 54.26 GiB",
    # "GPU KV cache size: 444,528 tokens", "Maximum concurrency for 8,192 tokens per request: 54.26x"
    spec = load_config("meta-llama--Llama-3.1-8B.json")
    engine = EngineArgs(vllm_version="0.26.0", gpu_memory_utilization=0.9, max_model_len=8192, api_server=False)
    m = make_memory_plan(spec, Layout(), H100, engine, semantics_for("0.26.0"), memory_model=MM)
    assert abs(m.worst.kv_cache_bytes / GIB - 54.26) < 0.05
    assert abs(m.kv_cache_tokens - 444_528) / 444_528 < 0.002
    assert abs(m.max_concurrency - 54.26) < 0.1
    assert m.kv_bytes_per_token == 32 * 8 * 2 * 128 * 2


def test_max_seq_len_larger_than_kv_cache_predicted_with_estimate():
    # Llama-3.1-70B on 2xH100 at its full 131072 context: vLLM refuses and suggests
    # (floor(available / bytes_per_block) - 1) x 16 tokens.
    spec = load_config("meta-llama--Llama-3.1-70B.json")
    m = make_memory_plan(spec, Layout(tp=2), Cluster.parse("2xh100"), EngineArgs(), semantics_for("0.33.0"), memory_model=MM)
    assert m.verdict == "refused_at_start"
    per_block = 80 * 16 * (8 // 2) * 2 * 128 * 2
    assert m.max_model_len_fit == (m.worst.kv_cache_bytes // per_block - 1) * 16
    assert f"the estimated maximum model length is {m.max_model_len_fit}." in m.vllm_error
    assert m.vllm_error.startswith("To serve at least one request with the model's max seq len (131072)")
    again = make_memory_plan(spec, Layout(tp=2), Cluster.parse("2xh100"),
                             EngineArgs(max_model_len=m.max_model_len_fit), semantics_for("0.33.0"), memory_model=MM)
    assert again.verdict in ("starts", "insufficient_concurrency")


def test_graphs_outside_the_budget_warn_of_runtime_overflow():
    # vLLM 0.26: CUDA graphs and the CUDA context come on top of gpu_memory_utilization (gpu-vllm README:
    # Llama-3.1-70B bf16 TP=2 at 0.95 started, then ran out of memory at its first request)
    spec = load_config("meta-llama--Llama-3.1-70B.json")
    engine = EngineArgs(vllm_version="0.26.0", gpu_memory_utilization=0.95, max_model_len=4096)
    m = make_memory_plan(spec, Layout(tp=2), Cluster.parse("2xh100"), engine, semantics_for("0.26.0"), memory_model=MM)
    assert m.verdict == "overflows_at_runtime"
    assert "--enforce-eager" in m.reasons[0] and "1.00 GiB more at the first requests" in m.reasons[0]
    # at 0.99 vLLM refuses at once: its own context and NCCL (1.5 GiB) leave 77.68 GiB, less than it asks for
    refused = make_memory_plan(spec, Layout(tp=2), Cluster.parse("2xh100"), replace(engine, gpu_memory_utilization=0.99),
                               semantics_for("0.26.0"), memory_model=MM)
    assert refused.verdict == "refused_at_start" and "(77.68/79.18 GiB)" in refused.vllm_error
    fine = make_memory_plan(spec, Layout(tp=2), Cluster.parse("2xh100"),
                            EngineArgs(vllm_version="0.26.0", gpu_memory_utilization=0.9, max_model_len=4096),
                            semantics_for("0.26.0"), memory_model=MM)
    assert fine.verdict == "starts"


def test_version_semantics():
    old, new = semantics_for("0.19.0"), semantics_for("0.33.0")
    assert (old.default_gpu_memory_utilization, new.default_gpu_memory_utilization) == (0.9, 0.92)
    assert not old.cudagraphs_in_budget and new.cudagraphs_in_budget
    spec = load_config("meta-llama--Llama-3.1-8B.json")
    kv = {v: make_memory_plan(spec, Layout(), H100, EngineArgs(vllm_version=v, gpu_memory_utilization=0.9,
                                                                max_model_len=8192), semantics_for(v), memory_model=MM).worst
          for v in ("0.26.0", "0.33.0")}
    # the same flags leave less KV cache where the graph estimate is subtracted
    assert kv["0.33.0"].kv_cache_bytes == kv["0.26.0"].kv_cache_bytes - kv["0.33.0"].cuda_graph_bytes


def test_other_process_holding_memory_refuses_start():
    from msgspec.structs import replace

    spec = load_config("meta-llama--Llama-3.1-8B.json")
    busy = replace(Cluster.parse("1xh100"), free_bytes=(60 * GIB,))
    m = make_memory_plan(spec, Layout(), busy, EngineArgs(), semantics_for("0.33.0"), memory_model=MM)
    assert m.verdict == "refused_at_start"
    # vLLM checks after its own CUDA context exists (0.52 GiB on one GPU): 60 - 0.52 GiB free by then
    assert m.vllm_error.startswith("Free memory on device (59.48/79.18 GiB) on startup is less than desired GPU "
                                   "memory utilization (0.92, 72.84 GiB).")
    assert "another process holds 19.18 GiB" in m.reasons[0]


@settings(max_examples=40, deadline=None)
@given(context=st.integers(min_value=16, max_value=131_072), extra=st.integers(min_value=1, max_value=65_536),
       concurrency=st.integers(min_value=1, max_value=64), tp=st.sampled_from([1, 2, 4, 8]),
       config=st.sampled_from(["meta-llama--Llama-3.1-8B.json", "google--gemma-2-9b-it.json",
                               "deepseek-ai--DeepSeek-V2-Lite.json", "Qwen--Qwen3-Next-80B-A3B-Thinking.json"]))
def test_more_context_never_needs_less_memory(context, extra, concurrency, tp, config):
    spec = load_config(config)
    longer = min(context + extra, spec.max_model_len)
    context = min(context, longer)
    geo = make_kv_geometry(spec, tp=tp, kv_bytes=2)
    a = geo.blocks_per_request(context, in_flight_tokens=8192, state_blocks=2)
    b = geo.blocks_per_request(longer, in_flight_tokens=8192, state_blocks=2)
    assert b >= a
    from tpfit.core.plan import Workload

    def verdict(n: int) -> str:
        plan = make_plan(spec, Cluster.parse("8xh100"), Workload(concurrency=n), EngineArgs(max_model_len=context),
                         layouts=(Layout(tp=tp),))
        return plan.candidates[0].memory.verdict if plan.candidates[0].memory else "refused"

    # more concurrency never turns a layout that can't hold it into one that can
    low, high = verdict(concurrency), verdict(concurrency + extra)
    if low == "insufficient_concurrency":
        assert high == "insufficient_concurrency"
    if high == "starts":
        assert low == "starts"

def test_hybrid_mamba_block_size_aligned():
    # Nemotron-H: a mamba2 state page (conv + ssm) is far larger than 16 tokens of attention KV, so vLLM raises
    # the attention block size until an attention page covers it ("Setting attention block size to N tokens").
    spec = load_config("nvidia--Nemotron-H-56B-Base-8K.json")
    geo = make_kv_geometry(spec, tp=1, kv_bytes=2)
    attn_per_token = 8 * 2 * 128 * 2
    state = (20480 * 3 + 256 * 64 * 256) * 2
    assert geo.block_size % 16 == 0 and geo.block_size * attn_per_token >= state
    assert (geo.block_size - 16) * attn_per_token < state


def test_every_own_vllm_run_within_one_percent():
    # Every real vLLM 0.26 start-up in calibration/*/runs.json (2xH100, 2xH200 and 4xH200: TP 1/2/4, PP 2, TP2xPP2,
    # MoE with and without expert parallel):
    # the figures parsed from its log against the plan for that GPU, layout and engine arguments.
    from bench.calibration_rows import own_rows

    rows = own_rows()
    assert {r.gpu for r in rows} == {"h100-sxm", "h200"} and any(r.layout.tp == 4 for r in rows)
    outcomes = {r.outcome for r in rows}
    assert outcomes == {"ok", "overflows_at_runtime", "refused_at_start"}
    for row in rows:
        cluster = Cluster.parse(f"{row.layout.world_size}x{row.gpu}")
        c = make_plan(row.spec, cluster, engine=row.engine, layouts=(row.layout,)).candidates[0]
        if row.outcome == "refused_at_start":  # l70-tp4-g99: vLLM's own message, with its figures
            assert c.memory.verdict == "refused_at_start", row.name
            assert c.memory.vllm_error.startswith("Free memory on device (138.3/139.8 GiB) on startup is less than "
                                                  "desired GPU memory utilization (0.99, 138.4 GiB)")
            continue
        tokens_error = abs(c.memory.kv_cache_tokens - row.logged["kv_cache_tokens"]) / row.logged["kv_cache_tokens"]
        if row.spec.is_moe:
            # MoE and hybrid (calibration/vllm-0.26-h200x2): the fused-MoE workspace, V1's CUDA-graph estimate,
            # the hybrid state blocks of 0.26 and Llama-4's text-only start, within 1 %
            assert tokens_error < 0.01, row.name
            assert c.memory.verdict == "starts", row.name
            continue
        # KV within 0.25 GiB of what vLLM allocated (70B at TP=2 has only 5 GiB of KV, so % would mislead there)
        assert abs(c.memory.gpus[0].kv_cache_bytes / GIB - row.logged["kv_cache_gib"]) < 0.25, row.name
        assert tokens_error < 0.015, row.name
        assert abs(c.memory.gpus[0].weight_bytes / GIB - row.logged["weights_gib"]) / row.logged["weights_gib"] < 0.015, row.name
        # the runs that served (l70-tp4-g95 generated at 0.95) start; l70-tp4-g98 started and ran out of memory
        # at its first request
        assert c.memory.verdict == ("starts" if row.outcome == "ok" else row.outcome), row.name


def test_overflow_names_the_graph_pool_beyond_its_budgeted_estimate():
    """vLLM 0.20-0.21 subtract their own estimate of the CUDA-graph pool from the budget, below the pool they then
    get: that excess comes on top of the budget, and the overflow reason names it (it once named only the context)."""
    from tpfit import Workload
    from tpfit.kinds import Verdict
    from tpfit.units import format_gib

    plan = make_plan(load_config("meta-llama--Llama-3.1-8B.json"), Cluster.parse("1xh100"), Workload(context=8192),
                     EngineArgs(gpu_memory_utilization=0.99, vllm_version="0.20.0"))
    (tp1,) = [c for c in plan.candidates if c.layout.num_gpus == 1]
    w = tp1.memory.worst
    assert tp1.memory.verdict is Verdict.OVERFLOWS_AT_RUNTIME and w.cuda_graph_bytes_in_budget
    beyond = w.cuda_graph_bytes - w.cuda_graph_budget_bytes
    assert beyond > 0
    assert f"CUDA graphs ({format_gib(beyond)} GiB beyond the estimate in the budget)" in tp1.memory.reasons[-1]


@pytest.mark.parametrize("concurrency,dp,share", [(64, 4, 16), (9, 4, 3), (3, 4, 1), (1, 1, 1)])
def test_a_replicas_share_of_the_requests_rounds_up(concurrency, dp, share):
    # DP engines share the requests out; the busiest engine's share (9 over 4: 3, 3, 2, 1) is what its memory
    # plan and --max-num-seqs are made for
    assert Layout(dp=dp).requests_per_replica(concurrency) == share
