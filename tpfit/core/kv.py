"""KV cache geometry: page sizes, KV-cache groups, blocks a request needs.

Mirrors `vllm/v1/kv_cache_interface.py` (page_size_bytes, max_memory_usage_bytes) and
`vllm/v1/core/kv_cache_planning.py` (`get_kv_cache_groups`, `unify_kv_cache_spec_page_size`,
`_get_kv_cache_groups_uniform_page_size`); shared/reference/vllm-internals.md §2.
"""

from __future__ import annotations

from bisect import bisect_left

from msgspec import Struct

from tpfit.core.engine import EngineArgs
from tpfit.core.weights import distinct_layers
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


class KVGroup(Struct, frozen=True, kw_only=True):
    """One KV-cache group: a set of layers of one type sharing block ids."""

    kind: AttentionKind
    """The layers' kind; MAMBA stands for every recurrent-state group (mamba2 and GDN alike)."""
    layers: tuple[int, ...]
    """Global layer indices (padding layers are not listed)."""
    window_tokens: int = 0
    block_size: int = 0
    """Tokens per block of this group when it differs from the geometry's (DeepSeek-V4's packed groups), else 0."""
    layer_pages: tuple[tuple[int, int], ...] = ()
    """Packed groups: (layer, page bytes) of every cache the group holds (a layer may hold two)."""


class KVGeometry(Struct, frozen=True, kw_only=True):
    """The KV layout of a model under one TP size, kv dtype and block size."""

    block_size: int
    """Tokens per block of the attention groups."""
    page_bytes: int
    """Bytes of one block in one layer (all groups share one page size after unification)."""
    groups: tuple[KVGroup, ...]
    group_size: int
    """Layers per group (the unit of `bytes_per_block`)."""
    packed: bool = False
    """Groups of mixed page sizes packed side by side in each block (`_get_packed_kv_cache_groups`): one block id
    costs the largest group's sum of pages."""

    def bytes_per_block(self, layer_range: range) -> int:
        """Bytes one block id costs on a GPU holding `layer_range`: the largest group share."""
        if self.packed:  # `_get_kv_cache_bytes_per_block` (0.33 kv_cache_planning.py:574-605), the worker's layers
            return max(sum(page for layer, page in g.layer_pages if layer in layer_range) for g in self.groups)
        counts = [bisect_left(g.layers, layer_range.stop) - bisect_left(g.layers, layer_range.start) for g in self.groups]
        if len(self.groups) == 1:
            return counts[0] * self.page_bytes
        # a group is padded to group_size layers on the worker that holds any of them
        return max(self.group_size if c else 0 for c in counts) * self.page_bytes

    def blocks_per_request(self, max_model_len: int, *, in_flight_tokens: int, state_blocks: int) -> int:
        """Blocks one request at max_model_len needs, summed over groups (`max_memory_usage_bytes`)."""
        total = 0
        for g in self.groups:
            bs = g.block_size or self.block_size
            if g.kind in (AttentionKind.FULL, AttentionKind.MLA):
                total += cdiv(max_model_len, bs)
            elif g.kind is AttentionKind.SLIDING:
                # the "+1": a window of w tokens can straddle one more block than w / block_size
                total += cdiv(min(g.window_tokens - 1 + in_flight_tokens, max_model_len), bs) + 1
            elif g.kind is AttentionKind.CHUNKED:
                total += cdiv(min(g.window_tokens + in_flight_tokens, max_model_len), bs)
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
    """Group the layers and unify page sizes as vLLM's hybrid KV-cache manager does. Each layer shape is read once
    (weights.distinct_layers): a 64-GPU search makes a geometry per TP size."""
    index, distinct = distinct_layers(spec.layers)
    if any(layer.compress_ratio for layer in distinct):
        return deepseek_v4_geometry(spec)
    # each shape's group (kind, window), None where it holds no cache
    kinds = [(_kind(layer), layer.window_tokens) if layer.attention.has_kv_cache or layer.attention.has_state
             else None for layer in distinct]
    by_kind: dict[tuple[AttentionKind, int], list[int]] = {}
    for i, shape in enumerate(index):
        if kinds[shape] is not None:
            by_kind.setdefault(kinds[shape], []).append(i)
    per_token = max((attention_page_bytes_per_token(layer, spec, tp, kv_bytes)
                     for layer, kind in zip(distinct, kinds) if kind and not kind[0].has_state), default=0)
    bs = block_size or DEFAULT_BLOCK_SIZE
    page = bs * per_token
    state_layers = [layer for layer, kind in zip(distinct, kinds) if kind and kind[0].has_state]
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


# ---- DeepSeek-V4 (vLLM 0.33, the FlashMLA path every CUDA GPU but SM12 takes) ----

DSV4_BLOCK_SIZE = 256
"""Tokens per block of the compressed MLA and indexer caches: `DeepseekV4SparseMLABackend`'s only kernel block size
(models/deepseek_v4/sparse_mla.py:59-61), which becomes `cache_config.block_size`."""
DSV4_SWA_BLOCK_SIZE = 64
"""`DeepseekV4SWACache(block_size=64)` (v1/attention/backends/mla/sparse_swa.py:84; attention.py:352-359 keeps it)."""
FP8_DS_MLA_BYTES_PER_TOKEN = 584
"""One latent in fp8_ds_mla: 448 B NoPE + 128 B RoPE + 8 B scale (attention.py:876-878, sparse_swa.py:85). The
FlashMLA path turns `--kv-cache-dtype auto` into fp8_ds_mla (attention.py:107-123, `_resolve_dsv4_kv_cache_dtype`)."""
FP8_DS_MLA_ALIGNMENT = 576
"""Every DeepSeek-V4 page is rounded up to 576 B under fp8_ds_mla (`_apply_alignment_padding`,
v1/kv_cache_interface.py:719-725; alignment=576 in attention.py:873, 924, compressor.py:189, sparse_swa.py:147)."""
INDEXER_QUANT_BLOCK = 128
"""The indexer's FP8 keys carry one fp32 scale per 128 values (attention.py:1007, 1026-1029)."""
COMPRESSOR_STATE_BLOCK = {4: 4, 128: 8}
"""Tokens per block of a compressor's state (compressor.py:162-173)."""


def _dsv4_caches(spec: ModelSpec) -> list[tuple[int, AttentionKind, int, int, int]]:
    """Every cache a DeepSeek-V4 layer registers, as (layer, kind, block size, window, page bytes), in the order the
    layer builds them; `kind` MLA stands for vLLM's full-attention specs, SLIDING for its sliding-window ones.

    - the sliding-window latents (every layer): `SlidingWindowMLASpec`, 64 tokens of 584 B (sparse_swa.py:130-153);
    - ratio > 1: the compressed latents, `MLAAttentionSpec` with tokens_per_state = ratio, so a 256-token block holds
      256 / ratio latents (attention.py:860-883, kv_cache_interface.py:269-275);
    - ratio > 1: the compressor's state, `SlidingWindowMLASpec` in fp32 of 2 x coff x 512 values per token, window
      coff x ratio, coff = 2 at ratio 4 else 1 (compressor.py:155-195, 236-279);
    - ratio 4: the indexer's keys, `MLAAttentionSpec` of index_head_dim FP8 bytes + 4 B per 128 (attention.py:895-925,
      1020-1036), and the indexer's compressor state (its head_dim is index_head_dim).
    """
    def pad(page: int) -> int:
        return cdiv(page, FP8_DS_MLA_ALIGNMENT) * FP8_DS_MLA_ALIGNMENT

    def compressor(i: int, ratio: int, head_dim: int) -> tuple[int, AttentionKind, int, int, int]:
        coff = 1 + (ratio == 4)
        bs = COMPRESSOR_STATE_BLOCK[ratio]
        return i, AttentionKind.SLIDING, bs, coff * ratio, pad(bs * 2 * coff * head_dim * 4)

    latent, index = spec.mla.kv_head_size, spec.mla.index_head_dim
    caches = []
    for i, layer in enumerate(spec.layers):
        ratio = layer.compress_ratio
        caches.append((i, AttentionKind.SLIDING, DSV4_SWA_BLOCK_SIZE, layer.window_tokens,
                       pad(DSV4_SWA_BLOCK_SIZE * FP8_DS_MLA_BYTES_PER_TOKEN)))
        if ratio > 1:
            caches.append((i, AttentionKind.MLA, DSV4_BLOCK_SIZE, 0,
                           pad(DSV4_BLOCK_SIZE // ratio * FP8_DS_MLA_BYTES_PER_TOKEN)))
            caches.append(compressor(i, ratio, latent))
        if ratio == 4 and index:
            caches.append((i, AttentionKind.MLA, DSV4_BLOCK_SIZE, 0,
                           pad(DSV4_BLOCK_SIZE // ratio * (index + index // INDEXER_QUANT_BLOCK * 4))))
            caches.append(compressor(i, ratio, index))
    return caches


def approximate_gcd(values: list[int], *, lower_bound: int) -> int:
    """vLLM's `_approximate_gcd` (0.33 kv_cache_planning.py:879-911): the d in [lower_bound, max] that pads the
    values up to multiples of d the least; ties go to the larger d."""
    best, best_pad = lower_bound, None
    for d in range(max(1, lower_bound), max(values) + 1):
        pad = sum((d - x % d) % d for x in values)
        if best_pad is None or pad <= best_pad:
            best, best_pad = d, pad
    return best


def deepseek_v4_geometry(spec: ModelSpec) -> KVGeometry:
    """DeepSeek-V4's caches grouped as vLLM 0.33's `_get_packed_kv_cache_groups` groups mixed page sizes
    (kv_cache_planning.py:914-1041): caches of one block size and type (full, or sliding of one window) form a
    bucket; a bucket whose page sizes each cover the same number of caches is "balanced" and split into groups of
    `approximate_gcd` repeats; each block id then costs the largest group's sum of pages. Replicated on every TP
    rank (max_tp_shards=1), so TP does not change it. Read in 0.33 and used for every release from 0.20; 0.26 packs
    DeepSeek-V4 with code of its own (v1/core/kv_cache_utils.py:1284-1400, `_get_kv_cache_config_packed`), not
    compared here."""
    buckets: dict[tuple, list[tuple[int, int]]] = {}
    for layer, kind, bs, window, page in _dsv4_caches(spec):
        buckets.setdefault((kind, bs, window), []).append((layer, page))
    shapes = []
    for key, caches in buckets.items():
        by_page: dict[int, list[tuple[int, int]]] = {}
        for layer, page in caches:
            by_page.setdefault(page, []).append((layer, page))
        balanced = len({len(v) for v in by_page.values()}) == 1
        shapes.append((key, by_page, balanced, max(len(v) for v in by_page.values())))
    floor = max((most for _, by_page, balanced, most in shapes if balanced and len(by_page) > 1), default=0)
    repeats = approximate_gcd([most for *_, balanced, most in shapes if balanced], lower_bound=floor) if floor else 0
    groups = []
    for (kind, bs, window), by_page, balanced, most in shapes:
        n = cdiv(most, repeats) if balanced and repeats else 1
        # no mamba or circular-buffer caches here, and sliding buckets are split by the pattern once repeats is set
        pattern = list(zip(*by_page.values())) if n > 1 else [tuple(c for v in by_page.values() for c in v)]
        for g in range(n):
            members = tuple(c for repeat in pattern[g::n] for c in repeat)
            groups.append(KVGroup(kind=kind, layers=tuple(sorted({layer for layer, _ in members})), window_tokens=window,
                                  block_size=bs, layer_pages=members))
    page = max(sum(p for _, p in g.layer_pages) for g in groups)
    return KVGeometry(block_size=DSV4_BLOCK_SIZE, page_bytes=page, groups=tuple(groups), group_size=1, packed=True)
