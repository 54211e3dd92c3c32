"""Llama-4: chunked local attention on RoPE layers, global attention on NoPE layers, MoE every
`interleave_moe_layer_step` layers with a shared expert (vLLM `llama4.py`)."""

from __future__ import annotations

from tpfit.kinds import AttentionKind, MlpKind
from tpfit.model.families import Decoder, HFConfig, family
from tpfit.model.families._layers import attention, moe
from tpfit.model.spec import LayerSpec


@family("llama4")
def build(c: HFConfig) -> Decoder:
    n_layers = c.num_hidden_layers
    chunk = c.int("attention_chunk_size", 0)
    # HF Llama4TextConfig: an empty no_rope_layers means every 4th layer is NoPE (global attention)
    nope_layers = c.list("no_rope_layers", []) or [int((i + 1) % 4 != 0) for i in range(n_layers)]
    step = c.int("interleave_moe_layer_step", 1)
    experts = moe(c, shared=c.int("intermediate_size"))
    inter = c.int("intermediate_size_mlp", 0) or c.int("intermediate_size")
    layers = []
    for i in range(n_layers):
        # RoPE layers use chunked local attention; NoPE layers (no_rope_layers[i] == 0) are global
        local = bool(chunk and nope_layers[i])
        is_moe = (i + 1) % step == 0
        layers.append(LayerSpec(
            **attention(c, AttentionKind.CHUNKED if local else AttentionKind.FULL, window=chunk if local else 0),
            mlp=MlpKind.MOE if is_moe else MlpKind.GATED, moe=experts if is_moe else None, intermediate_size=inter,
        ))
    return Decoder(layers=tuple(layers))
