"""vLLM's rules for a layout, each with the error it prevents and the fix.

Mirrors `vllm/config/model.py::verify_with_parallel_config`, `vllm/config/parallel.py`,
`vllm/model_executor/layers/linear.py` (`divide`), `vocab_parallel_embedding.py`, the quantization
methods' `create_weights`, and `_get_and_verify_max_len` (shared/reference/vllm-internals.md §3).
A refused layout is data (a Violation), never an exception.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from operator import attrgetter
from typing import NamedTuple

from msgspec import Struct

from tpfit.core.engine import EngineArgs, semantics_for
from tpfit.core.layout import Layout, shard_of
from tpfit.core.weights import by_identity, distinct_layers, padded_vocab
from tpfit.hardware.cluster import Cluster
from tpfit.core.vllm_messages import (
    BF16_CAPABILITY, DSV4_KV_CACHE_DTYPE, EP_WITHOUT_EXPERTS, FLOAT16_UNSUPPORTED, FLOAT16_UNSUPPORTED_MODEL_TYPES,
    FP8_BLOCK_K, FP8_MOE_BLOCK_N, HEADS_NOT_DIVISIBLE,
    MARLIN_GROUP_SIZE,
    MAX_LEN_ABOVE_DERIVED, NOT_DIVISIBLE, PP_NOT_SUPPORTED, PP_STAGE_WITHOUT_LAYERS, QUANT_CAPABILITY,
    QUANT_DTYPE, QUANT_INPUT_NOT_ALIGNED, QUANT_OUTPUT_NOT_ALIGNED, WORLD_SIZE_ABOVE_GPUS, Violation, VllmMessage,
)
from tpfit.kinds import KvCacheDtype, MlpKind, ModelDtype
from tpfit.model.spec import LayerSpec, ModelSpec

MARLIN_GROUP_SIZES = (-1, 32, 64, 128)
"""vLLM `MARLIN_SUPPORTED_GROUP_SIZES`."""
PACK_FACTOR_4BIT = 8
"""4-bit values per int32: column-parallel outputs of AWQ layers must split into multiples of it."""


def _valid_tps(n: int, limit: int) -> tuple[int, ...]:
    return tuple(t for t in range(1, limit + 1) if n % t == 0)


def _join(values: tuple[int, ...]) -> str:
    return ", ".join(map(str, values[:-1])) + (" or " if len(values) > 1 else "") + str(values[-1])


class _TpRule(Struct, frozen=True, kw_only=True, eq=False):
    """What a TP rule says when TP does not divide a size of the model: templates of the size `{n}` and `{tp}`, and
    vLLM's message with its two fields for them. One per rule, beside its check (compared by identity: a cache key)."""

    rule: str
    detail: str
    message: VllmMessage
    fields: tuple[str, str]
    """The message's fields for the size and for TP."""
    what: str
    """What TP must divide."""


@lru_cache(maxsize=1024)
def _tp_texts(rule: _TpRule, n: int, tp: int) -> tuple[str, str, int | None, str]:
    """`rule`'s detail and vLLM's message for size `n` at TP `tp`, the largest TP below it that divides `n` (None if
    none), and "TP must divide <what>: <the TPs up to max(tp, 8) that do>". Once per rule, size and TP: a 64-GPU
    search writes ~600 TP refusals for ~60 TP sizes (their fixes differ by PP and DP)."""
    ok_tps = _valid_tps(n, max(tp, 8))
    lower = [t for t in ok_tps if t < tp]
    size, split = rule.fields
    return (rule.detail.format(n=n, tp=tp), rule.message.format(**{size: n, split: tp}),
            lower[-1] if lower else None, f"TP must divide {rule.what.format(n=n)}: {_join(ok_tps)}")


def _tp_refusal(rule: _TpRule, n: int, layout: Layout, cluster: Cluster) -> list[Violation]:
    """`rule`'s refusal of `layout` (its TP does not divide size `n`), with its fix: PP to use the GPUs where there
    is none, or the largest smaller TP (and the GPUs it leaves free), then the TPs that divide the size."""
    detail, vllm_error, best, divide = _tp_texts(rule, n, layout.tp)
    gpus, pp = layout.world_size, layout.pp
    offer_pp = f"use --pipeline-parallel-size {gpus} on the same {gpus} GPUs" if pp == 1 and gpus > 1 else ""
    if best is None:
        fix = f"{offer_pp}; or {divide}" if offer_pp else divide
    else:
        left = cluster.num_gpus - best * pp * layout.dp
        smaller = f"--tensor-parallel-size {best}" + (f" and leave {left} GPU{'s' if left != 1 else ''} free"
                                                      if left else "")
        fix = f"{offer_pp}; or {smaller}; {divide}" if offer_pp else f"{smaller}; or {divide}"
    return [Violation(rule=rule.rule, detail=detail, vllm_error=vllm_error, fix=fix)]


_HEADS = _TpRule(rule="heads_divisible_by_tp", detail="TP={tp} is refused ({n} attention heads)",
                 message=HEADS_NOT_DIVISIBLE, fields=("heads", "tp"), what="{n} heads")


def check_heads(spec: ModelSpec, layout: Layout, cluster: Cluster) -> list[Violation]:
    """`verify_with_parallel_config`: attention heads must split evenly over TP."""
    heads, tp = spec.num_attention_heads, layout.tp
    if heads % tp == 0:
        return []
    return _tp_refusal(_HEADS, heads, layout, cluster)


_KV_HEADS = _TpRule(rule="kv_heads_split", detail="{n} KV heads do not split over TP={tp}", message=NOT_DIVISIBLE,
                    fields=("numerator", "denominator"), what="{n} KV heads")


def check_kv_heads(spec: ModelSpec, layout: Layout, cluster: Cluster) -> list[Violation]:
    """`QKVParallelLinear` / model `*Attention.__init__`: KV heads split (kv >= tp) or replicate (kv < tp)."""
    tp = layout.tp
    for kv in _sizes(spec.layers).kv_heads:
        if kv >= tp and kv % tp:
            return _tp_refusal(_KV_HEADS, kv, layout, cluster)
        if kv < tp and tp % kv:
            return [Violation(rule="kv_heads_replicate", detail=f"TP={tp} is not a multiple of {kv} KV heads",
                              vllm_error=NOT_DIVISIBLE.format(numerator=tp, denominator=kv),
                              fix=f"use a TP that is a divisor or multiple of {kv}")]
    return []


_VOCAB = _TpRule(rule="vocab_divisible_by_tp", detail="padded vocab {n} does not split over TP={tp}",
                 message=NOT_DIVISIBLE, fields=("numerator", "denominator"), what="the padded vocab {n}")


def check_vocab(spec: ModelSpec, layout: Layout, cluster: Cluster) -> list[Violation]:
    """`VocabParallelEmbedding`: the vocab, padded to 64, must split over TP."""
    padded, tp = padded_vocab(spec.vocab_size), layout.tp
    if padded % tp == 0:
        return []
    return _tp_refusal(_VOCAB, padded, layout, cluster)


_MLP = _TpRule(rule="mlp_divisible_by_tp", detail="MLP width {n} does not split over TP={tp}", message=NOT_DIVISIBLE,
               fields=("numerator", "denominator"), what="{n}")


def check_mlp_split(spec: ModelSpec, layout: Layout, cluster: Cluster) -> list[Violation]:
    """`divide(output_size, tp)` in the dense MLP layers."""
    tp = layout.tp
    for size in _sizes(spec.layers).mlp_widths:
        if size % tp:
            return _tp_refusal(_MLP, size, layout, cluster)
    return []


def check_moe_split(spec: ModelSpec, layout: Layout, cluster: Cluster) -> list[Violation]:
    """`divide(I, tp)` in FusedMoE, whose TP spans TP x DP; vLLM stops at the dense MLP first where that fails."""
    moe_tp = _moe_split(layout)
    if moe_tp == 1:
        return []
    tp, sizes = layout.tp, _sizes(spec.layers)
    for size in sizes.mlp_widths:
        if size % tp:
            return []
    for size in sizes.expert_widths:
        if size % moe_tp:
            return [Violation(rule="moe_divisible_by_tp",
                              detail=f"expert width {size} does not split over {moe_tp} ranks (TP x DP)",
                              vllm_error=NOT_DIVISIBLE.format(numerator=size, denominator=moe_tp),
                              fix="add --enable-expert-parallel (whole experts per GPU) or use a TP x DP that divides "
                                  f"{size}")]
    return []


_Shards = tuple[tuple[str, int, bool], ...]


class _Sizes(NamedTuple):
    """What the split rules read of a model's distinct layers, each ascending."""

    kv_heads: tuple[int, ...]
    mlp_widths: tuple[int, ...]
    """Dense MLPs' intermediate sizes."""
    expert_widths: tuple[int, ...]
    """MoE layers' moe_intermediate_size."""
    quant_shards: tuple[tuple[_Shards, _Shards], tuple[_Shards, _Shards]]
    """What check_quant_alignment reads, by whether the checkpoint quantizes the experts only (then the dense MLPs
    are left out): (row-parallel layers' inputs, column-parallel layers' outputs), in the layers' order, each
    (layer, whole size, split over the expert ranks (else over TP))."""


@by_identity
def _sizes(layers: tuple[LayerSpec, ...]) -> _Sizes:
    """The `_Sizes` of a model's layers, memoized by their identity (weights.by_identity): a 64-GPU search asks for
    them ~900 times."""
    distinct = distinct_layers(layers)[1]
    row_inputs: list[tuple[str, int, bool, bool]] = []  # (layer, whole size, over the experts, a dense MLP's)
    col_outputs: list[tuple[str, int, bool, bool]] = []
    for l in distinct:
        if l.attention.has_kv_heads:
            row_inputs.append(("o_proj", l.num_attention_heads * l.head_dim, False, False))
        if l.mlp is MlpKind.GATED:
            row_inputs.append(("down_proj", l.intermediate_size, False, True))
            col_outputs.append(("gate_up_proj", l.intermediate_size, False, True))
        if l.moe:
            row_inputs.append(("experts.down_proj", l.moe.moe_intermediate_size, True, False))
            col_outputs.append(("experts.gate_up_proj", l.moe.moe_intermediate_size, True, False))

    def kept(shards: list[tuple[str, int, bool, bool]], experts_only: bool) -> _Shards:
        return tuple((name, whole, experts) for name, whole, experts, mlp in shards if not (mlp and experts_only))

    quant_shards = tuple((kept(row_inputs, experts_only), kept(col_outputs, experts_only))
                         for experts_only in (False, True))
    return _Sizes(
        kv_heads=tuple(sorted({l.num_key_value_heads for l in distinct if l.attention.has_kv_heads})),
        mlp_widths=tuple(sorted({l.intermediate_size for l in distinct if l.mlp in (MlpKind.GATED, MlpKind.PLAIN)}
                                - {0})),
        expert_widths=tuple(sorted({l.moe.moe_intermediate_size for l in distinct if l.moe})),
        quant_shards=quant_shards)


def check_expert_parallel(spec: ModelSpec, layout: Layout, cluster: Cluster) -> list[Violation]:
    """`ModelConfig._verify_with_expert_parallelism`: EP needs experts."""
    if layout.enable_expert_parallel and not any(l.moe for l in distinct_layers(spec.layers)[1]):
        return [Violation(rule="ep_needs_moe", detail="expert parallel on a dense model",
                          vllm_error=EP_WITHOUT_EXPERTS.format(),
                          fix=EP_WITHOUT_EXPERTS.fix)]
    return []


def check_pipeline(spec: ModelSpec, layout: Layout, cluster: Cluster) -> list[Violation]:
    """PP needs `SupportsPP` and at least one layer per stage (uneven splits are fine)."""
    if layout.pp > 1 and not spec.supports_pp:
        return [Violation(rule="pp_supported", detail=f"{spec.architecture} has no pipeline parallel support",
                          vllm_error=PP_NOT_SUPPORTED.format(),
                          fix=PP_NOT_SUPPORTED.fix)]
    if layout.pp > spec.num_hidden_layers:
        return [Violation(rule="pp_layers", detail=f"PP={layout.pp} exceeds {spec.num_hidden_layers} layers",
                          vllm_error=PP_STAGE_WITHOUT_LAYERS.format(),
                          fix=f"use --pipeline-parallel-size <= {spec.num_hidden_layers}")]
    return []


def check_placement(spec: ModelSpec, layout: Layout, cluster: Cluster) -> list[Violation]:
    """World size vs GPUs per node (`ParallelConfig.__post_init__`) and DP ranks vs local GPUs."""
    if layout.num_gpus > cluster.num_gpus:
        return [Violation(rule="gpus_available", detail=f"{layout} needs {layout.num_gpus} GPUs, {cluster.num_gpus} given",
                          vllm_error=WORLD_SIZE_ABOVE_GPUS.format(world_size=layout.world_size,
                                                                  gpus=cluster.gpus_per_node),
                          fix=f"use sizes whose TP x PP x DP is at most {cluster.num_gpus}, or --gpus with "
                              f"{layout.num_gpus} GPUs")]
    if cluster.nodes == 1 and layout.world_size > cluster.gpus_per_node:
        return [Violation(rule="world_size", detail=f"TP x PP = {layout.world_size} > {cluster.gpus_per_node} GPUs",
                          vllm_error=WORLD_SIZE_ABOVE_GPUS.format(world_size=layout.world_size,
                                                                  gpus=cluster.gpus_per_node),
                          fix="lower TP x PP, or add nodes (--gpus 2x8xH100) with a Ray backend")]
    # TP across nodes is allowed (Ray warns); the ranking keeps it last (recommend._score)
    return []


def check_quant_alignment(spec: ModelSpec, layout: Layout, cluster: Cluster) -> list[Violation]:
    """Quantized shards must hold whole quant groups / FP8 blocks / packed int32s."""
    q = spec.quant
    if q is None:
        return []
    tp, moe_tp = layout.tp, _moe_split(layout)
    # row-parallel layers' inputs and column-parallel layers' outputs, (layer, whole size, split over the expert ranks
    # (else over TP)); a size per GPU is whole // (moe_tp if experts else tp)
    row_inputs, col_outputs = _sizes(spec.layers).quant_shards[q.experts_only]
    if q.method in ("awq", "gptq", "compressed-tensors") and q.weight_bits == 4:
        if q.method == "gptq" and q.group_size not in MARLIN_GROUP_SIZES:
            return [Violation(rule="marlin_group_size", detail=f"group_size {q.group_size}",
                              vllm_error=MARLIN_GROUP_SIZE.format(group_size=q.group_size,
                                                                  supported=list(MARLIN_GROUP_SIZES)),
                              fix="use a checkpoint quantized with group size 32, 64 or 128")]
        g = q.group_size
        for name, whole, experts in row_inputs:
            size = whole // (moe_tp if experts else tp)
            if g > 0 and size % g:
                return [Violation(
                    rule="quant_group_alignment",
                    detail=f"{name} input per GPU {size} is not a whole number of {g}-wide quant groups at TP={tp}",
                    vllm_error=QUANT_INPUT_NOT_ALIGNED.format(),
                    fix="use a smaller --tensor-parallel-size (add --pipeline-parallel-size to use the GPUs)")]
        for name, whole, experts in col_outputs:
            size = whole // (moe_tp if experts else tp)
            if size % PACK_FACTOR_4BIT:
                return [Violation(
                    rule="quant_pack_alignment", detail=f"{name} output per GPU {size} is not a multiple of 8",
                    vllm_error=QUANT_OUTPUT_NOT_ALIGNED.format(),
                    fix="use a smaller --tensor-parallel-size")]
    if q.weight_bits == 8 and q.block_n:
        for name, whole, experts in row_inputs:
            size = whole // (moe_tp if experts else tp)
            if size % q.block_k:
                return [Violation(
                    rule="fp8_block_alignment",
                    detail=f"{name} input per GPU {size} is not a multiple of the FP8 block {q.block_k} at TP={tp}",
                    vllm_error=FP8_BLOCK_K.format(size=size, block_k=q.block_k),
                    fix="use a smaller --tensor-parallel-size, or --enable-expert-parallel for MoE models")]
        for name, whole, experts in col_outputs:
            if experts and (size := whole // moe_tp) % q.block_n:
                return [Violation(
                    rule="fp8_block_alignment",
                    detail=f"expert gate/up output per GPU {size} is not a multiple of the FP8 block {q.block_n}",
                    vllm_error=FP8_MOE_BLOCK_N.format(size=size, block_n=q.block_n),
                    fix="add --enable-expert-parallel (whole experts per GPU) or use a smaller --tensor-parallel-size")]
    return []


def check_gpu_support(spec: ModelSpec, cluster: Cluster, engine: EngineArgs) -> list[Violation]:
    """`_get_quantization_config` / dtype checks: the GPU's compute capability vs the weight format."""
    cc = cluster.gpu.compute_capability
    if cc is None or cluster.gpu.vendor != "NVIDIA":
        return []
    out = []
    method = spec.quant.method if spec.quant else engine.quantization
    need = {"fp8": 8.0, "modelopt": 8.9, "modelopt_fp4": 10.0, "awq": 7.5, "gptq": 6.0, "mxfp4": 8.0}.get(method or "", 0)
    if cc < need:
        out.append(Violation(
            rule="quant_gpu_capability", detail=f"{method} needs compute capability {need}, {cluster.gpu.name} has {cc}",
            vllm_error=QUANT_CAPABILITY.format(method=method, minimum=int(need * 10), current=int(cc * 10)),
            fix=QUANT_CAPABILITY.fix))
    if spec.dtype == "bfloat16" and cc < 8.0:  # an explicit --dtype bfloat16, or auto before 0.9.1 (resolve_model)
        if not semantics_for(engine.vllm_version).dtype_auto_fallback:
            fix = "use --dtype half" + (" (vLLM before 0.9.1 keeps bfloat16 under --dtype auto)"
                                        if engine.dtype is ModelDtype.AUTO else "")
        elif spec.model_type in FLOAT16_UNSUPPORTED_MODEL_TYPES:
            fix = (f"use --dtype float32 (or --dtype auto, which vLLM turns into float32 here: it refuses float16 for "
                   f"{spec.model_type})")
        else:
            fix = BF16_CAPABILITY.fix
        out.append(Violation(
            rule="bf16_gpu_capability", detail=f"bfloat16 needs compute capability 8.0, {cluster.gpu.name} has {cc}",
            vllm_error=BF16_CAPABILITY.format(gpu_name=cluster.gpu.name, capability=cc), fix=fix))
    return out


def check_model_dtype(spec: ModelSpec, engine: EngineArgs) -> list[Violation]:
    """`_check_valid_dtype` (0.9.1 to 0.33): float16 given for a model type vLLM refuses it for (Gemma 2)."""
    reason = FLOAT16_UNSUPPORTED_MODEL_TYPES.get(spec.model_type)
    if reason is None or spec.dtype != "float16" or not semantics_for(engine.vllm_version).dtype_auto_fallback:
        return []
    return [Violation(rule="model_dtype", detail=f"{spec.model_type} does not compute in float16 in vLLM",
                      vllm_error=FLOAT16_UNSUPPORTED.format(model_type=spec.model_type, reason=reason),
                      fix=FLOAT16_UNSUPPORTED.fix)]


def check_kv_cache_dtype(spec: ModelSpec, cluster: Cluster, engine: EngineArgs) -> list[Violation]:
    """DeepSeek-V4 on the FlashMLA path (every NVIDIA GPU but compute capability 12.x, `_select_dsv4_attn_cls`,
    0.33 models/deepseek_v4/nvidia/model.py:537-567) stores fp8_ds_mla and refuses a 16-bit --kv-cache-dtype."""
    sixteen_bit = engine.kv_cache_dtype in (KvCacheDtype.BFLOAT16, KvCacheDtype.FLOAT16)
    if not sixteen_bit or not any(layer.compress_ratio for layer in spec.layers):
        return []
    cc = cluster.gpu.compute_capability
    if cluster.gpu.vendor != "NVIDIA" or (cc is not None and int(cc) == 12):
        return []
    return [Violation(rule="dsv4_kv_cache_dtype", detail=f"DeepSeek-V4 caches fp8_ds_mla, not {engine.kv_cache_dtype}",
                      vllm_error=DSV4_KV_CACHE_DTYPE.format(kv_cache_dtype=engine.kv_cache_dtype.value),
                      fix=DSV4_KV_CACHE_DTYPE.fix)]


def check_max_model_len(spec: ModelSpec, engine: EngineArgs) -> list[Violation]:
    """`_get_and_verify_max_len`: a user max_model_len above the derived maximum is refused."""
    if engine.max_model_len is None or engine.max_model_len <= spec.max_model_len:
        return []
    return [Violation(
        rule="max_model_len", detail=f"--max-model-len {engine.max_model_len} > the model's {spec.max_model_len}",
        vllm_error=MAX_LEN_ABOVE_DERIVED.format(max_model_len=engine.max_model_len, max_len_key=spec.max_len_key,
                                                derived=float(spec.max_model_len), model_max_length=None),
        fix=f"use --max-model-len {spec.max_model_len} or less")]


LAYOUT_RULES = (check_placement, check_heads, check_vocab, check_kv_heads, check_mlp_split, check_moe_split,
                check_expert_parallel, check_pipeline, check_quant_alignment)


def check_layout(spec: ModelSpec, layout: Layout, cluster: Cluster, engine: EngineArgs) -> tuple[Violation, ...]:
    """Every reason vLLM would refuse this layout (empty when it accepts it), in the order vLLM
    meets them: config checks, then the embedding, then the layers."""
    found: list[Violation] = []
    for rule in LAYOUT_RULES:
        found.extend(rule(spec, layout, cluster))
    return (*found, *model_wide_violations(spec, cluster, engine))


QUANT_ACT_DTYPES = {
    "awq": ("float16", "bfloat16"), "gptq": ("float16", "bfloat16"), "fp8": ("bfloat16", "float16"),
    "mxfp4": ("bfloat16",), "modelopt": ("bfloat16", "float16"), "modelopt_fp4": ("bfloat16", "float16"),
}
"""`get_supported_act_dtypes` of the quantization config vLLM loads each method with (0.26.0 and 0.33.0:
auto_awq.py / auto_gptq.py, fp8.py (online fp8 too), mxfp4.py, modelopt.py's Fp8 and NvFp4 configs; 0.19's
awq_marlin / gptq_marlin, which vLLM picks on the GPUs these dtypes run on). compressed-tensors also takes float32."""


def check_quant_dtype(spec: ModelSpec, engine: EngineArgs) -> list[Violation]:
    """`_get_quantization_config`: the model's dtype must be one the quantization method computes in (a float32 AWQ
    model, `--dtype half` on an MXFP4 checkpoint)."""
    method = spec.quant.method if spec.quant else engine.quantization
    supported = QUANT_ACT_DTYPES.get(method or "")
    if supported is None or spec.dtype in supported:
        return []
    listed = "[" + ", ".join(f"torch.{d}" for d in supported) + "]"
    return [Violation(rule="quant_dtype", detail=f"{method} weights compute in {' or '.join(supported)}, not "
                                                 f"{spec.dtype}",
                      vllm_error=QUANT_DTYPE.format(dtype=f"torch.{spec.dtype}", method=method, supported=listed),
                      fix=f"use --dtype auto or --dtype {supported[0]}")]


def model_wide_violations(spec: ModelSpec, cluster: Cluster, engine: EngineArgs) -> tuple[Violation, ...]:
    """The checks no layout changes (the GPU, the KV-cache dtype, --max-model-len), after the layout rules: one
    list for `check_layout` and `layout_checker`."""
    return (*check_gpu_support(spec, cluster, engine), *check_quant_dtype(spec, engine),
            *check_model_dtype(spec, engine),
            *check_kv_cache_dtype(spec, cluster, engine), *check_max_model_len(spec, engine))


# what a rule reads of a layout (RULE_FACTORS); plain fields are read by attrgetter, in C: a 64-GPU search reads
# each of them for ~1500 layouts
_tp = attrgetter("tp")
_ep = attrgetter("enable_expert_parallel")
_pp = attrgetter("pp")


def _gpus(lay: Layout) -> tuple[int, int]:
    """(lay.num_gpus, lay.world_size) as one product: the two properties cost three Python calls per layout
    (tests/test_search_shortcuts.py ties this to them)."""
    world = lay.tp * lay.pp
    return world * lay.dp, world


def _moe_split(lay: Layout) -> int:
    """Ranks each expert's width is split over: TP x DP (Layout.moe_parallel_size, written as the product: one Python
    call, not two; a test ties them), or 1 under expert parallel (whole experts per GPU)."""
    return 1 if lay.enable_expert_parallel else lay.tp * lay.dp


def _expert_split(lay: Layout) -> tuple[int, int]:
    """(TP, _moe_split) in one Python call, not three (tests/test_search_shortcuts.py ties it to them): a 64-GPU
    search reads it ~1500 times."""
    tp = lay.tp
    return tp, 1 if lay.enable_expert_parallel else tp * lay.dp


def _tp_fix_reads(lay: Layout) -> tuple[int, bool, int]:
    """What a TP refusal's fix reads (`_tp_refusal`): TP, whether PP is 1 (then it offers PP = TP), and the stages
    x replicas that a smaller TP leaves GPUs free for (PP x DP)."""
    return lay.tp, lay.pp == 1, lay.pp * lay.dp


def _whole_layout(lay: Layout) -> Layout:
    return lay


RULE_FACTORS: dict[Callable, tuple[Callable[[Layout], object], Callable[[Layout], object]]] = {
    check_placement: (_gpus, _whole_layout),
    check_heads: (_tp, _tp_fix_reads),
    check_vocab: (_tp, _tp_fix_reads),
    check_kv_heads: (_tp, _tp_fix_reads),
    check_mlp_split: (_tp, _tp_fix_reads),
    check_moe_split: (_expert_split, _moe_split),
    check_expert_parallel: (_ep, _ep),
    check_pipeline: (_pp, _pp),
    check_quant_alignment: (_expert_split, _expert_split),
}
"""What each layout rule reads of the layout: for its verdict (refuse or not), and for its message (a fix may
name the PP and DP sizes). `layout_checker` decides each rule once per value of the first and writes each
message once per value of the second. Every rule of LAYOUT_RULES is listed (tests/test_search_shortcuts.py)."""


_SHARD_READS = frozenset({_tp, _ep, _moe_split, _expert_split})
"""The reads of RULE_FACTORS that are functions of a layout's shard alone (layout.shard_of: TP, DP, EP; a test checks
it): a rule whose verdict reads one of them is decided once per shard, and its message, if it reads one of them too,
is the same for every layout of the shard. The others (placement, pipeline) read the PP size."""


def layout_checker(spec: ModelSpec, cluster: Cluster, engine: EngineArgs) -> Callable[[Layout], tuple[Violation, ...]]:
    """`check_layout` for the many layouts of one search, with the same answers: a rule's verdict is worked out
    once per value of its RULE_FACTORS (a 64-GPU search has ~1500 layouts but 64 TP sizes), its message once per
    value of what the message reads, and the model-wide checks once.

    A layout's answer is then a few dict look-ups (~0.6 us): the verdicts of placement and pipeline, which read the
    PP size (when either refuses, which is rare, every rule is gathered as `check_layout` does); the layout's shard
    (`_SHARD_READS`: ~560 shards in a 64-GPU search, ~1500 layouts), which holds what the other rules say that reads
    the shard alone, joined with the model-wide checks; and the messages that read more (the TP fixes name the PP and
    DP sizes), joined once per value of what they read."""
    model_wide = model_wide_violations(spec, cluster, engine)
    groups: dict[Callable[[Layout], object], list[Callable]] = {}
    for rule in LAYOUT_RULES:
        groups.setdefault(RULE_FACTORS[rule][0], []).append(rule)
    verdicts = [(factors, tuple(rules), {}) for factors, rules in groups.items()]
    by_shard = [group for group in verdicts if group[0] in _SHARD_READS]
    by_layout = [group for group in verdicts if group[0] not in _SHARD_READS]
    order = {rule: i for i, rule in enumerate(LAYOUT_RULES)}
    messages = {rule: (RULE_FACTORS[rule][1], {}) for rule in LAYOUT_RULES}
    joined: dict[tuple[Callable, ...], dict] = {}  # refusing rules -> what their messages read -> their messages
    shapes: dict[tuple[Callable, ...], tuple] = {}  # refusing shard rules -> shape(them)
    rows: dict[tuple[int, int, bool], tuple] = {}  # shard -> shard_row(a layout of it)

    def refusing(group: tuple, layout: Layout) -> tuple[Callable, ...]:
        """The rules of a verdict group that refuse `layout`, decided once per value of what they read; a refusing
        rule's message for this layout is kept, for the other layouts whose messages read alike."""
        factors, rules, seen = group
        key = factors(layout)
        hit = seen.get(key)
        if hit is None:
            found = []
            for rule in rules:
                said = rule(spec, layout, cluster)
                if said:
                    reads, written = messages[rule]
                    written.setdefault(reads(layout), tuple(said))
                    found.append(rule)
            hit = seen[key] = tuple(found)
        return hit

    def say(rules: tuple[Callable, ...], layout: Layout) -> tuple[Violation, ...]:
        """The messages of `rules` (in vLLM's order) for `layout`, each written once per value of what it reads."""
        found: tuple[Violation, ...] = ()
        for rule in rules:
            reads, written = messages[rule]
            key = reads(layout)
            said = written.get(key)
            if said is None:
                said = written[key] = tuple(rule(spec, layout, cluster))
            found += said
        return found

    def check_each(layout: Layout) -> tuple[Violation, ...]:
        """Any layout: every verdict group, the refusing rules put in vLLM's order."""
        found: tuple[Callable, ...] = ()
        for group in verdicts:
            found += refusing(group, layout)
        if not found:
            return model_wide
        return say(tuple(sorted(found, key=order.__getitem__)), layout) + model_wide

    def shape(found: tuple[Callable, ...]) -> tuple:
        """How the answer of a shard whose refusing rules are `found` is joined: (the rules whose messages read more
        than the shard, in vLLM's order; what those messages read, None if there are none; their messages by it, shared
        by the shards that have the same such rules; the rules whose messages read the shard alone). Worked out once
        per set of refusing rules: a search meets a handful."""
        rules = tuple(sorted(found, key=order.__getitem__))
        varying = tuple(rule for rule in rules if RULE_FACTORS[rule][1] not in _SHARD_READS)
        reads = {RULE_FACTORS[rule][1] for rule in varying}
        if len(reads) > 1 or rules[:len(varying)] != varying:
            # no rules are listed so today (tests/test_search_shortcuts.py): then each layout's messages are joined
            return rules, _whole_layout, joined.setdefault(rules, {}), ()
        return varying, (reads.pop() if reads else None), joined.setdefault(varying, {}), rules[len(varying):]

    def shard_row(layout: Layout) -> tuple:
        """What the shard's rules say of the layouts of `layout`'s shard: (what their per-layout messages read, None
        if none; those messages by it; their rules; the messages that read the shard alone + the model-wide ones)."""
        found: tuple[Callable, ...] = ()
        for group in by_shard:
            found += refusing(group, layout)
        joins = shapes.get(found)
        if joins is None:
            joins = shapes[found] = shape(found)
        varying, reads, written, fixed = joins
        return reads, written, varying, say(fixed, layout) + model_wide

    def check(layout: Layout) -> tuple[Violation, ...]:
        for group in by_layout:  # placement and pipeline: when either refuses, every rule is gathered
            factors, _, seen = group
            hit = seen.get(factors(layout))
            if hit is None:
                hit = refusing(group, layout)
            if hit:
                return check_each(layout)
        shard = shard_of(layout)
        row = rows.get(shard)
        if row is None:
            row = rows[shard] = shard_row(layout)
        reads, written, rules, tail = row
        if reads is None:
            return tail
        key = reads(layout)
        said = written.get(key)
        if said is None:
            said = written[key] = say(rules, layout)
        return said + tail

    return check
