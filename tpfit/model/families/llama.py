"""Llama, Mistral, Qwen2/3, Phi-3/4 (and Yi, CodeLlama): GQA attention + gated MLP, the same every layer
(vLLM `llama.py`, `qwen2.py`, `qwen3.py`, `phi3.py`)."""

from __future__ import annotations

from tpfit.kinds import AttentionKind, MlpKind
from tpfit.model.families import Decoder, HFConfig, family
from tpfit.model.families._layers import attention
from tpfit.model.spec import LayerSpec


@family("llama", "mistral", "qwen2", "qwen3", "phi3", "qwen3_vl")
def build(c: HFConfig) -> Decoder:
    inter = c.int("intermediate_size")
    model_type = c.get("model_type")
    qkv_bias = model_type == "qwen2" or bool(c.get("attention_bias", False))
    layer_types = c.list("layer_types", [])
    window = c.int("sliding_window", 0)
    layers = []
    for i in range(c.num_hidden_layers):
        sliding = bool(layer_types) and layer_types[i] == "sliding_attention" and window > 0
        layers.append(LayerSpec(
            **attention(c, AttentionKind.SLIDING if sliding else AttentionKind.FULL, window=window if sliding else 0,
                        qkv_bias=qkv_bias),
            mlp=MlpKind.GATED, intermediate_size=inter, mlp_bias=bool(c.get("mlp_bias", False)),
            qk_norm=model_type in ("qwen3", "qwen3_vl_text"),
        ))
    return Decoder(layers=tuple(layers))
