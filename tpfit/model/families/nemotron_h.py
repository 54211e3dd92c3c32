"""Nemotron-H: a hybrid of mamba2 layers (M), attention layers (*) and MLP layers (-), by
`hybrid_override_pattern` (vLLM `nemotron_h.py`)."""

from __future__ import annotations

from tpfit.errors import SpecError
from tpfit.kinds import AttentionKind, MlpKind, StateKind
from tpfit.model.families import Decoder, HFConfig, family
from tpfit.model.families._layers import attention
from tpfit.model.spec import LayerSpec, StateSpec

HYBRID_NOTE = "hybrid model: recurrent state sized with the model dtype; prefix caching 'align' mode assumed"


@family("nemotron_h")
def build(c: HFConfig) -> Decoder:
    pattern = str(c.need("hybrid_override_pattern"))
    if len(pattern) != c.num_hidden_layers:
        raise SpecError(f"hybrid_override_pattern has {len(pattern)} layers, config says {c.num_hidden_layers}",
                        model_id=c.model_id, field="hybrid_override_pattern")
    m_heads, m_head_dim = c.int("mamba_num_heads"), c.int("mamba_head_dim")
    groups, state = c.int("n_groups"), c.int("ssm_state_size")
    mamba = StateSpec(kind=StateKind.MAMBA2, num_heads=m_heads, head_dim=m_head_dim, state_size=state,
                      conv_dim=m_heads * m_head_dim + 2 * groups * state, conv_kernel=c.int("conv_kernel"),
                      n_groups=groups)
    inter = c.int("intermediate_size")
    layers = []
    for ch in pattern:
        if ch == "M":
            layers.append(LayerSpec(attention=AttentionKind.MAMBA, state=mamba, mlp=MlpKind.NONE, norm_vectors=1))
        elif ch == "*":
            layers.append(LayerSpec(**attention(c), mlp=MlpKind.NONE, norm_vectors=1))
        elif ch == "-":
            layers.append(LayerSpec(attention=AttentionKind.NONE, mlp=MlpKind.PLAIN, intermediate_size=inter,
                                    norm_vectors=1))
        else:
            raise SpecError(f"not supported yet: Nemotron-H layer type {ch!r}", model_id=c.model_id,
                            field="hybrid_override_pattern")
    return Decoder(layers=tuple(layers), notes=(HYBRID_NOTE,))
