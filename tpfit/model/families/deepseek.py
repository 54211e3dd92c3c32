"""DeepSeek V2/V3 and Kimi K2: multi-head latent attention, dense first layers then routed + shared experts
(vLLM `deepseek_v2.py`)."""

from __future__ import annotations

from tpfit.kinds import AttentionKind, MlpKind
from tpfit.model.families import Decoder, HFConfig, family
from tpfit.model.families._layers import moe
from tpfit.model.spec import LayerSpec, MLASpec


@family("deepseek_v2", "deepseek_v3", "kimi_k2")
def build(c: HFConfig) -> Decoder:
    heads = c.num_attention_heads
    mla = MLASpec(q_lora_rank=c.int("q_lora_rank", None), kv_lora_rank=c.int("kv_lora_rank"),
                  qk_nope_head_dim=c.int("qk_nope_head_dim"), qk_rope_head_dim=c.int("qk_rope_head_dim"),
                  v_head_dim=c.int("v_head_dim"))
    shared = c.int("n_shared_experts", 0) * c.int("moe_intermediate_size")
    experts = moe(c, shared=shared, router_bias=c.get("topk_method") == "noaux_tc")
    first_dense = c.int("first_k_dense_replace", 0)
    freq = c.int("moe_layer_freq", 0) or 1
    inter = c.int("intermediate_size")
    layers = []
    for i in range(c.num_hidden_layers):
        is_moe = i >= first_dense and i % freq == 0
        layers.append(LayerSpec(attention=AttentionKind.MLA, num_attention_heads=heads, num_key_value_heads=heads,
                                head_dim=mla.kv_head_size, mlp=MlpKind.MOE if is_moe else MlpKind.GATED,
                                moe=experts if is_moe else None, intermediate_size=inter))
    return Decoder(layers=tuple(layers), mla=mla)
