"""config.json (a Hugging Face model config) -> ModelSpec, the way vLLM's model classes read it: what every
family shares here, the layers by the family's module (tpfit/model/families).

Pure: takes dicts, returns values. Loaders (folder, hub, catalog) do the reading.
"""

from __future__ import annotations

from tpfit.errors import SpecError
from tpfit.model.families import HFConfig, find_family, model_types
from tpfit.model.quant import parse_quant
from tpfit.model.spec import ModelSpec

# vLLM `model_arch_config_convertor.derive_max_model_len_and_key`: the minimum over these keys.
_MAX_LEN_KEYS = (
    "max_position_embeddings", "n_positions", "max_seq_len", "seq_length", "max_target_positions",
    "max_sequence_length", "max_seq_length", "seq_len",
)
# Rope types whose factor is *not* multiplied into the derived maximum.
_ROPE_NO_SCALE = {"su", "longrope", "llama3", "yarn", "deepseek_yarn", "deepseek_llama_scaling", "mrope", "default"}

def config_dtype(cfg: dict, outer: dict) -> str:
    """The checkpoint's dtype as its config names it ("" where it names none)."""
    dtype = cfg.get("torch_dtype") or cfg.get("dtype") or outer.get("torch_dtype") or outer.get("dtype") or ""
    return str(dtype).replace("torch.", "")


def served_dtype(cfg: dict, outer: dict) -> str:
    """The dtype vLLM serves under `--dtype auto` (from 0.9.1; resolve_model has the older rule): fp32 checkpoints
    are served in bf16."""
    dtype = config_dtype(cfg, outer) or "bfloat16"
    return "bfloat16" if dtype == "float32" else dtype


_ROPE_NO_SCALE_BEFORE_0_30 = {"su", "longrope", "llama3"}
"""The same before vLLM 0.30, which multiplied a YaRN factor in too: into original_max_position_embeddings for
"yarn", into the maximum for its other variants (0.6.0 config.py, 0.29.0 config/model.py `_get_and_verify_max_len`;
0.30.0 stopped: "YaRN variants leave max_position_embeddings already scaled", vLLM PR 56446)."""


def derive_max_model_len(cfg: dict, *, yarn_rescaled: bool = False) -> tuple[int, str]:
    """vLLM's derived max_model_len and the key it came from (2048 when no key exists); `yarn_rescaled`: as vLLM
    before 0.30 derived it."""
    found = [(int(cfg[k]), k) for k in _MAX_LEN_KEYS if isinstance(cfg.get(k), (int, float))]
    if not found:
        return 2048, "default"
    length, key = min(found)
    if isinstance(cfg.get("model_max_length"), (int, float)):
        length, key = int(cfg["model_max_length"]), "model_max_length"
    rope = cfg.get("rope_scaling") or {}
    rope_type = rope.get("rope_type") or rope.get("type")
    unscaled = _ROPE_NO_SCALE_BEFORE_0_30 if yarn_rescaled else _ROPE_NO_SCALE
    if rope and rope_type not in unscaled and "factor" in rope:
        if yarn_rescaled and rope_type == "yarn" and isinstance(rope.get("original_max_position_embeddings"), int):
            length = rope["original_max_position_embeddings"]
        length = int(length * rope["factor"])
    return length, key


def make_spec(config: dict, *, model_id: str, sidecar: dict | None = None, source: str = "config") -> ModelSpec:
    """Build a ModelSpec from a config.json dict (and an optional hf_quant_config.json sidecar)."""
    if not isinstance(config, dict):
        raise SpecError("config.json must hold a JSON object", model_id=model_id)
    outer = config
    model_type = str(config.get("model_type", ""))
    cfg = config.get("text_config") if isinstance(config.get("text_config"), dict) else config
    build = find_family(model_type)
    if build is None:
        what = f"model_type {model_type!r}" if model_type else "a config without model_type"
        raise SpecError(f"not supported yet: {what} (tpfit models: {', '.join(model_types())})", model_id=model_id,
                        field="model_type")
    quant = parse_quant(outer.get("quantization_config") or cfg.get("quantization_config"), sidecar, model_id=model_id)
    c = HFConfig(text=cfg, outer=outer, model_id=model_id, model_type=model_type)
    decoder = build(c)
    heads, kv, head_dim = c.num_attention_heads, c.num_key_value_heads, c.head_dim
    rotary_dim = int(head_dim * c.float("partial_rotary_factor", 1.0))
    if decoder.mla:
        kv = heads  # MLA: every query head has its own (latent-derived) K/V; vLLM caches one latent
        head_dim = decoder.mla.kv_head_size
        rotary_dim = decoder.mla.qk_rope_head_dim
    tie = cfg.get("tie_word_embeddings", outer.get("tie_word_embeddings"))
    max_len, max_key = derive_max_model_len(cfg)
    before_0_30, _ = derive_max_model_len(cfg, yarn_rescaled=True)
    notes = list(decoder.notes)
    extra_params = 0
    if "vision_config" in outer:
        extra_params += _vision_params(outer["vision_config"])
        notes.append(
            f"vision tower ({extra_params / 1e6:.0f}M params) counted on the first pipeline stage, "
            "split by TP like the text layers (approximate)"
        )
    return ModelSpec(
        model_id=model_id,
        architecture=str((outer.get("architectures") or [model_type])[0]),
        model_type=model_type,
        dtype=served_dtype(cfg, outer),
        checkpoint_float32=config_dtype(cfg, outer) == "float32",
        hidden_size=c.hidden_size,
        num_hidden_layers=c.num_hidden_layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        head_dim=head_dim,
        vocab_size=c.int("vocab_size"),
        tie_word_embeddings=decoder.tied_by_default if tie is None else bool(tie),
        max_model_len=max_len,
        max_len_key=max_key,
        max_model_len_before_0_30=before_0_30 if before_0_30 != max_len else 0,
        layers=decoder.layers,
        mla=decoder.mla,
        quant=quant,
        rope_cache_positions=_rope_positions(cfg, max_len),
        rotary_dim=rotary_dim,
        extra_replicated_params=extra_params + decoder.extra_params,
        vision_params=extra_params,
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
