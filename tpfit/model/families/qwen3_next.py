"""Qwen3-Next: gated delta-net layers with a gated full-attention layer every `full_attention_interval`, MoE
with a gated shared expert (vLLM `qwen3_next.py`)."""

from __future__ import annotations

from tpfit.kinds import AttentionKind, MlpKind, StateKind
from tpfit.model.families import Decoder, HFConfig, family
from tpfit.model.families._layers import attention, moe
from tpfit.model.families.nemotron_h import HYBRID_NOTE
from tpfit.model.spec import LayerSpec, StateSpec


@family("qwen3_next")
def build(c: HFConfig) -> Decoder:
    interval = c.int("full_attention_interval", 4)
    k_heads, v_heads = c.int("linear_num_key_heads"), c.int("linear_num_value_heads")
    k_dim, v_dim = c.int("linear_key_head_dim"), c.int("linear_value_head_dim")
    gdn = StateSpec(kind=StateKind.GDN, num_heads=v_heads, head_dim=v_dim, state_size=k_dim,
                    conv_dim=2 * k_heads * k_dim + v_heads * v_dim, conv_kernel=c.int("linear_conv_kernel_dim"),
                    num_k_heads=k_heads)
    experts = moe(c, shared=c.int("shared_expert_intermediate_size", 0), shared_gate=True)
    layers = []
    for i in range(c.num_hidden_layers):
        if (i + 1) % interval == 0:
            mixer = attention(c, gated_attention=True, qk_norm=True)
        else:
            mixer = dict(attention=AttentionKind.GDN, state=gdn)
        layers.append(LayerSpec(**mixer, mlp=MlpKind.MOE, moe=experts))
    return Decoder(layers=tuple(layers), notes=(HYBRID_NOTE,))
