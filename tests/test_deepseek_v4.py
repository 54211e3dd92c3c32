"""DeepSeek V4 (deepseek_v4, vLLM 0.33's vllm/models/deepseek_v4): loads from the real config, its experts' NVFP4
format is read, and vLLM's own head check refuses TP=3."""

from __future__ import annotations

from tests.conftest import load_config
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
    assert any("approximate" in note for note in spec.notes)


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
