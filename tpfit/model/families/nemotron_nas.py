"""Nemotron-NAS (DeciLM): per-layer block configs, where attention or MLP may be a no-op or one linear layer
(vLLM `nemotron_nas.py`)."""

from __future__ import annotations

import math

from tpfit.errors import SpecError
from tpfit.kinds import AttentionKind, MlpKind
from tpfit.model.families import Decoder, HFConfig, family
from tpfit.model.families._layers import attention
from tpfit.model.spec import LayerSpec


@family("nemotron-nas")
def build(c: HFConfig) -> Decoder:
    blocks = c.list("block_configs")
    n_layers, heads, hidden = c.num_hidden_layers, c.num_attention_heads, c.hidden_size
    if len(blocks) != n_layers:
        raise SpecError(f"{len(blocks)} block_configs for {n_layers} layers", model_id=c.model_id, field="block_configs")
    layers = []
    for i in range(n_layers):
        block = c.nested(blocks[i], f"block_configs[{i}]")
        att, ffn = block.section("attention"), block.section("ffn")
        if att.get("no_op"):
            attn = dict(attention=AttentionKind.NONE)
        elif att.get("replace_with_linear"):
            attn = dict(attention=AttentionKind.NONE, linear_replacement=True)
        else:
            attn = attention(c, kv=heads // att.int("n_heads_in_group"))
        if ffn.get("no_op"):
            mlp = dict(mlp=MlpKind.NONE)
        elif ffn.get("replace_with_linear"):
            mlp = dict(mlp=MlpKind.NONE, mlp_linear_replacement=True)
        else:
            # vLLM `_ffn_mult_to_intermediate_size`: 2/3 x mult x hidden, rounded up to 256
            inter = int(2 * ffn.float("ffn_mult") * hidden / 3)
            mlp = dict(mlp=MlpKind.GATED, intermediate_size=math.ceil(inter / 256) * 256)
        norms = int(not att.get("no_op")) + int(not ffn.get("no_op"))
        layers.append(LayerSpec(**attn, **mlp, norm_vectors=norms))
    return Decoder(layers=tuple(layers))
