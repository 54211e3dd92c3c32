"""Phi-1/2: LayerNorm with bias, a plain GELU MLP with biases, partial rotary (vLLM `phi.py`)."""

from __future__ import annotations

from tpfit.kinds import MlpKind
from tpfit.model.families import Decoder, HFConfig, family
from tpfit.model.families._layers import attention
from tpfit.model.spec import LayerSpec


@family("phi")
def build(c: HFConfig) -> Decoder:
    layer = LayerSpec(**attention(c, qkv_bias=True), o_bias=True, mlp=MlpKind.PLAIN,
                      intermediate_size=c.int("intermediate_size"), mlp_bias=True, norm_vectors=2)
    return Decoder(layers=(layer,) * c.num_hidden_layers,
                   extra_params=2 * c.hidden_size,  # the final LayerNorm has a bias too
                   notes=("phi: LayerNorm with bias, plain GELU MLP with biases, partial rotary",))
