"""Accept/refuse for every real config x TP 1..8 x PP 1..4, against vLLM's rules written out plainly."""

from __future__ import annotations

import pytest

from tests.conftest import ALL_CONFIGS, load_config
from tpfit.core.engine import EngineArgs
from tpfit.core.layout import Layout
from tpfit import make_plan
from tpfit.core.rules import check_layout
from tpfit.hardware.cluster import Cluster

EIGHT = Cluster.parse("8xh100")


def vllm_oracle(spec, tp: int, pp: int) -> bool:
    """vLLM's divisibility rules, written independently of tpfit.core.rules (vllm-internals.md §3)."""
    if spec.num_attention_heads % tp:                                    # verify_with_parallel_config
        return False
    if (-(-spec.vocab_size // 64) * 64) % tp:                           # VocabParallelEmbedding
        return False
    for layer in spec.layers:
        kv = layer.num_key_value_heads
        if layer.attention in ("full", "sliding", "chunked") and (kv % tp if kv >= tp else tp % kv):
            return False                                                 # QKVParallelLinear
        if layer.mlp in ("gated", "plain") and layer.intermediate_size % tp:
            return False                                                 # Merged/RowParallel divide()
        if layer.moe and layer.moe.moe_intermediate_size % tp:
            return False                                                 # FusedMoE divide()
    q = spec.quant
    if q and q.block_n:                                                  # validate_fp8_block_shape(_moe)
        for layer in spec.layers:
            if layer.attention in ("full", "sliding", "chunked") and (layer.num_attention_heads * layer.head_dim // tp) % 128:
                return False
            if layer.mlp == "gated" and (layer.intermediate_size // tp) % 128:
                return False
            if layer.moe and (layer.moe.moe_intermediate_size // tp) % 128:
                return False
    return pp <= spec.num_hidden_layers


@pytest.mark.parametrize("config", ALL_CONFIGS)
def test_every_config_every_layout(config):
    spec = load_config(config)
    for tp in range(1, 9):
        for pp in range(1, 5):
            if tp * pp > 8:
                continue
            refused = check_layout(spec, Layout(tp=tp, pp=pp), EIGHT, EngineArgs())
            assert (not refused) == vllm_oracle(spec, tp, pp), (config, tp, pp, refused)


# Literal rows, worked out by hand from each config.
@pytest.mark.parametrize("config,accepted_tps", [
    # 64 heads, 8 KV heads, I=28672, vocab 128256: any power of two up to 8
    ("meta-llama--Llama-3.1-70B.json", [1, 2, 4, 8]),
    # 40 heads, 8 KV heads: TP 5 divides heads but not the 8 KV heads; 151936 % 5 != 0 anyway
    ("Qwen--Qwen3-14B.json", [1, 2, 4, 8]),
    # 32 heads, 32 KV heads (MHA), vocab 51200 (= 800 x 64): powers of two
    ("microsoft--phi-2.json", [1, 2, 4, 8]),
    # Qwen2.5-7B: 28 heads, 4 KV heads: TP 7 divides 28 heads but 7 % 4 != 0 (and 152064 % 7 != 0)
    ("Qwen--Qwen2.5-7B.json", [1, 2, 4]),
    # Qwen3-30B-A3B-FP8: expert width 768 / 4 = 192 is not a multiple of the 128 FP8 block
    ("Qwen--Qwen3-30B-A3B-FP8.json", [1, 2]),
    # gemma-2-9b: 16 heads / 8 KV, I=14336, vocab 256000
    ("google--gemma-2-9b-it.json", [1, 2, 4, 8]),
])
def test_accepted_tp_sizes(config, accepted_tps):
    spec = load_config(config)
    got = [tp for tp in range(1, 9) if not check_layout(spec, Layout(tp=tp), EIGHT, EngineArgs())]
    assert got == accepted_tps


def test_tp3_on_64_heads_names_the_fix():
    spec = load_config("meta-llama--Llama-3.1-70B.json")
    (v, *_) = check_layout(spec, Layout(tp=3), Cluster.parse("3xh100"), EngineArgs())
    assert v.vllm_error == "Total number of attention heads (64) must be divisible by tensor parallel size (3)."
    assert "TP=3 is refused (64 attention heads)" in v.detail
    assert "--pipeline-parallel-size 3 on the same 3 GPUs" in v.fix and "--tensor-parallel-size 2 and leave 1 GPU free" in v.fix
    # on 4 GPUs the same layout leaves one free: PP=3 takes the same 3 (it said "to use all 3 GPUs")
    (v, *_) = check_layout(spec, Layout(tp=3), Cluster.parse("4xh100"), EngineArgs())
    assert "--pipeline-parallel-size 3 on the same 3 GPUs" in v.fix and "use all" not in v.fix


def test_calibration_refusals():
    # shared/calibration: Qwen3-14B at TP=5 died with "AssertionError: 151936 is not divisible by 5"
    spec = load_config("Qwen--Qwen3-14B.json")
    (first, *_) = check_layout(spec, Layout(tp=5), Cluster.parse("5xh100"), EngineArgs(vllm_version="0.19.0"))
    assert first.vllm_error == "AssertionError: 151936 is not divisible by 5"
    # phi-2 at max_model_len 8192: "User-specified max_model_len (8192) is greater than the derived max_model_len
    # (max_position_embeddings=2048.0 or model_max_length=None in model's config.json)."
    phi2 = load_config("microsoft--phi-2.json")
    (v,) = check_layout(phi2, Layout(), Cluster.parse("1xh100"), EngineArgs(max_model_len=8192))
    assert v.vllm_error.startswith("User-specified max_model_len (8192) is greater than the derived max_model_len "
                                   "(max_position_embeddings=2048.0 or model_max_length=None in model's config.json).")


def test_world_size_larger_than_node():
    spec = load_config("meta-llama--Llama-3.1-8B.json")
    single = check_layout(spec, Layout(tp=2, pp=2), Cluster.parse("2xh100"), EngineArgs())
    assert single and single[0].vllm_error.startswith("World size (4) is larger than the number of available GPUs (2)")


def test_multi_node_prefers_tp_in_node_pp_across():
    # vLLM accepts TP across nodes with Ray, but recommends TP = GPUs per node and PP = nodes
    spec = load_config("meta-llama--Llama-3.1-405B.json")
    plan = make_plan(spec, Cluster.parse("2x8xh100"), engine=EngineArgs(max_model_len=8192),
                     layouts=(Layout(tp=16), Layout(tp=8, pp=2)))
    assert all(c.accepted for c in plan.candidates)
    assert plan.best.layout == Layout(tp=8, pp=2)


def test_expert_parallel_rules():
    dense = load_config("meta-llama--Llama-3.1-8B.json")
    (v,) = check_layout(dense, Layout(tp=2, enable_expert_parallel=True), EIGHT, EngineArgs())
    assert v.rule == "ep_needs_moe"
    # Qwen3-30B-A3B-FP8 at TP=4: refused without EP (192-wide slices), accepted with whole experts per GPU
    moe = load_config("Qwen--Qwen3-30B-A3B-FP8.json")
    assert check_layout(moe, Layout(tp=4), EIGHT, EngineArgs())[0].rule == "fp8_block_alignment"
    assert not check_layout(moe, Layout(tp=4, enable_expert_parallel=True), EIGHT, EngineArgs())


def test_awq_group_alignment():
    from msgspec.structs import replace

    from tpfit.model.spec import QuantSpec

    # Qwen2.5-72B, intermediate 29568 = 231 x 128: at TP=8 the down_proj input 3696 is not a multiple of 128
    # (reference §3); 231 is odd, so every TP > 1 splits a group (the published AWQ checkpoint pads I to 29696)
    spec = replace(load_config("Qwen--Qwen2.5-72B.json"),
                   quant=QuantSpec(method="awq", weight_bits=4, group_size=128, has_zero_points=True))
    rules = [v.rule for v in check_layout(spec, Layout(tp=8), EIGHT, EngineArgs())]
    assert "quant_group_alignment" in rules
    assert [v.rule for v in check_layout(spec, Layout(tp=2), EIGHT, EngineArgs())] == ["quant_group_alignment"]
    assert not check_layout(spec, Layout(tp=1), EIGHT, EngineArgs())
    padded = replace(spec, layers=tuple(replace(l, intermediate_size=29696) for l in spec.layers))
    assert not check_layout(padded, Layout(tp=8), EIGHT, EngineArgs())
