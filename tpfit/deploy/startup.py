"""How long a vLLM server takes to start, for what must wait for it: `tpfit deploy` sizes its startup probe and
health check by it, `tpfit check` warns where a deployment waits less (check/rules.py `check_probes`)."""

from __future__ import annotations

import math

from tpfit.core.layout import Layout
from tpfit.core.plan import Candidate, Plan
from tpfit.core.weights import stage_weights
from tpfit.units import GIB

LOAD_BYTES_PER_S = GIB
"""Weights read into one GPU per second at start-up: safetensors from a network volume or a busy disk (local
NVMe reads 2-5 GB/s; a slow PVC 0.2 GB/s). Conservative for the probe check."""
START_OVERHEAD_S = 180
"""Start-up besides reading the weights (profiling, torch.compile, CUDA-graph capture, engine processes). The
real vLLM 0.26 start-ups in calibration/ took 65 s (Llama-3.1-8B, 1xH100), 88 s (Llama-3.1-70B TP=2, 2xH100)
and 118 s (Qwen2.5-72B TP=4, 4xH200) from the first log line to the last, with the weights in the page cache
("Model loading took ... 2.2 seconds"); 180 s leaves room for larger models and a cold compile cache."""
DOWNLOAD_BYTES_PER_S = 200 * 10**6
"""Hugging Face download rate a first start (empty cache) gets: ~200 MB/s from the Hub's CDN."""
MIN_START_WAIT_S = 1200
"""The shortest wait tpfit writes (20 minutes), whatever the model: storage and the Hub vary."""
SPREAD = 1.5
"""The wait is half again the estimate: load speeds vary by storage."""


def download_bytes(plan: Plan) -> int:
    """Bytes a first start downloads: the checkpoint's files when their headers were read, else the whole model's
    weights as loaded on one GPU (a quantized checkpoint is that small), or the checkpoint dtype's when vLLM
    quantizes it on load. Not the candidate's GPUs summed over replicas: an MoE model's replicas split its experts
    (TP x DP), so DeepSeek-V3 at TP=4 DP=2 held half its 627 GiB per replica."""
    if plan.model.checkpoint_bytes:
        return plan.model.checkpoint_bytes
    if plan.engine.quantization:
        return plan.rule_of_thumb.weights_bytes
    return sum(s.weight_bytes for s in stage_weights(plan.model, Layout()))


def start_seconds(plan: Plan, c: Candidate) -> tuple[float, float]:
    """(seconds to start from a warm cache, seconds the first download adds) for candidate `c` of `plan`."""
    per_gpu = max(c.weight_bytes_per_gpu or (0,))
    return START_OVERHEAD_S + per_gpu / LOAD_BYTES_PER_S, download_bytes(plan) / DOWNLOAD_BYTES_PER_S


def wait_seconds(plan: Plan, c: Candidate, *, downloads: bool = True) -> int:
    """How long a probe should let the server start: SPREAD x the estimate (first download included unless the
    model is a local path), at least MIN_START_WAIT_S."""
    warm, download = start_seconds(plan, c)
    return max(MIN_START_WAIT_S, math.ceil(SPREAD * (warm + (download if downloads else 0.0))))
