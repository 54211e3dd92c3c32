"""tpfit explain: read a vLLM log, name the mistake, give the fix (with the planner's figures when the
model and GPUs are known). `explain` is pure: text in, diagnoses out; `context_for` plans the model."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass

from tpfit.core.startup import startable_utilization
from tpfit.core.vllm_messages import (
    BATCH_BELOW_MAX_NUM_SEQS, BF16_CAPABILITY, DSV4_KV_CACHE_DTYPE, EP_WITHOUT_EXPERTS, FLOAT16_UNSUPPORTED,
    FP8_BLOCK_K, FP8_BLOCK_N,
    FP8_MOE_BLOCK_N, FREE_MEMORY_BELOW_REQUEST,
    HEADS_NOT_DIVISIBLE, KV_CACHE_BELOW_MAX_LEN, MARLIN_GROUP_SIZE, MARLIN_GROUP_SPLIT, MARLIN_MIN_THREAD_K,
    MARLIN_MIN_THREAD_N, MAX_LEN_ABOVE_DERIVED, NOT_DIVISIBLE, NO_KV_CACHE_MEMORY, PP_NOT_SUPPORTED,
    QUANT_CAPABILITY, QUANT_DTYPE, QUANT_INPUT_NOT_ALIGNED, QUANT_METHOD_MISMATCH, QUANT_OUTPUT_NOT_ALIGNED,
    V0_BATCH_BELOW_MAX_LEN, V0_KV_CACHE_BELOW_MAX_LEN, VllmMessage, WORLD_SIZE_ABOVE_GPUS,
)
from tpfit.vllm_facts import driver_requirements


@dataclass(frozen=True, slots=True, kw_only=True)
class Diagnosis:
    kind: str
    cause: str
    fix: str
    evidence: str
    """The log line that shows it."""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    """What the planner can add: the model's heads, KV heads, padded vocab, valid TP sizes, GPUs."""

    num_attention_heads: int | None = None
    num_key_value_heads: int | None = None
    padded_vocab: int | None = None
    valid_tps: tuple[int, ...] = ()
    gpus: int | None = None
    suggested_max_model_len: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Worded:
    """A diagnosis that puts the log line's own figures into words: `cause` and `fix` are `str.format` templates
    over the match's named groups. Most failures need no more; those that work something out (the planner's TP
    sizes, a startable utilization) are functions of their own below."""

    kind: str
    cause: str
    fix: str

    def __call__(self, m: re.Match, ctx: Context) -> Diagnosis:
        groups = m.groupdict()
        return Diagnosis(kind=self.kind, cause=self.cause.format_map(groups), fix=self.fix.format_map(groups),
                         evidence=m.group(0))


def _tp_advice(ctx: Context) -> str:
    if ctx.valid_tps:
        return f"use --tensor-parallel-size {' or '.join(map(str, ctx.valid_tps))} (what this model accepts)"
    return "use a --tensor-parallel-size that divides the model's attention heads, KV heads and vocabulary"


def _heads(m: re.Match, ctx: Context) -> Diagnosis:
    heads, tp = m["heads"], m["tp"]
    return Diagnosis(kind="heads_divisible_by_tp", cause=f"TP={tp} does not divide the model's {heads} attention heads",
                     fix=_tp_advice(ctx) + f"; or --pipeline-parallel-size {tp} on the same {tp} GPUs",
                     evidence=m.group(0))


def _divisible(m: re.Match, ctx: Context) -> Diagnosis:
    a, b = int(m["numerator"]), int(m["denominator"])
    what = "a tensor dimension"
    if ctx.padded_vocab and a == ctx.padded_vocab:
        what = f"the vocabulary (padded to {a})"
    elif ctx.num_key_value_heads and a == ctx.num_key_value_heads:
        what = f"the {a} KV heads"
    elif ctx.num_key_value_heads and b == ctx.num_key_value_heads:
        what = f"the {b} KV heads (TP above them must be a multiple of them)"
    elif a > 10_000:
        what = f"the vocabulary or an MLP width ({a})"
    return Diagnosis(kind="split_not_divisible", cause=f"tensor parallelism splits {what} unevenly ({a} / {b})",
                     fix=_tp_advice(ctx), evidence=m.group(0))


def _max_len(m: re.Match, ctx: Context) -> Diagnosis:
    wanted = m["max_model_len"]
    target = m["estimated"] or (str(ctx.suggested_max_model_len) if ctx.suggested_max_model_len else None)
    fix = (f"start with --max-model-len {target} (what fits), or free memory for the KV cache: raise "
           "--gpu-memory-utilization, add GPUs (TP/PP), use --kv-cache-dtype fp8 or a quantized model") if target else \
        "lower --max-model-len or raise --gpu-memory-utilization"
    return Diagnosis(kind="max_model_len_exceeds_kv_cache",
                     cause=f"one request of max_model_len {wanted} tokens needs more KV cache than is left after the "
                           "weights and activations", fix=fix, evidence=m.group(0))


ENGINE_STARTED = re.compile(r"init engine \(profile, create kv cache, warmup model\) took|Application startup "
                            r"complete")
"""A line that ends vLLM's start-up: the engine's own (v1/engine/core.py, 0.19 to 0.33), or uvicorn's under `vllm
serve`. An out-of-memory error after it came from serving, not from profiling or warm-up."""


def _oom(m: re.Match, ctx: Context) -> Diagnosis:
    sampler = "sampler" in m.group(0)
    if not sampler and ENGINE_STARTED.search(m.string, 0, m.start()):
        # the plan's overflows_at_runtime: graphs outside the budget, the context and the first requests' growth
        return Diagnosis(kind="cuda_oom_serving",
                         cause="CUDA ran out of memory serving the first requests, after vLLM had started: CUDA "
                               "graphs, the CUDA context and what the first requests add (about 1 GiB) come on top of "
                               "the --gpu-memory-utilization budget, and together they exceeded the card",
                         fix="lower --gpu-memory-utilization (tpfit plan MODEL --gpus ... plans the highest that "
                             "leaves room for them) or add --enforce-eager (no CUDA graphs)", evidence=m.group(0))
    return Diagnosis(kind="cuda_oom_sampler" if sampler else "cuda_oom",
                     cause="CUDA ran out of memory " + ("while warming up the sampler with max_num_seqs dummy requests"
                                                        if sampler else "during profiling or warm-up"),
                     fix=("lower --max-num-seqs (e.g. 256) or --gpu-memory-utilization" if sampler else
                          "lower --gpu-memory-utilization (CUDA graphs and NCCL buffers sit outside it), "
                          "--max-num-batched-tokens, or add --enforce-eager"), evidence=m.group(0))


def _driver(m: re.Match, ctx: Context) -> Diagnosis:
    return Diagnosis(kind="driver_too_old", cause="the host driver is older than the CUDA the image or torch needs",
                     fix=f"upgrade the NVIDIA driver ({driver_requirements()}), "
                         "or use an image built for an older CUDA; datacenter GPUs can try "
                         "-e VLLM_ENABLE_CUDA_COMPATIBILITY=1", evidence=m.group(0))


def _free_memory(m: re.Match, ctx: Context) -> Diagnosis:
    free, total, asked = float(m["free_gib"]), float(m["total_gib"]), m["requested_gib"]
    return Diagnosis(kind="gpu_memory_in_use", cause=f"only {m['free_gib']} GiB were free at start-up, less than "
                                                     f"gpu_memory_utilization asked for ({asked} GiB)",
                     fix=f"use --gpu-memory-utilization {startable_utilization(free, total):.2f} or less: vLLM "
                         "checks after its own CUDA context and NCCL buffers exist (0.5-1.5 GiB); if nvidia-smi "
                         "lists other processes on the GPU, stop them", evidence=m.group(0))


def _derived_len(m: re.Match, ctx: Context) -> Diagnosis:
    limit = f"{m['max_len_key']}={m['derived']}"
    return Diagnosis(kind="max_model_len_exceeds_model", cause=f"--max-model-len {m['max_model_len']} is above the "
                                                                f"model's own limit ({limit})",
                     fix=f"use --max-model-len {m['derived'].split('.')[0]} or less "
                         "(VLLM_ALLOW_LONG_MAX_MODEL_LEN=1 only if the model really handles longer context)",
                     evidence=m.group(0))


def _capability(m: re.Match, ctx: Context) -> Diagnosis:
    return Diagnosis(kind="gpu_capability", cause=f"the GPU (compute capability {int(m['current']) / 10}) is too old "
                                                  f"for {m['method']} weights (needs {int(m['minimum']) / 10})",
                     fix=QUANT_CAPABILITY.fix, evidence=m.group(0))


class LogSignature:
    """A failure that is not a refusal of the configuration (out of memory, NCCL, the host): a pattern only."""

    def __init__(self, pattern: str) -> None:
        self.pattern = re.compile(pattern)

    def search(self, text: str) -> re.Match | None:
        return self.pattern.search(text)


Diagnose = Callable[[re.Match, Context], Diagnosis]
_QUANT = Worded(kind="quant_alignment",
                cause="TP cuts a quantized layer mid-group (AWQ/GPTQ group size, FP8 128-block or 4-bit packing)",
                fix="use a smaller --tensor-parallel-size and add --pipeline-parallel-size to use the GPUs "
                "(tpfit plan MODEL --gpus ... lists the TP sizes this checkpoint accepts)")
RULES: tuple[tuple[VllmMessage | LogSignature, Diagnose], ...] = (
    (HEADS_NOT_DIVISIBLE, _heads),
    (MAX_LEN_ABOVE_DERIVED, _derived_len),
    (KV_CACHE_BELOW_MAX_LEN, _max_len),
    # vLLM 0.6/0.7 (V0): the figure is the tokens the KV blocks hold; without chunked prefill (max_model_len up to
    # 32K) its profile run is max_model_len tokens long, so a shorter --max-model-len also frees activation memory
    (V0_KV_CACHE_BELOW_MAX_LEN, Worded(
        kind="max_model_len_exceeds_kv_cache",
        cause="one request of max_model_len {max_model_len} tokens needs more KV cache than the {max_seq_len} tokens "
        "left after the weights and the profile run's activations",
        fix="start with --max-model-len {max_seq_len} (what fits; the shorter profile run frees more), or raise "
        "--gpu-memory-utilization, add GPUs, use a quantized model")),
    (NO_KV_CACHE_MEMORY, Worded(
        kind="no_kv_cache_memory", cause="the weights and activation peak fill the whole budget: no KV cache",
        fix="add GPUs (higher --tensor-parallel-size / --pipeline-parallel-size), use a quantized model, or raise "
        "--gpu-memory-utilization")),
    (QUANT_INPUT_NOT_ALIGNED, _QUANT), (QUANT_OUTPUT_NOT_ALIGNED, _QUANT), (FP8_BLOCK_K, _QUANT), (FP8_BLOCK_N, _QUANT),
    (FP8_MOE_BLOCK_N, _QUANT), (MARLIN_GROUP_SPLIT, _QUANT), (MARLIN_MIN_THREAD_N, _QUANT),
    (MARLIN_MIN_THREAD_K, _QUANT), (MARLIN_GROUP_SIZE, _QUANT),
    (NOT_DIVISIBLE, _divisible),
    (LogSignature(r"CUDA out of memory occurred when warming up sampler[^\n]*|(?:torch\.)?OutOfMemoryError: CUDA out "
                  r"of memory[^\n]*|CUDA error: out of memory"), _oom),
    (WORLD_SIZE_ABOVE_GPUS, Worded(
        kind="world_size", cause="TP x PP = {world_size} GPUs, but this node shows {gpus}",
        fix="lower --tensor-parallel-size x --pipeline-parallel-size to the visible GPUs; check CUDA_VISIBLE_DEVICES / "
        "docker --gpus; for several nodes add --distributed-executor-backend ray")),
    (BATCH_BELOW_MAX_NUM_SEQS, Worded(
        kind="max_num_seqs_above_batch",
        cause="--max-num-seqs {max_num_seqs} is more than --max-num-batched-tokens {max_num_batched_tokens}: a step "
        "could not hold one token of every running request",
        fix="use --max-num-seqs {max_num_batched_tokens} or less, or --max-num-batched-tokens {max_num_seqs} or more")),
    (V0_BATCH_BELOW_MAX_LEN, Worded(
        kind="batch_below_max_model_len",
        cause="--max-num-batched-tokens {max_num_batched_tokens} is below --max-model-len {max_model_len} and chunked "
        "prefill is off (vLLM before 0.8: on by default only above 32K tokens)",
        fix="use --max-num-batched-tokens {max_model_len} or more, add --enable-chunked-prefill, or a shorter "
        "--max-model-len")),
    (QUANT_METHOD_MISMATCH, Worded(
        kind="quantization_mismatch",
        cause="--quantization {quantization} on a checkpoint stored as {quant_method}: vLLM loads it as it is stored",
        fix="leave --quantization out (or give the checkpoint's own method); for FP8 weights use an unquantized "
        "checkpoint with --quantization fp8")),
    (EP_WITHOUT_EXPERTS, Worded(kind="ep_without_experts",
                                cause="expert parallelism was asked of a model without experts",
                                fix=EP_WITHOUT_EXPERTS.fix)),
    (PP_NOT_SUPPORTED, Worded(kind="pp_not_supported",
                              cause="vLLM's class for this model has no pipeline-parallel support",
                              fix=f"{PP_NOT_SUPPORTED.fix} and a --tensor-parallel-size that uses the GPUs")),
    (QUANT_CAPABILITY, _capability),
    (QUANT_DTYPE, Worded(kind="quant_dtype",
                         cause="{method} weights do not compute in {dtype} (vLLM takes {supported})",
                         fix=QUANT_DTYPE.fix)),
    (FLOAT16_UNSUPPORTED, Worded(kind="model_dtype", cause="vLLM refuses float16 for {model_type} ({reason})",
                                 fix=FLOAT16_UNSUPPORTED.fix)),
    (BF16_CAPABILITY, Worded(kind="gpu_capability_bf16", cause="the GPU has no bfloat16 (compute capability below 8.0)",
                             fix=BF16_CAPABILITY.fix)),
    (DSV4_KV_CACHE_DTYPE, Worded(kind="kv_cache_dtype",
                                 cause="DeepSeek-V4's FlashMLA path caches fp8_ds_mla, not {kv_cache_dtype}",
                                 fix=DSV4_KV_CACHE_DTYPE.fix)),
    (FREE_MEMORY_BELOW_REQUEST, _free_memory),
    (LogSignature(r"unable to allocate shared memory\(shm\)[^\n]*|Bus error|Error while creating shared memory "
                  r"segment|No space left on device[^\n]*shm|/dev/shm[^\n]*(?:No space|too small)"), Worded(
        kind="shared_memory",
        cause="workers could not share memory: /dev/shm is too small (Docker's default is 64 MB) or NCCL's "
        "shared-memory transport failed",
        fix="run the container with --ipc=host (or --shm-size 16g); on Kubernetes mount an emptyDir with medium: "
        "Memory at /dev/shm")),
    # before the generic NCCL rule: the first rule of a kind wins, and this one names the cause
    (LogSignature(r"Duplicate GPU detected ?: rank (?P<rank>\d+) and rank (?P<other>\d+) both on CUDA device \w+"),
     Worded(kind="nccl",
            cause="two vLLM ranks (rank {rank} and rank {other}) were placed on one GPU; NCCL needs one GPU per rank",
            fix="give each rank its own GPU: check CUDA_VISIBLE_DEVICES (or tpfit deploy --gpu-ids) names TP x PP "
            "distinct GPUs, and that no other container claims the same devices")),
    (LogSignature(r"NCCL error[^\n]*|ncclUnhandledCudaError[^\n]*|ncclSystemError[^\n]*|ncclInternalError[^\n]*|"
                  r"ncclInvalidUsage[^\n]*"), Worded(
        kind="nccl", cause="NCCL failed between the GPUs (peer-to-peer, shared memory or network)",
        fix="in docker add --ipc=host; on PCIe consumer GPUs export NCCL_P2P_DISABLE=1; across nodes set "
        "NCCL_SOCKET_IFNAME/GLOO_SOCKET_IFNAME; rerun with NCCL_DEBUG=INFO for the transport")),
    (LogSignature(r"No CUDA GPUs are available|Failed to infer device type|libcuda\.so\.1: cannot open shared "
                  r"object file|Found no NVIDIA driver on your system|CUDA driver initialization failed"), Worded(
        kind="no_gpu_visible", cause="no NVIDIA GPU is visible to the process",
        fix="docker: add --gpus all (and the NVIDIA Container Toolkit: nvidia-ctk runtime configure --runtime=docker); "
        "check nvidia-smi and CUDA_VISIBLE_DEVICES; tpfit doctor checks all of it")),
    (LogSignature(r"The NVIDIA driver on your system is too old[^\n]*|CUDA driver version is insufficient for CUDA "
                  r"runtime version|forward compatibility was attempted on non supported HW|"
                  r"unsatisfied condition: cuda>=[\d.]+[^\n]*"), _driver),
    (LogSignature(r"Unsupported CPU attention configuration: head_dim=(?P<head_dim>\d+)"), Worded(
        kind="cpu_head_dim", cause="the CPU attention backend has no kernel for head_dim={head_dim}",
        fix="use a model whose head_dim is one of 32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512")),
    (LogSignature(r"ipc path \"[^\"]*\" is longer than (?P<limit>\d+) characters"), Worded(
        kind="ipc_path_too_long",
        cause="vLLM's ZMQ socket path under TMPDIR is longer than the {limit} characters a Unix socket path may have",
        fix="start vLLM with a short TMPDIR, e.g. TMPDIR=/tmp (tpfit verify --launch picks a short one)")),
    (LogSignature(r"current platform (?P<platform>\w+) does not support ray\."), Worded(
        kind="ray_unsupported", cause="this vLLM build ({platform}) has no Ray executor",
        fix="drop --distributed-executor-backend ray: one host needs none, several hosts can use vLLM's own launcher "
        "(nnodes.sh from tpfit deploy --format ray); Ray needs a GPU build")),
)
"""vLLM's refusal messages (core/vllm_messages.py, the texts the planner predicts) and the log signatures of
other failures, each with what tpfit says about it."""


KNOWN_FAILURES = ("TP vs heads / KV heads / vocab", "quantized shard alignment", "max_model_len vs KV cache or model",
                  "no KV cache memory", "CUDA OOM (start-up or serving)", "world size", "GPU memory in use",
                  "shared memory", "NCCL", "two ranks on one GPU",
                  "no GPU", "driver too old", "CPU head size", "TMPDIR too deep for vLLM's sockets",
                  "expert parallel without experts", "pipeline parallel unsupported", "GPU too old for the weights",
                  "DeepSeek-V4 with a 16-bit KV cache",
                  "no Ray executor in this build")
"""What RULES recognise, in words, for the 'nothing found' answer."""


def explain(text: str, ctx: Context | None = None) -> list[Diagnosis]:
    """Every recognised failure in a log, first occurrence of each kind, in log order."""
    ctx = ctx or Context()
    found: dict[str, tuple[int, Diagnosis]] = {}
    for signature, make in RULES:
        m = signature.search(text)
        if m:
            d = make(m, ctx)
            if d.kind not in found:
                found[d.kind] = (m.start(), d)
    return [d for _, d in sorted(found.values(), key=lambda x: x[0])]


def context_for(spec, cluster, *, plan_gpus: bool) -> Context:
    """What the planner adds for MODEL on these GPUs: the TP sizes vLLM accepts, and (`plan_gpus`: the GPUs were
    given) the longest context that fits."""
    from tpfit import EngineArgs, Layout, make_plan
    from tpfit.core.rules import check_layout
    from tpfit.core.weights import padded_vocab

    valid = tuple(tp for tp in range(1, cluster.gpus_per_node + 1)
                  if not check_layout(spec, Layout(tp=tp), cluster, EngineArgs()))
    suggested = None
    if plan_gpus:
        best = make_plan(spec, cluster).best
        suggested = best.memory.max_model_len_fit if best and best.memory else None
    return Context(num_attention_heads=spec.num_attention_heads, num_key_value_heads=spec.num_key_value_heads,
                   padded_vocab=padded_vocab(spec.vocab_size), valid_tps=valid, gpus=cluster.num_gpus,
                   suggested_max_model_len=suggested)
