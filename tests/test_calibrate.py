"""`tpfit calibrate`: the fitting arithmetic, the timing loop, and a real run on torch CPU with two gloo processes."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT
from tpfit.errors import CalibrationError, UsageError
from tpfit.hardware.calibration import GpuCalibration, builtin_calibrations, find_calibration
from tpfit.hardware.catalog import find_gpu
from tpfit.kinds import Launch
from tpfit.live.calibrate import (
    INSTALL_LINE, AllReduceSample, CopySample, GemmSample, calibration_filename, fit_allreduce, make_calibration, prefer_graphs,
    sample_from_dict, summarize_gemm, time_op,
)

HAS_TORCH = importlib.util.find_spec("torch") is not None
needs_torch = pytest.mark.skipif(not HAS_TORCH and os.environ.get("CI") != "true",
                                 reason=f"torch is not installed ({INSTALL_LINE}); CI installs it")


def _line(world_size: int, latency_s: float, bytes_per_s: float, sizes) -> list[AllReduceSample]:
    return [AllReduceSample(world_size=world_size, message_bytes=n, seconds=latency_s + n / bytes_per_s,
                            backend="nccl") for n in sizes]


def test_fit_recovers_latency_and_bandwidth_of_a_line():
    sizes = [4096 * 4**i for i in range(9)]
    fit = fit_allreduce(_line(2, 18e-6, 150e9, sizes))
    assert fit.world_size == 2 and fit.backend == "nccl"
    assert fit.latency_s == pytest.approx(18e-6, rel=1e-6)
    assert fit.bus_bytes_per_s == pytest.approx(150e9, rel=1e-6)


def test_fit_keeps_small_message_latency_within_a_few_percent_under_noise():
    # +-3 % alternating noise: plain least squares would let the 256 MiB point swamp the 4 KiB intercept
    samples = [AllReduceSample(world_size=4, message_bytes=s.message_bytes, seconds=s.seconds * (1.03 if i % 2 else 0.97),
                               backend="nccl") for i, s in enumerate(_line(4, 25e-6, 100e9, [4096 * 4**i for i in range(9)]))]
    fit = fit_allreduce(samples)
    assert fit.latency_s == pytest.approx(25e-6, rel=0.1)
    assert fit.bus_bytes_per_s == pytest.approx(100e9, rel=0.1)


def test_fit_never_gives_a_negative_latency_or_bandwidth():
    # time shrinking with size (noise on a fast link) still fits a positive line
    noisy = [AllReduceSample(world_size=2, message_bytes=n, seconds=t, backend="gloo")
             for n, t in [(4096, 5e-5), (65536, 4e-5), (1 << 20, 3e-5)]]
    fit = fit_allreduce(noisy)
    assert fit.latency_s >= 0 and fit.bus_bytes_per_s > 0
    # a line through the origin (no fixed cost) fits with latency 0, not below
    assert fit_allreduce(_line(2, 0.0, 10e9, [1 << 10, 1 << 20, 1 << 24])).latency_s == pytest.approx(0, abs=1e-12)


def test_fit_refuses_one_size_or_mixed_groups():
    with pytest.raises(UsageError, match="two message sizes"):
        fit_allreduce(_line(2, 1e-5, 1e10, [4096, 4096]))
    with pytest.raises(UsageError, match="one world size"):
        fit_allreduce(_line(2, 1e-5, 1e10, [4096]) + _line(4, 1e-5, 1e10, [65536]))


def test_gemm_summary_is_the_median_at_the_largest_batch():
    def g(key, m, n, seconds):
        return GemmSample(key=key, m=m, n=n, k=1000, seconds=seconds)

    samples = [g("bf16_decode", 1, 1000, 1e-3), g("bf16_decode", 256, 1000, 1e-3), g("bf16_decode", 256, 2000, 1e-3),
               g("bf16_decode", 256, 3000, 1e-3), g("bf16_prefill", 4096, 1000, 2e-3)]
    figures = summarize_gemm(samples)
    # m=256: 2*256*{1000,2000,3000}*1000 / 1 ms -> median 2*256*2000*1000/1e-3 = 1.024e12
    assert figures["bf16_decode"] == pytest.approx(1.024e12)
    assert figures["bf16_prefill"] == pytest.approx(2 * 4096 * 1000 * 1000 / 2e-3)
    assert set(figures) == {"bf16_decode", "bf16_prefill"}


def test_time_op_sizes_its_batches_from_an_injected_clock():
    clock = [0.0]
    calls = []

    def op():
        calls.append(1)
        clock[0] += 0.002  # each call takes 2 ms of the fake clock

    seconds = time_op(op, sync=lambda: None, now=lambda: clock[0], target_s=0.02, repeats=3)
    assert seconds == pytest.approx(0.002)
    # warm-up + sizing call + 3 batches of 0.02 / 0.002 = 10 calls
    assert len(calls) == 2 + 3 * 10


def test_make_calibration_from_samples():
    samples = [CopySample(kind="memory", bytes_moved=2 << 30, seconds=0.5e-3),
               CopySample(kind="memory", bytes_moved=2 << 30, seconds=0.6e-3),
               CopySample(kind="memory", bytes_moved=2 << 30, seconds=0.7e-3),
               CopySample(kind="p2p", bytes_moved=1 << 30, seconds=1e-2),
               GemmSample(key="bf16_prefill", m=4096, n=4096, k=4096, seconds=2e-4),
               *_line(2, 2e-5, 1e11, [4096, 1 << 20, 1 << 26]), *_line(4, 3e-5, 8e10, [4096, 1 << 20, 1 << 26])]
    cal = make_calibration(samples, gpu_name="NVIDIA H200", gpu_id="h200", num_gpus=4, source="test")
    assert cal.mem_bw_bytes_per_s == pytest.approx((2 << 30) / 0.6e-3)
    assert cal.p2p_bytes_per_s == pytest.approx((1 << 30) / 1e-2)
    assert [f.world_size for f in cal.allreduce] == [2, 4]
    assert cal.allreduce_fit(4).bus_bytes_per_s == pytest.approx(8e10, rel=1e-6)
    with pytest.raises(CalibrationError, match="memory-bandwidth"):
        make_calibration(samples[3:], gpu_name="x", gpu_id=None, num_gpus=1, source="s")


def test_graph_timings_replace_eager_ones_where_both_exist():
    # vLLM decodes from CUDA graphs: where a kind was timed both ways the graph timings speak for it
    eager = _line(2, 40e-6, 300e9, [4096, 1 << 20, 1 << 28])
    graphed = [AllReduceSample(world_size=2, message_bytes=s.message_bytes, seconds=s.seconds - 30e-6, backend="nccl",
                               launch=Launch.CUDA_GRAPH) for s in eager]
    only_eager = [GemmSample(key="bf16_prefill", m=4096, n=8, k=8, seconds=1.0)]
    kept = prefer_graphs(eager + graphed + only_eager)
    assert kept == graphed + only_eager
    cal = make_calibration([CopySample(kind="memory", bytes_moved=1, seconds=1.0), *eager, *graphed],
                           gpu_name="g", gpu_id=None, num_gpus=2, source="s")
    assert cal.allreduce_fit(2).latency_s == pytest.approx(10e-6, rel=1e-3)


@pytest.mark.parametrize("name,gpu_id,expected", [
    ("NVIDIA H200", "h200", "h200.json"), ("NVIDIA RTX PRO 6000 Blackwell", None, "nvidia-rtx-pro-6000-blackwell.json"),
    ("CPU", None, "cpu.json"), ("???", None, "gpu.json"),
])
def test_calibration_filename(name, gpu_id, expected):
    assert calibration_filename(name, gpu_id) == expected


def _tpfit(*args, env=None, timeout=240):
    return subprocess.run([sys.executable, "-m", "tpfit", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


@needs_torch
def test_real_cpu_run_with_two_gloo_processes(tmp_path):
    """The measuring code end to end on torch CPU: copy, bf16 GEMMs, an all-reduce over two spawned gloo ranks."""
    out = tmp_path / "cpu.json"
    run = _tpfit("calibrate", "--device", "cpu", "--quick", "--json", "--out", str(out))
    assert run.returncode == 0, run.stderr[-2000:]
    printed = json.loads(run.stdout)
    assert printed == json.loads(out.read_text())
    cal = GpuCalibration.from_dict(printed)
    assert cal.gpu_name == "CPU" and cal.gpu_id is None and cal.p2p_bytes_per_s is None
    assert cal.source.startswith("tpfit calibrate on 1x CPU, torch ")
    (fit,) = cal.allreduce
    assert (fit.world_size, fit.backend) == (2, "gloo")
    assert fit.bus_bytes_per_s > 1e6 and fit.latency_s < 0.1
    # any CPU copies more than 100 MB/s and multiplies faster than 10 MFLOP/s; far below, something timed wrong
    assert cal.mem_bw_bytes_per_s > 1e8
    # bf16 always; fp8 too where torch._scaled_mm runs on this CPU (torch 2.13 does)
    bf16, fp8 = {"bf16_decode", "bf16_prefill"}, {"fp8_decode", "fp8_prefill"}
    assert set(cal.gemm_flops_per_s) in (bf16, bf16 | fp8)
    assert min(cal.gemm_flops_per_s.values()) > 1e7
    kinds = {s.get("kind") or s.get("key") or "allreduce" for s in printed["samples"]}
    assert kinds == {"memory", "allreduce"} | set(cal.gemm_flops_per_s)
    assert f"wrote {out}" in run.stderr


@needs_torch
def test_world_size_the_host_cannot_form_is_refused():
    run = _tpfit("calibrate", "--device", "cpu", "--world-size", "1")
    assert run.returncode == 2
    assert "--world-size 1: an all-reduce needs 2 to" in run.stderr and "Traceback" not in run.stderr


@pytest.mark.parametrize(("num_gpus", "size", "needle"), [
    (1, 2, "--world-size 2: an all-reduce needs 2 GPUs or more, this host has 1 (NVIDIA H100 80GB HBM3); leave "
           "--world-size out"),
    (2, 3, "--world-size 3: an all-reduce needs 2 to 2 processes on this host"),
])
def test_world_size_beyond_the_hosts_gpus_is_refused_before_measuring(num_gpus, size, needle):
    """On one GPU, --world-size 2 passed the check (it allowed up to max(2, GPUs)) and its NCCL pair failed after
    the minute of bandwidth and GEMM timings. The facts are what read_host_facts returns for such a host."""
    from tpfit.live.calibrate import Device, HostFacts, check_world_sizes

    facts = HostFacts(device=Device.CUDA, gpu_name="NVIDIA H100 80GB HBM3", num_gpus=num_gpus, torch_version="2.11.0",
                      fp8=True, peer_access=num_gpus > 1)
    with pytest.raises(UsageError) as err:
        check_world_sizes(facts, (size,))
    assert str(err.value) == needle
    check_world_sizes(facts, tuple(range(2, num_gpus + 1)))  # what the host forms passes


@pytest.mark.parametrize("where", ["folder", "under a file"])
def test_an_unwritable_out_is_refused_before_measuring(tmp_path, where):
    """`--out` was tried only after the minute of measuring (and any vLLM run): a folder or a path under a file
    wasted it all. Refused first, before torch is imported (this needs no torch)."""
    (tmp_path / "file").write_text("x")
    out = tmp_path if where == "folder" else tmp_path / "file" / "cal.json"
    start = time.monotonic()
    run = _tpfit("calibrate", "--device", "cpu", "--out", str(out), timeout=60)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.startswith(f"error: --out {out}: cannot write it") and run.stderr.count("\n") == 1
    assert time.monotonic() - start < 15 and (tmp_path / "file").read_text() == "x"


def test_vllm_model_without_a_config_is_refused_before_measuring(tmp_path):
    run = _tpfit("calibrate", "--device", "cpu", "--vllm-model", str(tmp_path), timeout=60)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.strip() == f"error: --vllm-model {tmp_path}: needs a model folder with a config.json " \
                                 "(vLLM runs it with dummy weights)"


@pytest.mark.parametrize(("config", "needle"), [
    ('{"model_type": "t5", "hidden_size": 512}', "not supported yet: model_type 't5'"),
    ('{"model_type": "llama", ', "is not valid JSON"),
])
def test_vllm_model_tpfit_cannot_model_is_refused_before_measuring(tmp_path, config, needle):
    """The step overhead is fitted against tpfit's own prediction for the model: a config it cannot read was found
    only after the minute of measuring and the vLLM run (a 'failed' measurement, exit 1)."""
    (tmp_path / "config.json").write_text(config)
    start = time.monotonic()
    run = _tpfit("calibrate", "--device", "cpu", "--vllm-model", str(tmp_path), timeout=60)
    assert run.returncode == 2 and "Traceback" not in run.stderr and run.stderr.count("\n") == 1, run.stderr
    assert run.stderr.startswith(f"error: --vllm-model {tmp_path}: tpfit cannot model it (") and needle in run.stderr
    assert time.monotonic() - start < 15


def test_vllm_python_without_vllm_is_refused_before_measuring(tmp_path):
    (tmp_path / "config.json").write_text((ROOT / "tests" / "data" / "tiny-llama-config" / "config.json").read_text())
    python = sys.executable if importlib.util.find_spec("vllm") is None else "/bin/false"
    run = _tpfit("calibrate", "--device", "cpu", "--vllm-model", str(tmp_path), "--vllm-python", python, timeout=60)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.strip() == (f"error: --vllm-python {python}: this Python cannot import vllm: pip install vllm "
                                  "there, or give --vllm-python PATH")
    alone = _tpfit("calibrate", "--vllm-python", python, timeout=60)
    assert alone.returncode == 2 and "only goes with --vllm-model DIR" in alone.stderr


def test_without_torch_it_prints_the_install_line():
    code = ("import sys; sys.modules['torch'] = None; sys.argv = ['tpfit', 'calibrate']\n"
            "from tpfit.cli.app import main; main()")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert run.stderr.strip() == f"error: tpfit calibrate needs torch: {INSTALL_LINE}"


def test_plan_never_imports_torch():
    code = ("import sys; sys.argv = ['tpfit', 'plan', 'llama-3.1-8b', '--gpus', '2xH100']\n"
            "from tpfit.cli.app import main\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
            "assert 'torch' not in sys.modules, 'tpfit plan imported torch'")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]


# ---- the built-in calibration, measured with `tpfit calibrate` on 2x H200 (calibration/h200x2-calibrate/) ----

H200_FILE = ROOT / "tpfit" / "data" / "calibration" / "h200.json"


def test_h200_fixture_is_the_builtin_for_h200(tmp_path):
    cal = find_calibration("h200", tmp_path)  # the user has none: the built-in one answers
    assert cal is not None and cal.gpu_name == "NVIDIA H200" and cal.num_gpus == 2
    assert cal.source.startswith("tpfit calibrate on 2x NVIDIA H200, torch 2.11.0")
    assert cal in builtin_calibrations()


def test_h200_figures_are_what_its_raw_timings_give():
    """Re-fit the file's own raw samples with today's fitting code: the stored figures must come out."""
    doc = json.loads(H200_FILE.read_text())
    stored = GpuCalibration.from_dict(doc)
    samples = [sample_from_dict(s) for s in doc["samples"]]
    refit = make_calibration(samples, gpu_name=stored.gpu_name, gpu_id=stored.gpu_id, num_gpus=stored.num_gpus,
                             source=stored.source)
    # equal to the last bits, but for float sums taken on another Python (3.12 there, the test's here)
    assert refit.mem_bw_bytes_per_s == stored.mem_bw_bytes_per_s and refit.p2p_bytes_per_s == stored.p2p_bytes_per_s
    assert dict(refit.gemm_flops_per_s) == pytest.approx(dict(stored.gemm_flops_per_s), rel=1e-12)
    (mine,), (theirs,) = refit.allreduce, stored.allreduce
    assert (mine.world_size, mine.backend) == (theirs.world_size, theirs.backend)
    assert (mine.latency_s, mine.bus_bytes_per_s) == pytest.approx((theirs.latency_s, theirs.bus_bytes_per_s), rel=1e-12)


def test_h200_figures_sit_below_the_spec_sheet():
    """Measured rates are below the catalog's peaks and not absurdly far (a unit slip would be 1000x off)."""
    cal = GpuCalibration.from_dict(json.loads(H200_FILE.read_text()))
    spec = find_gpu("h200")
    assert 0.7 * spec.mem_bw_bytes_per_s < cal.mem_bw_bytes_per_s < spec.mem_bw_bytes_per_s  # 4.23 of 4.8 TB/s
    assert 0.5 * spec.bf16_flops_per_s < cal.gemm_flops_per_s["bf16_prefill"] < spec.bf16_flops_per_s
    assert cal.gemm_flops_per_s["fp8_prefill"] > 1.5 * cal.gemm_flops_per_s["bf16_prefill"]  # FP8 tensor cores
    assert cal.gemm_flops_per_s["bf16_decode"] < cal.gemm_flops_per_s["bf16_prefill"]
    # NVLink 4: 450 GB/s per direction on the spec sheet
    assert 0.5 * 450e9 < cal.p2p_bytes_per_s < 450e9


def test_h200_allreduce_fit_follows_its_graph_timings():
    doc = json.loads(H200_FILE.read_text())
    fit = GpuCalibration.from_dict(doc).allreduce_fit(2)
    graphed = [sample_from_dict(s) for s in doc["samples"] if s.get("launch") == "cuda_graph" and "world_size" in s]
    assert len(graphed) >= 8 and fit.backend == "nccl"
    for s in graphed:  # 4 KiB .. 256 MiB: the two-term line stays within 30 % of every measured size
        assert fit.time_s(s.message_bytes) == pytest.approx(s.seconds, rel=0.3), s
    # decode's all-reduce (one token x 8192 hidden x 2 bytes = 16 KiB) costs the fixed latency, ~10-12 us
    assert 5e-6 < fit.time_s(16 * 1024) < 20e-6


def test_h200_terminal_report_matches_the_checked_in_text():
    import io

    from rich.console import Console

    from tpfit.report.calibration import render_calibration

    out = io.StringIO()
    cal = GpuCalibration.from_dict(json.loads(H200_FILE.read_text()))
    render_calibration(cal, Console(file=out, width=100, color_system=None),
                       written_to="/home/u/.config/tpfit/calibration/h200.json")
    assert out.getvalue() == (ROOT / "tests" / "data" / "calibration-h200.txt").read_text()


def test_h200_step_overhead_is_what_its_vllm_run_gives():
    """The built-in H200 file's step overhead came from a real vLLM 0.26 single stream (calibration/h200x2-calibrate,
    `--vllm-model calibration/h200-vllm-step/llama-3.1-8b`): its measured TPOT = the speed model's step for that
    model at the file's bandwidth + the stored overhead, so `tpfit plan` reproduces the run."""
    from tpfit.core import perf
    from tpfit.model.folder import load_folder

    doc = json.loads(H200_FILE.read_text())
    cal, run = GpuCalibration.from_dict(doc), doc["vllm_run"]
    assert cal.vllm_version == run["vllm_version"] == "0.26.0"
    assert 0 < cal.step_overhead_s < run["tpot_s"] and cal.step_overhead_s == run["step_overhead_s"]
    speed = perf.make_gpu_speed(find_gpu("h200"), cal)
    assert speed.step_overhead_s == cal.step_overhead_s
    step = perf.single_stream_step(load_folder(ROOT / run["vllm_model"]), speed,
                                   context=run["prompt_tokens"] + run["output_tokens"] / 2)
    assert step.total_s + cal.step_overhead_s == pytest.approx(run["tpot_s"], rel=1e-9)
