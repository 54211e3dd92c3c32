"""Memory as vLLM accounts it, per GPU, and the KV cache that fits.

Mirrors `vllm/v1/worker/utils.py::request_memory`, `gpu_worker.py::determine_available_memory`
and `kv_cache_planning.py::get_kv_cache_configs` (shared/reference/vllm-internals.md §1, §2, §7):

    requested = total x gpu_memory_utilization
    kv_cache  = requested - weights - activation_peak - non_torch [- cuda_graphs, newer vLLM]
    blocks    = min over GPUs of kv_cache // bytes_per_block;  one block is held back (null block)

Activation peak, non-torch memory and CUDA-graph memory can't be derived from a config: they come
from a MemoryModel (core/memory_model.py), fitted by bench/fit_memory_model.py and passed in.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from operator import attrgetter, itemgetter

from msgspec import Struct

from tpfit.core.engine import EngineArgs, Semantics, check_batch, mamba_cache_mode, uses_model_runner_v2
from tpfit.core.kv import KVGeometry, kv_bytes_per_element, make_kv_geometry
from tpfit.core.layout import Layout, StageGroup
from tpfit.core.memory_model import EraConstants, MemoryModel, ProfileEra
from tpfit.core.startup import (
    check_fits_card, check_free_memory, check_kv_cache_fits_max_len, check_kv_cache_memory,
    check_v0_kv_cache_fits_max_len, reason,
    requested_bytes,
)
from tpfit.core.vllm_messages import V0_BATCH_BELOW_MAX_LEN, Violation
from tpfit.core.weights import distinct_layers, group_weights, padded_vocab
from tpfit.errors import UsageError
from tpfit.hardware.cluster import Cluster
from tpfit.kinds import AttentionKind, MambaCacheMode, Verdict
from tpfit.model.spec import LayerSpec, ModelSpec
from tpfit.units import GIB, cdiv, format_gib, gib

def state_blocks(mode: MambaCacheMode, length: int, block_size: int) -> int:
    """Blocks a mamba/GDN group holds for one request of `length` tokens (`MambaSpec.max_memory_usage_bytes`, no
    speculative decoding): one ("none"), two ("align"), or one per block of the request ("all")."""
    if mode is MambaCacheMode.ALL:
        return cdiv(length, block_size)
    return 2 if mode is MambaCacheMode.ALIGN else 1

RUNTIME_GROWTH = GIB
"""Memory a server adds at its first requests (buffers outside torch for the real shapes: NCCL, cuBLAS;
allocator fragmentation), on top of budget + CUDA graphs + context. Real vLLM 0.26 runs ran out of memory
at their first request with 0.88 GiB (Llama-3.1-70B, 2xH100 TP=2, gmu 0.95: ../shared/gpu-vllm), 0.11 GiB
(70B, 4xH200 TP=4, 0.98: calibration/vllm-0.26-h200x4/l70-tp4-g98.log) and 0.28 GiB (Llama-3.1-8B, 1xH200,
0.988: calibration/vllm-0.26-h200x1, short by 0.43 GiB more) predicted free, and served with 4.31 GiB
(l70-tp4-g95)."""


class BatchDefaults(Struct, frozen=True, kw_only=True):
    max_num_seqs: int
    max_num_batched_tokens: int


V0_MAX_NUM_SEQS = 256
"""V0 `EngineArgs.max_num_seqs` default (0.6.0 arg_utils.py)."""
V0_CHUNKED_PREFILL_ABOVE = 32768
"""V0 turns chunked prefill on by default only for max_model_len above this (0.6.0 arg_utils.py line 843)."""
V0_CHUNKED_BATCHED_TOKENS = ((0, 6, 0), 512), ((0, 6, 5), 2048)
"""V0 `SchedulerConfig` max_num_batched_tokens with chunked prefill, from the release that set it: 512 in the
0.6.0 to 0.6.4 wheels' config.py (0.6.0 line 977), 2048 from 0.6.5 (line 1344; 0.7.3 line 1532)."""
V0_MIN_BATCHED_TOKENS = 2048
"""V0 without chunked prefill: max_num_batched_tokens = max(max_model_len, 2048) (0.6.0 config.py line 981)."""


def batch_defaults(cluster: Cluster, engine: EngineArgs, sem: Semantics, max_model_len: int) -> BatchDefaults:
    """`EngineArgs.get_batch_defaults` by device memory, then vLLM's clamps (§4 of the reference); the V0
    engine's `SchedulerConfig` defaults before 0.8."""
    seqs_given, tokens_given = engine.max_num_seqs is not None, engine.max_num_batched_tokens is not None
    if sem.engine_v0:
        seqs = engine.max_num_seqs or V0_MAX_NUM_SEQS
        chunked = max_model_len > V0_CHUNKED_PREFILL_ABOVE
        chunk = next(n for v, n in reversed(V0_CHUNKED_BATCHED_TOKENS) if sem.version >= v)
        tokens = engine.max_num_batched_tokens or (chunk if chunked else max(max_model_len, V0_MIN_BATCHED_TOKENS))
        if not chunked and tokens < max_model_len:  # only a given batch can be; V0 refuses it
            quoted = V0_BATCH_BELOW_MAX_LEN.format(max_num_batched_tokens=tokens, max_model_len=max_model_len)
            raise UsageError(f"below --max-model-len {max_model_len}, which vLLM {engine.vllm_version} refuses "
                             f"without chunked prefill (\"{quoted.split('. ')[0]}\"); use --max-num-batched-tokens "
                             f"{max_model_len} or more, or a shorter --max-model-len", flag="--max-num-batched-tokens",
                             value=tokens)
        check_batch(max_num_seqs=seqs, max_num_batched_tokens=tokens, seqs_given=seqs_given, tokens_given=tokens_given)
        return BatchDefaults(max_num_seqs=seqs, max_num_batched_tokens=tokens)
    mem = cluster.gpu.cuda_total_bytes
    if sem.three_batch_tiers and mem >= 160 * GIB:
        tokens, seqs = 16384, 1024
    elif mem >= 70 * GIB and not cluster.gpu.is_a100:
        tokens, seqs = (8192 if engine.api_server else 16384), 1024
    else:
        tokens, seqs = (2048 if engine.api_server else 8192), 256
    seqs = engine.max_num_seqs or seqs
    if engine.max_num_batched_tokens:
        tokens = engine.max_num_batched_tokens
    else:
        tokens = min(seqs * max_model_len, tokens)
    if seqs_given:  # vLLM lowers only its own default to the batch
        check_batch(max_num_seqs=seqs, max_num_batched_tokens=tokens, seqs_given=True, tokens_given=tokens_given)
    return BatchDefaults(max_num_seqs=min(seqs, tokens), max_num_batched_tokens=tokens)


_num_blocks = attrgetter("num_blocks")
"""A GpuMemory's number of blocks: the key that picks the GPU limiting the KV cache."""


class GpuMemory(Struct, frozen=True, kw_only=True, gc=False):
    """One GPU's share of vLLM's budget (all TP ranks of a pipeline stage are alike). Its pipeline stage is its
    place in `MemoryPlan.gpus`."""

    total_bytes: int
    requested_bytes: int
    weight_bytes: int
    activation_bytes: int
    non_torch_bytes: int
    cuda_graph_bytes: int
    """Estimated CUDA-graph pool; inside the budget only where `cudagraphs_in_budget` says."""
    pre_snapshot_bytes: int
    """CUDA context and communication buffers made before vLLM's memory snapshot: outside the budget."""
    kv_cache_bytes: int
    """What vLLM would log as "Available KV cache memory" (may be negative: it will not start)."""
    bytes_per_block: int
    num_blocks: int
    cuda_graph_bytes_in_budget: bool = False
    cuda_graph_budget_bytes: int | None = None
    """What vLLM subtracts from the budget for its graphs when they are in it: its own estimate (the V1 runner's
    profile of two captures, below the pool it then gets); None means the whole pool."""

    @property
    def outside_budget_bytes(self) -> int:
        """What the server holds beyond gpu_memory_utilization from its start: CUDA graphs where the version
        leaves them out of the budget (or their pool beyond the estimate it subtracted), and the context made
        before vLLM's snapshot."""
        if not self.cuda_graph_bytes_in_budget:
            return self.cuda_graph_bytes + self.pre_snapshot_bytes
        budgeted = self.cuda_graph_bytes if self.cuda_graph_budget_bytes is None else self.cuda_graph_budget_bytes
        beyond = self.cuda_graph_bytes - budgeted
        return (beyond if beyond > 0 else 0) + self.pre_snapshot_bytes

    @property
    def peak_bytes(self) -> int:
        """The process footprint when serving: the budget plus what sits outside it."""
        return self.requested_bytes + self.outside_budget_bytes

    @property
    def free_bytes(self) -> int:
        """What is left on the card while serving."""
        return self.total_bytes - self.peak_bytes


class MemoryPlan(Struct, frozen=True, kw_only=True, gc=False):
    """The KV cache a layout gets and what it holds."""

    gpus: tuple[GpuMemory, ...]
    """One entry per pipeline stage, in rank order (stages alike share one value: DeepSeek-V3 at PP=61 has 4)."""
    block_size: int
    kv_bytes_per_token: int
    """KV bytes one token costs on the GPU that limits the cache (its layers only; groups padded as vLLM pads them)."""
    kv_cache_tokens: int
    max_model_len: int
    max_concurrency: float
    max_model_len_fit: int
    """The largest max_model_len whose one request fits (vLLM's "estimated maximum model length")."""
    max_num_seqs: int
    max_num_batched_tokens: int
    gpu_memory_utilization: float
    verdict: Verdict
    reasons: tuple[str, ...]
    refusal: Violation | None = None
    """The start-up check vLLM fails (core/startup.py), when the verdict is refused_at_start."""

    @property
    def vllm_error(self) -> str:
        """What vLLM would print when it refuses to start ("" when it starts)."""
        return self.refusal.vllm_error if self.refusal else ""

    @property
    def worst(self) -> GpuMemory:
        """The GPU with the fewest blocks (the first in rank order if several): it limits the KV cache."""
        return min(self.gpus, key=_num_blocks)

    def to_dict(self) -> dict:
        w = self.worst
        return {
            "weights_gib": gib(w.weight_bytes),
            "activation_gib": gib(w.activation_bytes),
            "non_torch_gib": gib(w.non_torch_bytes),
            "cuda_graph_gib": gib(w.cuda_graph_bytes),
            "kv_cache_gib": gib(w.kv_cache_bytes),
            "kv_bytes_per_token": self.kv_bytes_per_token,
            "kv_cache_tokens": self.kv_cache_tokens,
            "max_concurrency": round(self.max_concurrency, 2),
            "max_model_len": self.max_model_len,
            "max_model_len_fit": self.max_model_len_fit,
            "block_size": self.block_size,
            "num_gpu_blocks": w.num_blocks,
            "max_num_seqs": self.max_num_seqs,
            "max_num_batched_tokens": self.max_num_batched_tokens,
            "gpu_memory_utilization": self.gpu_memory_utilization,
            "free_gib_per_gpu": gib(min(x.free_bytes for x in self.gpus)),
            "verdict": self.verdict,
            "reasons": list(self.reasons),
            "vllm_error": self.vllm_error,
            "per_stage": [
                {"pp_rank": rank, "weights_gib": gib(x.weight_bytes), "activation_gib": gib(x.activation_bytes),
                 "non_torch_gib": gib(x.non_torch_bytes), "cuda_graph_gib": gib(x.cuda_graph_bytes),
                 "kv_cache_gib": gib(x.kv_cache_bytes), "num_blocks": x.num_blocks, "free_gib": gib(x.free_bytes)}
                for rank, x in enumerate(self.gpus)
            ],
        }


def _mlp_width_per_gpu(spec: ModelSpec, layout: Layout, layers: range) -> int:
    """Widest per-GPU dense MLP activation of the stage: I/tp, or an MoE layer's shared experts (its routed
    experts work in the fused-MoE workspace instead, `moe_workspace_bytes`)."""
    width = 0
    index, distinct = distinct_layers(spec.layers)
    for layer in (distinct[i] for i in set(index[layers.start:layers.stop])):
        w = layer.moe.shared_intermediate_size // layout.tp if layer.moe else layer.intermediate_size // layout.tp
        width = max(width, w)
    return width


WORKSPACE_ALIGN = 256
"""`WorkspaceManager.get_simultaneous` rounds each view of the shared buffer up to 256 bytes."""


def moe_workspace_bytes(spec: ModelSpec, layout: Layout, layers: range, tokens: int, *, v0: bool = False) -> int:
    """The fused-MoE workspace the profile run leaves allocated: vLLM's modular kernel takes workspace13 and
    workspace2 from one persistent `WorkspaceManager` buffer (v1/worker/workspace.py, 0.19 to 0.33), sized by the
    widest MoE layer for all `tokens` of the dummy batch at once (no chunking: `_fused_experts` passes M_full as
    M_chunk), and never frees it, so it sits under the rest of the peak.

    Shapes (`workspace_shapes`, activation dtype), with M tokens, N = 2 x the expert width per GPU (gate + up),
    K = hidden:
    - TritonExperts (bf16/fp16 and FP8 experts): ws13 = max(M x top_k x max(N/2, K), M x K) (the output reuses
      it), ws2 = M x top_k x max(N, K).
    - OAITritonExperts (MXFP4 experts, gpt-oss): ws13 = M x K, ws2 = M x top_k x N/2.
    The expert width per GPU is moe_intermediate_size / (TP x DP), or all of it with expert parallel; with DP > 1
    each rank's MoE sees every DP rank's tokens (all-gathered dispatch).
    V0 (`v0=True`, 0.6/0.7 `fused_moe.fused_experts`): three caches per call, (M, top_k, N), (M x top_k, N/2) and
    (M, top_k, K), freed after each layer but kept by the allocator's reserve that V0 measures.
    """
    index, distinct = distinct_layers(spec.layers)
    return _moe_workspace(spec, (distinct[i] for i in set(index[layers.start:layers.stop])), tokens * layout.dp,
                          None if layout.enable_expert_parallel else layout.moe_parallel_size, v0=v0)


def _moe_workspace(spec: ModelSpec, layers: Iterable[LayerSpec], m: int, moe_parallel_size: int | None, *,
                   v0: bool) -> int:
    """moe_workspace_bytes for these distinct layers and M tokens, the experts split over `moe_parallel_size`
    ranks, or whole on each with expert parallel (None). A search keys it by what it reads."""
    mxfp4 = spec.quant is not None and spec.quant.method == "mxfp4"

    def aligned(elements: int) -> int:
        return -(-elements * spec.dtype_bytes // WORKSPACE_ALIGN) * WORKSPACE_ALIGN

    best = 0
    for layer in layers:
        if not layer.moe:
            continue
        moe = layer.moe
        width = moe.moe_intermediate_size
        if moe_parallel_size is not None:
            width //= moe_parallel_size
        n, k, top_k = 2 * width, spec.hidden_size, moe.num_experts_per_tok
        if v0:
            ws13, ws2 = m * top_k * (n + n // 2), m * top_k * k
        elif mxfp4:
            ws13, ws2 = m * k, m * top_k * (n // 2)
        else:
            ws13, ws2 = max(m * top_k * max(n // 2, k), m * k), m * top_k * max(n, k)
        best = max(best, aligned(ws13) + aligned(ws2))
    return best


def profile_era(spec: ModelSpec, sem: Semantics) -> ProfileEra:
    """The model runner this model starts on in this version (`engine.uses_model_runner_v2`), or V0's."""
    if sem.engine_v0:
        return ProfileEra.ENGINE_V0
    v2 = uses_model_runner_v2(sem.version, architecture=spec.architecture, is_moe=spec.is_moe,
                              is_hybrid=any(layer.attention in ("mamba", "gdn") for layer in distinct_layers(spec.layers)[1]),
                              is_quantized=spec.quant is not None)
    return ProfileEra.MODEL_RUNNER_V2 if v2 else ProfileEra.MODEL_RUNNER_V1


def cudagraphs_in_budget(spec: ModelSpec, sem: Semantics) -> bool:
    """V1's GPUModelRunner subtracts its CUDA-graph estimate once VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS defaults
    to 1 (0.20); Model Runner V2 where `Semantics.cudagraphs_in_budget` says."""
    era = profile_era(spec, sem)
    if era is ProfileEra.MODEL_RUNNER_V2:
        return sem.cudagraphs_in_budget
    return era is ProfileEra.MODEL_RUNNER_V1 and sem.version >= (0, 20, 0)


def activation_bytes(spec: ModelSpec, layout: Layout, layers: range, *, last_stage: bool, batch: BatchDefaults,
                     sem: Semantics, mm: MemoryModel) -> int:
    """Peak of the profile run: the fused-MoE workspace (MoE models; it stays allocated) under the largest of the
    forward of max_num_batched_tokens tokens, the sampler phase on the last stage, and Model Runner V2's floor / TP.

    The sampler phase is the sampler's [min(max_num_seqs, tokens) x vocab] logits on top of the forward's output,
    [tokens x hidden] in the model dtype, which `profile_run` still holds while it samples (0.19
    v1/worker/gpu_model_runner.py:5782-5793 and 0.26 v1/worker/gpu/model_runner.py:673-684: `hidden_states` is
    deleted only after `_dummy_sampler_run`; V0: 0.6.0 worker/model_runner.py:1450-1493, the same in one call).
    Counting it makes the sixteen sampler-dominated 0.19 rows agree on one per-logit cost within 3.5 % (4.5 %
    without it), and predicts Qwen2.5-72B at TP=2 (a 8192-wide hidden) within 0.01 GiB instead of 0.05."""
    return (forward_peak_bytes(spec, layout, layers, last_stage=last_stage, batch=batch, mm=mm,
                               era=mm.era(profile_era(spec, sem)))
            + moe_workspace_bytes(spec, layout, layers, batch.max_num_batched_tokens, v0=sem.engine_v0))


def forward_peak_bytes(spec: ModelSpec, layout: Layout, layers: range, *, last_stage: bool, batch: BatchDefaults,
                       mm: MemoryModel, era: EraConstants) -> int:
    """activation_bytes less the fused-MoE workspace: what TP and the stage's layer shapes decide (not DP or the
    expert split)."""
    tokens, rows = batch.max_num_batched_tokens, batch.max_num_seqs
    forward = tokens * (mm.bytes_per_token_per_mlp_width_bf16 * _mlp_width_per_gpu(spec, layout, layers)
                        + mm.bytes_per_token_per_hidden_bf16 * spec.hidden_size) * spec.dtype_bytes / 2
    sampler = (tokens * spec.hidden_size * spec.dtype_bytes
               + rows * padded_vocab(spec.vocab_size) * era.sampler_bytes_per_logit) if last_stage else 0
    # V2 (0.26) never reported less at TP=1, whatever the model; at TP=4 it reported 0.69 GiB for Llama-3.1-8B
    # (calibration/vllm-0.26-h200x4), so the floor shrinks with TP. Its cause is unknown; 1/TP is the
    # smallest assumption every run agrees with.
    floor = era.activation_floor_gib * GIB / layout.tp
    return int(max(forward, sampler, floor))


def non_torch_bytes(layout: Layout, sem: Semantics, mm: MemoryModel) -> int:
    """Memory outside torch's allocator that grows after the snapshot (NCCL buffers in older vLLM)."""
    if layout.world_size == 1:
        return int(mm.non_torch_single_gpu_gib * GIB)
    comm = sem.comm_buffers_in_budget and layout.tp > 1
    extra = mm.comm_buffers_gib + mm.comm_buffers_gib_per_tp * layout.tp if comm else 0
    return int((mm.non_torch_multi_gpu_gib + extra) * GIB)


def pre_snapshot_bytes(layout: Layout, mm: MemoryModel, *, moe: bool = False) -> int:
    """CUDA context (+ NCCL communicators for several GPUs), taken before vLLM's snapshot. A second process group
    with its own communicators costs more: PP beside TP, or an MoE model's expert group beside TP (vLLM 0.26 logs
    group 'ep:0' for MoE models at TP > 1 even without --enable-expert-parallel)."""
    if layout.world_size == 1:
        return int(mm.pre_snapshot_single_gpu_gib * GIB)
    groups = (layout.tp > 1) + (layout.pp > 1) + (moe and layout.tp * layout.dp > 1)
    return int((mm.pre_snapshot_multi_gpu_gib + mm.pre_snapshot_gib_per_extra_group * max(groups - 1, 0)) * GIB)


def cuda_graph_bytes(spec: ModelSpec, layout: Layout, n_layers: int, engine: EngineArgs, mm: MemoryModel) -> int:
    """CUDA-graph pool: grows with the layers captured and their per-GPU width."""
    if engine.enforce_eager:
        return 0
    return int((mm.cuda_graph_base_gib + mm.cuda_graph_gib_per_layer * n_layers
                + mm.cuda_graph_gib_per_layer_per_khidden_per_tp * n_layers * spec.hidden_size / 1024 / layout.tp)
               * GIB)


def graph_budget(pool: int, era: ProfileEra, mm: MemoryModel) -> int:
    """What vLLM subtracts for CUDA graphs when they are in its budget. The V1 runner subtracts its estimate
    (`profile_cudagraph_memory`, 0.26 v1/worker/gpu_model_runner.py:6576-6737: the first capture plus (n - 1) x the
    second), which its logs show below the pool the graphs then take ("CUDA graph pool memory: 0.71 GiB (actual),
    0.49 GiB (estimated)"): a fitted share of the pool (bench/fit_memory_model.py). Model Runner V2's estimate was
    never measured: its whole pool."""
    return int(pool * mm.cuda_graph_estimate_share_v1) if era is ProfileEra.MODEL_RUNNER_V1 else pool


class _SearchMemory(Struct, frozen=True, kw_only=True, gc=False):
    """What every layout of a search shares at one gpu_memory_utilization."""

    max_len: int
    total: int
    requested: int
    batch: BatchDefaults
    era: ProfileEra
    graphs_in_budget: bool
    mode: MambaCacheMode
    other: int
    """What other processes hold on a GPU (the cluster's least free memory), for the free-memory check."""
    moe_shapes: frozenset[int]
    """The MoE layer shapes (weights.distinct_layers' index)."""
    workspaces: dict
    """The MoE workspace by DP, the experts' split (None: expert parallel) and MoE layer shapes."""


def _search_memory(spec: ModelSpec, cluster: Cluster, engine: EngineArgs, sem: Semantics, util: float,
                   cache: dict) -> _SearchMemory:
    max_len = engine.max_model_len or spec.max_model_len
    total = cluster.gpu.cuda_total_bytes
    return _SearchMemory(max_len=max_len, total=total, requested=requested_bytes(total, util, sem),
                         batch=batch_defaults(cluster, engine, sem, max_len), era=profile_era(spec, sem),
                         graphs_in_budget=cudagraphs_in_budget(spec, sem),
                         mode=mamba_cache_mode(sem.version, spec.architecture),
                         other=total - min(cluster.free_bytes) if cluster.free_bytes else 0,
                         moe_shapes=frozenset(i for i, layer in enumerate(distinct_layers(spec.layers)[1])
                                              if layer.moe),
                         workspaces=cache.setdefault(("moe_workspace",), {}))


class _StageMemory(Struct, frozen=True, kw_only=True, gc=False):
    """One group of alike pipeline stages at one TP size: its memory but for what DP and expert parallel change (the
    MoE workspace, and so the KV cache left)."""

    forward_peak: int
    """The activation peak less the MoE workspace (forward_peak_bytes)."""
    moe_index: int
    """Its MoE layer shapes' place in _SplitMemory.moe_shapes, -1 where it holds no MoE layer (no workspace)."""
    cuda_graphs: int
    graph_budget: int | None
    """GpuMemory.cuda_graph_budget_bytes: what vLLM subtracts for the graphs when they are in its budget, else None."""
    bytes_per_block: tuple[int, ...]
    """The group's distinct bytes per block, in the order of their first stage (one value, but for hybrids)."""


class _SplitMemory(Struct, frozen=True, kw_only=True, gc=False):
    """What the layouts of one TP and PP size share, whatever their DP, expert parallel and gpu_memory_utilization."""

    stages: tuple[_StageMemory, ...]
    """Per stage group, in the order of `stages`."""
    moe_shapes: tuple[tuple[int, ...], ...]
    """_PipelineGroups.moe_shapes."""
    take: itemgetter | None
    """The plan's GPUs (one per stage) from the distinct GpuMemory values, in the order they are made; None where
    those are already one per stage in rank order."""
    geometry: KVGeometry
    in_flight: int
    """Tokens in flight during a step (the sliding-window groups' blocks of a request read them)."""
    blocks_per_request: int


class _ShapeMemory(Struct, frozen=True, kw_only=True, gc=False):
    """All of a memory plan but what DP and expert parallel change, for the layouts of one TP and PP size at one
    gpu_memory_utilization (and, at TP=1, DP > 1 or not: the overheads read it)."""

    search: _SearchMemory
    non_torch: int
    pre_snapshot: int
    free_refusal: Violation | None
    """check_free_memory's answer (it reads nothing DP or expert parallel change); None on V0, which has no such
    check."""
    split: _SplitMemory
    plans: dict
    """The plans made, by what they read beyond this: the requests per replica, the MoE workspace of each of the
    split's MoE layer shapes, and each stage group's weights."""


def make_memory_plan(spec: ModelSpec, layout: Layout, cluster: Cluster, engine: EngineArgs, sem: Semantics, *,
                     memory_model: MemoryModel, concurrency: int | None = None,
                     stages: tuple[tuple[StageGroup, int], ...] | None = None,
                     geometry: KVGeometry | None = None, cache: dict | None = None) -> MemoryPlan:
    """vLLM's start-up arithmetic for one layout, and what the KV cache then holds.

    `stages`: the layout's groups of alike pipeline stages (layout.stage_groups), each with the weight bytes on one
    of its GPUs, when the caller has them (a search works them out once per PP split and expert split).
    `geometry`: the model's KV geometry at the layout's TP size.
    `cache`: a dict kept across the layouts of one search (one model and engine, whatever the
    gpu_memory_utilization). All that a plan reads but the weights and the MoE workspace depends on the TP and PP
    sizes (`_ShapeMemory`, once per pair: a 64-GPU search makes ~600 plans of ~150 pairs); the MoE workspace on DP,
    the expert split and the stage's layer shapes."""
    cache = {} if cache is None else cache
    util = engine.gpu_memory_utilization or sem.default_gpu_memory_utilization
    if stages is None:
        stages = group_weights(spec, layout, cache)
    tp, dp = layout.tp, layout.dp
    key = ("memory", util, tp, layout.pp, tp * dp > 1)
    shape = cache.get(key)
    if shape is None:
        geometry = geometry or make_kv_geometry(spec, tp=tp, kv_bytes=kv_bytes_per_element(spec, engine),
                                                block_size=engine.block_size)
        shape = cache[key] = _shape_memory(spec, layout, cluster, engine, sem, memory_model, stages, geometry, util,
                                           cache)
    search, split = shape.search, shape.split
    # the MoE workspace of each MoE layer shapes of the split, by what it reads (the tokens of all DP ranks, the
    # experts' split), then 0 for the stages without MoE layers (moe_index -1)
    split_by, workspaces, wss = None if layout.enable_expert_parallel else tp * dp, search.workspaces, []
    for moe in split.moe_shapes:
        ws = workspaces.get((dp, split_by, moe))
        if ws is None:
            shapes = distinct_layers(spec.layers)[1]
            ws = workspaces[(dp, split_by, moe)] = _moe_workspace(
                spec, (shapes[s] for s in moe), search.batch.max_num_batched_tokens * dp, split_by, v0=sem.engine_v0)
        wss.append(ws)
    wss.append(0)
    # all the plan reads beyond its shape: layouts that read alike share one plan (DeepSeek-V3 with and without
    # expert parallel: the same weights per GPU, the same workspace)
    key = (concurrency, *wss, *map(_second, stages))
    plan = shape.plans.get(key)
    if plan is not None:
        return plan
    total, requested, nt, pre = search.total, search.requested, shape.non_torch, shape.pre_snapshot
    graphs_in_budget, fixed_kv = search.graphs_in_budget, engine.kv_cache_memory_bytes
    distinct: list[GpuMemory] = []  # in the order of their first stage, group by group
    for (_, weight), stage in zip(stages, split.stages):
        act = stage.forward_peak + wss[stage.moe_index]  # activation_bytes' two parts
        kv = fixed_kv or requested - weight - act - nt - (stage.graph_budget or 0)
        for per_block in stage.bytes_per_block:
            gpu = GpuMemory(
                total_bytes=total, requested_bytes=requested, weight_bytes=weight, activation_bytes=act,
                non_torch_bytes=nt, cuda_graph_bytes=stage.cuda_graphs, pre_snapshot_bytes=pre, kv_cache_bytes=kv,
                bytes_per_block=per_block, num_blocks=kv // per_block if kv > 0 and per_block else 0,
                cuda_graph_bytes_in_budget=graphs_in_budget, cuda_graph_budget_bytes=stage.graph_budget)
            distinct.append(gpu)
    gpus = tuple(distinct) if split.take is None else split.take(distinct)
    # the GPU with the fewest blocks, the first in rank order if several: where each group has one value, the first
    # of the distinct ones (stage groups come in order of their first rank)
    worst = min(distinct if len(distinct) == len(stages) else gpus, key=_num_blocks)
    plan = shape.plans[key] = _verdict(gpus, worst, shape, util, concurrency, sem)
    return plan


def _shape_memory(spec: ModelSpec, layout: Layout, cluster: Cluster, engine: EngineArgs, sem: Semantics,
                  mm: MemoryModel, stages: tuple[tuple[StageGroup, int], ...], geometry: KVGeometry, util: float,
                  cache: dict) -> _ShapeMemory:
    """The part of make_memory_plan that DP and expert parallel do not change, for the layouts of `layout`'s TP and
    PP sizes, from parts kept in `cache` by what they read."""
    search = cache.get(("memory", util))
    if search is None:
        search = cache[("memory", util)] = _search_memory(spec, cluster, engine, sem, util, cache)
    tp, pp = layout.tp, layout.pp
    pre = pre_snapshot_bytes(layout, mm, moe=bool(search.moe_shapes))
    free = None if sem.engine_v0 else check_free_memory(  # V0 has no free-memory check at start (0.6.0 worker.py)
        total_bytes=search.total, other_bytes=search.other, pre_snapshot_bytes=pre, requested_bytes=search.requested,
        gpu_memory_utilization=util)
    split = cache.get(("memory_split", tp, pp))
    if split is None:
        split = cache[("memory_split", tp, pp)] = _split_memory(spec, layout, engine, mm, stages, geometry, search,
                                                                 cache)
    return _ShapeMemory(search=search, non_torch=non_torch_bytes(layout, sem, mm), pre_snapshot=pre, free_refusal=free,
                        split=split, plans={})


_second = itemgetter(1)


class _PipelineGroups(Struct, frozen=True, kw_only=True, gc=False):
    """What the stage groups of one PP size read, whatever the TP size."""

    peaks: tuple[tuple[tuple[int, ...], bool], ...]
    """Each group's layer shapes (weights.distinct_layers' index) and whether it holds the last stage: what its
    forward's activation peak reads beside TP."""
    layer_counts: tuple[int, ...]
    """Each group's layers per stage: what its CUDA graphs read beside TP."""
    moe_index: tuple[int, ...]
    """Each group's place in moe_shapes, -1 where it holds no MoE layer."""
    moe_shapes: tuple[tuple[int, ...], ...]
    """The distinct MoE layer shapes of the groups: what a stage's MoE workspace reads beside DP and the experts'
    split (DeepSeek-V3 has one, whatever the stage)."""
    take: itemgetter | None
    """_SplitMemory.take where each group's stages have one bytes per block (one KV-cache group)."""


def _pipeline_groups(stages: tuple[tuple[StageGroup, int], ...], moe_shapes: frozenset[int],
                     pp: int) -> _PipelineGroups:
    peaks, layer_counts, index, ranks = [], [], [], []
    moe: dict[tuple[int, ...], int] = {}  # the distinct MoE layer shapes, each with its place
    for group, _ in stages:
        shapes = tuple([s for s, _ in group.counts])
        peaks.append((shapes, group.last))
        layer_counts.append(len(group.layers[0]))
        ranks.append(group.ranks)
        group_moe = tuple([s for s in shapes if s in moe_shapes]) if moe_shapes else ()
        index.append(moe.setdefault(group_moe, len(moe)) if group_moe else -1)
    return _PipelineGroups(peaks=tuple(peaks), layer_counts=tuple(layer_counts), moe_index=tuple(index),
                           moe_shapes=tuple(moe), take=_take(ranks, [None] * len(ranks), pp))


def _split_memory(spec: ModelSpec, layout: Layout, engine: EngineArgs, mm: MemoryModel,
                  stages: tuple[tuple[StageGroup, int], ...], geometry: KVGeometry, search: _SearchMemory,
                  cache: dict) -> _SplitMemory:
    """The stage groups of one TP and PP size; their parts kept in `cache` by what they read, for the other pairs:
    what the groups of a PP size read whatever the TP (_PipelineGroups), the forward's activation peak by TP and
    layer shapes (not PP), CUDA graphs by TP and number of layers."""
    tp, pp = layout.tp, layout.pp
    era, graphs_in_budget, batch = search.era, search.graphs_in_budget, search.batch
    groups = cache.get(("memory_groups", pp))
    if groups is None:
        groups = cache[("memory_groups", pp)] = _pipeline_groups(stages, search.moe_shapes, pp)
    one_kv_group = len(geometry.groups) == 1
    # each stage's bytes per block, by group; with one KV-cache group they follow from the layer counts: one value
    # for the group (None)
    per_rank = ([None] * len(stages) if one_kv_group
                else [[geometry.bytes_per_block(r) for r in group.layers] for group, _ in stages])
    peaks, graphs = cache.setdefault(("forward_peak", tp), {}), cache.setdefault(("cuda_graphs", tp), {})
    out = []
    for (group, _), peak, n_layers, moe_index, rank_blocks in zip(stages, groups.peaks, groups.layer_counts,
                                                                  groups.moe_index, per_rank):
        layers = group.layers[0]
        forward = peaks.get(peak)
        if forward is None:
            forward = peaks[peak] = forward_peak_bytes(spec, layout, layers, last_stage=group.last, batch=batch,
                                                       mm=mm, era=mm.era(era))
        if n_layers not in graphs:
            cg = cuda_graph_bytes(spec, layout, n_layers, engine, mm)
            graphs[n_layers] = cg, graph_budget(cg, era, mm) if graphs_in_budget else None
        cg, budget = graphs[n_layers]
        per_block = (geometry.bytes_per_block(layers),) if rank_blocks is None else tuple(dict.fromkeys(rank_blocks))
        out.append(_StageMemory(forward_peak=forward, moe_index=moe_index, cuda_graphs=cg, graph_budget=budget,
                                bytes_per_block=per_block))
    take = groups.take if one_kv_group else _take([group.ranks for group, _ in stages], per_rank, pp)
    in_flight = (2 if pp == 1 else pp) * batch.max_num_batched_tokens
    return _SplitMemory(
        stages=tuple(out), moe_shapes=groups.moe_shapes, take=take, geometry=geometry, in_flight=in_flight,
        blocks_per_request=geometry.blocks_per_request(
            search.max_len, in_flight_tokens=in_flight,
            state_blocks=state_blocks(search.mode, search.max_len, geometry.block_size)))


def _take(ranks: list[tuple[int, ...]], per_block: list[list[int] | None], pp: int) -> itemgetter | None:
    """_SplitMemory.take for stage groups of these ranks, with these bytes per block on each of their stages (None:
    one value for the whole group): each stage's place among the plan's distinct GpuMemory values, made group by
    group and in each group by bytes per block, in the order of their first stage."""
    pattern = [0] * pp
    made = 0
    for group_ranks, values in zip(ranks, per_block):
        first, last = group_ranks[0], group_ranks[-1]
        if values is None and last - first + 1 == len(group_ranks):
            pattern[first:last + 1] = [made] * len(group_ranks)  # one value for ranks in a row (the usual): a slice
            made += 1
            continue
        order: dict[int | None, int] = {}  # the group's distinct bytes per block, each with its place
        for rank, value in zip(group_ranks, values or [None] * len(group_ranks)):
            pattern[rank] = made + order.setdefault(value, len(order))
        made += len(order)
    return None if made == pp and pattern == list(range(pp)) else itemgetter(*pattern)


def _verdict(gpus: tuple[GpuMemory, ...], worst: GpuMemory, shape: _ShapeMemory, util: float,
             concurrency: int | None, sem: Semantics) -> MemoryPlan:
    search, split = shape.search, shape.split
    geometry, max_len, batch, per_req = split.geometry, search.max_len, search.batch, split.blocks_per_request
    blocks = worst.num_blocks
    conc = blocks / per_req if per_req else 0.0
    tokens = int(conc * max_len)
    # vLLM `_estimate_max_model_len_from_groups`: the largest L whose one request fits beside the null block
    usable = blocks - 1 if sem.estimate_deducts_null_block else blocks
    fit = _largest_len(geometry, usable, max_len, split.in_flight, search.mode)
    # the KV checks as vLLM makes them; failing those, the free memory it finds at start (an earlier check in
    # vLLM, but the KV refusals say more about the plan)
    card = check_fits_card(total_bytes=worst.total_bytes, pre_snapshot_bytes=worst.pre_snapshot_bytes,
                           weight_bytes=worst.weight_bytes, activation_bytes=worst.activation_bytes,
                           non_torch_bytes=worst.non_torch_bytes) if worst.kv_cache_bytes <= 0 else None
    if card:  # torch's out-of-memory, before any budget check
        refusal = card
    elif sem.engine_v0:  # V0: its own max-seq-len refusal
        refusal = (check_kv_cache_memory(requested_bytes=worst.requested_bytes, kv_cache_bytes=worst.kv_cache_bytes)
                   or check_v0_kv_cache_fits_max_len(max_model_len=max_len, blocks=blocks,
                                                     block_size=geometry.block_size, blocks_per_request=per_req,
                                                     kv_cache_bytes=worst.kv_cache_bytes,
                                                     profile_tokens=batch.max_num_batched_tokens, estimated_max_len=fit))
    else:
        refusal = (check_kv_cache_memory(requested_bytes=worst.requested_bytes, kv_cache_bytes=worst.kv_cache_bytes)
                   or check_kv_cache_fits_max_len(max_model_len=max_len, usable_blocks=usable,
                                                  blocks_per_request=per_req, bytes_per_block=worst.bytes_per_block,
                                                  kv_cache_bytes=worst.kv_cache_bytes, estimated_max_len=fit)
                   or shape.free_refusal)
    reasons = [reason(refusal)] if refusal else []
    verdict = Verdict.REFUSED_AT_START if refusal else Verdict.STARTS
    if verdict is Verdict.STARTS and worst.free_bytes < RUNTIME_GROWTH:
        verdict = Verdict.OVERFLOWS_AT_RUNTIME
        # the graphs outside the budget: the whole pool, or what it takes beyond the estimate vLLM subtracted
        graphs = worst.outside_budget_bytes - worst.pre_snapshot_bytes
        beyond = " beyond the estimate in the budget" if worst.cuda_graph_bytes_in_budget else ""
        outside = [f"CUDA graphs ({format_gib(graphs)} GiB{beyond})"] if graphs > 0 else []
        outside.append(f"the CUDA context ({format_gib(worst.pre_snapshot_bytes)} GiB)")
        outside.append(f"{format_gib(RUNTIME_GROWTH)} GiB more at the first requests (buffers, fragmentation)")
        reasons.append(f"vLLM starts, but {', '.join(outside[:-1])}{' and ' if len(outside) > 1 else ''}{outside[-1]} "
                       f"come on top of the {format_gib(worst.requested_bytes)} GiB budget: "
                       f"{format_gib(RUNTIME_GROWTH - worst.free_bytes)} GiB more than the card has; lower "
                       "--gpu-memory-utilization or add --enforce-eager")
    if verdict is Verdict.STARTS and concurrency and conc < concurrency:
        verdict = Verdict.INSUFFICIENT_CONCURRENCY
        # `concurrency` is one engine's share: with DP replicas, not the --concurrency the user gave
        reasons.append(f"the KV cache holds {conc:.2f} requests of {max_len} tokens, fewer than the {concurrency} "
                       f"an engine gets; use --max-num-seqs {max(1, int(conc))} or a shorter --max-model-len")
    return MemoryPlan(gpus=gpus, block_size=geometry.block_size, kv_bytes_per_token=worst.bytes_per_block // geometry.block_size,
                      kv_cache_tokens=tokens, max_model_len=max_len, max_concurrency=conc, max_model_len_fit=fit,
                      max_num_seqs=batch.max_num_seqs, max_num_batched_tokens=batch.max_num_batched_tokens,
                      gpu_memory_utilization=util, verdict=verdict, reasons=tuple(reasons), refusal=refusal)


def safe_utilization(m: MemoryPlan) -> float:
    """The highest --gpu-memory-utilization (2 decimals) whose budget leaves room on every GPU for what comes
    on top of it: CUDA graphs outside the budget, the context, and the growth at the first requests."""
    shares = [(g.total_bytes - g.outside_budget_bytes - RUNTIME_GROWTH) / g.total_bytes for g in m.gpus]
    return math.floor(min(shares) * 100) / 100


_FULL_ATTENTION = (AttentionKind.FULL, AttentionKind.MLA)
"""The KV-cache group kinds that hold one block per block_size tokens of a request."""


def _largest_len(geometry: KVGeometry, usable_blocks: int, max_len: int, in_flight: int,
                 mode: MambaCacheMode = MambaCacheMode.ALIGN) -> int:
    """The longest request (at most max_len tokens) that fits in `usable_blocks`. Where every group holds full
    attention, the binary search's answer in one step: the whole blocks each group may take, times the block size
    (a search makes ~600 memory plans)."""
    for group in geometry.groups:
        if group.kind not in _FULL_ATTENTION:
            return _largest_len_search(geometry, usable_blocks, max_len, in_flight, mode)
    if usable_blocks < 0:
        return 0
    length = (usable_blocks // len(geometry.groups) if geometry.groups else max_len) * geometry.block_size
    return length if length < max_len else max_len  # min() without its keyword parsing (read for every plan)


def _largest_len_search(geometry: KVGeometry, usable_blocks: int, max_len: int, in_flight: int,
                        mode: MambaCacheMode = MambaCacheMode.ALIGN) -> int:
    """Binary search over [0, max_len] for the longest request that fits in `usable_blocks`."""
    lo, hi = 0, max_len
    while lo < hi:
        mid = (lo + hi + 1) // 2
        need = geometry.blocks_per_request(mid, in_flight_tokens=in_flight,
                                           state_blocks=state_blocks(mode, mid, geometry.block_size))
        if need <= usable_blocks:
            lo = mid
        else:
            hi = mid - 1
    return lo
