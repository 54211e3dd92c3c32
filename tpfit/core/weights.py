"""Weight bytes held by one GPU, by vLLM's sharding (`vllm/model_executor/layers/linear.py`,
`vocab_parallel_embedding.py`, `fused_moe/config.py`, the model files).

Column-parallel layers split their output over TP, row-parallel layers their input; norms, routers
and MLA's down-projections are replicated. "Model loading took X GiB" is what this predicts.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from operator import add
from typing import TypeVar

from msgspec import Struct
from msgspec.structs import replace

from tpfit.core.layout import Layout, StageGroup, shard_of, stage_groups
from tpfit.kinds import AttentionKind, MlpKind, StateKind
from tpfit.model.spec import LayerSpec, MoESpec, ModelSpec, QuantSpec
from tpfit.units import MIB, cdiv, round_up

VOCAB_PADDING = 64
"""vLLM `DEFAULT_VOCAB_PADDING_SIZE`: embeddings and lm_head are padded to a multiple of 64 rows."""
FP32_BYTES = 4
MXFP4_PAD = 256
"""vLLM's mxfp4 MoE (`mxfp4.py`, Hopper kernels) pads the per-GPU expert width to a multiple of 256."""

_T = TypeVar("_T")
_V = TypeVar("_V")


def padded_vocab(vocab_size: int) -> int:
    return round_up(vocab_size, VOCAB_PADDING)


def linear_bytes(out_features: int, in_features: int, dtype_bytes: int, quant: QuantSpec | None) -> int:
    """Bytes of one (out x in) weight matrix as stored after loading, scales and zeros included."""
    n, k = out_features, in_features
    if quant is None:
        return n * k * dtype_bytes
    if quant.method == "mxfp4":  # 4-bit values + one e8m0 byte per 32
        return n * k // 2 + cdiv(n * k, 32)
    if quant.method == "modelopt_fp4" or (quant.weight_bits == 4 and quant.group_size == 16):
        return n * k // 2 + cdiv(n * k, 16)  # NVFP4 (ModelOpt or compressed-tensors): 4-bit values + an fp8 scale per 16
    if quant.weight_bits == 8:
        if quant.block_n:  # fp32 scale per (block_n x block_k) tile
            return n * k + cdiv(n, quant.block_n) * cdiv(k, quant.block_k) * FP32_BYTES
        if quant.group_size > 0:
            return n * k + n * cdiv(k, quant.group_size) * dtype_bytes
        return n * k + (n if quant.group_size < 0 else 1) * FP32_BYTES
    # 4-bit integer (AWQ / GPTQ / compressed-tensors W4A16): int32-packed values + 16-bit scales per group
    groups = cdiv(k, quant.group_size) if quant.group_size > 0 else 1
    total = n * k // 2 + n * groups * 2
    if quant.has_zero_points:
        total += n * groups // 2  # 4-bit zero points, int32-packed
    if quant.method == "gptq":
        total += k * 4  # g_idx
    return total


def by_identity(make: Callable[[_T], _V]) -> Callable[[_T], _V]:
    """`make` memoized by its argument's identity: a search asks about one model's layers again and again, and
    hashing a tuple of layers costs more than most answers. An entry holds its argument, so the id is not reused while
    the entry stands; past 256 entries the memo is emptied."""
    memo: dict[int, tuple[_T, _V]] = {}

    @wraps(make)
    def memoized(arg: _T) -> _V:
        hit = memo.get(id(arg))
        if hit is not None and hit[0] is arg:
            return hit[1]
        value = make(arg)
        if len(memo) > 256:
            memo.clear()
        memo[id(arg)] = (arg, value)
        return value

    return memoized


@by_identity
def distinct_layers(layers: tuple[LayerSpec, ...]) -> tuple[tuple[int, ...], tuple[LayerSpec, ...]]:
    """(index of each layer into the distinct ones, the distinct layers): most models repeat one or two
    layer shapes, so per-layer arithmetic is done once per shape. Memoized by the tuple's identity."""
    seen: dict[LayerSpec, int] = {}
    index = tuple(seen.setdefault(layer, len(seen)) for layer in layers)
    return index, tuple(seen)


def allocated_bytes(size: int) -> int:
    """What PyTorch's CUDA caching allocator counts as allocated for one tensor of `size` bytes (vLLM's
    "Model loading took" is torch.cuda.max_memory_allocated): a tensor of 10 MiB or more gets a segment
    rounded up to 2 MiB, and a leftover of 1 MiB or less is not split off, so it is counted with the
    tensor (c10 CUDACachingAllocator: kMinLargeAlloc, kRoundLarge, should_split). Llama's shapes are
    multiples of 2 MiB; Qwen's are not: +1.5-2 MiB per layer, 0.1-0.2 GiB per GPU in the real runs."""
    size = round_up(size, 512)
    if size < 10 * MIB:
        return size
    segment = round_up(size, 2 * MIB)
    return segment if segment - size <= MIB else size


class StageWeights(Struct, frozen=True, kw_only=True):
    """Weights on each GPU of one pipeline stage (all TP ranks of a stage hold the same amount)."""

    pp_rank: int
    layer_start: int
    layer_end: int
    weight_bytes: int


def _attention_bytes(layer: LayerSpec, spec: ModelSpec, tp: int, lin) -> int:
    h, b = spec.hidden_size, spec.dtype_bytes
    if layer.attention is AttentionKind.MLA:
        m = spec.mla
        heads = layer.num_attention_heads // tp
        qk_head = m.qk_nope_head_dim + m.qk_rope_head_dim
        total = 0
        if m.q_lora_rank:
            total += lin(m.q_lora_rank, h) + m.q_lora_rank * b  # q_a_proj (replicated) + q_a_layernorm
            total += lin(heads * qk_head, m.q_lora_rank)  # q_b_proj, column
        else:
            total += lin(heads * qk_head, h)  # q_proj, column
        total += lin(m.kv_lora_rank + m.qk_rope_head_dim, h) + m.kv_lora_rank * b  # kv_a_proj_with_mqa + norm, replicated
        total += lin(heads * (m.qk_nope_head_dim + m.v_head_dim), m.kv_lora_rank)  # kv_b_proj, column
        total += lin(h, heads * m.v_head_dim)  # o_proj, row
        return total
    if layer.attention.has_kv_heads:
        q, kv, d = layer.num_attention_heads // tp, max(1, layer.num_key_value_heads // tp), layer.head_dim
        q_out = q * d * (2 if layer.gated_attention else 1)
        total = lin(q_out + 2 * kv * d, h) + lin(h, q * d)  # qkv (column) + o_proj (row)
        if layer.qkv_bias:
            total += (q_out + 2 * kv * d) * b
        if layer.o_bias:
            total += h * b  # the row-parallel bias is full-size on every rank
        if layer.qk_norm:
            total += 2 * d * b
        return total
    if layer.attention.has_state:
        s = layer.state
        if s.kind is StateKind.MAMBA2:
            inner = s.num_heads * s.head_dim
            in_proj = 2 * inner + 2 * s.n_groups * s.state_size + s.num_heads  # z, x, B, C, dt
            return (lin(in_proj // tp, h) + (s.conv_dim // tp) * (s.conv_kernel + 1) * b
                    + 3 * (s.num_heads // tp) * b + (inner // tp) * b + lin(h, inner // tp))
        key_dim, value_dim = s.num_k_heads * s.state_size, s.num_heads * s.head_dim
        in_proj = 2 * key_dim + 2 * value_dim + 2 * s.num_heads  # qkvz + ba
        return (lin(in_proj // tp, h) + (s.conv_dim // tp) * s.conv_kernel * b
                + 2 * (s.num_heads // tp) * b + s.head_dim * b + lin(h, value_dim // tp))
    if layer.linear_replacement:
        return h * h * b
    return 0


def _mlp_bytes(layer: LayerSpec, spec: ModelSpec, tp: int, lin) -> int:
    """The MLP's bytes on one GPU, but an MoE layer's routed experts (routed_expert_bytes)."""
    h, b = spec.hidden_size, spec.dtype_bytes
    if layer.mlp is MlpKind.GATED:
        i = layer.intermediate_size // tp
        return lin(2 * i, h) + lin(h, i)
    if layer.mlp is MlpKind.PLAIN:
        i = layer.intermediate_size // tp
        bias = (i + h) * b if layer.mlp_bias else 0
        return lin(i, h) + lin(h, i) + bias
    if layer.mlp is MlpKind.MOE:
        m = layer.moe
        total = h * m.num_experts * b + (m.num_experts * b if m.router_bias else 0)  # router, replicated
        if m.shared_intermediate_size:
            si = m.shared_intermediate_size // tp
            total += lin(2 * si, h) + lin(h, si)
        if m.shared_expert_gate:
            total += h * b
        return total
    if layer.mlp_linear_replacement:
        return h * h * b
    return 0


def expert_share(moe: MoESpec, layout: Layout) -> tuple[int, int]:
    """(experts, intermediate width of each) one GPU holds of an MoE layer: every expert with its width split over
    TP x DP, or whole experts split over them under expert parallel (`FusedMoEParallelConfig`)."""
    if layout.enable_expert_parallel:
        return cdiv(moe.num_experts, layout.moe_parallel_size), moe.moe_intermediate_size
    return moe.num_experts, moe.moe_intermediate_size // layout.moe_parallel_size


def routed_expert_bytes(layer: LayerSpec, spec: ModelSpec, layout: Layout) -> int:
    """An MoE layer's routed experts on one GPU (0 for a dense layer): every expert's width split over TP x DP, or
    whole experts split over them under expert parallel (`FusedMoEParallelConfig`); mxfp4 kernels pad the width."""
    m = layer.moe
    if m is None:
        return 0
    h, b, q = spec.hidden_size, spec.dtype_bytes, spec.quant
    experts, inter = expert_share(m, layout)
    if q and q.method == "mxfp4":
        inter = round_up(inter, MXFP4_PAD)
    if q is None:
        return experts * 3 * inter * h * b  # gate_up (2 x inter x h) + down (h x inter)
    return experts * (linear_bytes(2 * inter, h, b, q) + linear_bytes(h, inter, b, q))


def _tp_bytes(layer: LayerSpec, spec: ModelSpec, tp: int) -> int:
    """Bytes of one decoder layer on one GPU but its routed experts: what TP alone decides."""
    q, b = spec.quant, spec.dtype_bytes
    lin = ((lambda n, k: linear_bytes(n, k, b, q)) if q and not q.experts_only
           else (lambda n, k: allocated_bytes(n * k * b)))
    norms = layer.norm_vectors * spec.hidden_size * b
    return _attention_bytes(layer, spec, tp, lin) + _mlp_bytes(layer, spec, tp, lin) + norms


def layer_weight_bytes(layer: LayerSpec, spec: ModelSpec, layout: Layout) -> int:
    """Bytes of one decoder layer on one GPU."""
    return _tp_bytes(layer, spec, layout.tp) + routed_expert_bytes(layer, spec, layout)


def layer_bytes(spec: ModelSpec, layout: Layout, cache: dict | None = None) -> tuple[int, ...]:
    """Bytes of one layer of each distinct shape (distinct_layers' order) on one GPU. It depends on TP and the
    expert split only: `cache`, a dict kept across the layouts of one search, holds it for all PP sizes; within
    it, what TP decides is worked out once per TP, and the routed experts once per expert split, whatever the TP
    (a 64-GPU search has ~600 TP x expert splits, 64 TP sizes)."""
    if cache is None:
        return tuple(layer_weight_bytes(layer, spec, layout) for layer in distinct_layers(spec.layers)[1])
    tp, split, ep = layout.tp, layout.moe_parallel_size, layout.enable_expert_parallel
    key = ("layer_bytes", tp, split, ep)
    found = cache.get(key)
    if found is None:
        distinct = distinct_layers(spec.layers)[1]
        by_tp = cache.get(("layer_tp_bytes", tp))
        if by_tp is None:
            by_tp = cache[("layer_tp_bytes", tp)] = tuple([_tp_bytes(layer, spec, tp) for layer in distinct])
        routed = cache.get(("routed_expert_bytes", split, ep))
        if routed is None:
            routed = cache[("routed_expert_bytes", split, ep)] = tuple([routed_expert_bytes(layer, spec, layout)
                                                                        for layer in distinct])
        found = cache[key] = tuple(map(add, by_tp, routed))
    return found


def stage_ends_bytes(spec: ModelSpec, tp: int) -> tuple[int, int, int, int]:
    """What a stage holds besides its layers: its own rotary cos/sin cache; the embedding (and the model's other
    replicated parameters) on the first stage; the final norm and the lm_head on the last. For a stage in the middle,
    the last, the first and the only one (first and last): index 2 x first + last. All four at once: they share the
    embedding's and the rotary cache's sizes."""
    h, b = spec.hidden_size, spec.dtype_bytes
    vocab_rank = padded_vocab(spec.vocab_size) // tp
    embed = allocated_bytes(vocab_rank * h * b)
    rope = allocated_bytes(spec.rope_cache_positions * spec.rotary_dim * b)
    first = embed + spec.extra_replicated_params * b // tp
    if not spec.tie_word_embeddings:
        q = spec.quant
        last = only_last = h * b + (linear_bytes(vocab_rank, h, b, q) if q and q.lm_head_quantized else embed)
    else:
        # vLLM builds its own embed_tokens on the last stage when tied (PP > 1); the only stage has the first's
        last, only_last = h * b + embed, h * b
    return rope, rope + last, rope + first, rope + first + only_last


def stage_weights(spec: ModelSpec, layout: Layout) -> tuple[StageWeights, ...]:
    """Weight bytes per GPU for each pipeline stage of the layout."""
    out = []
    for group, weight in group_weights(spec, layout):
        out += [StageWeights(pp_rank=rank, layer_start=layers.start, layer_end=layers.stop, weight_bytes=weight)
                for rank, layers in zip(group.ranks, group.layers)]
    return tuple(sorted(out, key=lambda s: s.pp_rank))


_GROUP_WEIGHTS = ("group_weights",)
"""group_weights' entry in a search's `cache`: (per shard, its layer bytes and stage ends; per PP size, its groups)."""


def group_weights(spec: ModelSpec, layout: Layout, cache: dict | None = None) -> tuple[tuple[StageGroup, int], ...]:
    """Each group of alike pipeline stages of the layout (layout.stage_groups) with the weight bytes on one GPU of
    any of its stages: its layers, plus its ends (stage_ends_bytes). `cache`: a dict kept across the layouts of one
    search: a 64-GPU search asks this for each of its ~1500 layouts, so a call is a few look-ups and a sum per group,
    the layer bytes and stage ends kept per shard (TP, DP, EP: layout.shard_of) and the groups per PP size."""
    cache = {} if cache is None else cache
    found = cache.get(_GROUP_WEIGHTS)
    if found is None:
        found = cache[_GROUP_WEIGHTS] = ({}, {})
    by_shard, by_pp = found
    shard = shard_of(layout)
    parts = by_shard.get(shard)
    if parts is None:
        parts = by_shard[shard] = (layer_bytes(spec, layout, cache), _stage_ends(spec, layout.tp, cache))
    per_shape, ends = parts
    pp = layout.pp
    groups = by_pp.get(pp)
    if groups is None:
        # each group with its ends' index into _stage_ends (first, last as bits) and its layers' counts by shape
        groups = by_pp[pp] = tuple((group, 2 * group.first + group.last, group.counts)
                                   for group in stage_groups(distinct_layers(spec.layers)[0], pp, cache))
    out = []
    for group, end, counts in groups:
        weight = ends[end]
        for shape, n in counts:
            weight += per_shape[shape] * n
        out.append((group, weight))
    return tuple(out)


def _stage_ends(spec: ModelSpec, tp: int, cache: dict) -> tuple[int, int, int, int]:
    """stage_ends_bytes, kept in `cache` per TP."""
    ends = cache.get(("stage_ends", tp))
    if ends is None:
        ends = cache[("stage_ends", tp)] = stage_ends_bytes(spec, tp)
    return ends


def total_param_count(spec: ModelSpec) -> int:
    """Parameters of the whole model (one replica, no sharding), for the rule of thumb."""
    (unquantized,) = stage_weights(replace(spec, quant=None), Layout())
    return unquantized.weight_bytes // spec.dtype_bytes - spec.rope_cache_positions * spec.rotary_dim
