"""gpt-oss: alternating sliding/full attention with sinks and biases, MoE in every layer (vLLM `gpt_oss.py`)."""

from __future__ import annotations

from tpfit.kinds import AttentionKind, MlpKind
from tpfit.model.families import Decoder, HFConfig, family
from tpfit.model.families._layers import attention, moe
from tpfit.model.spec import LayerSpec


@family("gpt_oss")
def build(c: HFConfig) -> Decoder:
    experts = moe(c, router_bias=True)
    n_layers = c.num_hidden_layers
    window = c.int("sliding_window", 0)
    types = c.list("layer_types", []) or ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(n_layers)]
    layers = []
    for i in range(n_layers):
        sliding = types[i] == "sliding_attention"
        layers.append(LayerSpec(**attention(c, AttentionKind.SLIDING if sliding else AttentionKind.FULL,
                                            window=window if sliding else 0, qkv_bias=True),
                                o_bias=True, mlp=MlpKind.MOE, moe=experts))
    # attention sinks: one fp32-sized scalar per head per layer; tiny, counted as extra
    return Decoder(layers=tuple(layers), extra_params=n_layers * c.num_attention_heads)
