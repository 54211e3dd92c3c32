"""Per-GPU weight bytes by vLLM's sharding, against hand derivations from the real configs."""

from __future__ import annotations

import pytest

from tests.conftest import load_config
from tpfit.core.layout import Layout
from tpfit.core.weights import allocated_bytes, layer_weight_bytes, linear_bytes, stage_weights
from tpfit.units import GIB, MIB


def test_llama_3_1_70b_tp2_whole_gpu():
    # h=8192, 80 layers, 64 heads, 8 KV heads, head_dim 128, I=28672, vocab 128256 (already a multiple of 64), bf16.
    # per layer per GPU: qkv 8192 x (32 + 2*4) x 128 = 41,943,040; o_proj 4096 x 8192 = 33,554,432;
    #   gate_up 8192 x 2*14336 = 234,881,024; down 14336 x 8192 = 117,440,512; 2 norms 16,384 -> 427,835,392
    # 80 layers = 34,226,831,360; embed + lm_head 2 x 64128 x 8192 = 1,050,673,152; final norm 8,192;
    # rotary cache 131072 x 128 = 16,777,216 -> 35,294,289,920 params x 2 bytes = 70,588,579,840 B (65.74 GiB;
    # vLLM 0.26 logged "Model loading took 65.74 GiB" for this layout: calibration/vllm-0.26-h100/l70-tp2.log)
    spec = load_config("meta-llama--Llama-3.1-70B.json")
    (stage,) = stage_weights(spec, Layout(tp=2))
    assert stage.weight_bytes == 70_588_579_840


def test_mixtral_8x7b_tp2_whole_gpu():
    # h=4096, 32 layers, 32 heads / 8 KV, 8 experts of I=14336, vocab 32000, bf16, TP=2 splits each expert's I.
    # attention: qkv 4096 x (16+8) x 128 = 12,582,912; o 2048 x 4096 = 8,388,608
    # experts: 8 x (4096 x 2*7168 + 7168 x 4096) = 704,643,072; router 4096 x 8 = 32,768; norms 8,192
    # per layer 725,655,552 x 32 = 23,220,977,664; embed + lm_head 2 x 16000 x 4096 = 131,072,000;
    # final norm 4,096; rotary 32768 x 128 = 4,194,304 -> 23,356,248,064 x 2 = 46,712,496,128 B; embed and
    # lm_head are 125 MiB each, which the caching allocator counts as 126 MiB (+2 MiB) -> 46,714,593,280 B
    # (43.51 GiB; vLLM 0.19 logged 43.51 GiB in shared/calibration)
    spec = load_config("mistralai--Mixtral-8x7B-v0.1.json")
    (stage,) = stage_weights(spec, Layout(tp=2))
    assert stage.weight_bytes == 46_712_496_128 + 2 * MIB


def test_allocator_rounding_qwen2_5_72b_tp4():
    # h=8192, I=29568, 80 layers: at TP=4 gate_up is 2 x 7392 x 8192 x 2 B = 231 MiB and down 115.5 MiB. The caching
    # allocator gives each a segment rounded up to 2 MiB and keeps a leftover of <= 1 MiB with the tensor: 232 and
    # 116 MiB, +1.5 MiB a layer, +120 MiB in all. vLLM 0.26 logged "Model loading took 34.01 GiB" on every rank
    # (calibration/vllm-0.26-h200x4/q72-tp4.log); the bare parameter bytes are 33.89 GiB.
    assert (allocated_bytes(231 * MIB), allocated_bytes(115 * MIB + MIB // 2)) == (232 * MIB, 116 * MIB)
    assert allocated_bytes(124 * MIB + MIB // 2) == 124 * MIB + MIB // 2  # 1.5 MiB left: split off, not counted
    assert allocated_bytes(3 * MIB) == 3 * MIB  # under 10 MiB: carved from a shared 20 MiB segment
    spec = load_config("Qwen--Qwen2.5-72B.json")
    (stage,) = stage_weights(spec, Layout(tp=4))
    assert round(stage.weight_bytes / GIB, 2) == 34.01
    assert round((stage.weight_bytes - 80 * 3 * MIB // 2) / GIB, 2) == 33.89


def fp8(n: int, k: int) -> int:
    # 1 byte per weight + one fp32 scale per 128 x 128 block
    return n * k + -(-n // 128) * -(-k // 128) * 4


def test_deepseek_v3_moe_layer_tp8():
    # h=7168, 128 heads, q_lora 1536, kv_lora 512, qk_nope 128, qk_rope 64, v 128; 256 experts of 2048,
    # one shared expert of 2048; block FP8 128x128. TP=8: 16 heads and 256-wide expert slices per GPU.
    attention = (fp8(1536, 7168) + 1536 * 2       # q_a_proj + q_a_layernorm: replicated on every rank
                 + fp8(16 * 192, 1536)             # q_b_proj: column-parallel
                 + fp8(576, 7168) + 512 * 2        # kv_a_proj_with_mqa + kv_a_layernorm: replicated
                 + fp8(16 * 256, 512)              # kv_b_proj: column-parallel
                 + fp8(7168, 16 * 128))            # o_proj: row-parallel
    assert attention == 36_647_776
    experts = 256 * (fp8(2 * 256, 7168) + fp8(7168, 256))  # every expert, I/8 each
    router = 7168 * 256 * 2 + 256 * 2                      # bf16 gate + e_score_correction_bias, replicated
    shared = fp8(2 * 256, 7168) + fp8(7168, 256)
    norms = 2 * 7168 * 2
    spec = load_config("deepseek-ai--DeepSeek-V3.json")
    moe_layer = spec.layers[3]  # first_k_dense_replace = 3
    assert moe_layer.moe is not None
    assert layer_weight_bytes(moe_layer, spec, Layout(tp=8)) == attention + experts + router + shared + norms
    assert attention + experts + router + shared + norms == 1_455_483_552


def test_gpt_oss_120b_layer_tp2():
    # h=2880, 64 heads / 8 KV of 64, 128 mxfp4 experts of I=2880 (vLLM pads I/TP=1440 to 1536 on Hopper):
    # mxfp4 = 4 bits + one e8m0 byte per 32 values; attention, router and norms stay bf16.
    def mx(n, k):
        return n * k // 2 + n * k // 32
    experts = 128 * (mx(2 * 1536, 2880) + mx(2880, 1536))   # 902,430,720
    router = 2880 * 128 * 2 + 128 * 2
    qkv = 2880 * (32 + 2 * 4) * 64 * 2 + (32 + 8) * 64 * 2   # weight + bias (sharded)
    o_proj = 12 * MIB + 2880 * 2  # 11.25 MiB weight, counted as its 12 MiB segment; row-parallel bias is full size
    norms = 2 * 2880 * 2
    spec = load_config("openai--gpt-oss-120b.json")
    assert layer_weight_bytes(spec.layers[0], spec, Layout(tp=2)) == experts + router + qkv + o_proj + norms
    assert experts == 902_430_720


def test_qwen3_32b_fp8_layer_tp2():
    # h=5120, 64 heads / 8 KV of 128, I=25600, block FP8; q/k norms of head_dim each.
    total = fp8(5120, 5120) + fp8(5120, 4096) + fp8(25600, 5120) + fp8(5120, 12800) + 2 * 128 * 2 + 2 * 5120 * 2
    assert total == 243_874_432
    spec = load_config("Qwen--Qwen3-32B-FP8.json")
    assert layer_weight_bytes(spec.layers[0], spec, Layout(tp=2)) == total


def test_tied_embeddings_live_on_first_and_last_stage():
    # Llama-3.2-3B ties lm_head to embed_tokens; with PP the last stage builds its own copy (vLLM llama.py).
    spec = load_config("meta-llama--Llama-3.2-3B.json")
    embed = 752 * MIB  # 128256 x 3072 x 2 B = 751.5 MiB, counted as its 752 MiB segment
    rope = 131072 * 128 * 2  # each stage builds its own rotary cos/sin cache
    one = stage_weights(spec, Layout(pp=1))[0].weight_bytes
    first, last = (s.weight_bytes for s in stage_weights(spec, Layout(pp=2)))
    assert first + last - one == embed + rope  # one extra embedding (and rotary cache) in the PP=2 layout


@pytest.mark.parametrize("layers,pp,split", [(61, 4, [15, 15, 16, 15]), (62, 4, [15, 16, 16, 15]),
                                             (63, 4, [16, 16, 16, 15]), (80, 3, [27, 27, 26])])
def test_pp_split_matches_vllm(layers, pp, split):
    from tpfit.core.layout import pp_layer_split

    assert list(pp_layer_split(layers, pp)) == split


def test_awq_linear_bytes():
    # 4-bit: n*k/2 packed + fp16 scales per (group of 128 inputs) + 4-bit zeros per group
    assert linear_bytes(4096, 4096, 2, __import__("tpfit.model.spec", fromlist=["QuantSpec"]).QuantSpec(
        method="awq", weight_bits=4, group_size=128, has_zero_points=True)) == 4096 * 4096 // 2 + 4096 * 32 * 2 + 4096 * 32 // 2
