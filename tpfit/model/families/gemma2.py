"""Gemma-2: sliding-window and full attention alternate, four norms per layer (vLLM `gemma2.py`)."""

from __future__ import annotations

from tpfit.kinds import AttentionKind, MlpKind
from tpfit.model.families import Decoder, HFConfig, family
from tpfit.model.families._layers import attention
from tpfit.model.spec import LayerSpec


@family("gemma2")
def build(c: HFConfig) -> Decoder:
    inter = c.int("intermediate_size")
    window = c.int("sliding_window", 0)
    layers = []
    for i in range(c.num_hidden_layers):
        # even layers use the sliding window (vLLM gemma2.py: layer_idx % 2 == 0)
        sliding = bool(window) and i % 2 == 0
        layers.append(LayerSpec(**attention(c, AttentionKind.SLIDING if sliding else AttentionKind.FULL,
                                            window=window if sliding else 0),
                                mlp=MlpKind.GATED, intermediate_size=inter, norm_vectors=4))
    return Decoder(layers=tuple(layers), tied_by_default=True)  # Gemma2Config ties the embeddings by default
