"""KV cache geometry: page sizes, KV-cache groups, blocks a request needs.

Mirrors `vllm/v1/kv_cache_interface.py` (page_size_bytes, max_memory_usage_bytes) and
`vllm/v1/core/kv_cache_planning.py` (`get_kv_cache_groups`, `unify_kv_cache_spec_page_size`,
`_get_kv_cache_groups_uniform_page_size`); shared/reference/vllm-internals.md §2.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass

from tpfit.core.engine import EngineArgs
from tpfit.kinds import AttentionKind, KvCacheDtype
from tpfit.model.spec import LayerSpec, ModelSpec
from tpfit.units import cdiv

DEFAULT_BLOCK_SIZE = 16
"""`CacheConfig.DEFAULT_BLOCK_SIZE`: tokens per KV block for FlashAttention / Triton backends."""
MAMBA_ALIGN_TOKENS = 16
"""Hybrid models raise the attention block size in steps of this (`_align_hybrid_block_size`)."""

KV_CACHE_DTYPE_BYTES = {KvCacheDtype.BFLOAT16: 2, KvCacheDtype.FLOAT16: 2, KvCacheDtype.FP8: 1,
                        KvCacheDtype.FP8_E4M3: 1, KvCacheDtype.FP8_E5M2: 1}
"""Bytes per cached element of an explicit `--kv-cache-dtype` (`auto` follows the model's dtype)."""


def kv_bytes_per_element(spec: ModelSpec, engine: EngineArgs) -> int:
    """Bytes of one cached K/V element on the GPU (`STR_DTYPE_TO_TORCH_DTYPE` in vLLM's torch_utils)."""
    if engine.kv_cache_dtype is KvCacheDtype.AUTO:
        return spec.dtype_bytes
    return KV_CACHE_DTYPE_BYTES[engine.kv_cache_dtype]


@dataclass(frozen=True, slots=True, kw_only=True)
class KVGroup:
    """One KV-cache group: a set of layers of one type sharing block ids."""

    kind: AttentionKind
    """The layers' kind; MAMBA stands for every recurrent-state group (mamba2 and GDN alike)."""
    layers: tuple[int, ...]
    """Global layer indices (padding layers are not listed)."""
    window_tokens: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class KVGeometry:
    """The KV layout of a model under one TP size, kv dtype and block size."""

    block_size: int
    """Tokens per block of the attention groups."""
    page_bytes: int
    """Bytes of one block in one layer (all groups share one page size after unification)."""
    groups: tuple[KVGroup, ...]
    group_size: int
    """Layers per group (the unit of `bytes_per_block`)."""

    def bytes_per_block(self, layer_range: range) -> int:
        """Bytes one block id costs on a GPU holding `layer_range`: the largest group share."""
        counts = [bisect_left(g.layers, layer_range.stop) - bisect_left(g.layers, layer_range.start) for g in self.groups]
        if len(self.groups) == 1:
            return counts[0] * self.page_bytes
        # a group is padded to group_size layers on the worker that holds any of them
        return max(self.group_size if c else 0 for c in counts) * self.page_bytes

    def blocks_per_request(self, max_model_len: int, *, in_flight_tokens: int, state_blocks: int) -> int:
        """Blocks one request at max_model_len needs, summed over groups (`max_memory_usage_bytes`)."""
        total = 0
        for g in self.groups:
            if g.kind in (AttentionKind.FULL, AttentionKind.MLA):
                total += cdiv(max_model_len, self.block_size)
            elif g.kind is AttentionKind.SLIDING:
                # the "+1": a window of w tokens can straddle one more block than w / block_size
                total += cdiv(min(g.window_tokens - 1 + in_flight_tokens, max_model_len), self.block_size) + 1
            elif g.kind is AttentionKind.CHUNKED:
                total += cdiv(min(g.window_tokens + in_flight_tokens, max_model_len), self.block_size)
            else:
                total += state_blocks
        return total


def attention_page_bytes_per_token(layer: LayerSpec, spec: ModelSpec, tp: int, kv_bytes: int) -> int:
    """K and V bytes one token costs in one layer on one GPU (MLA: the latent, on every rank)."""
    if layer.attention is AttentionKind.MLA:
        return spec.mla.kv_head_size * kv_bytes
    kv_heads = max(1, layer.num_key_value_heads // tp)  # replicated when TP > KV heads
    return kv_heads * 2 * layer.head_dim * kv_bytes


def state_page_bytes(layer: LayerSpec, tp: int, dtype_bytes: int) -> int:
    """Recurrent state of one request in one mamba2 / GDN layer on one GPU (`MambaStateShapeCalculator`)."""
    s = layer.state
    conv = (s.conv_dim // tp) * (s.conv_kernel - 1)
    ssm = (s.num_heads // tp) * s.head_dim * s.state_size  # mamba2: heads x head_dim x state; GDN: v x v_dim x k_dim
    return (conv + ssm) * dtype_bytes


def _kind(layer: LayerSpec) -> AttentionKind:
    return AttentionKind.MAMBA if layer.attention.has_state else layer.attention


def make_kv_geometry(spec: ModelSpec, *, tp: int, kv_bytes: int, block_size: int | None = None) -> KVGeometry:
    """Group the layers and unify page sizes as vLLM's hybrid KV-cache manager does."""
    by_kind: dict[tuple[AttentionKind, int], list[int]] = {}
    for i, layer in enumerate(spec.layers):
        if layer.attention.has_kv_cache or layer.attention.has_state:
            by_kind.setdefault((_kind(layer), layer.window_tokens), []).append(i)
    attn_layers = [spec.layers[i] for (k, _), idx in by_kind.items() if not k.has_state for i in idx]
    per_token = max((attention_page_bytes_per_token(l, spec, tp, kv_bytes) for l in attn_layers), default=0)
    bs = block_size or DEFAULT_BLOCK_SIZE
    state_layers = [spec.layers[i] for (k, _), idx in by_kind.items() if k.has_state for i in idx]
    page = bs * per_token
    if state_layers:
        state_page = max(state_page_bytes(l, tp, spec.dtype_bytes) for l in state_layers)
        if per_token and block_size is None and state_page > page:
            # "Setting attention block size to N tokens to ensure that attention page size is >= mamba page size."
            bs = MAMBA_ALIGN_TOKENS * cdiv(state_page, MAMBA_ALIGN_TOKENS * per_token)
            page = bs * per_token
        page = max(page, state_page)  # the mamba page is padded up to the attention page
    counts = [len(v) for v in by_kind.values()]
    lo, hi = min(counts), max(counts)
    group_size = hi if (len(counts) == 1 or hi < 1.5 * lo) else lo
    groups = []
    for (kind, window), idx in by_kind.items():
        n_groups = cdiv(len(idx), group_size)
        for g in range(n_groups):
            groups.append(KVGroup(kind=kind, layers=tuple(idx[g::n_groups]), window_tokens=window))
    return KVGeometry(block_size=bs, page_bytes=page, groups=tuple(groups), group_size=group_size)
