"""Is this config.json something tpfit can plan with? Every field the core reads, checked at the edge.

Pure (dicts in, a ModelSpec or a SpecError out). The loaders (folder, hub, catalog) call
`make_checked_spec`; a failure names the file, the field, the value and what would work, in one line:

    /tmp/m/config.json: num_attention_heads is 0; use a whole number from 1 to 1024

Types follow the HF configs: counts are JSON integers (not 32.5, not "32", not true). Bounds live in
`tpfit/limits.py`. Anything the family builders still trip on is turned into the same kind of line.
"""

from __future__ import annotations

from typing import Any

from tpfit import limits
from tpfit.errors import SpecError

# field -> (smallest, largest); None means the field may be absent or null
_REQUIRED_COUNTS = {
    "hidden_size": (1, limits.MAX_HIDDEN_SIZE),
    "num_hidden_layers": (1, limits.MAX_LAYERS),
    "num_attention_heads": (1, limits.MAX_HEADS),
    "vocab_size": (1, limits.MAX_VOCAB),
}
_OPTIONAL_COUNTS = {
    "num_key_value_heads": (1, limits.MAX_HEADS),
    "head_dim": (1, limits.MAX_HEAD_DIM),
    "attention_head_dim": (1, limits.MAX_HEAD_DIM),
    "intermediate_size": (0, limits.MAX_INTERMEDIATE_SIZE),
    "intermediate_size_mlp": (1, limits.MAX_INTERMEDIATE_SIZE),
    "moe_intermediate_size": (1, limits.MAX_INTERMEDIATE_SIZE),
    "shared_expert_intermediate_size": (0, limits.MAX_INTERMEDIATE_SIZE),
    "num_local_experts": (1, limits.MAX_EXPERTS),
    "num_experts": (0, limits.MAX_EXPERTS),
    "n_routed_experts": (1, limits.MAX_EXPERTS),
    "num_experts_per_tok": (1, limits.MAX_EXPERTS),
    "experts_per_token": (1, limits.MAX_EXPERTS),
    "n_shared_experts": (0, limits.MAX_EXPERTS),
    "first_k_dense_replace": (0, limits.MAX_LAYERS),
    "moe_layer_freq": (1, limits.MAX_LAYERS),
    "decoder_sparse_step": (1, limits.MAX_LAYERS),
    "interleave_moe_layer_step": (1, limits.MAX_LAYERS),
    "full_attention_interval": (1, limits.MAX_LAYERS),
    "max_position_embeddings": (1, limits.MAX_POSITIONS),
    "n_positions": (1, limits.MAX_POSITIONS),
    "max_seq_len": (1, limits.MAX_POSITIONS),
    "seq_length": (1, limits.MAX_POSITIONS),
    "max_target_positions": (1, limits.MAX_POSITIONS),
    "max_sequence_length": (1, limits.MAX_POSITIONS),
    "max_seq_length": (1, limits.MAX_POSITIONS),
    "seq_len": (1, limits.MAX_POSITIONS),
    "model_max_length": (1, limits.MAX_POSITIONS),
    "sliding_window": (0, limits.MAX_POSITIONS),
    "attention_chunk_size": (0, limits.MAX_POSITIONS),
    "kv_lora_rank": (1, limits.MAX_HEAD_DIM),
    "q_lora_rank": (1, limits.MAX_HIDDEN_SIZE),
    "qk_nope_head_dim": (1, limits.MAX_HEAD_DIM),
    "qk_rope_head_dim": (1, limits.MAX_HEAD_DIM),
    "v_head_dim": (1, limits.MAX_HEAD_DIM),
    "mamba_num_heads": (1, limits.MAX_HEADS),
    "mamba_head_dim": (1, limits.MAX_HEAD_DIM),
    "n_groups": (1, limits.MAX_HEADS),
    "ssm_state_size": (1, limits.MAX_HEAD_DIM),
    "conv_kernel": (1, 64),
    "linear_num_key_heads": (1, limits.MAX_HEADS),
    "linear_num_value_heads": (1, limits.MAX_HEADS),
    "linear_key_head_dim": (1, limits.MAX_HEAD_DIM),
    "linear_value_head_dim": (1, limits.MAX_HEAD_DIM),
    "linear_conv_kernel_dim": (1, 64),
}
_FLAGS = ("tie_word_embeddings", "attention_bias", "mlp_bias")
"""Fields read as true or false: a string such as "false" would read as true (tied embeddings: the LM head's
bytes left out)."""
_QUANT_FLAGS = ("zero_point", "sym", "lm_head")
_LAYER_TYPES = ("full_attention", "sliding_attention", "chunked_attention", "linear_attention")
"""`layer_types` entries as transformers writes them; the families read the sliding ones, any other is full."""
_FRACTIONS = {"partial_rotary_factor": (0.0, 1.0)}
"""Fields that are a fraction in (low, high]."""
_MLA_TYPES = ("deepseek_v2", "deepseek_v3", "kimi_k2")


def _fail(source: str, field: str, message: str) -> SpecError:
    return SpecError(f"{source}: {message}", field=field)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_count(cfg: dict, field: str, low: int, high: int, *, source: str, required: bool = False) -> int | None:
    """A whole number in [low, high], or None when the field is absent/null and not required."""
    value = cfg.get(field)
    if value is None:
        if required:
            raise _fail(source, field, f"has no {field!r}; is this a complete model config?")
        return None
    if not _is_int(value):
        raise _fail(source, field, f"{field} is {value!r} ({type(value).__name__}); use a whole number from "
                                   f"{low} to {high:,}")
    if not low <= value <= high:
        raise _fail(source, field, f"{field} is {value:,}; use a whole number from {low} to {high:,}")
    return value


def check_config(config: dict, *, source: str) -> None:
    """Raise SpecError (naming `source` and the field) unless every field tpfit reads is usable."""
    if not isinstance(config, dict):
        raise SpecError(f"{source}: a model config must be a JSON object", field="config")
    cfg = config.get("text_config") if isinstance(config.get("text_config"), dict) else config
    model_type = config.get("model_type")
    if model_type is not None and not isinstance(model_type, str):
        raise _fail(source, "model_type", f"model_type is {model_type!r}; use a string such as \"llama\"")
    counts = {f: check_count(cfg, f, lo, hi, source=source, required=True) for f, (lo, hi) in _REQUIRED_COUNTS.items()}
    for field, (low, high) in _OPTIONAL_COUNTS.items():
        counts[field] = check_count(cfg, field, low, high, source=source)
    for field, (low, high) in _FRACTIONS.items():
        value = cfg.get(field)
        if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)
                                  or not low < value <= high):
            raise _fail(source, field, f"{field} is {value!r}; use a number above {low} and at most {high}")
    for field in _FLAGS:
        for part in (cfg, config):
            _check_flag(part.get(field), field, field, source)
    rope = cfg.get("rope_scaling")
    if rope is not None:
        if not isinstance(rope, dict):
            raise _fail(source, "rope_scaling", f"rope_scaling is {rope!r}; use an object such as "
                                                "{\"rope_type\": \"yarn\", \"factor\": 4.0}")
        factor = rope.get("factor")
        if factor is not None and (isinstance(factor, bool) or not isinstance(factor, (int, float))
                                   or not 0 < factor <= 1024):
            raise _fail(source, "rope_scaling.factor", f"rope_scaling.factor is {factor!r}; use a number in (0, 1024]")
    heads, kv = counts["num_attention_heads"], counts["num_key_value_heads"]
    if kv is not None and model_type not in _MLA_TYPES and heads % kv:
        raise _fail(source, "num_key_value_heads", f"num_key_value_heads {kv} does not divide num_attention_heads "
                                                   f"{heads}; use a divisor of {heads}")
    hidden = counts["hidden_size"]
    if (counts["head_dim"] is None and counts["attention_head_dim"] is None and model_type not in _MLA_TYPES
            and hidden % heads):
        raise _fail(source, "hidden_size", f"hidden_size {hidden} is not a multiple of num_attention_heads {heads} "
                                           "and there is no head_dim; give head_dim or a multiple of the heads")
    experts = counts["num_local_experts"] or counts["num_experts"] or counts["n_routed_experts"]
    per_tok = counts["num_experts_per_tok"] or counts["experts_per_token"]
    if experts and per_tok and per_tok > experts:
        raise _fail(source, "num_experts_per_tok", f"num_experts_per_tok {per_tok} exceeds the {experts} experts")
    n_layers = counts["num_hidden_layers"]
    for field in ("layer_types", "no_rope_layers", "block_configs"):
        value = cfg.get(field)
        if value is not None and (not isinstance(value, list) or (value and len(value) < n_layers)):
            raise _fail(source, field, f"{field} must list one entry per layer ({n_layers})")
    unknown = [t for t in cfg.get("layer_types") or () if t not in _LAYER_TYPES]
    if unknown:
        raise _fail(source, "layer_types", f"layer_types holds {unknown[0]!r}; use {', '.join(_LAYER_TYPES)}")
    pattern = cfg.get("hybrid_override_pattern")
    if pattern is not None and not isinstance(pattern, str):
        raise _fail(source, "hybrid_override_pattern", "hybrid_override_pattern must be a string such as \"M-M*\"")
    _check_quant(config.get("quantization_config") or cfg.get("quantization_config"), source)


def _check_quant(qc: Any, source: str) -> None:
    if qc is None:
        return
    if not isinstance(qc, dict):
        raise _fail(source, "quantization_config", "quantization_config must be a JSON object")
    block = qc.get("weight_block_size")
    if block is not None and not (isinstance(block, list) and len(block) == 2
                                  and all(_is_int(b) and 1 <= b <= 4096 for b in block)):
        raise _fail(source, "weight_block_size", f"quantization_config.weight_block_size is {block!r}; use two "
                                                 "whole numbers such as [128, 128]")
    group = qc.get("group_size", qc.get("q_group_size"))
    if group is not None and not (_is_int(group) and (group == -1 or 1 <= group <= 4096)):
        raise _fail(source, "group_size", f"quantization_config.group_size is {group!r}; use -1 or 1 to 4096")
    groups = qc.get("config_groups")
    bad = (["config_groups"] if not isinstance(groups, dict) else
           [f"config_groups.{k}" for k, g in groups.items()
            if not isinstance(g, dict) or not isinstance(g.get("weights") or {}, dict)]) if groups is not None else []
    if bad:
        raise _fail(source, "config_groups", f"quantization_config.{bad[0]} is not an object of groups with their "
                                             "weights; use one such as {\"group_0\": {\"weights\": {\"num_bits\": 8}}}")
    for key in _QUANT_FLAGS:
        _check_flag(qc.get(key), key, f"quantization_config.{key}", source)
    for key in ("bits", "w_bit"):
        bits = qc.get(key)
        if bits is not None and (bits not in (2, 3, 4, 8) or isinstance(bits, bool)):
            raise _fail(source, key, f"quantization_config.{key} is {bits!r}; use 4 or 8")


def _check_flag(value: Any, field: str, name: str, source: str) -> None:
    if value is not None and not isinstance(value, bool):
        raise _fail(source, field, f"{name} is {value!r}; use true or false")


def make_checked_spec(config: Any, *, model_id: str, source: str, sidecar: dict | None = None,
                      spec_source: str | None = None):
    """`check_config`, then `make_spec`; whatever the family builder still trips on becomes one SpecError line."""
    from tpfit.model.hf_config import make_spec

    from tpfit.model.families import find_family

    if isinstance(config, dict) and find_family(str(config.get("model_type", ""))) is None:
        return make_spec(config, model_id=model_id, sidecar=sidecar, source=spec_source or source)  # its refusal
    check_config(config, source=source)
    try:
        return make_spec(config, model_id=model_id, sidecar=sidecar, source=spec_source or source)
    except SpecError as err:
        if source in str(err):
            raise
        # SOURCE names the file: not the model's name again, nor "config.json" ('m: config.json has no ...')
        raise SpecError(f"{source}: {err.detail.removeprefix('config.json ')}", field=err.field) from err
    except KeyError as err:
        field = str(err.args[0]) if err.args else "?"
        raise SpecError(f"{source}: has no {field!r}, which this model type needs", field=field) from err
    except (TypeError, ValueError, IndexError, ZeroDivisionError, AttributeError, OverflowError) as err:
        raise SpecError(f"{source}: cannot read this config ({type(err).__name__}: {err}); is it a complete "
                        f"{config.get('model_type') or 'model'} config?", field="config") from err
