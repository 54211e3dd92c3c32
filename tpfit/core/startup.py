"""vLLM's start-up refusals: less free memory than it will request, no memory left for the KV cache, and a KV
cache smaller than one request of max_model_len. Each check takes bytes and returns a Violation or None;
the planner (core/memory.py) and `tpfit doctor` (live/doctor.py) call the same ones.

Mirrors `vllm/v1/worker/utils.py::request_memory` and `vllm/v1/core/kv_cache_utils.py::check_enough_kv_cache_memory`
(shared/reference/vllm-internals.md §1, §2).
"""

from __future__ import annotations

import math

from tpfit.core.engine import Semantics
from tpfit.core.vllm_messages import (
    CUDA_OUT_OF_MEMORY, FREE_MEMORY_BELOW_REQUEST, KV_CACHE_BELOW_MAX_LEN, NO_KV_CACHE_MEMORY,
    V0_KV_CACHE_BELOW_MAX_LEN, Violation,
)
from tpfit.units import GIB, format_gib

OTHER_PROCESS_BYTES = GIB // 4
"""Memory held by others that is worth naming (below it: the driver's own MiBs)."""
LOWEST_UTILIZATION = 0.05
"""The lowest `--gpu-memory-utilization` tpfit suggests."""


def vllm_gib(n_bytes: float) -> float:
    """GiB as vLLM's `format_gib` prints them in its messages: rounded to 2 decimals, no trailing zeros."""
    return round(n_bytes / GIB, 2)


def requested_bytes(total_bytes: int, gpu_memory_utilization: float, sem: Semantics) -> int:
    """What vLLM asks of a GPU: total x gpu_memory_utilization (rounded up in newer releases)."""
    share = total_bytes * gpu_memory_utilization
    return math.ceil(share) if sem.requested_ceil else int(share)


def startable_utilization(free_at_start_bytes: float, total_bytes: float) -> float:
    """The highest `--gpu-memory-utilization` (2 decimals) vLLM accepts with this much free at its check."""
    return max(LOWEST_UTILIZATION, math.floor(free_at_start_bytes / total_bytes * 100) / 100)


def check_free_memory(*, total_bytes: int, other_bytes: int, pre_snapshot_bytes: int, requested_bytes: int,
                      gpu_memory_utilization: float) -> Violation | None:
    """vLLM compares what is free once its own CUDA context and NCCL exist (`pre_snapshot_bytes`) with what it
    will request; `other_bytes` is what other processes hold."""
    free_at_start = total_bytes - other_bytes - pre_snapshot_bytes
    if free_at_start >= requested_bytes:
        return None
    who = f"another process holds {format_gib(other_bytes)} GiB and " if other_bytes >= OTHER_PROCESS_BYTES else ""
    return Violation(
        rule="free_memory_at_start",
        detail=f"{who}vLLM's own CUDA context and NCCL take {format_gib(pre_snapshot_bytes)} GiB before it checks",
        vllm_error=FREE_MEMORY_BELOW_REQUEST.format(
            device="", free_gib=vllm_gib(free_at_start), total_gib=vllm_gib(total_bytes),
            gpu_memory_utilization=gpu_memory_utilization, requested_gib=vllm_gib(requested_bytes)),
        fix=f"lower --gpu-memory-utilization to {startable_utilization(free_at_start, total_bytes):.2f}"
            + (" or free the GPU" if who else ""))


ANSWER_SAYS_FIX = ""
"""The fix of a refusal no flag of this layout mends (the weights and the forward do not fit): none here, since the
plan's one-line answer says what would fit (more GPUs, a quantized checkpoint)."""


def _needs(need_bytes: int) -> str:
    return f"weights + activation + non-torch need {format_gib(need_bytes)} GiB per GPU"


def check_fits_card(*, total_bytes: int, pre_snapshot_bytes: int, weight_bytes: int, activation_bytes: int,
                    non_torch_bytes: int) -> Violation | None:
    """vLLM loads the weights and runs its profile forward before it weighs anything against its budget: where
    they need more than the card holds beside vLLM's CUDA context, torch runs out of memory there, and
    --gpu-memory-utilization cannot help (the budget check, NO_KV_CACHE_MEMORY, is never reached)."""
    room = total_bytes - pre_snapshot_bytes
    need = weight_bytes + activation_bytes + non_torch_bytes
    if need <= room:
        return None
    what = f"the weights alone need {format_gib(weight_bytes)} GiB per GPU" if weight_bytes > room else _needs(need)
    return Violation(
        rule="cuda_oom_at_start",
        detail=f"{what}, more than the card's {format_gib(room)} GiB beside vLLM's CUDA context and NCCL: torch runs "
               f"out of memory {'loading them' if weight_bytes > room else 'in the profile run'}",
        vllm_error=CUDA_OUT_OF_MEMORY.format(), fix=ANSWER_SAYS_FIX)


def check_kv_cache_memory(*, requested_bytes: int, kv_cache_bytes: int) -> Violation | None:
    """Weights, activation peak and non-torch memory leave nothing of the budget for the KV cache."""
    if kv_cache_bytes > 0:
        return None
    return Violation(
        rule="no_kv_cache_memory",
        detail=f"{_needs(requested_bytes - kv_cache_bytes)}, the budget is {format_gib(requested_bytes)} GiB",
        vllm_error=NO_KV_CACHE_MEMORY.format(), fix=ANSWER_SAYS_FIX)


def check_kv_cache_fits_max_len(*, max_model_len: int, usable_blocks: int, blocks_per_request: int,
                                bytes_per_block: int, kv_cache_bytes: int, estimated_max_len: int) -> Violation | None:
    """One request of max_model_len must fit in the blocks left beside the null block."""
    if usable_blocks >= blocks_per_request:
        return None
    needed = blocks_per_request * bytes_per_block
    return Violation(
        rule="kv_cache_below_max_model_len",
        detail=f"one {max_model_len}-token request needs {format_gib(needed)} GiB of KV cache; "
               f"{format_gib(kv_cache_bytes)} GiB is left",
        vllm_error=KV_CACHE_BELOW_MAX_LEN.format(
            max_model_len=max_model_len, needed_gib=vllm_gib(needed), available_gib=vllm_gib(kv_cache_bytes),
            estimated=estimated_max_len),
        fix=f"use --max-model-len {estimated_max_len}")


def check_v0_kv_cache_fits_max_len(*, max_model_len: int, blocks: int, block_size: int, blocks_per_request: int,
                                   kv_cache_bytes: int, profile_tokens: int, estimated_max_len: int) -> Violation | None:
    """The V0 engine (0.6, 0.7) refuses a max_model_len above the tokens its blocks hold (no null block), naming
    that figure: the length that fits."""
    if blocks >= blocks_per_request:
        return None
    return Violation(
        rule="kv_cache_below_max_model_len",
        detail=f"one {max_model_len}-token request needs {blocks_per_request} blocks of KV cache; {blocks} fit "
               f"({format_gib(kv_cache_bytes)} GiB after a {profile_tokens}-token profile run)",
        vllm_error=V0_KV_CACHE_BELOW_MAX_LEN.format(max_model_len=max_model_len, max_seq_len=blocks * block_size),
        fix=f"use --max-model-len {estimated_max_len}")


def reason(v: Violation) -> str:
    """A violation as one line of a plan's reasons: what, then the fix."""
    return f"{v.detail}; {v.fix}" if v.fix else v.detail
