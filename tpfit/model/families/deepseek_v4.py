"""DeepSeek V4 (vLLM 0.33 `vllm/models/deepseek_v4/`): 64 query heads over one 512-wide latent (448 NoPE + 64
RoPE), routed + one shared expert in every layer, and compressed attention. Every layer keeps a sliding-window
cache of its last `sliding_window` (128) latents; a layer whose `compress_ratios` entry is 4 or 128 also caches one
compressed latent per 4 or 128 tokens, with a compressor state, and the ratio-4 layers a lightning indexer (its
keys, `index_head_dim` wide, and its own compressor state). vLLM 0.33 reads the ratio per layer as
`max(1, compress_rates[layer_type])` (models/deepseek_v4/attention.py:237-242): 0 means the window only.

The KV cache is laid out as vLLM lays it out (core/kv.py `deepseek_v4_geometry`). The attention projections (fused
wq_a/wkv, wq_b, grouped wo_a/wo_b) are counted as MLA's q_a/q_b/kv_a/o projections, and the compressor and
indexer weights are left out (approximate, said in the spec's notes). vLLM's own checks apply as they are: 64
heads refuse TP=3 ("Total number of attention heads (64) must be divisible by tensor parallel size (3)",
`ModelConfig.verify_with_parallel_config`, config/model.py 0.33)."""

from __future__ import annotations

from tpfit.kinds import AttentionKind, MlpKind
from tpfit.model.families import Decoder, HFConfig, family
from tpfit.model.families._layers import moe
from tpfit.model.spec import LayerSpec, MLASpec


@family("deepseek_v4")
def build(c: HFConfig) -> Decoder:
    heads = c.num_attention_heads
    rope = c.int("qk_rope_head_dim")
    nope = c.int("qk_nope_head_dim")
    head = c.head_dim  # 512 = nope + rope: the latent vLLM caches (MLAAttentionSpec head_size)
    mla = MLASpec(q_lora_rank=c.int("q_lora_rank", None), kv_lora_rank=head - rope, qk_nope_head_dim=nope,
                  qk_rope_head_dim=rope, v_head_dim=head, index_head_dim=c.int("index_head_dim", 0))
    experts = moe(c, shared=c.int("n_shared_experts", 0) * c.int("moe_intermediate_size"), router_bias=True)
    ratios = c.list("compress_ratios", [])
    window = c.int("sliding_window")
    layers = tuple(LayerSpec(attention=AttentionKind.MLA, num_attention_heads=heads, num_key_value_heads=heads,
                             head_dim=mla.kv_head_size, mlp=MlpKind.MOE, moe=experts,
                             intermediate_size=c.int("moe_intermediate_size"), window_tokens=window,
                             compress_ratio=max(1, int(ratios[i]) if i < len(ratios) and ratios[i] else 1))
                   for i in range(c.num_hidden_layers))
    return Decoder(layers=layers, mla=mla, notes=(
        "deepseek_v4: KV cache laid out as vLLM 0.33's FlashMLA path lays it out (fp8_ds_mla whatever "
        "--kv-cache-dtype says); attention projections counted as MLA's, compressor and indexer weights left out",))
