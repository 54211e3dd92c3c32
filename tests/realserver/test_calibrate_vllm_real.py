"""`tpfit calibrate --vllm-model`: the real vLLM CPU engine decodes a single stream of the tiny model, and the
per-step overhead is fitted from its TPOT against the speed model at the bandwidth this run measured."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.realserver.conftest import vllm_python
from tpfit.core import perf
from tpfit.hardware.calibration import GpuCalibration
from tpfit.model.folder import load_folder


def test_step_overhead_fitted_from_a_real_vllm_run(tiny_model, tmp_path):
    python = vllm_python()
    out = tmp_path / "cpu.json"
    run = subprocess.run([sys.executable, "-m", "tpfit", "calibrate", "--device", "cpu", "--quick", "--json",
                          "--out", str(out), "--vllm-model", str(tiny_model), "--vllm-python", python],
                         cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    document = json.loads(out.read_text())
    cal = GpuCalibration.from_dict(document)
    measured = document["vllm_run"]
    installed = subprocess.run([python, "-c", "import vllm; print(vllm.__version__)"], capture_output=True,
                               text=True, timeout=120).stdout.strip().splitlines()[-1]
    assert cal.vllm_version == measured["vllm_version"] == installed
    overhead, tpot = cal.step_overhead_s, measured["tpot_s"]
    assert math.isfinite(overhead) and 0 < overhead < tpot
    assert measured["output_tokens"] == 256 and 0 < measured["ttft_s"] < 10
    # the plan's figure for this model on this "GPU" is the measured TPOT: the model's step at the measured
    # bandwidth, worked out again here from the written calibration, plus the fitted overhead
    speed = perf.make_gpu_speed(None, cal)
    assert speed.step_overhead_s == overhead
    step = perf.single_stream_step(load_folder(tiny_model), speed, context=measured["prompt_tokens"]
                                   + measured["output_tokens"] / 2)
    assert step.total_s + overhead == pytest.approx(tpot, rel=1e-9)
    assert step.total_s == pytest.approx(measured["predicted_without_overhead_s"], rel=1e-9)
    assert f"step overhead {overhead * 1e3:.3f} ms" in run.stderr
