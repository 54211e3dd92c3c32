"""DeepSeek V4 (deepseek_v4, vLLM 0.33's vllm/models/deepseek_v4): loads from the real config, its experts' NVFP4
format is read, vLLM's own head check refuses TP=3, and its KV cache is laid out as vLLM 0.33 lays it out (the
figures below are worked by hand from vLLM 0.33's source, cited in core/kv.py)."""

from __future__ import annotations

from tests.conftest import load_config
from tpfit.core.engine import EngineArgs
from tpfit.core.kv import deepseek_v4_geometry
from tpfit import make_plan
from tpfit.core.layout import Layout
from tpfit.hardware.cluster import Cluster

V4 = "RedHatAI--DeepSeek-V4-Flash-NVFP4-FP8.json"


def test_loads_as_vllm_builds_it():
    spec = load_config(V4)
    assert spec.model_type == "deepseek_v4" and spec.num_hidden_layers == 43 and spec.num_attention_heads == 64
    moe = spec.layers[0].moe
    assert (moe.num_experts, moe.num_experts_per_tok, moe.moe_intermediate_size, moe.shared_intermediate_size) == (
        256, 6, 2048, 2048)
    assert spec.mla.kv_head_size == 512  # 448 NoPE + 64 RoPE: the latent vLLM's MLAAttentionSpec caches
    assert spec.quant.weight_bits == 4 and spec.quant.group_size == 16 and spec.quant.experts_only  # NVFP4 experts
    ratios = [layer.compress_ratio for layer in spec.layers]
    assert ratios[:4] == [1, 1, 4, 128] and ratios.count(4) == 21 and ratios.count(128) == 20
    assert all(layer.window_tokens == 128 for layer in spec.layers) and spec.mla.index_head_dim == 128


def test_tp3_refused_with_vllms_message():
    spec = load_config(V4)
    plan = make_plan(spec, Cluster.parse("8xh200"), layouts=(Layout(tp=3), Layout(tp=4), Layout(tp=8)))
    tp3, tp4, tp8 = plan.candidates
    assert not tp3.accepted
    assert tp3.violations[0].vllm_error == (
        "Total number of attention heads (64) must be divisible by tensor parallel size (3).")
    assert tp4.accepted and tp8.accepted
    # NVFP4 experts: 256 x 3 x 4096 x 2048 x 43 values at 4 bits + an fp8 scale per 16 dominate the weights
    experts = 256 * 3 * 4096 * 2048 * 43 * (0.5 + 1 / 16)
    assert experts / 8 < tp8.memory.gpus[0].weight_bytes < experts / 8 * 1.2


def test_kv_cache_groups_as_vllm_packs_them():
    # Pages, each rounded up to 576 B (fp8_ds_mla): the 64-token window 64 x 584 = 37376 -> 37440; a 256-token block
    # of ratio-4 latents 64 x 584 -> 37440, of ratio-128 latents 2 x 584 = 1168 -> 1728; the indexer's keys
    # 64 x (128 + 4) = 8448 -> 8640; compressor states in fp32: ratio 4, 4 tokens x 2 x 2 x 512 x 4 B = 32768 -> 32832,
    # ratio 128, 8 tokens x 2 x 1 x 512 x 4 = 32768 -> 32832, the indexer's 4 x 2 x 2 x 128 x 4 = 8192 -> 8640.
    # Buckets: full 256-token (21 x 37440, 20 x 1728, 21 x 8640: unbalanced, one group), the window (43 x 37440),
    # 4-token states (21 x 32832 + 21 x 8640: balanced, so at least 21 repeats a group), 8-token states (20 x 32832).
    # _approximate_gcd([43, 21, 20], lower_bound=21) = 22 (padding 1 + 1 + 2), so the window splits in two (22 + 21).
    geo = deepseek_v4_geometry(load_config(V4))
    sums = sorted(sum(p for _, p in g.layer_pages) for g in geo.groups)
    assert sums == [20 * 32832, 21 * 37440, 22 * 37440, 21 * 32832 + 21 * 8640, 21 * 37440 + 20 * 1728 + 21 * 8640]
    assert geo.bytes_per_block(range(43)) == 1_002_240 == geo.page_bytes
    # one request of 8192 tokens with 2 x 8192 tokens in flight: 8192 / 256 full blocks, (127 + 8192) / 64 + 1 twice,
    # (7 + 8192) / 4 + 1 and (127 + 8192) / 8 + 1 (capped at 8192 tokens each)
    need = 32 + 2 * (8192 // 64 + 1) + (8192 // 4 + 1) + (8192 // 8 + 1)
    assert need == 3364 == geo.blocks_per_request(8192, in_flight_tokens=16384, state_blocks=2)


def test_kv_tokens_follow_vllms_capacity_arithmetic():
    # GPU KV cache size = int(num_blocks / blocks per request x max_model_len) (v1/core/kv_cache_utils.py
    # get_kv_cache_capacity); num_blocks = available // 1002240, the same at every TP (one latent, replicated)
    spec = load_config(V4)
    engine = EngineArgs(max_model_len=8192, max_num_batched_tokens=8192, kv_cache_memory_bytes=80 * 2**30)
    for tp in (4, 8):
        plan = make_plan(spec, Cluster.parse(f"{tp}xh200"), engine=engine, layouts=(Layout(tp=tp),))
        memory = plan.candidates[0].memory
        blocks = 80 * 2**30 // 1_002_240
        assert memory.gpus[0].num_blocks == blocks
        assert memory.kv_cache_tokens == int(blocks / 3364 * 8192)
    # PP=2 halves what a block costs on each stage (its layers only), not what a request needs
    pp2 = make_plan(spec, Cluster.parse("2xh200"), engine=engine, layouts=(Layout(pp=2),)).candidates[0].memory
    assert min(g.bytes_per_block for g in pp2.gpus) < 1_002_240 * 0.6
    assert pp2.kv_cache_tokens > 1.6 * int(80 * 2**30 // 1_002_240 / 3364 * 8192)


def test_a_16_bit_kv_cache_is_refused_with_vllms_message():
    spec = load_config(V4)
    engine = EngineArgs(kv_cache_dtype="bfloat16")
    plan = make_plan(spec, Cluster.parse("8xh200"), engine=engine, layouts=(Layout(tp=8),))
    (violation,) = plan.candidates[0].violations
    assert violation.vllm_error == ("DeepseekV4 fp8_ds_mla layout only supports fp8 kv-cache, got bfloat16. Please set "
                                    "`--kv-cache-dtype fp8` or select a backend that supports bfloat16 KV cache.")
    fp8 = make_plan(spec, Cluster.parse("8xh200"), engine=EngineArgs(kv_cache_dtype="fp8"), layouts=(Layout(tp=8),))
    assert fp8.candidates[0].accepted
