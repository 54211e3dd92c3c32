"""tpfit explain: read a vLLM log, name the mistake, give the fix (with the planner's figures when the
model and GPUs are known). Pure: text in, diagnoses out."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass

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


def _tp_advice(ctx: Context) -> str:
    if ctx.valid_tps:
        return f"use --tensor-parallel-size {' or '.join(map(str, ctx.valid_tps))} (what this model accepts)"
    return "use a --tensor-parallel-size that divides the model's attention heads, KV heads and vocabulary"


def _heads(m: re.Match, ctx: Context) -> Diagnosis:
    heads, tp = m.group(1), m.group(2)
    return Diagnosis(kind="heads_divisible_by_tp", cause=f"TP={tp} does not divide the model's {heads} attention heads",
                     fix=_tp_advice(ctx) + f"; or --pipeline-parallel-size {tp} to use all {tp} GPUs",
                     evidence=m.group(0))


def _divisible(m: re.Match, ctx: Context) -> Diagnosis:
    a, b = int(m.group(1)), int(m.group(2))
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


def _quant(m: re.Match, ctx: Context) -> Diagnosis:
    return Diagnosis(kind="quant_alignment",
                     cause="TP cuts a quantized layer mid-group (AWQ/GPTQ group size, FP8 128-block or 4-bit packing)",
                     fix="use a smaller --tensor-parallel-size and add --pipeline-parallel-size to use the GPUs "
                         "(tpfit plan MODEL --gpus ... lists the TP sizes this checkpoint accepts)",
                     evidence=m.group(0))


def _max_len(m: re.Match, ctx: Context) -> Diagnosis:
    wanted = m.group(1)
    est_m = re.search(r"estimated maximum model length is (\d+)", m.group(0))
    est = est_m.group(1) if est_m else None
    target = est or (str(ctx.suggested_max_model_len) if ctx.suggested_max_model_len else None)
    fix = (f"start with --max-model-len {target} (what fits), or free memory for the KV cache: raise "
           "--gpu-memory-utilization, add GPUs (TP/PP), use --kv-cache-dtype fp8 or a quantized model") if target else \
        "lower --max-model-len or raise --gpu-memory-utilization"
    return Diagnosis(kind="max_model_len_exceeds_kv_cache",
                     cause=f"one request of max_model_len {wanted} tokens needs more KV cache than is left after the "
                           "weights and activations", fix=fix, evidence=m.group(0))


def _no_blocks(m: re.Match, ctx: Context) -> Diagnosis:
    return Diagnosis(kind="no_kv_cache_memory", cause="the weights and activation peak fill the whole budget: no KV cache",
                     fix="add GPUs (higher --tensor-parallel-size / --pipeline-parallel-size), use a quantized model, "
                         "or raise --gpu-memory-utilization", evidence=m.group(0))


def _oom(m: re.Match, ctx: Context) -> Diagnosis:
    sampler = "sampler" in m.group(0)
    return Diagnosis(kind="cuda_oom_sampler" if sampler else "cuda_oom",
                     cause="CUDA ran out of memory " + ("while warming up the sampler with max_num_seqs dummy requests"
                                                        if sampler else "during profiling or warm-up"),
                     fix=("lower --max-num-seqs (e.g. 256) or --gpu-memory-utilization" if sampler else
                          "lower --gpu-memory-utilization (CUDA graphs and NCCL buffers sit outside it), "
                          "--max-num-batched-tokens, or add --enforce-eager"), evidence=m.group(0))


def _world(m: re.Match, ctx: Context) -> Diagnosis:
    return Diagnosis(kind="world_size", cause=f"TP x PP = {m.group(1)} GPUs, but this node shows {m.group(2)}",
                     fix="lower --tensor-parallel-size x --pipeline-parallel-size to the visible GPUs; check "
                         "CUDA_VISIBLE_DEVICES / docker --gpus; for several nodes add --distributed-executor-backend ray",
                     evidence=m.group(0))


def _shm(m: re.Match, ctx: Context) -> Diagnosis:
    return Diagnosis(kind="shared_memory", cause="workers could not share memory: /dev/shm is too small (Docker's "
                                                 "default is 64 MB) or NCCL's shared-memory transport failed",
                     fix="run the container with --ipc=host (or --shm-size 16g); on Kubernetes mount an emptyDir "
                         "with medium: Memory at /dev/shm", evidence=m.group(0))


def _duplicate_gpu(m: re.Match, ctx: Context) -> Diagnosis:
    return Diagnosis(kind="nccl", cause=f"two vLLM ranks (rank {m.group(1)} and rank {m.group(2)}) were placed on one "
                                        "GPU; NCCL needs one GPU per rank",
                     fix="give each rank its own GPU: check CUDA_VISIBLE_DEVICES (or tpfit deploy --gpu-ids) names "
                         "TP x PP distinct GPUs, and that no other container claims the same devices",
                     evidence=m.group(0))


def _nccl(m: re.Match, ctx: Context) -> Diagnosis:
    return Diagnosis(kind="nccl", cause="NCCL failed between the GPUs (peer-to-peer, shared memory or network)",
                     fix="in docker add --ipc=host; on PCIe consumer GPUs export NCCL_P2P_DISABLE=1; across nodes set "
                         "NCCL_SOCKET_IFNAME/GLOO_SOCKET_IFNAME; rerun with NCCL_DEBUG=INFO for the transport",
                     evidence=m.group(0))


def _no_gpu(m: re.Match, ctx: Context) -> Diagnosis:
    return Diagnosis(kind="no_gpu_visible", cause="no NVIDIA GPU is visible to the process",
                     fix="docker: add --gpus all (and the NVIDIA Container Toolkit: nvidia-ctk runtime configure "
                         "--runtime=docker); check nvidia-smi and CUDA_VISIBLE_DEVICES; tpfit doctor checks all of it",
                     evidence=m.group(0))


def _driver(m: re.Match, ctx: Context) -> Diagnosis:
    return Diagnosis(kind="driver_too_old", cause="the host driver is older than the CUDA the image or torch needs",
                     fix=f"upgrade the NVIDIA driver ({driver_requirements()}), "
                         "or use an image built for an older CUDA; datacenter GPUs can try "
                         "-e VLLM_ENABLE_CUDA_COMPATIBILITY=1", evidence=m.group(0))


def _free_memory(m: re.Match, ctx: Context) -> Diagnosis:
    free, total, asked = float(m.group(1)), float(m.group(2)), m.group(3)
    return Diagnosis(kind="gpu_memory_in_use", cause=f"only {m.group(1)} GiB were free at start-up, less than "
                                                     f"gpu_memory_utilization asked for ({asked} GiB)",
                     fix=f"use --gpu-memory-utilization {math.floor(free / total * 100) / 100:.2f} or less: vLLM "
                         "checks after its own CUDA context and NCCL buffers exist (0.5-1.5 GiB); if nvidia-smi "
                         "lists other processes on the GPU, stop them", evidence=m.group(0))


def _derived_len(m: re.Match, ctx: Context) -> Diagnosis:
    return Diagnosis(kind="max_model_len_exceeds_model", cause=f"--max-model-len {m.group(1)} is above the model's "
                                                                f"own limit ({m.group(2)})",
                     fix=f"use --max-model-len {m.group(2).split('=')[-1].split('.')[0]} or less "
                         "(VLLM_ALLOW_LONG_MAX_MODEL_LEN=1 only if the model really handles longer context)",
                     evidence=m.group(0))


def _head_dim(m: re.Match, ctx: Context) -> Diagnosis:
    return Diagnosis(kind="cpu_head_dim", cause=f"the CPU attention backend has no kernel for head_dim={m.group(1)}",
                     fix="use a model whose head_dim is one of 32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512",
                     evidence=m.group(0))


def _ipc_path(m: re.Match, ctx: Context) -> Diagnosis:
    return Diagnosis(kind="ipc_path_too_long", cause=f"vLLM's ZMQ socket path under TMPDIR is longer than the "
                                                     f"{m.group(1)} characters a Unix socket path may have",
                     fix="start vLLM with a short TMPDIR, e.g. TMPDIR=/tmp (tpfit verify --launch picks a short one)",
                     evidence=m.group(0))


RULES: tuple[tuple[re.Pattern, Callable[[re.Match, Context], Diagnosis]], ...] = (
    (re.compile(r"Total number of attention heads \((\d+)\) must be divisible by tensor parallel size \((\d+)\)"), _heads),
    (re.compile(r"User-specified max_model_len \((\d+)\) is greater than the derived max_model_len \(([^)]*?)(?: or |\))"),
     _derived_len),
    (re.compile(r"To serve at least one request with the model'?s max seq len \((\d+)\)[^\n]*"), _max_len),
    (re.compile(r"No available memory for the cache blocks"), _no_blocks),
    (re.compile(r"(?:The (?:input|output) size is not aligned with the quantized weight shape|is not divisible by "
                r"(?:weight quantization block_[nk]|group_size|min_thread_[nk])[^.]*)"), _quant),
    (re.compile(r"AssertionError: (\d+) is not divisible by (\d+)"), _divisible),
    (re.compile(r"CUDA out of memory occurred when warming up sampler[^\n]*|(?:torch\.)?OutOfMemoryError: CUDA out of "
                r"memory[^\n]*|CUDA error: out of memory"), _oom),
    (re.compile(r"World size \((\d+)\) is larger than the number of available GPUs \((\d+)\)"), _world),
    (re.compile(r"Free memory on device (?:\S+ )?\(([\d.]+)/([\d.]+) GiB\) on startup is less than desired GPU memory "
                r"utilization \([\d.]+, ([\d.]+) GiB\)"), _free_memory),
    (re.compile(r"unable to allocate shared memory\(shm\)[^\n]*|Bus error|Error while creating shared memory "
                r"segment|No space left on device[^\n]*shm|/dev/shm[^\n]*(?:No space|too small)"), _shm),
    # before the generic NCCL rule: the first rule of a kind wins, and this one names the cause
    (re.compile(r"Duplicate GPU detected ?: rank (\d+) and rank (\d+) both on CUDA device \w+"), _duplicate_gpu),
    (re.compile(r"NCCL error[^\n]*|ncclUnhandledCudaError[^\n]*|ncclSystemError[^\n]*|ncclInternalError[^\n]*|"
                r"ncclInvalidUsage[^\n]*"), _nccl),
    (re.compile(r"No CUDA GPUs are available|Failed to infer device type|libcuda\.so\.1: cannot open shared object "
                r"file|Found no NVIDIA driver on your system|CUDA driver initialization failed"), _no_gpu),
    (re.compile(r"The NVIDIA driver on your system is too old[^\n]*|CUDA driver version is insufficient for CUDA "
                r"runtime version|forward compatibility was attempted on non supported HW|"
                r"unsatisfied condition: cuda>=[\d.]+[^\n]*"), _driver),
    (re.compile(r"Unsupported CPU attention configuration: head_dim=(\d+)"), _head_dim),
    (re.compile(r"ipc path \"[^\"]*\" is longer than (\d+) characters"), _ipc_path),
)


KNOWN_FAILURES = ("TP vs heads / KV heads / vocab", "quantized shard alignment", "max_model_len vs KV cache or model",
                  "no KV cache memory", "CUDA OOM", "world size", "GPU memory in use", "shared memory", "NCCL",
                  "two ranks on one GPU",
                  "no GPU", "driver too old", "CPU head size", "TMPDIR too deep for vLLM's sockets")
"""What RULES recognise, in words, for the 'nothing found' answer."""


def explain(text: str, ctx: Context | None = None) -> list[Diagnosis]:
    """Every recognised failure in a log, first occurrence of each kind, in log order."""
    ctx = ctx or Context()
    found: dict[str, tuple[int, Diagnosis]] = {}
    for pattern, make in RULES:
        m = pattern.search(text)
        if m:
            d = make(m, ctx)
            if d.kind not in found:
                found[d.kind] = (m.start(), d)
    return [d for _, d in sorted(found.values(), key=lambda x: x[0])]
