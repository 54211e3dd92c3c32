"""Qwen3-MoE: MoE every `decoder_sparse_step` layers except `mlp_only_layers`, QK norm (vLLM `qwen3_moe.py`)."""

from __future__ import annotations

from tpfit.kinds import MlpKind
from tpfit.model.families import Decoder, HFConfig, family
from tpfit.model.families._layers import attention, moe
from tpfit.model.spec import LayerSpec


@family("qwen3_moe")
def build(c: HFConfig) -> Decoder:
    experts = moe(c)
    dense_layers = set(c.list("mlp_only_layers", []))
    step = c.int("decoder_sparse_step", 1)
    layers = []
    for i in range(c.num_hidden_layers):
        is_moe = i not in dense_layers and (i + 1) % step == 0
        layers.append(LayerSpec(**attention(c), mlp=MlpKind.MOE if is_moe else MlpKind.GATED,
                                moe=experts if is_moe else None, intermediate_size=c.int("intermediate_size", 0),
                                qk_norm=True))
    return Decoder(layers=tuple(layers))
