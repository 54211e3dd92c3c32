"""The `tpfit` command as a user runs it: real processes, one clear line per bad input, exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CONFIGS, ROOT


def tpfit(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "120", **(env or {})}
    return subprocess.run([sys.executable, "-m", "tpfit", *args], capture_output=True, text=True, cwd=ROOT,
                          env=full_env, timeout=60)


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("```bash", 1)[1].split("```", 1)[0]
    lines = [line.strip() for line in block.strip().splitlines() if line.strip() and not line.startswith("#")]
    return [line.split("&& ", 1)[-1] for line in lines]  # after the install step


def test_readme_opens_with_the_demo_and_the_test_command():
    demo, tests = readme_commands()[:2]
    assert demo.startswith("tpfit plan ") and "--gpus" in demo
    assert "pytest" in tests
    assert tests in (ROOT / ".ci" / "run").read_text(), ".ci/run must run the README's test command"


def test_readme_demo_runs():
    demo = readme_commands()[0]
    result = tpfit(*demo.split()[1:])
    assert result.returncode == 0, result.stderr
    assert "Llama-3.1-70B-Instruct on 2×H100" in result.stdout and "--tensor-parallel-size 2" in result.stdout


def test_plan_json_contract():
    result = tpfit("plan", "qwen3-32b", "--gpus", "3xH100", "--context", "8192", "--concurrency", "8", "--json")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert {"model", "cluster", "candidates", "recommended", "summary"} <= set(plan)
    for c in plan["candidates"]:
        assert set(c["layout"]) == {"tp", "pp", "dp", "ep"}
        assert isinstance(c["accepted"], bool) and isinstance(c["reasons"], list)
        assert len(c["weights_gib_per_gpu"]) == c["layout"]["tp"] * c["layout"]["pp"] * c["layout"]["dp"]
        if c["accepted"]:
            assert {"weights_gib", "activation_gib", "non_torch_gib", "cuda_graph_gib", "kv_cache_gib",
                    "kv_bytes_per_token", "kv_cache_tokens", "max_concurrency", "max_model_len_fit",
                    "verdict"} <= set(c["memory"])
    tp3 = next(c for c in plan["candidates"] if c["layout"] == {"tp": 3, "pp": 1, "dp": 1, "ep": 1})
    assert not tp3["accepted"] and "64" in tp3["reasons"][0]["vllm_error"]


def test_exact_configuration_flags():
    result = tpfit("plan", str(CONFIGS / "meta-llama--Llama-3.1-8B.json"), "--gpus", "2xH100", "--tp", "2", "--pp", "1",
                   "--gpu-memory-utilization", "0.9", "--max-model-len", "8192", "--kv-cache-dtype", "fp8",
                   "--max-num-seqs", "256", "--max-num-batched-tokens", "4096", "--enforce-eager",
                   "--vllm-version", "0.26.0", "--json")
    plan = json.loads(result.stdout)
    (c,) = plan["candidates"]
    m = c["memory"]
    assert c["layout"]["tp"] == 2 and m["max_num_seqs"] == 256 and m["max_num_batched_tokens"] == 4096
    assert m["cuda_graph_gib"] == 0 and m["gpu_memory_utilization"] == 0.9
    assert m["kv_bytes_per_token"] == 32 * (8 // 2) * 2 * 128 * 1  # fp8 KV on each of the 2 GPUs


@pytest.mark.parametrize("args,needle", [
    (["plan", "no-such-model", "--gpus", "2x3090"], "no-such-model"),
    (["plan", "llama-3.1-70b", "--gpus", "2xfoo"], "--gpus 2xfoo: unknown GPU 'foo'"),
    (["plan", "llama-3.1-70b", "--gpus", "2x3090", "--tp", "0"], "--tp"),
    (["plan", "llama-3.1-70b", "--gpus", "0x3090"], "--gpus 0x3090"),
    (["plan", "llama-3.1-70b", "--gpus", "2x3090", "--kv-cache-dtype", "int3"], "--kv-cache-dtype int3"),
    (["plan", "llama-3.1-70b", "--gpus", "2x3090", "--vllm-version", "latest"], "--vllm-version latest"),
    (["plan", "llama-3.1-70b", "--gpus", "2x3090", "--quantization", "awq"], "--quantization awq"),
    (["plan", "llama-3.1-70b", "--gpus", "2x3090", "--context", "4096", "--max-model-len", "8192"], "--context"),
])
def test_bad_input_one_line_exit_2(args, needle):
    result = tpfit(*args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert needle in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) <= 4


def test_folder_without_config(tmp_path: Path):
    result = tpfit("plan", str(tmp_path), "--gpus", "1xh100")
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {tmp_path} has no config.json; point at a model folder or a config.json file"


def test_truncated_config(tmp_path: Path):
    text = (CONFIGS / "meta-llama--Llama-3.1-8B.json").read_text()
    (tmp_path / "config.json").write_text(text[: len(text) // 2])
    result = tpfit("plan", str(tmp_path), "--gpus", "1xh100")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "config.json is not valid JSON" in result.stderr and "is the file complete?" in result.stderr


def test_config_missing_a_field(tmp_path: Path):
    cfg = json.loads((CONFIGS / "meta-llama--Llama-3.1-8B.json").read_text())
    del cfg["num_attention_heads"]
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    result = tpfit("plan", str(tmp_path), "--gpus", "1xh100")
    assert result.returncode == 2 and "num_attention_heads" in result.stderr and "Traceback" not in result.stderr


def test_config_missing_a_family_field_names_the_file_once(tmp_path: Path):
    """A key only the family reads (the MLP width): the line said '<path>: <folder>: config.json has no ...'."""
    cfg = json.loads((CONFIGS / "meta-llama--Llama-3.1-8B.json").read_text())
    del cfg["intermediate_size"]
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    result = tpfit("plan", str(tmp_path), "--gpus", "1xh100")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip() == (f"error: {tmp_path / 'config.json'}: has no 'intermediate_size'; is this a "
                                     "complete model config?"), result.stderr


def test_unsupported_model_type(tmp_path: Path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "t5", "hidden_size": 512}))
    result = tpfit("plan", str(tmp_path), "--gpus", "1xh100")
    assert result.returncode == 2 and "not supported yet: model_type 't5'" in result.stderr


def test_misspelled_hub_id_offline_suggests_close_match():
    result = tpfit("plan", "meta-llama/Llama-3.1-70B-Instruc", "--gpus", "2xh100")
    assert result.returncode == 2
    assert "meta-llama/Llama-3.1-70B-Instruct" in result.stderr and "Traceback" not in result.stderr


def test_a_misspelled_bundled_name_in_capitals_gets_suggestions():
    """The catalog takes LLAMA-3.1-8B, but the near-miss hint compared with case: QWEN3-30B had no suggestion."""
    result = tpfit("plan", "QWEN3-30B", "--gpus", "1xh100")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "; did you mean " in result.stderr and "qwen3-30b-a3b" in result.stderr, result.stderr


def test_no_gpu_and_no_gpus_flag_says_how_to_describe_them():
    result = tpfit("plan", "llama-3.1-8b")
    if result.returncode == 0:
        pytest.skip("this machine has an NVIDIA GPU")
    assert result.returncode == 2 and "--gpus 2x3090" in result.stderr


def test_local_folder_with_safetensors_headers(tmp_path: Path):
    import struct

    # a real config with a tiny weight file: only the header is read
    (tmp_path / "config.json").write_text((CONFIGS / "Qwen--Qwen2.5-1.5B.json").read_text())
    header = json.dumps({"model.embed_tokens.weight": {"dtype": "BF16", "shape": [151936, 1536],
                                                       "data_offsets": [0, 4]}}).encode()
    (tmp_path / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 4)
    from tpfit.model.folder import load_folder

    spec = load_folder(tmp_path)
    assert spec.checkpoint_bytes == 151936 * 1536 * 2


def test_readme_plan_example_matches():
    text = (ROOT / "README.md").read_text()
    block = text.split("$ tpfit plan llama-3.1-70b --gpus 2x3090 --context 4096 --concurrency 2\n", 1)[1].split("```")[0]
    result = tpfit("plan", "llama-3.1-70b", "--gpus", "2x3090", "--context", "4096", "--concurrency", "2", "--json")
    assert json.loads(result.stdout)["summary"] == " ".join(block.split())


@pytest.mark.parametrize("gpus", ["2xH100", "4xL40S"])
def test_readme_speed_examples_match(gpus):
    text = (ROOT / "README.md").read_text()
    block = text.split(f"$ tpfit plan llama-3.1-8b --gpus {gpus} --context 4096 --concurrency 64\n", 1)[1]
    result = tpfit("plan", "llama-3.1-8b", "--gpus", gpus, "--context", "4096", "--concurrency", "64", "--json")
    assert json.loads(result.stdout)["summary"] == " ".join(block.split("```")[0].split())


def test_readme_speed_sweep_example_matches():
    """The README's `tpfit speed` table had kept figures of an older speed model (★ on TP2 at 64 requests, where the
    plan example just above it recommends DP=2): each of its lines is a line the command prints now."""
    text = (ROOT / "README.md").read_text()
    command = "tpfit speed llama-3.1-8b --gpus 2xH100 --context 4096 --concurrency 1,8,64,256"
    block = text.split(f"$ {command}\n", 1)[1].split("```", 1)[0].splitlines()
    result = tpfit(*command.split()[1:])
    assert result.returncode == 0, result.stderr
    printed = [line.rstrip() for line in result.stdout.splitlines()]
    assert len(block) == 7 and [line for line in block if line not in printed] == [], result.stdout


@pytest.mark.parametrize("args,code,needle", [
    (["verify"], 2, "--url"),
    (["verify", "--url", "http://127.0.0.1:9", "--launch"], 2, "exactly one of --url URL or --launch"),
    (["verify", "--url", "127.0.0.1:8000"], 2, "--url 127.0.0.1:8000: a server URL starts with http:// or https://"),
    (["verify", "--docker", "--url", "http://127.0.0.1:9"], 2, "--docker goes with --launch"),
    (["verify", "--launch"], 2, "--launch needs MODEL"),
    (["verify", "--url", "http://127.0.0.1:9", "--kv-cache-memory-bytes", "lots"], 2, "--kv-cache-memory-bytes lots"),
    (["verify", "--url", "http://127.0.0.1:9"], 1, "cannot connect to http://127.0.0.1:9"),
])
def test_verify_bad_input_and_no_server(args, code, needle):
    result = tpfit(*args)
    assert result.returncode == code, result.stderr
    assert needle in result.stderr and "Traceback" not in result.stderr


def test_launch_temp_dir_stays_short_enough_for_vllm_sockets(monkeypatch, tmp_path):
    # vLLM binds ZMQ sockets at TMPDIR/<uuid4>; under a deep TMPDIR it dies (tests/data/vllm-logs/
    # cpu-0.32-zmq-ipc-path-too-long.log), so a launch's run folder falls back to /tmp
    import tempfile

    from tpfit.live.launch import IPC_PATH_MAX, short_temp_dir

    deep = tmp_path / ("d" * 60)
    deep.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(deep))
    assert short_temp_dir() == "/tmp"
    monkeypatch.setattr(tempfile, "tempdir", "/var/tmp")
    assert short_temp_dir() == "/var/tmp"
    assert len("/var/tmp" + "/tpfit-verify-abcdefgh/" + "9915bdab-1af4-41ae-b968-15487a270c3d") <= IPC_PATH_MAX


def test_plan_request_holds_enum_options_as_kinds():
    """typer 0.28 leaves an enum option as its string in click's ctx.params (0.29 converts it): either way the
    request holds the kind, and options that are not the plan's (output choices) are left out."""
    from tpfit.kinds import KvCacheDtype, ModelDtype, Objective
    from tpfit.request import PlanRequest

    req = PlanRequest.from_options({"model": "llama-3.1-8b", "kv_cache_dtype": "fp8", "dtype": ModelDtype.FLOAT16,
                                    "objective": "latency", "as_json": True})
    assert req.kv_cache_dtype is KvCacheDtype.FP8 and req.dtype is ModelDtype.FLOAT16
    assert req.objective is Objective.LATENCY
