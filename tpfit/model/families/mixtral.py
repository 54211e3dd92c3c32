"""Mixtral: every layer's MLP is a sparse MoE (vLLM `mixtral.py`)."""

from __future__ import annotations

from tpfit.kinds import MlpKind
from tpfit.model.families import Decoder, HFConfig, family
from tpfit.model.families._layers import attention, moe
from tpfit.model.spec import LayerSpec


@family("mixtral")
def build(c: HFConfig) -> Decoder:
    layer = LayerSpec(**attention(c), mlp=MlpKind.MOE, moe=moe(c))
    return Decoder(layers=(layer,) * c.num_hidden_layers)
