"""Every input a user can type: the right answer or one clear error (issue #12's examples, one test each).

Each test runs the real `tpfit` command in a subprocess and asserts the contract of the README: exit 2 with
one line on stderr naming the field or flag for bad input, never a traceback, a hang or a silent wrong answer.
"""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import CONFIGS, ROOT

LLAMA_8B = CONFIGS / "meta-llama--Llama-3.1-8B-Instruct.json"


def tpfit(*args: str, env: dict | None = None, timeout: float = 60, stdin=subprocess.DEVNULL
          ) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "120", **(env or {})}
    return subprocess.run([sys.executable, "-m", "tpfit", *args], capture_output=True, text=True, cwd=ROOT,
                          env=full_env, timeout=timeout, stdin=stdin)


def one_line_error(result: subprocess.CompletedProcess, *needles: str, code: int = 2) -> str:
    """The contract for bad input: exit `code`, one `error:` line on stderr naming what was wrong."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == code, (result.returncode, result.stdout[-2000:], result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def config_with(tmp_path: Path, **changes) -> Path:
    cfg = json.loads(LLAMA_8B.read_text())
    for key, value in changes.items():
        if value is None:
            cfg.pop(key, None)
        else:
            cfg[key] = value
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    return path


# ---- tracebacks ------------------------------------------------------------------------------------------


def test_a_model_name_too_long_for_a_path_is_not_a_crash():
    """A name past the file system's 255 bytes was stat()-ed as a path: OSError ENAMETOOLONG, a traceback."""
    one_line_error(tpfit("plan", "a" * 280, "--gpus", "1xH100"), "not a bundled model")


def test_zero_attention_heads_names_the_field(tmp_path):
    one_line_error(tpfit("plan", str(config_with(tmp_path, num_attention_heads=0)), "--gpus", "1xH100"),
                   "num_attention_heads", "config.json")


def test_plan_file_with_recommended_out_of_range(tmp_path):
    doc = json.loads(tpfit("plan", "llama-3.1-8b", "--gpus", "1xH100", "--json").stdout)
    doc["recommended"] = 999
    plan = tmp_path / "p.json"
    plan.write_text(json.dumps(doc))
    one_line_error(tpfit("deploy", "--plan", str(plan)), "--plan", "recommended")


@pytest.mark.parametrize("where", ["folder", "missing folder"])
def test_an_unwritable_html_is_refused_before_the_plan_is_printed(tmp_path, where):
    """`--json --html DIR` printed the whole plan on stdout, then exited 2 for the --html file."""
    html = tmp_path if where == "folder" else tmp_path / "missing" / "plan.html"
    result = tpfit("plan", "llama-3.1-8b", "--gpus", "1xH100", "--json", "--html", str(html))
    one_line_error(result, "--html", str(html))
    assert result.stdout == "" and not (tmp_path / "missing").exists()


@pytest.mark.parametrize("name", ["-", "a" * 300 + ".html"])
def test_an_html_name_that_is_no_file_is_refused_without_a_trace(tmp_path, name):
    """`--html -` wrote a file named "-" in the current folder; a name past the file system's 255 bytes raised
    OSError ENAMETOOLONG from the writability check itself (a traceback)."""
    run = tpfit("plan", "llama-3.1-8b", "--gpus", "1xH100", "--html", name)
    one_line_error(run, "--html ")
    assert not (ROOT / "-").exists() and run.stdout == ""


def test_out_naming_an_existing_file(tmp_path):
    existing = tmp_path / "file.txt"
    existing.write_text("x")
    one_line_error(tpfit("deploy", "llama-3.1-8b", "--gpus", "1xH100", "--out", str(existing)), "--out")
    assert existing.read_text() == "x"


def test_verify_launch_with_a_missing_python():
    one_line_error(tpfit("verify", "--launch", "llama-3.1-8b", "--vllm-python", "/does/not/exist"),
                   "--vllm-python", "/does/not/exist")


# ---- hangs and blow-ups ----------------------------------------------------------------------------------


def test_absurd_layer_count_is_refused_fast(tmp_path):
    start = time.monotonic()
    one_line_error(tpfit("plan", str(config_with(tmp_path, num_hidden_layers=1e12)), "--gpus", "1xH100",
                         timeout=20), "num_hidden_layers")
    assert time.monotonic() - start < 10


@pytest.mark.parametrize("gpus", ["10000xH100", "1000xH100", "100x100xH100"])
def test_absurd_gpu_counts_are_refused_fast(gpus):
    one_line_error(tpfit("plan", "llama-3.1-8b", "--gpus", gpus, "--json", timeout=20), "--gpus")


def test_the_largest_cluster_allowed_plans_quickly():
    """At the documented bound (16 nodes x 8 GPUs) the layout search answers in seconds, not minutes."""
    start = time.monotonic()
    result = tpfit("plan", "llama-3.1-70b", "--gpus", "16x8xH100", "--json", timeout=60)
    assert result.returncode in (0, 1), result.stderr
    assert time.monotonic() - start < 30
    assert len(result.stdout) < 30_000_000


class _Silent:
    """A TCP port that accepts connections (the kernel's backlog) and never answers."""

    def __enter__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def __exit__(self, *exc):
        self.sock.close()


def test_verify_timeout_holds_against_a_silent_port():
    with _Silent() as url:
        start = time.monotonic()
        line = one_line_error(tpfit("verify", "--url", url, "--timeout", "1", timeout=30), url, code=1)
        assert time.monotonic() - start < 8, line
        assert "did not answer" in line and "1" in line


def test_verify_names_a_port_that_is_not_http():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    port = srv.getsockname()[1]

    def greet():
        for _ in range(4):
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")  # as sshd: its banner first, then it reads and hangs up
            conn.settimeout(2)
            try:
                conn.recv(4096)
            except OSError:
                pass
            conn.close()
    threading.Thread(target=greet, daemon=True).start()
    try:
        one_line_error(tpfit("verify", "--url", f"http://127.0.0.1:{port}", "--timeout", "2", timeout=30),
                       "not an HTTP server", code=1)
    finally:
        srv.close()


def test_verify_names_an_http_server_that_is_not_vllm(tmp_path):
    handler = lambda *a, **kw: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path), **kw)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        line = one_line_error(tpfit("verify", "--url", f"http://127.0.0.1:{server.server_port}", "--timeout", "2",
                                    timeout=30), "not a vLLM server", code=1)
        assert "<html" not in line.lower() and "<!doctype" not in line.lower()
    finally:
        server.shutdown()
        server.server_close()


def test_unknown_hub_id_without_network_is_quick_and_blames_no_unset_setting(tmp_path):
    """This machine has no route to the Hub: one short attempt, then a line saying what was tried."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TPFIT_OFFLINE")}
    env["HF_HOME"] = str(tmp_path / "hf")
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "tpfit", "plan", "nobody-owns/this-model-xyz", "--gpus", "1xH100"],
                            capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
    elapsed = time.monotonic() - start
    line = one_line_error(result, "nobody-owns/this-model-xyz", "cache")
    assert "HF_HUB_OFFLINE" not in line, line
    assert elapsed < 12, (elapsed, line)


def test_a_cached_hub_model_answers_without_the_network(tmp_path):
    """A config in the Hugging Face cache answers first, whether or not the Hub is reachable."""
    hub = tmp_path / "hf" / "hub" / "models--someone--cached-model"
    snap = hub / "snapshots" / ("a" * 40)
    snap.mkdir(parents=True)
    (snap / "config.json").write_text(LLAMA_8B.read_text())
    (hub / "refs").mkdir()
    (hub / "refs" / "main").write_text("a" * 40)
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TPFIT_OFFLINE")}
    env["HF_HOME"] = str(tmp_path / "hf")
    env["HF_HUB_ETAG_TIMEOUT"] = "30"  # if tpfit asked the Hub first, this would cost seconds here
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "tpfit", "plan", "someone/cached-model", "--gpus", "1xH100",
                             "--json"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["summary"].startswith("cached-model on 1×H100-SXM: fits")
    assert time.monotonic() - start < 6


# ---- silent wrong answers --------------------------------------------------------------------------------


@pytest.mark.parametrize("args,needles", [
    (("--gpus", "2xH100", "--tp", "999"), ("--tensor-parallel-size 999", "999 GPUs")),
    (("--gpus", "2xH100", "--dp", "3"), ("--data-parallel-size 3", "3 GPUs")),
    (("--gpus", "2xH100", "--enable-expert-parallel"), ("--enable-expert-parallel", "dense")),
    (("--gpus", "4xH100", "--tp", "3"), ("--tensor-parallel-size 3", "64 attention heads")),
    (("--gpus", "4xH100", "--context", "500000"), ("--max-model-len 500000", "131072")),
])
def test_a_rule_refusal_is_reported_as_one_with_the_users_flags(args, needles):
    result = tpfit("plan", "llama-3.1-70b", *args, "--json")
    assert "Traceback" not in result.stderr and result.returncode == 1, result.stderr
    summary = json.loads(result.stdout)["summary"]
    assert "vLLM refuses" in summary, summary
    for needle in needles:
        assert needle in summary, (needle, summary)
    assert "AWQ" not in summary and "does not fit" not in summary, summary


@pytest.mark.parametrize("args,needles", [
    (("--context", "1"), ("--context 1", "--context 2")),
    (("--max-model-len", "1"), ("--context 2",)),
    (("--context", "4096", "--output-tokens", "4096"), ("--output-tokens 4096", "--output-tokens 4095")),
    (("--context", "4096", "--input-tokens", "4096"), ("--input-tokens 4096", "--input-tokens 4095")),
    (("--input-tokens", "200000"), ("--input-tokens 200000", "131,072", "--input-tokens 131071")),
    (("--output-tokens", "131072"), ("--output-tokens 131072", "--output-tokens 131071")),
])
def test_requests_longer_than_the_context_are_refused(args, needles):
    """vLLM refuses a request longer than --max-model-len (without --context: the model's); the speed figures were
    made for such requests (one prompt token filled in beside 4,096 answer tokens in a 4,096 context)."""
    one_line_error(tpfit("plan", "llama-3.1-8b", "--gpus", "1xH100", *args), *needles)


def test_max_num_seqs_above_the_batch_is_refused_as_vllm_refuses_it(tmp_path):
    """vLLM lowers only its own default --max-num-seqs to --max-num-batched-tokens; given both, it refuses. The plan
    answered "use --max-num-seqs 100" for --max-num-seqs 200, and `tpfit check` found no error in such a file."""
    one_line_error(tpfit("plan", "llama-3.1-8b", "--gpus", "1xH100", "--max-num-seqs", "200",
                         "--max-num-batched-tokens", "100"),
                   "--max-num-seqs 200", "max_num_batched_tokens (100) must be greater than or equal to max_num_seqs "
                   "(200)", "--max-num-seqs 100 or less")
    script = tmp_path / "serve.sh"
    script.write_text("vllm serve meta-llama/Llama-3.1-8B-Instruct --max-num-seqs 200 --max-num-batched-tokens 100\n")
    result = tpfit("check", str(script), "--gpus", "1xH100")
    assert result.returncode == 1 and "Traceback" not in result.stderr, (result.stdout, result.stderr)
    assert "error[flag-value] --max-num-seqs 200" in result.stdout, result.stdout


AWQ = {"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True, "version": "gemm"}


@pytest.mark.parametrize("model", ["AWQ", "gpt-oss-20b"])
def test_quantization_of_a_quantized_checkpoint_is_refused_as_vllm_refuses_it(tmp_path, model):
    """`--quantization fp8` on an AWQ or MXFP4 checkpoint was ignored: the plan was the checkpoint's own, silently."""
    if model == "AWQ":
        model = str(config_with(tmp_path, quantization_config=AWQ).parent)
    one_line_error(tpfit("plan", model, "--gpus", "1xH100", "--quantization", "fp8"), "--quantization fp8",
                   "does not match the quantization method", "leave --quantization out")
    same = tpfit("plan", "qwen3-32b-fp8", "--gpus", "1xH100", "--quantization", "fp8")  # its own method: accepted
    assert same.returncode in (0, 1) and not same.stderr, same.stderr


@pytest.mark.parametrize("flags", ["--quantization fp8", "--max-num-seqs 20000"])
def test_check_reports_a_flag_vllm_refuses_with_the_model_as_an_error(tmp_path, flags):
    """`tpfit check` said "0 error(s)" (a note: not checked) for flags vLLM refuses at start."""
    folder = config_with(tmp_path, **({"quantization_config": AWQ} if "quantization" in flags else {})).parent
    script = tmp_path / "serve.sh"
    script.write_text(f"vllm serve {folder} {flags} --max-model-len 4096\n")
    result = tpfit("check", str(script), "--gpus", "1xH100")
    assert result.returncode == 1 and "Traceback" not in result.stderr, (result.stdout, result.stderr)
    assert f"error[flag-value] {flags}" in result.stdout, result.stdout


@pytest.mark.parametrize("args,needles", [
    # V1 lowers only its own default --max-num-seqs to the batch: a given one above the default batch is refused
    (("--max-num-seqs", "10000"), ("--max-num-seqs 10000", "must be greater than or equal to max_num_seqs (10000)")),
    # the V0 engine (0.6, 0.7) lowers none, and without chunked prefill (up to 32K tokens) needs a whole request
    (("--max-num-batched-tokens", "100", "--vllm-version", "0.6.0"),
     ("--max-num-batched-tokens 100", "is smaller than max_model_len (4096)", "--max-num-batched-tokens 4096 or more")),
    (("--max-num-batched-tokens", "200", "--context", "40000", "--vllm-version", "0.7.3"),
     ("--max-num-batched-tokens 200", "must be greater than or equal to max_num_seqs (256)")),
])
def test_batch_flags_vllm_refuses_with_its_defaults_are_named(args, needles):
    """These were planned as vLLM never starts them (the sequences quietly lowered to the batch)."""
    context = () if "--context" in args else ("--context", "4096")
    one_line_error(tpfit("plan", "llama-3.1-8b", "--gpus", "1xH100", *context, *args), *needles)


@pytest.mark.parametrize("model,args", [
    ("llama-3.1-8b", ("--context", "4096", "--input-tokens", "4000")),
    ("llama-3.1-8b", ("--context", "300", "--output-tokens", "200")),
    ("CONFIG", ()),  # a model of 512 tokens, no --context: the default 1,024-token prompt does not fit
])
def test_default_request_lengths_fit_in_the_context(tmp_path, model, args):
    """The length left out is filled within the context (the answer of a 4,000-token prompt in 4,096 was 256)."""
    if model == "CONFIG":
        model = str(config_with(tmp_path, max_position_embeddings=512, rope_scaling=None))
    result = tpfit("plan", model, "--gpus", "1xH100", *args, "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    best = doc["candidates"][doc["recommended"]]
    limit = best["memory"]["max_model_len"]
    for given, key in (("--input-tokens", "input_tokens"), ("--output-tokens", "output_tokens")):
        if given in args:
            assert best["speed"][key] == int(args[args.index(given) + 1])
    assert best["speed"]["input_tokens"] + best["speed"]["output_tokens"] <= limit, best["speed"]
    assert doc["workload"]["input_tokens"] == best["speed"]["input_tokens"], doc["workload"]


@pytest.mark.parametrize("flag,key", [("--ttft", "ttft_s"), ("--tpot", "tpot_s")])
def test_a_target_no_layout_meets_is_said_in_the_answer(flag, key):
    """`--ttft 0.001` got an answer with TTFT 0.05 s that did not say the target was missed."""
    doc = json.loads(tpfit("plan", "llama-3.1-8b", "--gpus", "2xH100", "--context", "4096", flag, "0.0001",
                           "--json").stdout)
    assert doc["candidates"][doc["recommended"]]["speed"][key] > 0.0001
    assert f"over {flag} 0.0001" in doc["summary"], doc["summary"]
    met = json.loads(tpfit("plan", "llama-3.1-8b", "--gpus", "2xH100", "--context", "4096", flag, "100",
                           "--json").stdout)
    assert " over --t" not in met["summary"], met["summary"]


@pytest.mark.parametrize("value", ["nan", "0", "-1", "inf"])
@pytest.mark.parametrize("flag", ["--ttft", "--tpot"])
def test_a_target_that_is_no_number_of_seconds_is_refused(flag, value):
    """`--ttft nan` was taken as met by every layout (NaN compares false) and printed as null; 0 as missed by all."""
    one_line_error(tpfit("plan", "llama-3.1-8b", "--gpus", "1xH100", flag, value), flag, "seconds above 0")


def test_explicit_bfloat16_on_a_t4_is_refused_and_auto_falls_back_to_float16():
    explicit = tpfit("plan", "llama-3.2-1b", "--gpus", "1xT4", "--dtype", "bfloat16", "--json")
    doc = json.loads(explicit.stdout)
    assert explicit.returncode == 1 and doc["recommended"] is None
    assert any(r["rule"] == "bf16_gpu_capability" for c in doc["candidates"] for r in c["reasons"])
    auto = tpfit("plan", "llama-3.2-1b", "--gpus", "1xT4", "--json")
    doc = json.loads(auto.stdout)
    assert auto.returncode == 0, doc["summary"]
    assert doc["model"]["dtype"] == "float16"
    assert any("float16" in n for n in doc["model"]["notes"])


# 0.26.0.1 is no release: the package index's vllm versions have a fourth part only in 0.9.0.1 and 0.10.1.1
@pytest.mark.parametrize("version", ["0.1", "99.0", "", "abc", "0.26.0.1", "-1.0", "0.26.0.1.2", "0.26.0.post1",
                                     "0.26.0rc1", "0.11.1.dev5+g1234"])
def test_unmodelled_or_malformed_vllm_versions_are_refused(version):
    line = one_line_error(tpfit("plan", "llama-3.1-8b", "--gpus", "1xH100", "--vllm-version", version),
                          "--vllm-version")
    if "rc" in version or "dev" in version:
        assert "pre-release" in line and version.split("rc")[0].split(".dev")[0] in line, line
    if version in ("0.1", "99.0"):
        from tpfit.core.engine import MODELLED_VLLM_VERSIONS

        low, high = MODELLED_VLLM_VERSIONS
        assert low in line and high in line, line


@pytest.mark.parametrize("version", ["0.26.0", "v0.26.0", "V0.26.0", "0.26"])
def test_vllm_version_forms_give_one_valid_image_tag(version):
    result = tpfit("deploy", "llama-3.1-8b", "--gpus", "1xH100", "--format", "docker", "--vllm-version", version)
    assert result.returncode == 0, result.stderr
    assert "vllm/vllm-openai:v0.26.0 " in result.stdout or "vllm/vllm-openai:v0.26.0\n" in result.stdout, \
        result.stdout


@pytest.mark.parametrize("fmt", ["serve", "docker", "compose", "k8s"])
def test_a_multi_node_plan_is_refused_in_a_single_node_format(fmt):
    one_line_error(tpfit("deploy", "llama-3.1-405b", "--gpus", "2x8xH100", "--context", "8192", "--format", fmt),
                   "--format", "2 nodes", "lws", "ray")


def test_a_non_nvidia_gpu_gets_no_cuda_container():
    line = one_line_error(tpfit("deploy", "llama-3.1-8b", "--gpus", "4xMI300X", "--format", "docker"), "--gpus",
                          "ROCm")
    assert "--runtime nvidia" not in line


@pytest.mark.parametrize("args,needles", [
    (("--tp", "2", "--gpu-ids", "0"), ("--gpu-ids", "2 GPUs")),
    (("--gpu-ids", "0,0"), ("--gpu-ids", "twice")),
    (("--gpu-ids", "-1"), ("--gpu-ids",)),
    (("--shm-size", "lots"), ("--shm-size", "16g")),
    (("--driver", "abc"), ("--driver", "580.65.06")),
    (("--driver", "450.80.02"), ("--driver", "575.51.03")),
])
def test_deploy_checks_its_own_flags(args, needles):
    one_line_error(tpfit("deploy", "llama-3.1-8b", "--gpus", "2xH100", "--format", "docker", *args), *needles)


def test_deploy_model_and_plan_together_is_refused(tmp_path):
    plan = tmp_path / "p.json"
    plan.write_text(tpfit("plan", "llama-3.1-8b", "--gpus", "1xH100", "--json").stdout)
    one_line_error(tpfit("deploy", "qwen3-32b", "--plan", str(plan)), "--plan", "MODEL")


@pytest.mark.parametrize("changes,field", [
    ({"num_key_value_heads": 0}, "num_key_value_heads"),
    ({"num_attention_heads": 32.5}, "num_attention_heads"),
    ({"num_attention_heads": "32"}, "num_attention_heads"),
    ({"hidden_size": 4100, "head_dim": None}, "hidden_size"),
    ({"num_key_value_heads": 5}, "num_key_value_heads"),
    ({"head_dim": 0}, "head_dim"),
    ({"vocab_size": -1}, "vocab_size"),
    ({"intermediate_size": True}, "intermediate_size"),
    # read as true or false: the string "false" was true (tied embeddings: the LM head's 1 GB left out)
    ({"tie_word_embeddings": "false"}, "tie_word_embeddings"),
    ({"quantization_config": {"quant_method": "gptq", "bits": 4, "group_size": 128, "sym": "no"}}, "sym"),
    # planned as if the field said otherwise: group 0 as group 128, an unknown layer type as full attention
    ({"quantization_config": {"quant_method": "awq", "bits": 4, "group_size": 0}}, "group_size"),
    ({"layer_types": ["sliding"] * 32}, "layer_types"),
    # an AttributeError's text instead of the field
    ({"quantization_config": {"quant_method": "compressed-tensors", "config_groups": "int8"}}, "config_groups"),
])
def test_inconsistent_config_fields_are_named(tmp_path, changes, field):
    one_line_error(tpfit("plan", str(config_with(tmp_path, **changes)), "--gpus", "1xH100"), field, "config.json")


def test_a_config_file_under_its_own_name_is_named_by_it():
    """`tpfit plan shared/model-configs/meta-llama--Llama-3.1-8B-Instruct.json` answered "model-configs on ..."."""
    doc = json.loads(tpfit("plan", str(LLAMA_8B), "--gpus", "1xH100", "--json").stdout)
    assert doc["model"]["id"] == LLAMA_8B.stem and doc["summary"].startswith(f"{LLAMA_8B.stem} on "), doc["summary"]


def test_library_best_is_none_when_nothing_starts():
    from tpfit import Cluster, load_model, make_plan

    plan = make_plan(load_model("llama-3.1-70b"), Cluster.parse("2x3090"))
    assert plan.best is None and plan.recommended is None
    assert all(c.memory is None or c.memory.verdict not in ("starts", "insufficient_concurrency")
               for c in plan.candidates)


# ---- the report never contradicts itself ----------------------------------------------------------------


def test_nothing_fits_report_marks_no_star_and_no_flags():
    result = tpfit("plan", "llama-3.1-70b", "--gpus", "2x3090", "--context", "4096", "--concurrency", "2")
    assert result.returncode == 1
    out = result.stdout
    assert "★" not in out and "vLLM flags for" not in out, out
    assert "GiB KV" not in out or "-" not in out.split("GiB KV")[0].splitlines()[-1], out


def test_the_one_line_answer_gives_the_tables_sequence_count():
    """7.98 requests of 131,072 tokens fit: the answer said "8.0 sequences" beside "--max-num-seqs 7"."""
    doc = json.loads(tpfit("plan", "llama-3.1-8b", "--gpus", "2xH100", "--json").stdout)
    memory = doc["candidates"][doc["recommended"]]["memory"]
    shown = doc["summary"].split(" with ", 1)[1].split(" sequences", 1)[0]
    assert shown == f"{memory['max_concurrency']:.2f}", (shown, memory["max_concurrency"])
    assert int(float(shown)) >= int(doc["summary"].split("--max-num-seqs ")[1].split()[0]), doc["summary"]


@pytest.mark.parametrize("width", ["80", "60"])
def test_narrow_terminal_keeps_the_verdict_and_whole_numbers(width):
    result = tpfit("plan", "qwen3-32b", "--gpus", "4xH100", "--context", "8192", env={"COLUMNS": width})
    assert result.returncode == 0, result.stderr
    table = result.stdout.split("Layouts that pass")[1].split("Layouts vLLM refuses")[0]
    assert "verdict" in table and "starts" in table, table
    assert "…" not in result.stdout, result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= int(width)


# ---- unclear errors ------------------------------------------------------------------------------------


def test_binary_config_names_the_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_bytes(bytes(range(256)) * 4)
    one_line_error(tpfit("plan", str(path), "--gpus", "1xH100"), str(path))


@pytest.mark.parametrize("header", [
    None,  # an empty file: "unpack requires a buffer of 8 bytes"
    [1, 2],  # a JSON list: a traceback (AttributeError: 'list' object has no attribute 'items')
    {"a": {"dtype": "BF16", "shape": [-5, 3], "data_offsets": [0, 10]}},  # counted as -30 bytes of weights
])
def test_a_broken_safetensors_file_names_the_file(tmp_path, header):
    (tmp_path / "config.json").write_text(LLAMA_8B.read_text())
    text = b"" if header is None else json.dumps(header).encode()
    (tmp_path / "model.safetensors").write_bytes(len(text).to_bytes(8, "little") + text if text else b"")
    line = one_line_error(tpfit("plan", str(tmp_path), "--gpus", "1xH100"), str(tmp_path / "model.safetensors"),
                          "safetensors")
    assert line.count(str(tmp_path)) == 1, line


@pytest.mark.parametrize("raw,needle", [
    ((9).to_bytes(8, "little") + b"{not json", "header is not JSON"),
    ((1 << 40).to_bytes(8, "little") + b"{}", "headed by a length of"),
])
def test_a_safetensors_file_that_is_not_one_names_the_file(tmp_path, raw, needle):
    (tmp_path / "config.json").write_text(LLAMA_8B.read_text())
    (tmp_path / "model.safetensors").write_bytes(raw)
    line = one_line_error(tpfit("plan", str(tmp_path), "--gpus", "1xH100"), str(tmp_path / "model.safetensors"),
                          needle)
    assert line.count(str(tmp_path)) == 1, line


def test_binary_plan_file_names_the_file(tmp_path):
    path = tmp_path / "plan.json"
    path.write_bytes(b"\xff\xfe\x00\x81" * 100)
    one_line_error(tpfit("deploy", "--plan", str(path)), str(path))


def test_nan_in_config_names_the_field(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(LLAMA_8B.read_text().replace('"hidden_size": 4096', '"hidden_size": NaN'))
    one_line_error(tpfit("plan", str(path), "--gpus", "1xH100"), "hidden_size")


def test_gpu_count_without_a_gpu_is_one_short_line():
    line = one_line_error(tpfit("plan", "llama-3.1-8b", "--gpus", "2x"), "--gpus", "2xH100")
    assert "3090ti" not in line and len(line) < 200, line


def test_gpu_spec_is_case_insensitive():
    upper = tpfit("plan", "llama-3.1-8b", "--gpus", "2XH100", "--json")
    lower = tpfit("plan", "llama-3.1-8b", "--gpus", "2xh100", "--json")
    assert upper.returncode == 0, upper.stderr
    assert json.loads(upper.stdout)["summary"] == json.loads(lower.stdout)["summary"]


def test_non_http_url_scheme_is_named():
    line = one_line_error(tpfit("verify", "--url", "ftp://example.com:8000"), "--url", "http://")
    assert "http://ftp://" not in line


def test_explain_without_a_log_on_a_terminal_does_not_wait():
    import pty

    primary, secondary = pty.openpty()
    try:
        result = tpfit("explain", stdin=secondary, timeout=20)
    finally:
        os.close(primary)
        os.close(secondary)
    one_line_error(result, "LOGFILE")


@pytest.mark.parametrize("path", ["/dev/zero", "/dev/urandom"])
def test_explain_refuses_a_device_instead_of_reading_it_forever(path):
    """`tpfit explain /dev/zero` read until the machine ran out of memory (the process was killed)."""
    start = time.monotonic()
    one_line_error(tpfit("explain", path, timeout=30), "LOGFILE", path)
    assert time.monotonic() - start < 10


def test_explain_holds_a_logs_end_within_a_bound():
    """A log of any length (a file, or a pipe that is not seekable) takes at most the bound: its last bytes."""
    import io

    from tpfit.live.log_file import read_log_tail

    data = b"INFO noise\n" * 10_000 + b"ERROR the refusal\n"

    class Pipe(io.RawIOBase):
        def __init__(self):
            self.rest = data

        def readable(self):
            return True

        def readinto(self, buffer):
            n = min(len(buffer), 4096, len(self.rest))
            buffer[:n], self.rest = self.rest[:n], self.rest[n:]
            return n

    for stream in (io.BytesIO(data), io.BufferedReader(Pipe())):
        text = read_log_tail(stream, limit=1000)
        assert text.endswith("ERROR the refusal\n") and len(text) == 1000, (type(stream), len(text))


def test_json_help_says_what_each_command_prints():
    for command, word in (("verify", "report"), ("explain", "diagnoses"), ("doctor", "findings"),
                          ("speed", "concurrency")):
        text = tpfit(command, "--help", env={"COLUMNS": "200"}).stdout
        line = next(line for line in text.splitlines() if "--json" in line)
        assert "plan" not in line.lower() and word in line, line


def test_command_list_shows_each_summary_on_one_line():
    """`tpfit --help` lists each command with its docstring's first paragraph as one line (at a width that holds
    it), not broken where the source wraps it (deploy's "Ray; its" / "Prometheus alerting rules")."""
    import importlib
    import inspect

    from tpfit.cli.app import COMMANDS

    text = tpfit("--help", env={"COLUMNS": "400"}).stdout
    rows = {line.split()[1]: line for line in text.splitlines() if line.startswith("│ ") and len(line.split()) > 2}
    for name, target in COMMANDS.items():
        module, function = target.split(":")
        doc = inspect.cleandoc(getattr(importlib.import_module(module), function).__doc__).split("\n\n")[0]
        assert " ".join(doc.split()) in rows[name], (name, rows.get(name))


def test_explain_names_two_ranks_on_one_gpu(tmp_path):
    log = tmp_path / "vllm.log"
    log.write_text("(Worker pid=1) ERROR ... ncclInvalidUsage: This usually reflects invalid usage of NCCL library.\n"
                   "Duplicate GPU detected : rank 1 and rank 0 both on CUDA device 1000\n")
    result = tpfit("explain", str(log))
    assert result.returncode == 0, result.stderr
    assert "CUDA_VISIBLE_DEVICES" in result.stdout and "--gpu-ids" in result.stdout, result.stdout


# ---- found by tests/test_fuzz.py ------------------------------------------------------------------------


def test_a_gpu_given_by_size_plans_without_speed_figures():
    """`--gpus 3x24GB` has no memory bandwidth to predict speed with: it plans memory, not a ZeroDivisionError."""
    result = tpfit("plan", "llama-3.1-8b", "--gpus", "3x24GB", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["summary"].startswith("Llama-3.1-8B-Instruct on 3×") and "fits" in doc["summary"]


def test_speed_of_a_gpu_given_by_size_names_gpus_instead_of_saying_nothing_starts():
    """`tpfit speed MODEL --gpus 2x24GB` said "no layout starts and serves; `tpfit plan` says why" of a model that
    plan fits: such a GPU has no bandwidth to predict with."""
    assert tpfit("plan", "llama-3.1-8b", "--gpus", "2x24GB").returncode == 0
    one_line_error(tpfit("speed", "llama-3.1-8b", "--gpus", "2x24GB"), "--gpus 2x24GB", "--gpus 2x3090")
    # with a speed option beside it, the answer is still --gpus: plan's "leave --input-tokens out" would not help
    line = one_line_error(tpfit("speed", "llama-3.1-8b", "--gpus", "2x24GB", "--input-tokens", "100"),
                          "--gpus 2x24GB", "--gpus 2x3090")
    assert "leave --input-tokens out" not in line, line


@pytest.mark.parametrize("option", [["--ttft", "0.1"], ["--tpot", "0.01"], ["--objective", "latency"],
                                    ["--input-tokens", "100"], ["--output-tokens", "100"]])
def test_speed_options_beside_a_gpu_given_by_size_are_refused(option):
    """No speed figures to rank by: `--objective latency --ttft 0.1` on `--gpus 2x24GB` were dropped without a word
    (the same answer as without them, exit 0)."""
    one_line_error(tpfit("plan", "llama-3.1-8b", "--gpus", "2x24GB", "--context", "4096", *option),
                   f"{option[0]} {option[1]}: ", "--gpus 2x3090", f"leave {option[0]} out")


def test_a_control_character_in_a_value_keeps_the_error_on_one_line():
    """A value with a newline or NEL (U+0085) is quoted escaped, so the error stays one line."""
    line = one_line_error(tpfit("plan", "llama-3.1-8b", "--gpus", "1xH100", "--quantization", "d\x85x\ny"),
                          "--quantization")
    assert "\\x85" in line and "\\n" in line


def test_a_huge_data_parallel_size_is_refused_before_any_arithmetic():
    """`--dp 1398387975` built a per-GPU list of that length (10 GB, 35 s); now a bound, named."""
    start = time.monotonic()
    one_line_error(tpfit("plan", "llama-3.1-8b", "--gpus", "2x8xH100", "--dp", "1398387975", timeout=30), "--dp")
    assert time.monotonic() - start < 10


@pytest.mark.parametrize("path,value", [
    (("model", "id"), {"factor": 100}),
    (("cluster", "gpus_per_node"), "8"),
    (("engine", "vllm_version"), "0.1"),
    (("candidates", 0, "memory", "verdict"), "maybe"),
    (("candidates", 0, "flags"), [{"flag": 3}]),
])
def test_a_saved_plan_with_a_wrong_type_is_named(tmp_path, path, value):
    """Found by the property suite: `model.id` as an object reached shlex.join as a dict (TypeError)."""
    doc = json.loads(tpfit("plan", "llama-3.1-8b", "--gpus", "1xH100", "--json").stdout)
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    plan = tmp_path / "p.json"
    plan.write_text(json.dumps(doc))
    one_line_error(tpfit("deploy", "--plan", str(plan)), "--plan")


@pytest.mark.parametrize(("flag", "most"), [("--max-num-seqs", "MAX_NUM_SEQS"),
                                            ("--max-num-batched-tokens", "MAX_NUM_BATCHED_TOKENS")])
def test_batch_flags_are_bounded_for_plan_page_and_check(flag, most, tmp_path):
    from tests.inprocess import tpfit as in_process
    from tpfit import EngineArgs, limits
    from tpfit.errors import UsageError

    bound = getattr(limits, most)
    other = ("--max-num-batched-tokens", str(limits.MAX_NUM_BATCHED_TOKENS)) if flag == "--max-num-seqs" else \
        ("--max-num-seqs", "1")  # a batch vLLM takes with the other flag, so only the bound can refuse it
    for value in (bound + 1, 100000000000000000000):
        one_line_error(in_process("plan", "llama-3.1-8b", "--gpus", "1xH100", flag, str(value), *other), flag)
    at = in_process("plan", "llama-3.1-8b", "--gpus", "1xH100", flag, str(bound), *other)
    assert at.returncode in (0, 1) and not at.stderr, at.stderr  # planned (a bound refuses no value at or below it)
    with pytest.raises(UsageError, match=f"^{flag} {bound + 1}: must be from 1 to {bound:,}"):
        EngineArgs(**{flag.lstrip("-").replace("-", "_"): bound + 1})
    script = tmp_path / "serve.sh"
    script.write_text(f"vllm serve llama-3.1-8b --max-model-len 4096 {flag} {10 ** 20} {' '.join(other)}\n")
    check = in_process("check", str(script), "--gpus", "1xH100", "--json")
    found = json.loads(check.stdout)["findings"]
    assert check.returncode == 1 and [f["kind"] for f in found] == ["flag-value"], found
    assert found[0]["message"].startswith(f"{flag} {10 ** 20}: must be from 1 to {bound:,}"), found
