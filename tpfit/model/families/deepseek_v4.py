"""DeepSeek V4 (vLLM 0.33 `vllm/models/deepseek_v4/`): 64 query heads over one 512-wide latent (448 NoPE + 64
RoPE), routed + one shared expert in every layer, and compressed attention: each layer's `compress_ratios` entry
keeps one latent per 4 or 128 tokens (0: a 128-token sliding window only), with an indexer cache on the ratio-4
layers and a compressor state.

Approximate, and said so in the spec's notes: the layers are modelled as MLA with the full 512-wide latent per
token (an upper bound on vLLM's compressed cache: it stores 1/4 or 1/128 of the tokens on 41 of the 43 layers),
and the attention projections (fused wq_a/wkv, wq_b, grouped wo_a/wo_b) as MLA's q_a/q_b/kv_a/o projections.
vLLM's own checks apply as they are: 64 heads refuse TP=3 ("Total number of attention heads (64) must be
divisible by tensor parallel size (3)", `ModelConfig.verify_with_parallel_config`, config/model.py 0.33)."""

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
                  qk_rope_head_dim=rope, v_head_dim=head)
    experts = moe(c, shared=c.int("n_shared_experts", 0) * c.int("moe_intermediate_size"), router_bias=True)
    ratios = c.list("compress_ratios", [])
    layers = tuple(LayerSpec(attention=AttentionKind.MLA, num_attention_heads=heads, num_key_value_heads=heads,
                             head_dim=mla.kv_head_size, mlp=MlpKind.MOE, moe=experts,
                             intermediate_size=c.int("moe_intermediate_size"))
                   for _ in range(c.num_hidden_layers))
    compressed = sum(1 for r in ratios[:c.num_hidden_layers] if r and r > 1)
    return Decoder(layers=layers, mla=mla, notes=(
        f"deepseek_v4: approximate; KV counted as a full 512-wide latent per token on every layer, an upper bound "
        f"(vLLM keeps one per 4 or 128 tokens on {compressed} of {c.num_hidden_layers} layers), attention "
        "projections as MLA's",))
