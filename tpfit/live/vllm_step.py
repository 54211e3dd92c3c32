"""`tpfit calibrate --vllm-model DIR`: one short real vLLM run, to fit the speed model's per-step overhead.

The speed model (tpfit/core/perf.py) times a decode step as bytes / bandwidth (+ FLOPs, + all-reduces) plus a
fixed per-step overhead: scheduling, input preparation, sampling, the CUDA-graph launch, output processing. The
overhead belongs to the vLLM release, not the GPU's bandwidth, so it is measured on vLLM itself: a single stream
on one GPU (vllm_probe.py, run with the Python that has vLLM), whose TPOT minus the model's step without overhead
(at the bandwidth this calibration measured) is `step_overhead_s`.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tpfit.errors import CalibrationError, SourceError, SpecError, UsageError
from tpfit.kinds import CalibrationDevice as Device

PROBE = Path(__file__).resolve().with_name("vllm_probe.py")
"""The script the vLLM Python runs (it imports nothing of tpfit)."""
PROMPT_TOKENS = 128
OUTPUT_TOKENS = 256
"""One prompt of 128 tokens decoded to 256: a few seconds on a GPU, the prompt's share of the KV read small."""
RUN_TIMEOUT_S = 900.0
"""Longest wait for the vLLM run: engine start-up (torch.compile, CUDA-graph capture: 1-3 min on an H200) and the
generations."""
GPU_MEMORY_UTILIZATION = 0.8
"""A single stream needs little KV cache; 0.8 leaves room for this process's own CUDA context and cached memory."""
CPU_KV_CACHE_BYTES = 64 * 1024 * 1024
"""vLLM's CPU backend sizes its KV cache by bytes: 64 MiB holds a single stream of a small model."""
VLLM_ENV = {"VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1", "VLLM_HOST_IP": "127.0.0.1"}
"""No telemetry, no hub access (dummy weights need none), loopback for vLLM's own processes."""


@dataclass(frozen=True, slots=True, kw_only=True)
class VllmRun:
    """What the vLLM probe measured: one request of `prompt_tokens` decoded to `output_tokens` on one GPU."""

    model: str
    vllm_version: str
    prompt_tokens: int
    output_tokens: int
    ttft_s: float
    tpot_s: float
    """(t(output_tokens) - t(1)) / (output_tokens - 1): pure decode steps of one request."""
    engine_s: float
    """Engine start-up, seconds (model load, profiling, compilation, graph capture)."""

    @property
    def mean_context(self) -> float:
        """Tokens in the KV cache at the mean decode step."""
        return self.prompt_tokens + self.output_tokens / 2

    def to_dict(self) -> dict:
        return {"vllm_model": self.model, "vllm_version": self.vllm_version, "prompt_tokens": self.prompt_tokens,
                "output_tokens": self.output_tokens, "ttft_s": self.ttft_s, "tpot_s": self.tpot_s,
                "engine_s": self.engine_s}

    @classmethod
    def from_dict(cls, data: dict) -> VllmRun:
        return cls(model=data["vllm_model"], vllm_version=data["vllm_version"], prompt_tokens=data["prompt_tokens"],
                   output_tokens=data["output_tokens"], ttft_s=data["ttft_s"], tpot_s=data["tpot_s"],
                   engine_s=data["engine_s"])


def check_vllm_model(model_dir: Path, python: str) -> None:
    """Before a minute of measuring: the folder has a config.json that tpfit models (the overhead is fitted against
    its own prediction for that model: `fit_step_overhead`) and `python` can import vllm (exit 2 if not)."""
    from tpfit.model.folder import load_folder

    if not (Path(model_dir) / "config.json").is_file():
        raise UsageError("needs a model folder with a config.json (vLLM runs it with dummy weights)",
                         flag="--vllm-model", value=str(model_dir))
    try:
        load_folder(Path(model_dir))
    except (SourceError, SpecError) as err:  # found only after the measuring and the vLLM run, which it voided
        raise UsageError(f"tpfit cannot model it ({err}), and fits vLLM's step overhead against its own prediction "
                         "for the model; give a model folder tpfit plans", flag="--vllm-model",
                         value=str(model_dir)) from None
    try:
        found = subprocess.run([python, "-c", "import importlib.util, sys; "
                                "sys.exit(importlib.util.find_spec('vllm') is None)"],
                               capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise UsageError(f"cannot run this Python ({err})", flag="--vllm-python", value=python) from None
    if found.returncode != 0:
        raise UsageError("this Python cannot import vllm: pip install vllm there, or give --vllm-python PATH",
                         flag="--vllm-python", value=python)


def engine_args(device: Device, run_tokens: int) -> dict:
    """The LLM class's arguments besides the model: a context just long enough, little memory, and on the CPU
    eager mode (torch.compile would take minutes there; CPUs have no CUDA graphs to capture)."""
    args: dict = {"max_model_len": run_tokens + 64}
    if device is Device.CPU:
        args.update(enforce_eager=True, kv_cache_memory_bytes=CPU_KV_CACHE_BYTES)
    else:
        args["gpu_memory_utilization"] = GPU_MEMORY_UTILIZATION
    return args


def run_vllm(model_dir: Path, python: str, device: Device, *, timeout_s: float = RUN_TIMEOUT_S) -> VllmRun:
    """Run vllm_probe.py with `python` in its own process group, its compile cache and log in a temporary folder;
    the log's last lines are quoted when it fails."""
    args = engine_args(device, PROMPT_TOKENS + OUTPUT_TOKENS)
    with tempfile.TemporaryDirectory(prefix="tpfit-vllm-") as tmp:
        log = Path(tmp) / "vllm.log"
        # TMPDIR stays the caller's: vLLM's ZeroMQ socket paths under it must stay within 107 characters
        env = {**os.environ, **VLLM_ENV, "VLLM_CACHE_ROOT": str(Path(tmp) / "cache")}
        argv = [python, str(PROBE), str(model_dir), str(PROMPT_TOKENS), str(OUTPUT_TOKENS), json.dumps(args)]
        with log.open("w") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait()
                raise CalibrationError(f"the vLLM run did not finish in {timeout_s:.0f} s") from None
        text = log.read_text(errors="replace")
    result = next((line for line in reversed(text.splitlines()) if line.startswith('{"vllm_version"')), None)
    if proc.returncode != 0 or result is None:
        tail = " | ".join(line.strip() for line in text.splitlines()[-6:])
        raise CalibrationError(f"the vLLM run failed (exit {proc.returncode}): {tail[-600:]}")
    data = json.loads(result)
    return VllmRun(model=str(model_dir), vllm_version=data["vllm_version"], prompt_tokens=data["prompt_tokens"],
                   output_tokens=data["output_tokens"], ttft_s=data["ttft_s"], tpot_s=data["tpot_s"],
                   engine_s=data["engine_s"])


@dataclass(frozen=True, slots=True, kw_only=True)
class StepOverheadFit:
    """measured TPOT = predicted step without overhead + step_overhead_s."""

    measured_tpot_s: float
    predicted_without_overhead_s: float

    @property
    def step_overhead_s(self) -> float:
        return self.measured_tpot_s - self.predicted_without_overhead_s

    def to_dict(self) -> dict:
        return {"measured_tpot_s": self.measured_tpot_s,
                "predicted_without_overhead_s": self.predicted_without_overhead_s,
                "step_overhead_s": self.step_overhead_s}


def fit_step_overhead(run: VllmRun, calibration, gpu_id: str | None) -> StepOverheadFit:
    """The model's single-stream step for the run's model at the calibration's measured bandwidth (as `tpfit plan`
    uses it on this GPU), subtracted from the run's TPOT. A TPOT below the step's own time means the bandwidth
    figure and the run disagree: CalibrationError, nothing fitted."""
    from tpfit.core import perf
    from tpfit.hardware.catalog import find_gpu
    from tpfit.model.folder import load_folder

    spec = load_folder(Path(run.model))
    speed = perf.make_gpu_speed(find_gpu(gpu_id) if gpu_id else None, calibration)
    step = perf.single_stream_step(spec, speed, context=run.mean_context)
    fit = StepOverheadFit(measured_tpot_s=run.tpot_s, predicted_without_overhead_s=step.total_s)
    if not fit.step_overhead_s > 0:
        raise CalibrationError(
            f"vLLM decoded a token in {run.tpot_s * 1e3:.3f} ms, less than the {step.total_s * 1e3:.3f} ms the "
            f"measured bandwidth allows for {spec.model_id or run.model}: no step overhead fitted")
    return fit
