"""vLLM start-up log text -> the memory figures vLLM printed (any version's format).

Formats: shared/reference/vllm-internals.md §1-§2 and the real logs under calibration/.
Pure text parsing; reading files is the caller's job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NUM = r"([0-9][0-9,]*(?:\.[0-9]+)?)"
_PATTERNS = {
    "weights_gib": re.compile(r"Model loading took " + _NUM + r" ?GiB"),
    "kv_cache_gib": re.compile(r"Available KV cache memory: " + _NUM + r" ?GiB"),
    "kv_cache_tokens": re.compile(r"(GPU|CPU|XPU)(?: \+ host)? KV cache size: " + _NUM + r" tokens"),
    "cpu_kv": re.compile(r"(?:Explicitly|Auto) set \(" + _NUM + r"/" + _NUM + r"\) GiB for KV cache"),
    "max_concurrency": re.compile(r"Maximum concurrency for " + _NUM + r" tokens per request: " + _NUM + r"x"),
    "cuda_graph_gib": re.compile(r"Graph capturing finished in \d+ secs?, took " + _NUM + r" GiB"),
    "usage": re.compile(
        r"Actual usage is " + _NUM + r" GiB for weight, " + _NUM + r" GiB for peak activation, " + _NUM
        + r" GiB for non-torch memory, and " + _NUM + r" GiB for CUDAGraph memory"),
    "free_total": re.compile(r"Free memory on device (?:\S+ )?\(" + _NUM + r"/" + _NUM + r" GiB\) on startup"),
    "v019_profile": re.compile(
        r"torch peak memory increase: " + _NUM + r"GiB; non-torch forward increase memory: " + _NUM + r"GiB"),
    "estimated_graphs": re.compile(r"Estimated CUDA graph memory: " + _NUM + r" GiB"),
    "max_model_len": re.compile(r"Using max model len " + _NUM),
}


def _f(text: str) -> float:
    return float(text.replace(",", ""))


@dataclass(frozen=True, slots=True, kw_only=True)
class StartupFigures:
    """What one vLLM start-up printed about memory (None where the log has no such line)."""

    weights_gib: float | None = None
    activation_gib: float | None = None
    non_torch_gib: float | None = None
    cuda_graph_gib: float | None = None
    estimated_cuda_graph_gib: float | None = None
    """"Estimated CUDA graph memory": what the V1 runner subtracts from the budget (0.20 on), not the pool it gets."""
    kv_cache_gib: float | None = None
    kv_cache_tokens: int | None = None
    max_concurrency: float | None = None
    max_model_len: int | None = None
    total_gib: float | None = None
    free_at_start_gib: float | None = None
    device: str = "GPU"
    """"GPU" or "CPU", from the "<device> KV cache size" line."""


def parse_startup_log(text: str) -> StartupFigures:
    """The first worker's figures (with TP/PP every worker prints its own; rank 0 comes first)."""
    found: dict = {}
    for line in text.splitlines():
        for key, pattern in _PATTERNS.items():
            m = pattern.search(line)
            if not m or key in found:
                continue
            found[key] = m.groups()
    out: dict = {}
    if "weights_gib" in found:
        out["weights_gib"] = _f(found["weights_gib"][0])
    if "kv_cache_gib" in found:
        out["kv_cache_gib"] = _f(found["kv_cache_gib"][0])
    if "kv_cache_tokens" in found:
        out["device"] = found["kv_cache_tokens"][0]
        out["kv_cache_tokens"] = int(_f(found["kv_cache_tokens"][1]))
    if "cpu_kv" in found and "kv_cache_gib" not in out:
        out["kv_cache_gib"] = _f(found["cpu_kv"][0])
    if "max_concurrency" in found:
        out["max_model_len"] = int(_f(found["max_concurrency"][0]))
        out["max_concurrency"] = _f(found["max_concurrency"][1])
    if "usage" in found:
        w, act, nt, cg = (_f(x) for x in found["usage"])
        out.update(weights_gib=out.get("weights_gib", w), activation_gib=act, non_torch_gib=nt, cuda_graph_gib=cg)
    if "v019_profile" in found:
        out["activation_gib"], out["non_torch_gib"] = (_f(x) for x in found["v019_profile"])
    if "cuda_graph_gib" in found and "cuda_graph_gib" not in out:
        out["cuda_graph_gib"] = _f(found["cuda_graph_gib"][0])
    if "estimated_graphs" in found:
        out["estimated_cuda_graph_gib"] = _f(found["estimated_graphs"][0])
    if "free_total" in found:
        out["free_at_start_gib"], out["total_gib"] = (_f(x) for x in found["free_total"])
    if "max_model_len" in found and "max_model_len" not in out:
        out["max_model_len"] = int(_f(found["max_model_len"][0]))
    return StartupFigures(**out)
