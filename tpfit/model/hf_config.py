"""config.json (a Hugging Face model config) -> ModelSpec, the way vLLM's model classes read it.

Pure: takes dicts, returns values. Loaders (folder, hub, catalog) do the reading.
"""

from __future__ import annotations

import math
from typing import Any

from tpfit.errors import SpecError
from tpfit.model.quant import parse_quant
from tpfit.model.spec import LayerSpec, MLASpec, ModelSpec, MoESpec, StateSpec

# vLLM `model_arch_config_convertor.derive_max_model_len_and_key`: the minimum over these keys.
_MAX_LEN_KEYS = (
    "max_position_embeddings", "n_positions", "max_seq_len", "seq_length", "max_target_positions",
    "max_sequence_length", "max_seq_length", "seq_len",
)
# Rope types whose factor is *not* multiplied into the derived maximum.
_ROPE_NO_SCALE = {"su", "longrope", "llama3", "yarn", "deepseek_yarn", "deepseek_llama_scaling", "mrope", "default"}

TIED_BY_DEFAULT = {"gemma2": True}
"""transformers' config default for `tie_word_embeddings` where the config leaves it out (Gemma2Config: True)."""

SUPPORTED_MODEL_TYPES = (
    "llama", "mistral", "qwen2", "qwen3", "phi3", "phi", "gemma2", "mixtral", "qwen3_moe", "gpt_oss",
    "deepseek_v2", "deepseek_v3", "kimi_k2", "nemotron-nas", "nemotron_h", "qwen3_next", "qwen3_vl", "llama4",
)


def _need(cfg: dict, key: str, model_id: str) -> Any:
    if cfg.get(key) is None:
        raise SpecError(f"config.json has no {key!r}; is this a complete model config?", model_id=model_id, field=key)
    return cfg[key]


def served_dtype(cfg: dict, outer: dict) -> str:
    """The dtype vLLM serves under `--dtype auto`: fp32 checkpoints are served in bf16."""
    dtype = cfg.get("torch_dtype") or cfg.get("dtype") or outer.get("torch_dtype") or outer.get("dtype") or "bfloat16"
    dtype = str(dtype).replace("torch.", "")
    return "bfloat16" if dtype == "float32" else dtype


def derive_max_model_len(cfg: dict) -> tuple[int, str]:
    """vLLM's derived max_model_len and the key it came from (2048 when no key exists)."""
    found = [(int(cfg[k]), k) for k in _MAX_LEN_KEYS if isinstance(cfg.get(k), (int, float))]
    if not found:
        return 2048, "default"
    length, key = min(found)
    if isinstance(cfg.get("model_max_length"), (int, float)):
        length, key = int(cfg["model_max_length"]), "model_max_length"
    rope = cfg.get("rope_scaling") or {}
    rope_type = rope.get("rope_type") or rope.get("type")
    if rope and rope_type not in _ROPE_NO_SCALE and "factor" in rope:
        length = int(length * rope["factor"])
    return length, key


def _attention_layer(cfg: dict, kind: str, *, window: int = 0, heads: int, kv: int, head_dim: int, **kw) -> dict:
    return dict(
        attention=kind, num_attention_heads=heads, num_key_value_heads=kv, head_dim=head_dim, window_tokens=window,
        qkv_bias=bool(kw.pop("qkv_bias", cfg.get("attention_bias", False))), **kw,
    )


def make_spec(config: dict, *, model_id: str, sidecar: dict | None = None, source: str = "config") -> ModelSpec:
    """Build a ModelSpec from a config.json dict (and an optional hf_quant_config.json sidecar)."""
    if not isinstance(config, dict):
        raise SpecError("config.json must hold a JSON object", model_id=model_id)
    outer = config
    model_type = str(config.get("model_type", ""))
    cfg = config.get("text_config") if isinstance(config.get("text_config"), dict) else config
    if model_type not in SUPPORTED_MODEL_TYPES:
        known = ", ".join(SUPPORTED_MODEL_TYPES)
        what = f"model_type {model_type!r}" if model_type else "a config without model_type"
        raise SpecError(f"not supported yet: {what} (tpfit models: {known})", model_id=model_id, field="model_type")
    quant = parse_quant(outer.get("quantization_config") or cfg.get("quantization_config"), sidecar, model_id=model_id)

    hidden = int(_need(cfg, "hidden_size", model_id))
    n_layers = int(_need(cfg, "num_hidden_layers", model_id))
    heads = int(_need(cfg, "num_attention_heads", model_id))
    kv = int(cfg.get("num_key_value_heads") or heads)
    head_dim = int(cfg.get("head_dim") or cfg.get("attention_head_dim") or hidden // heads)
    vocab = int(_need(cfg, "vocab_size", model_id))
    tie = cfg.get("tie_word_embeddings", outer.get("tie_word_embeddings"))
    tie = bool(TIED_BY_DEFAULT.get(model_type, False) if tie is None else tie)
    max_len, max_key = derive_max_model_len(cfg)
    notes: list[str] = []
    mla = None
    extra_params = 0
    rotary_dim = int(head_dim * float(cfg.get("partial_rotary_factor", 1.0)))

    builder = _BUILDERS.get(model_type, _build_llama_like)
    layers, extra = builder(cfg, hidden=hidden, n_layers=n_layers, heads=heads, kv=kv, head_dim=head_dim, model_id=model_id)
    if model_type in ("deepseek_v2", "deepseek_v3", "kimi_k2"):
        mla = MLASpec(
            q_lora_rank=cfg.get("q_lora_rank"), kv_lora_rank=int(cfg["kv_lora_rank"]),
            qk_nope_head_dim=int(cfg["qk_nope_head_dim"]), qk_rope_head_dim=int(cfg["qk_rope_head_dim"]),
            v_head_dim=int(cfg["v_head_dim"]),
        )
        kv = heads  # MLA: every query head has its own (latent-derived) K/V; vLLM caches one latent
        head_dim = mla.kv_head_size
        rotary_dim = mla.qk_rope_head_dim
    if model_type == "phi":
        notes.append("phi: LayerNorm with bias, plain GELU MLP with biases, partial rotary")
    if "vision_config" in outer:
        extra_params += _vision_params(outer["vision_config"])
        notes.append(
            f"vision tower ({extra_params / 1e6:.0f}M params) counted on the first pipeline stage, "
            "split by TP like the text layers (approximate)"
        )
    extra_params += extra
    if model_type in ("nemotron_h", "qwen3_next"):
        notes.append("hybrid model: recurrent state sized with the model dtype; prefix caching 'align' mode assumed")
    return ModelSpec(
        model_id=model_id,
        architecture=str((outer.get("architectures") or [model_type])[0]),
        model_type=model_type,
        dtype=served_dtype(cfg, outer),
        hidden_size=hidden,
        num_hidden_layers=n_layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        head_dim=head_dim,
        vocab_size=vocab,
        tie_word_embeddings=tie,
        max_model_len=max_len,
        max_len_key=max_key,
        layers=tuple(layers),
        mla=mla,
        quant=quant,
        rope_cache_positions=_rope_positions(cfg, max_len),
        rotary_dim=rotary_dim,
        extra_replicated_params=extra_params,
        source=source,
        notes=tuple(notes),
    )


def _rope_positions(cfg: dict, max_len: int) -> int:
    """Rows of vLLM's rotary cos/sin cache: max_position_embeddings (x factor for YaRN)."""
    positions = int(cfg.get("max_position_embeddings") or max_len)
    rope = cfg.get("rope_scaling") or {}
    if (rope.get("rope_type") or rope.get("type")) in ("yarn", "deepseek_yarn"):
        positions = int(rope.get("original_max_position_embeddings", positions) * rope.get("factor", 1))
    return positions


def _vision_params(vc: dict) -> int:
    """Rough parameter count of a ViT tower: depth x (4 h^2 attention + 2 h I MLP) + patch embedding."""
    h = int(vc.get("hidden_size") or vc.get("embed_dim") or 0)
    inter = int(vc.get("intermediate_size") or 4 * h)
    depth = int(vc.get("depth") or vc.get("num_hidden_layers") or 0)
    patch = int(vc.get("patch_size", 14))
    out = int(vc.get("out_hidden_size") or vc.get("projector_output_dim") or h)
    return depth * (4 * h * h + 2 * h * inter) + 3 * patch * patch * h * int(vc.get("temporal_patch_size", 1)) + h * out * 4


# ---- builders: one per family, each returns (layers, extra params outside the stack) ---------


def _build_llama_like(cfg: dict, *, hidden, n_layers, heads, kv, head_dim, model_id) -> tuple[list[LayerSpec], int]:
    """Llama, Mistral, Qwen2/3, Phi-3/4, Yi, CodeLlama: GQA + gated MLP, same every layer."""
    inter = int(_need(cfg, "intermediate_size", model_id))
    model_type = cfg.get("model_type")
    qkv_bias = model_type == "qwen2" or bool(cfg.get("attention_bias", False))
    layer_types = cfg.get("layer_types") or []
    window = int(cfg.get("sliding_window") or 0)
    layers = []
    for i in range(n_layers):
        sliding = bool(layer_types) and layer_types[i] == "sliding_attention" and window > 0
        layers.append(LayerSpec(
            **_attention_layer(cfg, "sliding" if sliding else "full", window=window if sliding else 0,
                               heads=heads, kv=kv, head_dim=head_dim, qkv_bias=qkv_bias),
            mlp="gated", intermediate_size=inter, mlp_bias=bool(cfg.get("mlp_bias", False)),
            qk_norm=model_type in ("qwen3", "qwen3_vl_text"),
        ))
    return layers, 0


def _build_phi(cfg, *, hidden, n_layers, heads, kv, head_dim, model_id):
    inter = int(_need(cfg, "intermediate_size", model_id))
    layer = LayerSpec(**_attention_layer(cfg, "full", heads=heads, kv=kv, head_dim=head_dim, qkv_bias=True),
                      o_bias=True, mlp="plain", intermediate_size=inter, mlp_bias=True, norm_vectors=2)
    return [layer] * n_layers, 2 * hidden  # final LayerNorm has a bias too


def _build_gemma2(cfg, *, hidden, n_layers, heads, kv, head_dim, model_id):
    inter = int(_need(cfg, "intermediate_size", model_id))
    window = int(cfg.get("sliding_window") or 0)
    layers = []
    for i in range(n_layers):
        # Gemma-2 alternates: even layers use the sliding window (vLLM gemma2.py: layer_idx % 2 == 0).
        kind = "sliding" if (window and i % 2 == 0) else "full"
        layers.append(LayerSpec(**_attention_layer(cfg, kind, window=window if kind == "sliding" else 0,
                                                   heads=heads, kv=kv, head_dim=head_dim),
                                mlp="gated", intermediate_size=inter, norm_vectors=4))
    return layers, 0


def _moe_from(cfg: dict, model_id: str, *, shared: int = 0, shared_gate: bool = False, router_bias: bool = False) -> MoESpec:
    return MoESpec(
        num_experts=int(cfg.get("num_local_experts") or cfg.get("num_experts") or cfg.get("n_routed_experts")),
        num_experts_per_tok=int(cfg.get("num_experts_per_tok") or cfg.get("experts_per_token") or 1),
        moe_intermediate_size=int(cfg.get("moe_intermediate_size") or _need(cfg, "intermediate_size", model_id)),
        shared_intermediate_size=shared, shared_expert_gate=shared_gate, router_bias=router_bias,
    )


def _build_mixtral(cfg, *, hidden, n_layers, heads, kv, head_dim, model_id):
    moe = _moe_from(cfg, model_id)
    layer = LayerSpec(**_attention_layer(cfg, "full", heads=heads, kv=kv, head_dim=head_dim), mlp="moe", moe=moe)
    return [layer] * n_layers, 0


def _build_qwen3_moe(cfg, *, hidden, n_layers, heads, kv, head_dim, model_id):
    moe = _moe_from(cfg, model_id)
    dense_layers = set(cfg.get("mlp_only_layers") or [])
    step = int(cfg.get("decoder_sparse_step", 1))
    layers = []
    for i in range(n_layers):
        is_moe = i not in dense_layers and (i + 1) % step == 0
        layers.append(LayerSpec(**_attention_layer(cfg, "full", heads=heads, kv=kv, head_dim=head_dim),
                                mlp="moe" if is_moe else "gated", moe=moe if is_moe else None,
                                intermediate_size=int(cfg.get("intermediate_size", 0)), qk_norm=True))
    return layers, 0


def _build_gpt_oss(cfg, *, hidden, n_layers, heads, kv, head_dim, model_id):
    moe = _moe_from(cfg, model_id, router_bias=True)
    window = int(cfg.get("sliding_window") or 0)
    types = cfg.get("layer_types") or ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(n_layers)]
    layers = []
    for i in range(n_layers):
        kind = "sliding" if types[i] == "sliding_attention" else "full"
        layers.append(LayerSpec(**_attention_layer(cfg, kind, window=window if kind == "sliding" else 0,
                                                   heads=heads, kv=kv, head_dim=head_dim, qkv_bias=True),
                                o_bias=True, mlp="moe", moe=moe))
    # attention sinks: one fp32-sized scalar per head per layer; tiny, counted as extra
    return layers, n_layers * heads


def _build_deepseek(cfg, *, hidden, n_layers, heads, kv, head_dim, model_id):
    shared = int(cfg.get("n_shared_experts") or 0) * int(cfg["moe_intermediate_size"])
    moe = _moe_from(cfg, model_id, shared=shared, router_bias=cfg.get("topk_method") == "noaux_tc")
    first_dense = int(cfg.get("first_k_dense_replace") or 0)
    freq = int(cfg.get("moe_layer_freq") or 1)
    inter = int(_need(cfg, "intermediate_size", model_id))
    layers = []
    for i in range(n_layers):
        is_moe = i >= first_dense and i % freq == 0
        layers.append(LayerSpec(attention="mla", num_attention_heads=heads, num_key_value_heads=heads,
                                head_dim=int(cfg["kv_lora_rank"]) + int(cfg["qk_rope_head_dim"]),
                                mlp="moe" if is_moe else "gated", moe=moe if is_moe else None,
                                intermediate_size=inter))
    return layers, 0


def _build_nemotron_nas(cfg, *, hidden, n_layers, heads, kv, head_dim, model_id):
    blocks = _need(cfg, "block_configs", model_id)
    if len(blocks) != n_layers:
        raise SpecError(f"{len(blocks)} block_configs for {n_layers} layers", model_id=model_id, field="block_configs")
    layers = []
    for block in blocks:
        att, ffn = block["attention"], block["ffn"]
        if att.get("no_op"):
            attn = dict(attention="none")
        elif att.get("replace_with_linear"):
            attn = dict(attention="none", linear_replacement=True)
        else:
            group = int(att["n_heads_in_group"])
            attn = _attention_layer(cfg, "full", heads=heads, kv=heads // group, head_dim=head_dim)
        if ffn.get("no_op"):
            mlp = dict(mlp="none")
        elif ffn.get("replace_with_linear"):
            mlp = dict(mlp="none", mlp_linear_replacement=True)
        else:
            # vLLM decilm/nemotron_nas.py `_ffn_mult_to_intermediate_size`: 2/3 x mult x hidden, up to 256
            inter = int(2 * float(ffn["ffn_mult"]) * hidden / 3)
            mlp = dict(mlp="gated", intermediate_size=math.ceil(inter / 256) * 256)
        norms = int(not att.get("no_op")) + int(not ffn.get("no_op"))
        layers.append(LayerSpec(**attn, **mlp, norm_vectors=norms))
    return layers, 0


def _build_nemotron_h(cfg, *, hidden, n_layers, heads, kv, head_dim, model_id):
    pattern = str(_need(cfg, "hybrid_override_pattern", model_id))
    if len(pattern) != n_layers:
        raise SpecError(f"hybrid_override_pattern has {len(pattern)} layers, config says {n_layers}",
                        model_id=model_id, field="hybrid_override_pattern")
    m_heads, m_head_dim = int(cfg["mamba_num_heads"]), int(cfg["mamba_head_dim"])
    groups, state = int(cfg["n_groups"]), int(cfg["ssm_state_size"])
    mamba = StateSpec(kind="mamba2", num_heads=m_heads, head_dim=m_head_dim, state_size=state,
                      conv_dim=m_heads * m_head_dim + 2 * groups * state, conv_kernel=int(cfg["conv_kernel"]),
                      n_groups=groups)
    inter = int(cfg["intermediate_size"])
    layers = []
    for ch in pattern:
        if ch == "M":
            layers.append(LayerSpec(attention="mamba", state=mamba, mlp="none", norm_vectors=1))
        elif ch == "*":
            layers.append(LayerSpec(**_attention_layer(cfg, "full", heads=heads, kv=kv, head_dim=head_dim),
                                    mlp="none", norm_vectors=1))
        elif ch == "-":
            layers.append(LayerSpec(attention="none", mlp="plain", intermediate_size=inter, norm_vectors=1))
        else:
            raise SpecError(f"not supported yet: Nemotron-H layer type {ch!r}", model_id=model_id,
                            field="hybrid_override_pattern")
    return layers, 0


def _build_qwen3_next(cfg, *, hidden, n_layers, heads, kv, head_dim, model_id):
    interval = int(cfg.get("full_attention_interval", 4))
    k_heads, v_heads = int(cfg["linear_num_key_heads"]), int(cfg["linear_num_value_heads"])
    k_dim, v_dim = int(cfg["linear_key_head_dim"]), int(cfg["linear_value_head_dim"])
    gdn = StateSpec(kind="gdn", num_heads=v_heads, head_dim=v_dim, state_size=k_dim,
                    conv_dim=2 * k_heads * k_dim + v_heads * v_dim, conv_kernel=int(cfg["linear_conv_kernel_dim"]),
                    num_k_heads=k_heads)
    moe = _moe_from(cfg, model_id, shared=int(cfg.get("shared_expert_intermediate_size") or 0), shared_gate=True)
    layers = []
    for i in range(n_layers):
        if (i + 1) % interval == 0:
            attn = _attention_layer(cfg, "full", heads=heads, kv=kv, head_dim=head_dim, gated_attention=True, qk_norm=True)
        else:
            attn = dict(attention="gdn", state=gdn)
        layers.append(LayerSpec(**attn, mlp="moe", moe=moe))
    return layers, 0


def _build_llama4(cfg, *, hidden, n_layers, heads, kv, head_dim, model_id):
    chunk = int(cfg.get("attention_chunk_size") or 0)
    # HF Llama4TextConfig: an empty no_rope_layers means every 4th layer is NoPE (global attention).
    nope_layers = cfg.get("no_rope_layers") or [int((i + 1) % 4 != 0) for i in range(n_layers)]
    step = int(cfg.get("interleave_moe_layer_step", 1))
    moe = _moe_from(cfg, model_id, shared=int(cfg["intermediate_size"]))
    layers = []
    for i in range(n_layers):
        # Llama-4: rope layers use chunked local attention; NoPE layers (no_rope_layers[i] == 0) are global.
        local = bool(chunk and nope_layers[i])
        is_moe = (i + 1) % step == 0
        layers.append(LayerSpec(
            **_attention_layer(cfg, "chunked" if local else "full", window=chunk if local else 0,
                               heads=heads, kv=kv, head_dim=head_dim),
            mlp="moe" if is_moe else "gated", moe=moe if is_moe else None,
            intermediate_size=int(cfg.get("intermediate_size_mlp") or cfg["intermediate_size"]),
        ))
    return layers, 0


_BUILDERS = {
    "phi": _build_phi,
    "gemma2": _build_gemma2,
    "mixtral": _build_mixtral,
    "qwen3_moe": _build_qwen3_moe,
    "gpt_oss": _build_gpt_oss,
    "deepseek_v2": _build_deepseek,
    "deepseek_v3": _build_deepseek,
    "kimi_k2": _build_deepseek,
    "nemotron-nas": _build_nemotron_nas,
    "nemotron_h": _build_nemotron_h,
    "qwen3_next": _build_qwen3_next,
    "llama4": _build_llama4,
}

