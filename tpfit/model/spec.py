"""ModelSpec: what vLLM needs to know of a model to shard it and size its KV cache.

Built by the loaders (config.json, hub, bundled catalog); read by the pure core only.
Shapes are the checkpoint's, before any tensor-parallel split.
"""

from __future__ import annotations

from pathlib import PurePath

from msgspec import Struct
from msgspec.structs import force_setattr

from tpfit.codec import decode, encode
from tpfit.errors import SpecError
from tpfit.kinds import AttentionKind, MlpKind, StateKind

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "float8": 1}
"""Bytes per element of the activation dtypes a checkpoint may declare."""


def _set_kind(obj: object, name: str, kind: type) -> None:
    """Check a kind field and store the enum member (a plain string of the same spelling, as from JSON, becomes it)."""
    value = getattr(obj, name)
    if type(value) is kind:  # the usual case, once per layer at every start: no lookup
        return
    try:
        member = kind(value)
    except ValueError:
        raise SpecError(f"unknown {name} kind {value!r}; one of {', '.join(kind)}", field=name) from None
    force_setattr(obj, name, member)


class QuantSpec(Struct, frozen=True, kw_only=True):
    """How the checkpoint's linear weights are stored (vLLM's quantization config)."""

    method: str
    """vLLM's name: fp8, awq, gptq, compressed-tensors, mxfp4, modelopt, modelopt_fp4."""
    weight_bits: int
    """Bits per stored weight element of the quantized layers (4 or 8)."""
    group_size: int = -1
    """Elements sharing one scale along the input dim; -1 = per channel, 0 = per tensor."""
    block_n: int = 0
    """FP8 block quantization: output-dim block (128 for DeepSeek-style checkpoints), 0 if none."""
    block_k: int = 0
    """FP8 block quantization: input-dim block."""
    experts_only: bool = False
    """Only the MoE experts are quantized (gpt-oss mxfp4); attention stays in the model dtype."""
    lm_head_quantized: bool = False
    has_zero_points: bool = False
    """AWQ/GPTQ asymmetric quantization stores packed zero points beside the scales."""
    online: bool = False
    """vLLM quantizes a higher-precision checkpoint while loading (`--quantization fp8`)."""

    def __post_init__(self) -> None:
        if self.weight_bits not in (4, 8):
            raise SpecError(f"not supported yet: {self.weight_bits}-bit weights ({self.method})")


class MoESpec(Struct, frozen=True, kw_only=True):
    """A sparse MLP: routed experts plus optional shared experts."""

    num_experts: int
    num_experts_per_tok: int
    moe_intermediate_size: int
    shared_intermediate_size: int = 0
    """Total intermediate width of the shared expert(s), 0 if none."""
    shared_expert_gate: bool = False
    """Qwen2/3-MoE style scalar gate on the shared expert (hidden x 1)."""
    router_bias: bool = False


class MLASpec(Struct, frozen=True, kw_only=True):
    """Multi-head latent attention (DeepSeek V2/V3, Kimi K2)."""

    q_lora_rank: int | None
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int
    index_head_dim: int = 0
    """DeepSeek-V4: width of the lightning indexer's keys, cached on its ratio-4 layers (0: no indexer)."""

    @property
    def kv_head_size(self) -> int:
        """Latent KV width cached per token and layer: kv_lora_rank + qk_rope_head_dim."""
        return self.kv_lora_rank + self.qk_rope_head_dim


class StateSpec(Struct, frozen=True, kw_only=True):
    """Recurrent state of a mamba2 or gated-delta-net layer (per request, token-independent)."""

    kind: StateKind
    num_heads: int
    """SSM heads (mamba2) or value heads (gdn): split by TP."""
    head_dim: int
    """Per-head value width."""
    state_size: int
    """SSM state (mamba2) or key head dim (gdn)."""
    conv_dim: int
    """Channels of the causal conv state (before the TP split)."""
    conv_kernel: int
    n_groups: int = 1
    """mamba2 B/C groups (replicated when TP exceeds them)."""
    num_k_heads: int = 0
    """gdn key heads."""

    def __post_init__(self) -> None:
        _set_kind(self, "kind", StateKind)


class LayerSpec(Struct, frozen=True, kw_only=True):
    """One decoder layer: its token mixer and its MLP."""

    attention: AttentionKind
    num_attention_heads: int = 0
    num_key_value_heads: int = 0
    head_dim: int = 0
    window_tokens: int = 0
    """Sliding-window or chunk length for "sliding"/"chunked" layers (DeepSeek-V4: its MLA layers' sliding-window
    cache), else 0."""
    compress_ratio: int = 0
    """DeepSeek-V4's compressed MLA: the layer caches one latent per this many tokens beside its sliding window
    (4 or 128; 1: the sliding window only); 0 for every other attention."""
    qkv_bias: bool = False
    o_bias: bool = False
    gated_attention: bool = False
    """Qwen3-Next: q_proj also emits a gate, doubling its output."""
    linear_replacement: bool = False
    """Nemotron-NAS: the attention is replaced by one hidden x hidden linear layer."""
    mlp: MlpKind = MlpKind.GATED
    intermediate_size: int = 0
    mlp_bias: bool = False
    mlp_linear_replacement: bool = False
    moe: MoESpec | None = None
    state: StateSpec | None = None
    norm_vectors: int = 2
    """Hidden-sized norm weights (input, post-attention, ...), replicated on every rank."""
    qk_norm: bool = False

    def __post_init__(self) -> None:
        _set_kind(self, "attention", AttentionKind)
        _set_kind(self, "mlp", MlpKind)
        if self.attention.has_kv_heads:
            if self.num_key_value_heads <= 0 or self.num_attention_heads % self.num_key_value_heads:
                raise SpecError(
                    f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                    f"num_key_value_heads ({self.num_key_value_heads})",
                    field="num_key_value_heads",
                )
        if self.mlp is MlpKind.MOE and self.moe is None:
            raise SpecError("an MoE layer needs its expert shapes", field="moe")


class ModelSpec(Struct, frozen=True, kw_only=True):
    """A model as vLLM sees it when it builds the layers and plans the KV cache."""

    model_id: str
    architecture: str
    model_type: str
    dtype: str
    """Activation / unquantized weight dtype: bfloat16, float16 or float32."""
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    """Query heads vLLM checks against --tensor-parallel-size."""
    num_key_value_heads: int
    head_dim: int
    vocab_size: int
    tie_word_embeddings: bool
    max_model_len: int
    """The derived maximum context (vLLM `_get_and_verify_max_len`)."""
    max_len_key: str
    """The config key the maximum came from, quoted in vLLM's error."""
    checkpoint_float32: bool = False
    """The config gives float32, which `dtype` holds as the bfloat16 vLLM serves it in under --dtype auto from 0.9.1;
    before, vLLM served it in float16 (but Gemma 2's in bfloat16): `resolve_model` takes that for those releases."""
    max_model_len_before_0_30: int = 0
    """The derived maximum of vLLM before 0.30 where it differs (0: the same): those releases multiplied a YaRN
    rope_scaling factor in (hf_config._ROPE_NO_SCALE_BEFORE_0_30); `resolve_model` takes it for them."""
    layers: tuple[LayerSpec, ...]
    mla: MLASpec | None = None
    quant: QuantSpec | None = None
    supports_pp: bool = True
    rope_cache_positions: int = 0
    """Rows of the rotary cos/sin cache vLLM builds once per model (max positions)."""
    rotary_dim: int = 0
    extra_replicated_params: int = 0
    """Parameters outside the decoder stack held on the first PP rank (vision tower, projector)."""
    vision_params: int = 0
    """The vision tower's share of `extra_replicated_params`: vLLM does not build it under `--language-model-only`
    (`_mark_tower_model` skips tower modules when every modality's limit is 0; 0.26 model_executor/models/
    interfaces.py:257-290)."""
    checkpoint_bytes: int = 0
    """Total bytes of the weight files when their headers were read (safetensors), else 0."""
    source: str = "config"
    """Where the spec came from: a path, `hub:<id>` or `catalog:<alias>`."""
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size"):
            if getattr(self, name) <= 0:
                raise SpecError(f"{name} must be > 0, got {getattr(self, name)}", model_id=self.model_id, field=name)
        if len(self.layers) != self.num_hidden_layers:
            raise SpecError(
                f"{len(self.layers)} layer specs for num_hidden_layers={self.num_hidden_layers}",
                model_id=self.model_id,
                field="num_hidden_layers",
            )
        if self.dtype not in DTYPE_BYTES:
            raise SpecError(f"unknown dtype {self.dtype!r}; expected one of {sorted(DTYPE_BYTES)}", field="torch_dtype")

    @property
    def dtype_bytes(self) -> int:
        return DTYPE_BYTES[self.dtype]

    @property
    def is_moe(self) -> bool:
        return any(layer.moe is not None for layer in self.layers)

    @property
    def num_experts(self) -> int:
        return max((layer.moe.num_experts for layer in self.layers if layer.moe), default=0)

    @property
    def attention_kinds(self) -> frozenset[AttentionKind]:
        return frozenset(layer.attention for layer in self.layers)

    @property
    def local_path(self) -> str | None:
        """The folder vLLM loads for a model read from disk (`source` as given; a config.json's folder), None for
        a Hugging Face id or the bundled catalog, where `model_id` is what vLLM loads. A plan saved from a local
        model keeps it, so `tpfit deploy --plan` serves the same folder as `tpfit deploy PATH`."""
        if self.source == "config" or self.source.startswith(("hub:", "catalog:")):
            return None
        path = PurePath(self.source)
        return str(path.parent) if path.suffix == ".json" else self.source

    def to_dict(self) -> dict:
        """Plain JSON values (tpfit/codec.py); `from_dict` reads them back equal."""
        return encode(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelSpec:
        """Inverse of `to_dict` (plain JSON values back into frozen specs), by the codec that reads a saved plan's."""
        return decode(cls, data)
