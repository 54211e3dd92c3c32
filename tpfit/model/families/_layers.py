"""Layer pieces several families share: a GQA attention layer's fields, an MoE block's shapes."""

from __future__ import annotations

from tpfit.kinds import AttentionKind
from tpfit.model.families import HFConfig
from tpfit.model.spec import MoESpec


def attention(c: HFConfig, kind: AttentionKind = AttentionKind.FULL, *, window: int = 0, kv: int | None = None,
              **kw) -> dict:
    """LayerSpec fields of a Q/K/V attention layer with the config's heads and head_dim."""
    return dict(
        attention=kind, num_attention_heads=c.num_attention_heads,
        num_key_value_heads=c.num_key_value_heads if kv is None else kv, head_dim=c.head_dim, window_tokens=window,
        qkv_bias=bool(kw.pop("qkv_bias", c.get("attention_bias", False))), **kw,
    )


def moe(c: HFConfig, *, shared: int = 0, shared_gate: bool = False, router_bias: bool = False) -> MoESpec:
    """Routed experts (+ shared ones), under the names the configs use for them."""
    return MoESpec(
        num_experts=c.first_int("num_local_experts", "num_experts", "n_routed_experts"),
        num_experts_per_tok=c.first_int("num_experts_per_tok", "experts_per_token", default=1),
        moe_intermediate_size=c.int("moe_intermediate_size", 0) or c.int("intermediate_size"),
        shared_intermediate_size=shared, shared_expert_gate=shared_gate, router_bias=router_bias,
    )
