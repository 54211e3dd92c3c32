"""The speed model (tpfit/core/perf.py): its shape, on real configs. Accuracy against real vLLM runs is
measured in bench/speed_accuracy.py, not here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from msgspec.structs import replace

from tests.conftest import load_config
from tpfit import EngineArgs, Workload, make_plan
from tpfit.core.layout import Layout
from tpfit.core.perf import (
    STEP_OVERHEAD_PER_SEQ_S, SpeedWorkload, expert_coverage, link_kind, make_gpu_speed, make_speed, moe_kernel,
)
from tpfit.core.recommend import summarize
from tpfit.hardware.cluster import Cluster
from tpfit.kinds import Bound, LinkKind, Objective

ROOT = Path(__file__).resolve().parents[1]


def _speeds(config: str, gpus: str, layout: Layout, concurrencies, *, isl=1024, osl=256, context=2048):
    spec = load_config(config)
    cluster = Cluster.parse(gpus)
    out = []
    for n in concurrencies:
        plan = make_plan(spec, cluster, Workload(context=context, concurrency=n, input_tokens=isl, output_tokens=osl),
                         EngineArgs(), layouts=(layout,))
        out.append(plan.candidates[0])
    return out


def test_throughput_rises_and_tpot_worsens_with_concurrency_until_the_kv_cache_is_full():
    # Llama-3.1-8B on one H100 holds ~ 450k KV tokens: about 350 requests of 1024 + 256 tokens
    cands = _speeds("meta-llama--Llama-3.1-8B.json", "1xh100", Layout(), (1, 2, 4, 8, 16, 32, 64, 128, 256))
    speeds = [c.speed for c in cands]
    assert all(s.bound is not Bound.QUEUE for s in speeds)
    for a, b in zip(speeds, speeds[1:]):
        assert b.total_output_tok_s >= a.total_output_tok_s
        assert b.tpot_s >= a.tpot_s
    assert speeds[-1].total_output_tok_s > 20 * speeds[0].total_output_tok_s  # batching pays while memory-bound


def test_beyond_the_kv_cache_requests_queue_and_throughput_stops_rising():
    # 70B in bf16 on 2 H100s (TP=2) leaves ~ 12 GiB KV per GPU: a few dozen requests of 4096 + 512 tokens
    cands = _speeds("meta-llama--Llama-3.1-70B.json", "2xh100", Layout(tp=2), (64, 512, 1024),
                    isl=4096, osl=512, context=8192)
    held, many, more = (c.speed for c in cands)
    assert many.bound is Bound.QUEUE and more.bound is Bound.QUEUE
    assert many.running_per_replica == more.running_per_replica < 512
    assert more.total_output_tok_s == pytest.approx(many.total_output_tok_s, rel=1e-6)
    assert more.ttft_s > 1.8 * many.ttft_s  # twice the queue ahead


@pytest.mark.parametrize("tp", [2, 4])
def test_pcie_without_p2p_never_beats_nvlink_at_the_same_tp(tp):
    spec = load_config("meta-llama--Llama-3.1-70B.json")
    nvlink = Cluster.parse(f"{tp}xh100")
    pcie = replace(nvlink, gpu=replace(nvlink.gpu, nvlink=False, nvlink_bytes_per_s=0, p2p=False))
    assert link_kind(nvlink, tp) is LinkKind.NVLINK and link_kind(pcie, tp) is LinkKind.PCIE_HOST
    for conc in (1, 16, 64):
        work = Workload(context=4096, concurrency=conc, input_tokens=2048, output_tokens=256)
        a = make_plan(spec, nvlink, work, EngineArgs(), layouts=(Layout(tp=tp),)).candidates[0]
        b = make_plan(spec, pcie, work, EngineArgs(), layouts=(Layout(tp=tp),)).candidates[0]
        assert b.speed.tpot_s > a.speed.tpot_s and b.speed.ttft_s > a.speed.ttft_s
        assert b.speed.total_output_tok_s < a.speed.total_output_tok_s
        assert b.speed.step.communication_s > 3 * a.speed.step.communication_s


def test_geforce_cards_have_no_peer_access_and_bridged_cards_go_over_pcie_when_described():
    assert link_kind(Cluster.parse("2x4090"), 2) is LinkKind.PCIE_HOST
    assert link_kind(Cluster.parse("4xl40s"), 4) is LinkKind.PCIE_P2P
    assert link_kind(Cluster.parse("2x3090"), 2) is LinkKind.PCIE_HOST  # NVLink bridge: only when NVML saw it
    assert link_kind(Cluster.parse("8xh200"), 8) is LinkKind.NVLINK
    assert link_kind(Cluster.parse("2x8xh100"), 16) is LinkKind.NETWORK


def test_replicas_vs_tensor_parallel_on_a_model_that_fits_one_gpu():
    spec = load_config("meta-llama--Llama-3.1-8B.json")
    layouts = (Layout(tp=2), Layout(dp=2), Layout(pp=2))
    one = make_plan(spec, Cluster.parse("2xh100"), Workload(context=4096, concurrency=1, objective=Objective.LATENCY),
                    EngineArgs(), layouts=layouts)
    tp2, dp2, pp2 = (c.speed for c in one.candidates)
    # one request: TP=2 reads half the weights per GPU each step, so it answers faster; DP and PP do not
    assert tp2.tpot_s < 0.75 * dp2.tpot_s and tp2.tpot_s < pp2.tpot_s
    assert one.best.layout == Layout(tp=2)
    # many short requests on PCIe (L40S): TP=2 all-reduces every prompt over PCIe; two replicas serve more
    many = make_plan(spec, Cluster.parse("2xl40s"), Workload(context=2048, concurrency=128), EngineArgs(),
                     layouts=layouts)
    tp2, dp2, _ = (c.speed for c in many.candidates)
    assert dp2.total_output_tok_s > tp2.total_output_tok_s and many.best.layout == Layout(dp=2)
    assert tp2.step.communication_s > 0.2 * tp2.step.total_s
    # replicas double what one GPU serves at half the concurrency each
    single = make_plan(spec, Cluster.parse("1xl40s"), Workload(context=2048, concurrency=64), EngineArgs()).best.speed
    assert dp2.total_output_tok_s == pytest.approx(2 * single.total_output_tok_s, rel=0.01)
    assert "DP=2: 1.0" in summarize(many) or "DP=2: 1.1" in summarize(many)


def test_three_gpus_get_an_honest_answer():
    # Qwen3-32B: 64 heads, so vLLM refuses TP=3; PP=3, DP=3 and TP=2 on two of the GPUs remain. Long prompts make
    # it compute-bound: TP=2 serves as much as PP=3 (within 5 %) and leaves a GPU free, and the summary says so
    plan = make_plan(load_config("Qwen--Qwen3-32B.json"), Cluster.parse("3xh100"),
                     Workload(context=8192, concurrency=16), EngineArgs())
    assert any(c.layout.tp == 3 and not c.accepted for c in plan.candidates)
    best = plan.best
    served = [c.speed.total_output_tok_s for c in plan.accepted if c.speed and c.memory.verdict is best.memory.verdict]
    assert best.speed.total_output_tok_s * 1.05 >= max(served)
    if best.layout.num_gpus < 3:
        assert f"{3 - best.layout.num_gpus} GPU" in summarize(plan)
    # one GPU per replica cannot hold 16 requests of 8192 tokens beside 61 GiB of weights: those layouts queue
    assert all(c.speed.bound is Bound.QUEUE for c in plan.accepted if c.layout.tp == c.layout.pp == 1)


def test_expert_coverage_is_the_chance_an_expert_is_picked():
    assert expert_coverage(1, 128, 8) == pytest.approx(8 / 128)
    assert expert_coverage(2, 128, 8) == pytest.approx(1 - (120 / 128) ** 2)
    assert expert_coverage(200, 128, 8) > 0.999
    assert expert_coverage(16, 64, 1) < expert_coverage(16, 64, 2)


def test_moe_decode_reads_only_the_experts_the_batch_touches():
    # Qwen3-30B-A3B: 128 experts, 8 per token; one request reads ~6 % of the expert weights, 64 read nearly all
    spec = load_config("Qwen--Qwen3-30B-A3B.json")
    cluster = Cluster.parse("1xh100")
    plan = make_plan(spec, cluster, Workload(context=4096), EngineArgs(), layouts=(Layout(),))
    memory = plan.candidates[0].memory
    speed = make_gpu_speed(cluster.gpu)
    steps = [make_speed(plan.model, Layout(), memory, cluster, speed,
                        SpeedWorkload(input_tokens=16, output_tokens=4096, concurrency=n)).step for n in (1, 64)]
    weights_s = sum(plan.candidates[0].weight_bytes_per_gpu) / speed.mem_bw_bytes_per_s
    assert steps[0].memory_s < 0.25 * weights_s
    assert steps[1].memory_s > 0.9 * weights_s


def _decode_step(config: str, gpus: str, layout: Layout, concurrency: int):
    spec = load_config(config)
    cluster = Cluster.parse(gpus)
    plan = make_plan(spec, cluster, Workload(context=4096), EngineArgs(), layouts=(layout,))
    return make_speed(plan.model, layout, plan.candidates[0].memory, cluster, make_gpu_speed(cluster.gpu),
                      SpeedWorkload(input_tokens=16, output_tokens=4096, concurrency=concurrency)).step


def test_block_fp8_experts_are_read_whatever_the_batch():
    # Qwen3-235B-A22B-FP8 (128 x 128 FP8 blocks): the measured step does not shrink with the batch, so the model
    # reads every local expert; the same model in bf16 reads only the experts the batch touches
    fp8 = [_decode_step("Qwen--Qwen3-235B-A22B-FP8.json", "4xh200", Layout(tp=4), n) for n in (1, 16)]
    bf16 = [_decode_step("Qwen--Qwen3-235B-A22B.json", "8xh200", Layout(tp=8), n) for n in (1, 16)]
    assert fp8[1].memory_s == pytest.approx(fp8[0].memory_s, rel=0.05)  # the KV of 15 more requests only
    assert bf16[1].memory_s > 4 * bf16[0].memory_s


def test_mxfp4_experts_run_natively_on_blackwell():
    spec = load_config("openai--gpt-oss-120b.json")
    b200, h200 = (make_gpu_speed(Cluster.parse(g).gpu) for g in ("1xb200", "1xh200"))
    assert b200.fp4 and not h200.fp4
    native, unpacked = moe_kernel(spec, b200), moe_kernel(spec, h200)
    assert native.bw_efficiency == 1.0 and native.flops_per_s == b200.fp8_flops_per_s
    assert unpacked.bw_efficiency < 1.0 and unpacked.flops_per_s < h200.bf16_flops_per_s


@pytest.mark.parametrize("tp", [1, 2, 4, 8])
def test_padded_mxfp4_experts_leave_the_dense_part_positive(tp):
    # gpt-oss pads each GPU's expert width to 256 (2880 / 8 = 360 -> 512): bytes padded, parameters not
    step = _decode_step("openai--gpt-oss-120b.json", f"{tp}xh100", Layout(tp=tp), 64)
    assert step.compute_s > 0 and step.memory_s > 0


def test_step_overhead_grows_with_the_running_requests():
    one, many = (_decode_step("meta-llama--Llama-3.1-8B.json", "1xh100", Layout(), n) for n in (1, 101))
    assert many.overhead_s - one.overhead_s == pytest.approx(100 * STEP_OVERHEAD_PER_SEQ_S)


def test_plan_json_carries_speed_for_every_served_layout():
    import json

    out = subprocess.run([sys.executable, "-m", "tpfit", "plan", "llama-3.1-8b", "--gpus", "2xH100", "--context",
                          "4096", "--concurrency", "64", "--json"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    doc = json.loads(out.stdout)
    assert doc["workload"]["objective"] == "throughput" and doc["workload"]["input_tokens"] == 4096 - 256
    for c in doc["candidates"]:
        if c["memory"] and c["memory"]["verdict"] in ("starts", "insufficient_concurrency"):
            sp = c["speed"]
            assert set(sp) >= {"ttft_s", "tpot_s", "request_output_tok_s", "total_output_tok_s", "concurrency",
                               "input_tokens", "output_tokens", "bound", "calibration"}
            assert sp["concurrency"] == 64 and sp["bound"] in {b.value for b in Bound}
    best = doc["candidates"][doc["recommended"]]
    assert best["speed"]["total_output_tok_s"] * 1.05 >= max(
        c["speed"]["total_output_tok_s"] for c in doc["candidates"] if c["speed"])


@pytest.mark.parametrize("args,flag", [
    (["--objective", "fastest"], "--objective"),
    (["--context", "4096", "--input-tokens", "4000", "--output-tokens", "200"], "--input-tokens"),
    (["--output-tokens", "0"], "--output-tokens"),
])
def test_bad_speed_options_name_the_flag(args, flag):
    out = subprocess.run([sys.executable, "-m", "tpfit", "plan", "llama-3.1-8b", "--gpus", "2xH100", *args],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and flag in out.stderr and "Traceback" not in out.stderr


def test_one_request_keeps_one_replica_busy():
    spec = load_config("meta-llama--Llama-3.1-8B.json")
    plan = make_plan(spec, Cluster.parse("2xh100"), Workload(context=4096, concurrency=1), EngineArgs(),
                     layouts=(Layout(), Layout(dp=2)))
    one, two = (c.speed for c in plan.candidates)
    assert two.total_output_tok_s == pytest.approx(one.total_output_tok_s, rel=1e-6)


def test_speed_command_prints_layouts_by_concurrency():
    out = subprocess.run([sys.executable, "-m", "tpfit", "speed", "llama-3.1-8b", "--gpus", "2xH100", "--context",
                          "4096", "--concurrency", "1,64"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "COLUMNS": "160"})
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if "TP" in line and "│" in line]
    assert {line.split("│")[1].strip() for line in lines} == {"TP1 PP1", "TP1 PP1 DP2", "TP1 PP2", "TP2 PP1"}
    assert sum(line.count("★") for line in lines) == 2  # one recommendation per concurrency
    bad = subprocess.run([sys.executable, "-m", "tpfit", "speed", "llama-3.1-8b", "--gpus", "2xH100",
                          "--concurrency", "0,4"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--concurrency" in bad.stderr


@pytest.mark.parametrize("as_json", [[], ["--json"]])
def test_speed_where_no_layout_serves_exits_1(as_json):
    """70B in bf16 on two 24 GB cards serves at no concurrency: speed said so and exited 0, as a success."""
    from tests.inprocess import tpfit

    run = tpfit("speed", "llama-3.1-70b", "--gpus", "2x3090", "--context", "4096", "--concurrency", "1,8", *as_json)
    assert run.returncode == 1 and run.stderr == "", (run.returncode, run.stderr)
    if as_json:
        assert json.loads(run.stdout)["layouts"] == []
    else:
        assert "no layout starts and serves; `tpfit plan` says why" in run.stdout
    assert tpfit("plan", "llama-3.1-70b", "--gpus", "2x3090", "--context", "4096").returncode == 1  # as plan does


def test_verify_puts_the_predicted_speed_beside_the_load():
    from tpfit.live.load import LoadResult
    from tpfit.live.verify import compare_speed

    plan = make_plan(load_config("meta-llama--Llama-3.1-8B.json"), Cluster.parse("1xh100"),
                     Workload(context=4096, concurrency=8, input_tokens=3968, output_tokens=128), EngineArgs(),
                     layouts=(Layout(),))
    speed = plan.candidates[0].speed
    # a load twice as slow as predicted in every respect
    load = LoadResult(requests_ok=24, requests_failed=0, errors=(), duration_s=24 * 128 / speed.total_output_tok_s * 2,
                      output_tokens=24 * 128, ttft_s={"p50": 2 * speed.ttft_s}, itl_s={"p50": 2 * speed.tpot_s},
                      e2e_s={"p50": 1.0}, kv_usage_peak=0.1, waiting_peak=0, running_peak=8, preemptions=0,
                      server_errors=0)
    rows = {r.quantity: r for r in compare_speed(speed, load)}
    assert set(rows) == {"TTFT (s)", "TPOT (s)", "output tokens/s"}
    assert rows["TTFT (s)"].error_pct == pytest.approx(-50, abs=0.1)
    assert rows["TPOT (s)"].error_pct == pytest.approx(-50, abs=0.1)
    assert rows["output tokens/s"].error_pct == pytest.approx(100, abs=0.5)


def test_a_calibration_replaces_the_spec_sheet_and_is_named_in_every_figure():
    from tpfit.hardware.calibration import AllReduceFit, GpuCalibration

    cluster = Cluster.parse("2xh200")
    cal = GpuCalibration(gpu_name="NVIDIA H200", gpu_id="h200", source="tpfit calibrate on 2x NVIDIA H200 (test)",
                         mem_bw_bytes_per_s=2.0e12, gemm_flops_per_s={"bf16_prefill": 400e12},
                         allreduce=(AllReduceFit(world_size=2, latency_s=1e-3, bus_bytes_per_s=1e9, backend="nccl"),),
                         p2p_bytes_per_s=1e9, step_overhead_s=0.002, num_gpus=2)
    spec_sheet, measured = make_gpu_speed(cluster.gpu), make_gpu_speed(cluster.gpu, cal)
    assert measured.mem_bw_bytes_per_s < spec_sheet.mem_bw_bytes_per_s and measured.step_overhead_s == 0.002
    spec = load_config("meta-llama--Llama-3.1-8B.json")
    work = Workload(context=2048, concurrency=16)
    a = make_plan(spec, cluster, work, EngineArgs(), layouts=(Layout(tp=2),)).candidates[0].speed
    b = make_plan(spec, cluster, work, EngineArgs(), layouts=(Layout(tp=2),), gpu_speed=measured).candidates[0].speed
    assert a.calibration.startswith("uncalibrated") and b.calibration == cal.source
    # a slow measured all-reduce (1 ms, 1 GB/s) makes TP=2 communication-bound
    assert b.step.communication_s > 10 * a.step.communication_s and b.bound is Bound.COMMUNICATION
    assert b.tpot_s > a.tpot_s


def test_speed_table_fits_an_80_column_terminal_without_cutting_figures():
    # the default five concurrencies at 80 columns: the sparkline and bound columns give way, never the figures
    out = subprocess.run([sys.executable, "-m", "tpfit", "speed", "llama-3.1-8b", "--gpus", "2xH100"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "80"})
    assert out.returncode == 0, out.stderr
    rows = [line for line in out.stdout.splitlines() if "TP" in line and "│" in line]
    assert {row.split("│")[1].strip() for row in rows} == {"TP1 PP1", "TP1 PP1 DP2", "TP1 PP2", "TP2 PP1"}
    assert all("…" not in row and len(row) <= 80 for row in rows), rows
    assert all(len(row.split("│")) == 8 for row in rows), rows  # layout + 5 concurrencies, between borders
