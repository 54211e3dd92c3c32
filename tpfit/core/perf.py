"""Speed: how fast one layout serves a workload (TTFT, TPOT, output tokens/s), as a roofline.

One engine step reads the rank's weights (for MoE only the experts the batch touches) and the KV of
the running requests, does 2 x params FLOPs per token, and all-reduces twice per layer over TP:

    t_step = max(bytes_read / mem_bw, flops / gemm_flops) + all_reduces + step_overhead

Decode and prefill share steps (vLLM's chunked prefill): in steady state each step also carries its share
of the prompts, concurrency x input_tokens / output_tokens tokens. PP stages run micro-batches in turn
(a token passes every stage); DP replicas share the requests (for MoE, vLLM's DP ranks also share the experts,
so their MoE all-reduce spans TP x DP). Requests beyond what the KV cache holds wait
(Little's law). The efficiencies below are fitted by bench/speed_accuracy.py on a documented split of real
vLLM runs; a measured GpuCalibration replaces the spec-sheet figures where there is one.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple, NoReturn

from msgspec import Struct
from msgspec.structs import replace

from tpfit.core.kv import attention_page_bytes_per_token
from tpfit.core.layout import Layout, StageGroup, stage_groups
from tpfit.core.weights import (
    allocated_bytes, distinct_layers, expert_share, layer_bytes, linear_bytes, padded_vocab, routed_expert_bytes,
)
from tpfit.errors import UsageError
from tpfit.kinds import Bound, LinkKind
from tpfit.model.spec import LayerSpec, ModelSpec
from tpfit.units import cdiv

if TYPE_CHECKING:
    from tpfit.core.memory import MemoryPlan
    from tpfit.hardware.calibration import GpuCalibration
    from tpfit.hardware.catalog import GpuSpec
    from tpfit.hardware.cluster import Cluster

# --- default efficiencies (spec sheet x these, where no calibration was measured) -------------------------
# Fitted by `python bench/speed_accuracy.py --fit` on the fit split it names (half of the real vLLM 0.12-0.19
# serving rows published with NVIDIA's AIConfigurator, calibration/aiconfigurator-silicon: H100, H200, B200;
# dense, FP8, MoE); accuracy is reported on the other half. Rounded to 2 digits.
MEM_BW_EFFICIENCY = 0.70
"""Decode: achieved bytes/s over the spec-sheet HBM bandwidth (GEMV-like weight reads + paged-KV reads)."""
GEMM_EFFICIENCY = 0.58
"""Prefill: achieved FLOP/s over the spec-sheet dense bf16/fp8 tensor-core peak (large GEMMs)."""
STEP_OVERHEAD_S = 0.0011
"""Per engine step: scheduling, input preparation, sampling, CUDA-graph launch, output processing (s)."""
STEP_OVERHEAD_PER_SEQ_S = 10e-6
"""Per step and per running request: the engine's CPU work that grows with the batch (scheduling, input
preparation, sampling metadata, output processing and streaming of each request's token) (s)."""
STEP_OVERHEAD_PER_RANK_S = 0.00015
"""Per step and per extra GPU of one engine: vLLM's multiprocess executor broadcasts each step to every rank (s)."""
FP4_COMPUTE_CAPABILITY = 10.0
"""Blackwell (SM100) and newer have FP4 tensor cores."""
UNKNOWN_PEAK_FLOPS_PER_BYTE = 76
"""Where the catalog lacks a bf16 peak: FLOPs per byte of memory bandwidth of a like card (RTX 3090: 71 TFLOPS / 936 GB/s)."""
REQUEST_OVERHEAD_S = 0.025
"""Per request, outside the engine steps: HTTP, tokenisation, scheduling wait, first-token detokenisation (s)."""
PROMPT_WAVES = 6.5
"""Waves of `concurrency` requests a measured run holds (a benchmark sends a few times its concurrency);
the first wave's prompts queue behind each other, later ones barely do (see make_speed)."""
MOE_GEMM_EFFICIENCY = 0.30
"""Routed-expert FLOPs run in grouped (fused-MoE) GEMMs at this fraction of the dense GEMM rate."""
MOE_BW_EFFICIENCY = 0.92
"""Routed-expert weights are read by fused-MoE kernels at this fraction of the dense decode bandwidth."""

# --- links (uncalibrated): time(n bytes) = latency_s + n / bytes_per_s for one all-reduce --------------------
NVLINK_ALLREDUCE_LATENCY_S = 12e-6
"""vLLM's custom all-reduce over NVLink at small messages (one-shot kernel), ~10-15 us (vLLM PR #2192 figures)."""
NVLINK_BUS_EFFICIENCY = 0.7
"""Achieved over the catalog's NVLink GB/s per direction (NCCL all-reduce bus bandwidth on H100 NVSwitch ~ 0.7 x 450)."""
PCIE_P2P_ALLREDUCE_LATENCY_S = 25e-6
"""Custom all-reduce / NCCL over PCIe with peer access (s)."""
PCIE_HOST_ALLREDUCE_LATENCY_S = 60e-6
"""NCCL through host memory when the GPUs have no peer access (GeForce cards): a copy each way (s)."""
PCIE_BYTES_PER_S = {3: 12e9, 4: 24e9, 5: 48e9}
"""Achieved PCIe x16 bytes/s per direction by generation (~75 % of 16/32/64 GB/s)."""
PCIE_HOST_EFFICIENCY = 0.5
"""Without peer access each byte crosses PCIe twice (GPU -> host -> GPU)."""
NETWORK_ALLREDUCE_LATENCY_S = 30e-6
NETWORK_BYTES_PER_S = 40e9
"""Across nodes: 400 Gb/s InfiniBand / RoCE per GPU, ~80 % achieved."""
PP_HANDOFF_LATENCY_S = 30e-6
"""One pipeline hand-off (send/recv of the hidden states between stages) besides its bytes (s)."""

ACT_BYTES = 2
"""Activations and all-reduce messages are bf16/fp16: 2 bytes per element."""
FLOPS_PER_PARAM_PER_TOKEN = 2
"""A multiply and an add per weight per token (the 2N of Kaplan et al. 2020 / PaLM appendix B)."""
CUSTOM_ALLREDUCE_MAX_PCIE_GPUS = 2
"""vLLM `CustomAllreduce`: "not supported on more than two PCIe-only GPUs" (custom_all_reduce.py)."""


DEFAULT_OUTPUT_TOKENS = 256
"""Answer length when --output-tokens is not given (requests then fill --context with their prompt)."""
DEFAULT_INPUT_TOKENS = 1024
"""Prompt length when neither --input-tokens nor --context is given."""


class CollectiveCost(Struct, frozen=True, kw_only=True):
    """time(n bytes) = latency_s + n / bytes_per_s for one all-reduce of n bytes (a GpuCalibration's AllReduceFit)."""

    latency_s: float
    bytes_per_s: float

    def time_s(self, n_bytes: float) -> float:
        return self.latency_s + n_bytes / self.bytes_per_s


class GpuSpeed(Struct, frozen=True, kw_only=True):
    """What a speed prediction needs of one GPU type and its links."""

    gpu_id: str
    mem_bw_bytes_per_s: float
    """Effective bytes/s a decode step reads at."""
    bf16_flops_per_s: float
    """Effective dense bf16 FLOP/s of prefill-sized GEMMs."""
    fp8_flops_per_s: float
    """Effective FP8 FLOP/s; 0 where the GPU has no FP8 tensor cores (FP8 weights then run as bf16 math)."""
    fp4: bool = False
    """FP4 tensor cores (compute capability 10+, Blackwell): vLLM runs MXFP4 experts natively there."""
    nvlink_bytes_per_s: float
    """Catalog NVLink GB/s per direction (0 = none)."""
    pcie_bytes_per_s: float
    p2p: bool
    """Peer access between GPUs over PCIe (False on GeForce cards)."""
    allreduce: tuple[tuple[int, CollectiveCost], ...] = ()
    """Measured all-reduce cost per world size (a calibration), else empty: the link model applies."""
    step_overhead_s: float = STEP_OVERHEAD_S
    calibration: str = "uncalibrated"
    """Where the figures come from: "uncalibrated (spec sheet x default efficiencies)" or the calibration's source."""


MODEL_OF_MICROBENCH = 0.85
"""A whole model step reaches this fraction of a calibration's micro-benchmarks (a large copy, one GEMM shape):
the fitted MEM_BW_EFFICIENCY / GEMM_EFFICIENCY (0.70, 0.58 of spec) over what such benchmarks reach on
H100 (~0.8 and ~0.7 of spec). An estimate until built-in calibrations and real runs pin it."""


def make_gpu_speed(gpu: GpuSpec | None, calibration: GpuCalibration | None = None) -> GpuSpeed:
    """Spec sheet x the default efficiencies, or a GpuCalibration's measured figures where given
    (x MODEL_OF_MICROBENCH: a model step reaches less than a micro-benchmark). `gpu` None: a device outside the
    catalog (the CPU of `tpfit calibrate --device cpu`), described by its calibration alone."""
    if gpu is None:
        if calibration is None:
            raise ValueError("make_gpu_speed needs a catalog GPU or a calibration")
        gemm = calibration.gemm_flops_per_s
        flops = gemm.get("bf16_prefill") or gemm.get("bf16_decode") or calibration.mem_bw_bytes_per_s * UNKNOWN_PEAK_FLOPS_PER_BYTE
        base = GpuSpeed(gpu_id=calibration.gpu_name, mem_bw_bytes_per_s=calibration.mem_bw_bytes_per_s,
                        bf16_flops_per_s=flops, fp8_flops_per_s=0.0, nvlink_bytes_per_s=0.0,
                        pcie_bytes_per_s=PCIE_BYTES_PER_S[4], p2p=False)
    else:
        pcie = PCIE_BYTES_PER_S.get(gpu.pcie_gen, PCIE_BYTES_PER_S[4])
        base = GpuSpeed(
            gpu_id=gpu.id, mem_bw_bytes_per_s=gpu.mem_bw_bytes_per_s * MEM_BW_EFFICIENCY,
            bf16_flops_per_s=(gpu.bf16_flops_per_s or gpu.mem_bw_bytes_per_s * UNKNOWN_PEAK_FLOPS_PER_BYTE) * GEMM_EFFICIENCY,
            fp8_flops_per_s=gpu.fp8_flops_per_s * GEMM_EFFICIENCY if gpu.fp8_supported else 0.0,
            nvlink_bytes_per_s=gpu.nvlink_bytes_per_s, pcie_bytes_per_s=pcie, p2p=gpu.p2p, step_overhead_s=STEP_OVERHEAD_S,
            fp4=(gpu.compute_capability or 0) >= FP4_COMPUTE_CAPABILITY,
            calibration="uncalibrated (spec sheet x default efficiencies)",
        )
    if calibration is None:
        return base
    gemm = calibration.gemm_flops_per_s
    return replace(
        base,
        mem_bw_bytes_per_s=calibration.mem_bw_bytes_per_s * MODEL_OF_MICROBENCH,
        bf16_flops_per_s=gemm["bf16_prefill"] * MODEL_OF_MICROBENCH if "bf16_prefill" in gemm else base.bf16_flops_per_s,
        fp8_flops_per_s=gemm["fp8_prefill"] * MODEL_OF_MICROBENCH if "fp8_prefill" in gemm else base.fp8_flops_per_s,
        p2p=calibration.p2p_bytes_per_s is not None if calibration.allreduce else base.p2p,
        allreduce=tuple((f.world_size, CollectiveCost(latency_s=f.latency_s, bytes_per_s=f.bus_bytes_per_s))
                        for f in calibration.allreduce),
        step_overhead_s=calibration.step_overhead_s or base.step_overhead_s,
        calibration=calibration.source,
    )


def link_kind(cluster: Cluster, world: int) -> LinkKind:
    """The link a TP group of `world` GPUs all-reduces over: NVML's NVLink pairs when detected, else the catalog."""
    if world <= 1:
        return LinkKind.NONE
    if world > cluster.gpus_per_node:
        return LinkKind.NETWORK
    gpu = cluster.gpu
    if cluster.source == "nvml" and cluster.nvlink_pairs:
        nvlink = len(cluster.nvlink_pairs) >= world * (world - 1) // 2
    else:
        # a bridge (3090, A6000, H100 NVL) is an add-on between two cards: taken as PCIe unless NVML saw the link
        nvlink = gpu.nvlink and not gpu.nvlink_pairs_only
    if nvlink:
        return LinkKind.NVLINK
    return LinkKind.PCIE_P2P if gpu.p2p else LinkKind.PCIE_HOST


def collective_cost(speed: GpuSpeed, link: LinkKind, world: int) -> CollectiveCost:
    """One all-reduce over `world` GPUs: measured where calibrated, else a ring's 2(w-1)/w bytes over the link."""
    measured = dict(speed.allreduce)
    if world in measured and link != LinkKind.NETWORK:
        return measured[world]
    ring = 2 * (world - 1) / world  # bytes each GPU sends per byte of message (ring all-reduce)
    if link == LinkKind.NVLINK:
        return CollectiveCost(latency_s=NVLINK_ALLREDUCE_LATENCY_S,
                              bytes_per_s=speed.nvlink_bytes_per_s * NVLINK_BUS_EFFICIENCY / ring)
    if link == LinkKind.PCIE_P2P:
        latency = PCIE_P2P_ALLREDUCE_LATENCY_S * (1 if world <= CUSTOM_ALLREDUCE_MAX_PCIE_GPUS else 2)
        return CollectiveCost(latency_s=latency, bytes_per_s=speed.pcie_bytes_per_s / ring)
    if link == LinkKind.PCIE_HOST:
        return CollectiveCost(latency_s=PCIE_HOST_ALLREDUCE_LATENCY_S,
                              bytes_per_s=speed.pcie_bytes_per_s * PCIE_HOST_EFFICIENCY / ring)
    return CollectiveCost(latency_s=NETWORK_ALLREDUCE_LATENCY_S, bytes_per_s=NETWORK_BYTES_PER_S / ring)


class SpeedWorkload(Struct, frozen=True, kw_only=True):
    """Requests of `input_tokens` prompt and `output_tokens` answer, `concurrency` in flight across all replicas."""

    input_tokens: int
    output_tokens: int
    concurrency: int

    @classmethod
    def make(cls, *, concurrency: int, context: int | None, input_tokens: int | None = None,
             output_tokens: int | None = None, max_model_len: int | None = None) -> SpeedWorkload:
        """Fill what the user left out: answers of DEFAULT_OUTPUT_TOKENS (at most half the context), prompts
        filling the rest of `context` (DEFAULT_INPUT_TOKENS without one), both within the longest request the
        server takes (`context`, else `max_model_len`: the model's). vLLM refuses a request longer than that
        ("This model's maximum context length is ..."), so given lengths beyond it are a UsageError naming them.

        Example: `--context 4096 --input-tokens 4000` gets answers of 96 tokens, not 256 (4,256 tokens)."""
        limit = context or max_model_len
        out = output_tokens or (min(DEFAULT_OUTPUT_TOKENS, max(1, limit // 2)) if limit else DEFAULT_OUTPUT_TOKENS)
        if not output_tokens and input_tokens and limit:
            out = max(1, min(out, limit - input_tokens))  # the answer fits beside the given prompt
        inp = input_tokens or (max(1, context - out) if context else DEFAULT_INPUT_TOKENS)
        if not input_tokens and limit:
            inp = max(1, min(inp, limit - out))
        if limit and inp + out > limit:
            _refuse_request(inp, out, limit, context=context, input_given=bool(input_tokens),
                            output_given=bool(output_tokens))
        return cls(input_tokens=inp, output_tokens=out, concurrency=concurrency)

    def __post_init__(self) -> None:
        for name in ("input_tokens", "output_tokens", "concurrency"):
            if getattr(self, name) < 1:
                raise UsageError("must be at least 1", flag=f"--{name.replace('_', '-')}", value=getattr(self, name))


def _refuse_request(inp: int, out: int, limit: int, *, context: int | None, input_given: bool,
                    output_given: bool) -> NoReturn:
    """The UsageError for requests of `inp` + `out` tokens that exceed `limit`, naming the flag the user gave."""
    where = f"--context {limit}" if context else f"the model's {limit:,} tokens (its longest --max-model-len)"
    if limit < 2:
        raise UsageError("holds no request: one needs at least 2 tokens (a prompt token and an answer token); use "
                         "--context 2 or more", flag="--context", value=limit)
    if input_given and output_given:
        raise UsageError(f"--input-tokens + --output-tokens ({inp + out:,}) exceed {where}; vLLM refuses such "
                         f"requests; give at most {limit:,} tokens in all", flag="--input-tokens", value=inp)
    if input_given:
        raise UsageError(f"leaves no token for the answer within {where}; use --input-tokens {limit - 1} or less",
                         flag="--input-tokens", value=inp)
    raise UsageError(f"leaves no token for the prompt within {where}; use --output-tokens {limit - 1} or less",
                     flag="--output-tokens", value=out)


class StepTerms(Struct, frozen=True, kw_only=True, gc=False):
    """One engine step (one token for every running request), split by what it spends its time on (s)."""

    memory_s: float
    compute_s: float
    communication_s: float
    overhead_s: float
    pipeline_s: float = 0.0
    """PP: stages that wait (uneven stages, fewer micro-batches than stages, or memory-bound beside compute-bound)."""

    @property
    def total_s(self) -> float:
        return max(self.memory_s, self.compute_s) + self.communication_s + self.overhead_s + self.pipeline_s

    @property
    def bound(self) -> Bound:
        """The largest term (the first of MEMORY, COMPUTE, COMMUNICATION, OVERHEAD where two are equal)."""
        terms = (self.memory_s, self.compute_s, self.communication_s, self.overhead_s)
        return _BOUNDS[terms.index(max(terms))]


_BOUNDS = (Bound.MEMORY, Bound.COMPUTE, Bound.COMMUNICATION, Bound.OVERHEAD)


class Speed(Struct, frozen=True, kw_only=True, gc=False):
    """Predicted speed of one layout at one workload."""

    ttft_s: float
    """Mean time to first token, queueing included."""
    tpot_s: float
    """Mean time per output token after the first (one engine step, prompts of others included)."""
    request_output_tok_s: float
    """Tokens/s one request streams at: 1 / TPOT."""
    total_output_tok_s: float
    """Output tokens/s of all replicas together at this concurrency."""
    concurrency: int
    running_per_replica: int
    """Requests decoding at once in one replica (the rest wait for KV cache)."""
    input_tokens: int
    output_tokens: int
    bound: Bound
    step: StepTerms
    calibration: str

    @property
    def request_s(self) -> float:
        """One request from sending to its last token."""
        return self.ttft_s + (self.output_tokens - 1) * self.tpot_s

    def to_dict(self) -> dict:
        return {"ttft_s": round(self.ttft_s, 4), "tpot_s": round(self.tpot_s, 5),
                "request_output_tok_s": round(self.request_output_tok_s, 1),
                "total_output_tok_s": round(self.total_output_tok_s, 1), "concurrency": self.concurrency,
                "running_per_replica": self.running_per_replica, "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens, "bound": self.bound.value,
                "step_ms": {"memory": round(self.step.memory_s * 1e3, 3), "compute": round(self.step.compute_s * 1e3, 3),
                            "communication": round(self.step.communication_s * 1e3, 3),
                            "overhead": round(self.step.overhead_s * 1e3, 3),
                            # a difference of sums, 0 up to float noise without PP: shown as 0.0, never -0.0
                            "pipeline": max(0.0, round(self.step.pipeline_s * 1e3, 3))},
                "calibration": self.calibration}


def expert_coverage(tokens: float, num_experts: int, experts_per_token: int) -> float:
    """Expected fraction of experts a batch of `tokens` touches: 1 - (1 - k/E)^tokens (uniform routing)."""
    if num_experts <= 0:
        return 1.0
    return 1.0 - (1.0 - experts_per_token / num_experts) ** tokens


class MoeKernel(Struct, frozen=True, kw_only=True):
    """How vLLM's fused-MoE kernel for this checkpoint on this GPU runs the routed experts."""

    bw_efficiency: float
    """Expert weights are read at this fraction of the dense decode bandwidth."""
    flops_per_s: float
    """Expert FLOPs run at this rate."""
    reads_every_expert: bool
    """Every expert this GPU holds is read each step, whatever the batch routes to (see moe_kernel)."""


def moe_kernel(spec: ModelSpec, speed: GpuSpeed) -> MoeKernel:
    """How vLLM's fused-MoE layer runs this checkpoint's experts on this GPU.

    - MXFP4 experts (gpt-oss) on a GPU with FP4 tensor cores (Blackwell) run natively (FlashInfer's TRT-LLM MoE,
      MXFP4 weights x MXFP8 activations): the dense bandwidth, the FP8 rate.
    - Block-quantized FP8 experts (128 x 128 scales, DeepSeek-style checkpoints) read every expert each step:
      Qwen3-235B-A22B-FP8's measured decode step does not shrink with the batch (TP=2 on H200: 55.8 ms at 4
      running requests, where uniform routing touches 23 % of the experts, 51.6 ms at 20, 72 %), as a grouped GEMM
      that visits each local expert (DeepGEMM / CUTLASS grouped layouts) does; vLLM 0.19 then moved its Triton
      kernel to the front for TP on Hopper (fused_moe/oracle/fp8.py).
    - Otherwise (Triton fused_moe; MXFP4 unpacked to bf16 in Triton's matmul_ogs on Hopper): the experts the
      batch touches, read at MOE_BW_EFFICIENCY of the dense bandwidth, computed at MOE_GEMM_EFFICIENCY of the
      dense rate.
    """
    dense = _gemm_flops_per_s(spec, speed)
    q = spec.quant
    if q and q.method == "mxfp4" and speed.fp4:
        return MoeKernel(bw_efficiency=1.0, flops_per_s=speed.fp8_flops_per_s or dense, reads_every_expert=False)
    return MoeKernel(bw_efficiency=MOE_BW_EFFICIENCY, flops_per_s=dense * MOE_GEMM_EFFICIENCY,
                     reads_every_expert=bool(q and q.block_n and q.weight_bits == 8))


class _LayerCost(Struct, frozen=True, kw_only=True, gc=False):
    """One decoder layer on one GPU of a layout."""

    dense_bytes: int
    """Weights read whatever the batch: attention, norms, router, shared experts."""
    expert_bytes: int
    """Routed-expert weights this GPU holds (read only for experts the batch touches)."""
    dense_params: int
    """Parameters of the dense part on this GPU (FLOPs per token = 2 x params)."""
    active_expert_params: int
    """Routed-expert parameters one token uses on this GPU: k experts, split over the MoE group."""
    kv_bytes_per_token: int
    """K+V bytes of one context token on this GPU (0 for layers without a KV cache)."""
    window_tokens: int
    """Sliding window (0 = full context)."""
    attn_width: int
    """Query heads x head dim on this GPU (attention FLOPs = 4 x width x context per token)."""
    num_experts: int
    experts_per_token: int
    moe_allreduce: bool


def _layer_cost(layer: LayerSpec, spec: ModelSpec, unquantized: ModelSpec, layout: Layout, kv_bytes: int,
                total: int, unquantized_total: int) -> _LayerCost:
    """`total`, `unquantized_total`: the layer's bytes on one GPU (weights.layer_bytes) as `spec` and
    `unquantized` hold it."""
    h, b, tp = spec.hidden_size, spec.dtype_bytes, layout.tp
    params_total = unquantized_total // b
    expert_bytes = expert_params = active = 0
    m = layer.moe
    if m is not None:
        group = layout.moe_parallel_size
        experts, inter = expert_share(m, layout)
        # parameters as the unquantized layer counts them (params_total above); bytes as vLLM holds them, the
        # mxfp4 kernels' padded width included (those zeros are read too)
        expert_params = experts * 3 * inter * h
        expert_bytes = routed_expert_bytes(layer, spec, layout)
        # every token uses k experts of 3 x h x moe_inter parameters, spread over the MoE group's GPUs
        active = m.num_experts_per_tok * 3 * h * m.moe_intermediate_size // group
    kv = attention_page_bytes_per_token(layer, spec, tp, kv_bytes) if layer.attention.has_kv_cache else 0
    heads = max(1, layer.num_attention_heads // tp) if layer.attention.has_kv_cache else 0
    head_dim = (spec.mla.qk_nope_head_dim + spec.mla.qk_rope_head_dim) if layer.attention == "mla" else layer.head_dim
    window = layer.window_tokens if layer.attention in ("sliding", "chunked") else 0
    return _LayerCost(dense_bytes=total - expert_bytes, expert_bytes=expert_bytes,
                      dense_params=params_total - expert_params, active_expert_params=active,
                      kv_bytes_per_token=kv, window_tokens=window, attn_width=heads * head_dim,
                      num_experts=m.num_experts if m else 0, experts_per_token=m.num_experts_per_tok if m else 0,
                      moe_allreduce=m is not None)


def _shard_costs(spec: ModelSpec, layout: Layout, kv_bytes: int, cache: dict
                 ) -> tuple[tuple[_LayerCost, ...], int, int]:
    """Each distinct layer's cost on one GPU of the layout (one object per value across the search), and the
    lm_head's bytes and parameters: what depends on TP and the expert split, not on PP."""
    tp = layout.tp
    if ("unquantized",) not in cache:
        # the model without quantization (for parameter counts), with its own search cache where it differs
        cache[("unquantized",)] = (replace(spec, quant=None), {}) if spec.quant else (spec, None)
    unquantized, unquantized_cache = cache[("unquantized",)]
    costs = []
    per_shape = layer_bytes(spec, layout, cache)
    unquantized_shape = per_shape if unquantized_cache is None else layer_bytes(unquantized, layout, unquantized_cache)
    for i, layer in enumerate(distinct_layers(spec.layers)[1]):
        key = ("cost", i, tp, layout.moe_parallel_size, layout.enable_expert_parallel) if layer.moe else ("cost", i, tp)
        if key not in cache:
            cost = _layer_cost(layer, spec, unquantized, layout, kv_bytes, per_shape[i], unquantized_shape[i])
            # one object per value: shapes that cost alike are then alike by identity (_speed_shard)
            cache[key] = cache.setdefault(("cost", cost), cost)
        costs.append(cache[key])
    vocab_rank = padded_vocab(spec.vocab_size) // tp
    q = spec.quant
    # the embedding is a lookup (a few rows read); the lm_head is a full GEMV every step
    lm_head = (linear_bytes(vocab_rank, spec.hidden_size, spec.dtype_bytes, q) if q and q.lm_head_quantized
               else allocated_bytes(vocab_rank * spec.hidden_size * spec.dtype_bytes))
    return tuple(costs), lm_head, vocab_rank * spec.hidden_size


def _gemm_flops_per_s(spec: ModelSpec, speed: GpuSpeed) -> float:
    """FP8 tensor cores where the weights are FP8 and the GPU has them (w8a8), else bf16 math."""
    q = spec.quant
    if q and q.method in ("fp8", "modelopt", "compressed-tensors") and q.weight_bits == 8 and speed.fp8_flops_per_s:
        return speed.fp8_flops_per_s
    return speed.bf16_flops_per_s


class _StageTerms(NamedTuple):
    """One stage as a step sums it, for the workload's contexts (a tuple: a search unpacks thousands)."""

    extra_bytes: int
    extra_flops_per_token: int
    """FLOPs per sampled token besides the layers (the lm_head)."""
    layers: tuple[tuple[int, tuple], ...]
    """Per layer shape: how many layers have it, and the shape's _layer_terms."""


def _layer_terms(c: _LayerCost, *, context: float, prefill_context: float) -> tuple:
    """One layer shape as a step reads it, for requests at mean `context` tokens and prompts attending to
    `prefill_context` on average: (dense bytes, expert bytes, K+V bytes a decoding request reads (kv_bytes_per_token
    x span), span, prompt span, (experts, experts per token) or None, MoE all-reduce, dense FLOPs per token, expert
    FLOPs per token, attention FLOPs per attended token). A search makes it once per shape and expert split, for
    every stage that holds the shape."""
    span = min(context, c.window_tokens) if c.window_tokens else context
    pspan = min(prefill_context, c.window_tokens) if c.window_tokens else prefill_context
    experts = (c.num_experts, c.experts_per_token) if c.num_experts else None
    return (c.dense_bytes, c.expert_bytes, c.kv_bytes_per_token * span, span, pspan, experts, c.moe_allreduce,
            FLOPS_PER_PARAM_PER_TOKEN * c.dense_params, FLOPS_PER_PARAM_PER_TOKEN * c.active_expert_params,
            4 * c.attn_width)


def _group_terms(shapes: tuple[tuple, ...], lm_head: int, lm_params: int, group: StageGroup) -> _StageTerms:
    """The stages of `group` on one GPU as a step sums them, from each distinct layer shape's _layer_terms and the
    lm_head's bytes and parameters (_shard_costs)."""
    return _StageTerms(extra_bytes=lm_head if group.last else 0,
                       extra_flops_per_token=FLOPS_PER_PARAM_PER_TOKEN * lm_params if group.last else 0,
                       layers=tuple([(k, shapes[i]) for i, k in group.counts]))


def _stages(spec: ModelSpec, layout: Layout, kv_bytes: int, *, context: float, prefill_context: float
            ) -> tuple[_StageTerms, ...]:
    """The layout's pipeline stages as a step sums them (_group_terms), in rank order: make_speed's stages for one
    layout, without a search's cache."""
    costs, lm_head, lm_params = _shard_costs(spec, layout, kv_bytes, {})
    shapes = tuple([_layer_terms(c, context=context, prefill_context=prefill_context) for c in costs])
    out: list[_StageTerms | None] = [None] * layout.pp
    for group in stage_groups(distinct_layers(spec.layers)[0], layout.pp):
        terms = _group_terms(shapes, lm_head, lm_params, group)
        for rank in group.ranks:
            out[rank] = terms
    return tuple(out)


def _stage_step_s(stage: _StageTerms, decode: float, prefill: float, speed: GpuSpeed, flops_per_s: float,
                  after_attention: float | None, after_moe: float | None, moe: MoeKernel
                  ) -> tuple[float, float, float, float]:
    """One stage's share of a step: its memory, compute and communication seconds, and its StepTerms.total_s, for
    `decode` requests plus `prefill` prompt tokens; `after_attention`, `after_moe`: one all-reduce of the step's
    activations over TP, and over the MoE group (None: no all-reduce)."""
    tokens = decode + prefill
    read, flops_per_token, layers = stage
    flops = flops_per_token * decode  # lm_head: only for sampled tokens
    expert_flops = 0.0
    comm = 0.0
    for n, (dense_bytes, expert_bytes, kv_span_bytes, span, pspan, experts, moe_allreduce, dense_flops,
            expert_flops_per_token, attention_flops) in layers:
        cover = 0.0
        if experts is not None:
            cover = 1.0 if moe.reads_every_expert else expert_coverage(tokens, *experts)
        read += n * (dense_bytes + expert_bytes * cover / moe.bw_efficiency + kv_span_bytes * decode)
        flops += n * dense_flops * tokens
        expert_flops += n * expert_flops_per_token * tokens
        flops += n * attention_flops * (span * decode + pspan * prefill)  # QK^T and PV
        if after_attention is not None:
            comm += n * after_attention
        after_mlp = after_moe if moe_allreduce else after_attention
        if after_mlp is not None:
            comm += n * after_mlp  # after the MLP / MoE
    memory, compute = read / speed.mem_bw_bytes_per_s, flops / flops_per_s + expert_flops / moe.flops_per_s
    return memory, compute, comm, max(memory, compute) + comm


def _stage_steps(stages: tuple[_StageTerms, ...], decode: float, prefill: float, speed: GpuSpeed,
                 flops_per_s: float, tp_cost: CollectiveCost | None, moe_cost: CollectiveCost | None, hidden: int,
                 moe: MoeKernel) -> tuple[list[float], list[float], list[float]]:
    """Each stage's memory, compute and communication seconds of one step (_stage_step_s)."""
    message = (decode + prefill) * hidden * ACT_BYTES
    after_attention = tp_cost.time_s(message) if tp_cost is not None else None
    after_moe = moe_cost.time_s(message) if moe_cost is not None else None
    terms = [_stage_step_s(stage, decode, prefill, speed, flops_per_s, after_attention, after_moe, moe)
             for stage in stages]
    return [t[0] for t in terms], [t[1] for t in terms], [t[2] for t in terms]


def _stage_step(stage: _StageTerms, *, decode: float, prefill: float, speed: GpuSpeed, flops_per_s: float,
                tp_cost: CollectiveCost | None, moe_cost: CollectiveCost | None, hidden: int, moe: MoeKernel
                ) -> StepTerms:
    """One stage's share of a step (`_stage_steps` for one stage)."""
    (memory_s,), (compute_s,), (comm_s,) = _stage_steps((stage,), decode, prefill, speed, flops_per_s, tp_cost,
                                                        moe_cost, hidden, moe)
    return StepTerms(memory_s=memory_s, compute_s=compute_s, communication_s=comm_s, overhead_s=0.0)


def single_stream_step(spec: ModelSpec, speed: GpuSpeed, *, context: float, kv_bytes: int | None = None) -> StepTerms:
    """One decode step of a single request at `context` tokens on one GPU, without the per-step overhead: what
    `tpfit calibrate --vllm-model` subtracts from vLLM's measured TPOT to fit `step_overhead_s` (make_speed adds
    that overhead back to the same terms, so a plan of that model and GPU reproduces the measured TPOT)."""
    (stage,) = _stages(spec, Layout(), kv_bytes or spec.dtype_bytes, context=context, prefill_context=0.0)
    return _stage_step(stage, decode=1.0, prefill=0.0, speed=speed,
                       flops_per_s=_gemm_flops_per_s(spec, speed), tp_cost=None, moe_cost=None, hidden=spec.hidden_size,
                       moe=moe_kernel(spec, speed))


def physical_floor_s(spec: ModelSpec, layout: Layout, gpu: GpuSpec, *, decode: float, prefill: float,
                     context: float, prefill_context: float) -> tuple[float, float]:
    """(seconds to read, seconds to compute) one step on each GPU of one replica at the spec sheet's peaks: no
    efficiency, the fewest experts uniform routing touches, no overhead or communication. No real step can be
    faster; bench/speed_accuracy.py flags measured rows below it as inconsistent with their stated workload."""
    peak = GpuSpeed(gpu_id=gpu.id, mem_bw_bytes_per_s=gpu.mem_bw_bytes_per_s,
                    bf16_flops_per_s=gpu.bf16_flops_per_s or gpu.mem_bw_bytes_per_s * UNKNOWN_PEAK_FLOPS_PER_BYTE,
                    fp8_flops_per_s=gpu.fp8_flops_per_s if gpu.fp8_supported else 0.0, nvlink_bytes_per_s=0.0,
                    pcie_bytes_per_s=0.0, p2p=False)
    rate = _gemm_flops_per_s(spec, peak)
    fp4 = 2 if spec.quant and spec.quant.method == "mxfp4" else 1  # FP4 tensor cores: at most twice FP8's rate
    stages = _stages(spec, layout, spec.dtype_bytes, context=context, prefill_context=prefill_context)
    memory_s, compute_s, _ = _stage_steps(stages, decode, prefill, peak, rate, None, None, spec.hidden_size,
                                          MoeKernel(bw_efficiency=1.0, flops_per_s=rate * fp4,
                                                    reads_every_expert=False))
    return sum(memory_s), sum(compute_s)


def _pipeline(spec: ModelSpec, layout: Layout, cluster: Cluster, speed: GpuSpeed, kv_bytes: int,
              workload: SpeedWorkload, is_moe: bool, cache: dict) -> tuple:
    """What make_speed needs of a layout's shape (TP, PP, expert split) beside its memory: its distinct stages (the
    same layers and ends cost the same; _group_terms, in order of first rank) and how many ranks hold each, the TP,
    MoE and PP links, and the memo of stage steps for that pair of TP and MoE links."""
    key = ("speed_shard", layout.tp, layout.moe_parallel_size if is_moe else 1, layout.enable_expert_parallel)
    shard = cache.get(key)
    if shard is None:
        shard = _speed_shard(spec, layout, cluster, speed, kv_bytes, workload, is_moe, cache)
        # one shard per value of what it holds (its layer costs are one object per value): a layout with
        # --enable-expert-parallel often holds the bytes of the same layout without it, and then shares its stages,
        # stage steps and speeds (DeepSeek-V3 on 64 GPUs: 511 speeds, 368 distinct)
        costs, *_, moe_cost, _ = shard
        # (the lm_head, the TP link and which shapes cost alike follow from TP and the costs)
        alike = ("speed_shard", layout.tp, tuple(map(id, costs)), id(moe_cost))
        shard = cache[key] = cache.setdefault(alike, shard)
    found = cache.get(("pipeline", id(shard), layout.pp))
    if found is not None:
        return found
    _, shapes, lm_head, lm_params, same, by_kind, tp_cost, moe_cost, memo = shard
    kinds, counts = _stage_kinds(spec, layout.pp, same, cache)
    stages = []
    for kind, group in kinds:
        terms = by_kind.get(kind)
        if terms is None:
            terms = by_kind[kind] = _group_terms(shapes, lm_head, lm_params, group)
        stages.append(terms)
    pp_cost = None
    if layout.pp > 1:
        across = layout.world_size > cluster.gpus_per_node  # vLLM puts TP within a node, PP across nodes
        pp_cost = _link(cache, speed, cluster, 2, LinkKind.NETWORK if across else None)
    cache[("pipeline", id(shard), layout.pp)] = out = (tuple(stages), tuple(map(id, stages)), counts, tp_cost,
                                                       moe_cost, pp_cost, memo)
    return out


def _stage_kinds(spec: ModelSpec, pp: int, same: tuple[int, ...] | None, cache: dict
                 ) -> tuple[tuple[tuple[tuple, StageGroup], ...], tuple[float, ...]]:
    """The kinds of stage of a `pp`-way split, for what a step reads (their layers' costs and whether they hold the
    lm_head; not the embedding, a lookup), in order of first rank: each kind with its first group and how many
    ranks hold it. `same`: each layer shape's first shape of alike cost (_speed_shard), None where all differ. The
    same for every TP and expert split of the search with that `same`."""
    found = cache.get(("stage_kinds", pp, same))
    if found is not None:
        return found
    kinds: dict[tuple, list] = {}
    for group in stage_groups(distinct_layers(spec.layers)[0], pp, cache):
        # stages alike by their layers' costs: by their layer counts, where no two shapes cost alike (else by each
        # shape's first alike shape)
        kind = (group.counts if same is None else tuple((same[i], k) for i, k in group.counts), group.last)
        if kind in kinds:
            kinds[kind][1] += len(group.ranks)
        else:
            kinds[kind] = [group, len(group.ranks)]
    found = cache[("stage_kinds", pp, same)] = (tuple((kind, group) for kind, (group, _) in kinds.items()),
                                                 tuple(float(n) for _, n in kinds.values()))
    return found


def _speed_shard(spec: ModelSpec, layout: Layout, cluster: Cluster, speed: GpuSpeed, kv_bytes: int,
                 workload: SpeedWorkload, is_moe: bool, cache: dict) -> tuple:
    """What the layouts of one TP and expert split share: layer costs and their step terms (_layer_terms), which
    layer shapes cost alike, the stages made so far (by layer counts and end), the TP and MoE links, and the stage
    steps worked out so far."""
    costs, lm_head, lm_params = _shard_costs(spec, layout, kv_bytes, cache)
    context, prefill = workload.input_tokens + workload.output_tokens / 2, workload.input_tokens / 2
    shapes = tuple([_layer_terms(c, context=context, prefill_context=prefill) for c in costs])
    first = {id(c): i for i, c in reversed(list(enumerate(costs)))}
    same = None if len(first) == len(costs) else tuple(first[id(c)] for c in costs)
    tp_cost = _link(cache, speed, cluster, layout.tp) if layout.tp > 1 else None
    moe_world = layout.moe_parallel_size if is_moe else layout.tp
    moe_cost = _link(cache, speed, cluster, moe_world) if moe_world > 1 else tp_cost
    memo = cache.setdefault(("stage_steps", id(tp_cost), id(moe_cost)), {})  # links are kept alive by the cache
    return costs, shapes, lm_head, lm_params, same, {}, tp_cost, moe_cost, memo


def _link(cache: dict, speed: GpuSpeed, cluster: Cluster, world: int, kind: LinkKind | None = None) -> CollectiveCost:
    """collective_cost, once per search for each world size and link."""
    if ("link", world, kind) not in cache:
        cache[("link", world, kind)] = collective_cost(speed, kind or link_kind(cluster, world), world)
    return cache[("link", world, kind)]


def make_speed(spec: ModelSpec, layout: Layout, memory: MemoryPlan, cluster: Cluster, speed: GpuSpeed,
               workload: SpeedWorkload, *, kv_bytes: int | None = None, cache: dict | None = None) -> Speed:
    """TTFT, TPOT and throughput of one accepted layout (its memory plan gives KV room and batch limits).

    `kv_bytes`: bytes of one cached K/V element (kv.kv_bytes_per_element; default the model dtype's).
    `cache`: a dict kept across the layouts of one search (one model, cluster, GPU speed and workload): per-GPU
    layer costs depend on TP and the expert split only, stages on PP too, and layouts that differ only in their
    number of DP replicas of a dense model often get the same answer."""
    isl, osl = workload.input_tokens, workload.output_tokens
    cache = {} if cache is None else cache
    search = cache.get(("speed",))
    if search is None:  # what every layout of the search shares
        search = cache[("speed",)] = spec.is_moe, _gemm_flops_per_s(spec, speed), moe_kernel(spec, speed)
    is_moe, flops_per_s, moe = search
    key = ("stages", layout.tp, layout.pp, layout.moe_parallel_size if is_moe else 1, layout.enable_expert_parallel)
    pipe = cache.get(key)
    if pipe is None:
        pipe = cache[key] = _pipeline(spec, layout, cluster, speed, kv_bytes or spec.dtype_bytes, workload, is_moe,
                                      cache)
    stages, ids, counts, tp_cost, moe_cost, pp_cost, memo = pipe

    # requests per replica, and how many of them the KV cache holds at once: vLLM admits a request when its
    # prompt's blocks are free and preempts when the cache fills, so on average each holds prompt + half the answer
    per_replica = layout.requests_per_replica(workload.concurrency)
    blocks_per_request = cdiv(isl + osl // 2, memory.block_size)
    kv_slots = (memory.kv_cache_tokens // memory.block_size) // blocks_per_request
    running = max(1, min(per_replica, kv_slots, memory.max_num_seqs))
    budget = memory.max_num_batched_tokens
    # DP replicas of a dense model hold the same stages: their speed differs only where these do
    served = min(workload.concurrency, layout.dp * running)
    alike = (id(pipe), per_replica, running, served, budget)  # pipelines are one object per value (_pipeline)
    if alike in cache:
        return cache[alike]

    hidden, pp = spec.hidden_size, layout.pp
    overhead_s = speed.step_overhead_s + STEP_OVERHEAD_PER_RANK_S * (layout.world_size - 1)

    def step(decode: float, prefill: float) -> StepTerms:
        """A full token round for `decode` running requests: every stage once per micro-batch, in turn."""
        decode = max(decode, 0.0)
        micro = max(1, min(pp, round(decode) or 1))
        d, p = decode / micro, prefill / micro
        # a stage's step is worked out once per batch for every layout of the search that has the stage
        done = memo.get((d, p))
        if done is None:
            done = memo[(d, p)] = {}
        per_stage = list(map(done.get, ids))
        if None in per_stage:
            message = (d + p) * hidden * ACT_BYTES
            after_attention = tp_cost.time_s(message) if tp_cost is not None else None
            after_moe = moe_cost.time_s(message) if moe_cost is not None else None
            for i, stage in enumerate(stages):
                if per_stage[i] is None:
                    per_stage[i] = done[ids[i]] = _stage_step_s(stage, d, p, speed, flops_per_s, after_attention,
                                                                after_moe, moe)
        # every stage's terms times the ranks that hold it, summed in stage order (the counts are floats: the same
        # figures as ints, in float arithmetic), and the slowest stage
        memory = compute = comm = busy = slowest = 0.0
        for (memory_s, compute_s, comm_s, total_s), n in zip(per_stage, counts):
            memory += memory_s * n
            compute += compute_s * n
            comm += comm_s * n
            busy += total_s * n
            if total_s > slowest:
                slowest = total_s
        handoff = 0.0
        if pp > 1:
            handoff = (pp - 1) * (PP_HANDOFF_LATENCY_S
                                  + (decode + prefill) / micro * hidden * ACT_BYTES / pp_cost.bytes_per_s)
        comm += handoff
        # a micro-batch passes every stage; with `micro` batches in flight the slowest stage is busy `micro` times
        round_s = max(busy, micro * slowest)
        return StepTerms(memory_s=memory, compute_s=compute, communication_s=comm,
                         overhead_s=overhead_s + STEP_OVERHEAD_PER_SEQ_S * decode,
                         pipeline_s=round_s + handoff - max(memory, compute) - comm)

    # steady state: every running request needs one prompt per `osl` steps, so running / osl prompts arrive per
    # step; each is cut into chunks of the token budget. A fraction `with_prompt` of the steps carries prompt
    # tokens (compute-heavy, and touching more experts), the rest decode only: TPOT is the mean step.
    # With PP each of the `micro` batches in flight is its own scheduler step, with its own prompts.
    micro = max(1, min(layout.pp, running))
    chunk = max(budget - running // micro, 1)
    prompts_per_step = running / micro / osl
    with_prompt = min(1.0, prompts_per_step * cdiv(isl, chunk))
    prompt_tokens = micro * prompts_per_step * isl / with_prompt  # over the micro-batches of one round
    decode_step = step(running, 0.0)
    mixed = step(running, prompt_tokens)
    tpot = (1 - with_prompt) * decode_step.total_s + with_prompt * mixed.total_s
    terms = mixed if with_prompt * mixed.total_s > (1 - with_prompt) * decode_step.total_s else decode_step

    # TTFT: wait for the step in flight, then the prompts ahead of this one, then its own chunks.
    # Requests of one length arrive in waves (a closed loop keeps them in step): the first wave's prompts are
    # prefilled one after another at the full token budget, the mean one waits half the wave; later waves
    # arrive spaced by that prefill and barely wait. PROMPT_WAVES averages the first wave over a run.
    chunk = max(budget - (running - 1), 1)
    own = sum(step(running - 1, min(chunk, isl - i * chunk)).total_s for i in range(cdiv(isl, chunk)))
    full = step(0.0, float(budget)).total_s  # a step of prompts only, at the whole budget
    wave_s = (running - 1) / 2 * isl * full / budget / micro  # PP stages work on `micro` prompts at once
    ttft = REQUEST_OVERHEAD_S + (tpot / 2 if running > 1 else 0.0) + wave_s / PROMPT_WAVES + own

    request_s = ttft + (osl - 1) * tpot
    bound = terms.bound
    if per_replica > running:
        # Little's law: `running` slots turn over every request_s; the others wait their turn before prefill
        waiting_s = (per_replica / running - 1) * request_s
        ttft += waiting_s
        bound = Bound.QUEUE
    # replicas serve at most `concurrency` requests between them: one request keeps one replica busy
    total = served * osl / request_s
    cache[alike] = out = Speed(ttft_s=ttft, tpot_s=tpot, request_output_tok_s=1 / tpot, total_output_tok_s=total,
                               concurrency=workload.concurrency, running_per_replica=running, input_tokens=isl,
                               output_tokens=osl, bound=bound, step=terms, calibration=speed.calibration)
    return out
