"""tpfit verify / ServerFacts against a real vLLM (CPU build) on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.realserver.conftest import BASE_FLAGS, start_server, vllm_python
from tpfit.live.client import VllmClient
from tpfit.live.launch import session_pids
from tpfit.live.server_facts import read_server_facts
from tpfit.live.startup_log import parse_startup_log


@pytest.fixture
def short_tmp():
    """A TMPDIR short enough for vLLM's IPC sockets (pytest's tmp_path is not: see short_temp_dir)."""
    path = Path(tempfile.mkdtemp(prefix="tpv", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def tpfit(*args: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tpfit", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout, env={**os.environ, **(env or {})})


def test_server_facts_equal_the_servers_own_log_and_metrics(server):
    log = server.log_text()
    facts = asyncio.run(_facts(server.url, log))
    # the log line, parsed independently here: "CPU KV cache size: 65,536 tokens, Maximum concurrency for 512 ..."
    m = re.search(r"CPU KV cache size: ([\d,]+) tokens, Maximum concurrency for ([\d,]+) tokens per request: "
                  r"([\d.]+)x", log)
    assert m, "the server log has no KV cache line"
    assert facts.kv_cache_tokens == int(m.group(1).replace(",", "")) == 65_536
    assert facts.max_concurrency == float(m.group(3)) and facts.max_model_len == 512
    assert facts.kv_cache_memory_bytes == 64 << 20 and facts.model_id == "tiny" and facts.version.startswith("0.")
    assert facts.startup.device == "CPU" and facts.startup.kv_cache_tokens == facts.kv_cache_tokens


async def _facts(url, log):
    async with VllmClient(url) as client:
        return await read_server_facts(client, log_text=log)


def test_verify_url_predicts_the_kv_cache_and_passes(server, tmp_path):
    log = tmp_path / "server.log"
    log.write_text(server.log_text())
    result = tpfit("verify", "--url", server.url, "--log", str(log), "--dtype", "float32",
                   "--kv-cache-memory-bytes", "64M", "--concurrency", "4", "--output-tokens", "32", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    rows = {r["quantity"]: r for r in report["comparison"]}
    # tiny Llama, fp32: 2 layers x 2 KV heads x 2 (K,V) x 32 dims x 4 bytes = 1,024 B per token; 64 MiB -> 65,536
    assert rows["KV cache tokens"]["predicted"] == rows["KV cache tokens"]["actual"] == 65_536
    assert rows["max concurrency"]["predicted"] == rows["max concurrency"]["actual"] == 128.0
    load = report["load"]
    assert load["requests_ok"] == 12 and load["requests_failed"] == 0 and load["output_tokens"] == 12 * 32
    assert load["ttft_s"]["p50"] > 0 and load["e2e_s"]["p99"] >= load["e2e_s"]["p50"]
    assert report["verdict"]["passed"]
    strict = tpfit("verify", "--url", server.url, "--concurrency", "2", "--output-tokens", "16",
                   "--ttft-p99", "0.000001", "--json")
    assert strict.returncode == 1 and "--ttft-p99" in " ".join(json.loads(strict.stdout)["verdict"]["reasons"])


def test_tiny_kv_cache_back_pressure_fails_with_reason(tiny_model, short_tmp):
    # 1 MiB of fp32 KV = 1,024 tokens = two 512-token requests; 8 at once must queue and preempt
    result = tpfit("verify", str(tiny_model), "--launch", "--vllm-python", vllm_python(), "--dtype", "float32",
                   "--kv-cache-memory-bytes", "1M", "--context", "512", "--vllm-args", "--enforce-eager",
                   "--concurrency", "8", "--output-tokens", "400", "--requests", "16", "--json",
                   env={"TMPDIR": str(short_tmp)})
    assert result.returncode == 1, result.stdout + result.stderr
    assert not list(short_tmp.glob("tpfit-verify-*"))  # its run folder (log, vLLM's caches) is removed afterwards
    report = json.loads(result.stdout)
    reasons = " ".join(report["verdict"]["reasons"])
    assert "KV cache full: it holds 2.00 requests of 512 tokens" in reasons
    # vLLM's own signals of the squeeze vary run to run on the CPU build (preemptions, queue time, requests cut
    # short): each is reported, every request is accounted for, and any failure is a reason of its own
    load = report["load"]
    assert load["queue_time_mean_s"] >= 0 and load["preemptions"] >= 0
    assert load["requests_ok"] + load["requests_failed"] == 16
    if load["requests_failed"]:
        assert "request(s) failed" in reasons
    assert report["comparison"][2]["predicted"] == report["comparison"][2]["actual"] == 1024


def test_server_killed_mid_load(tiny_model, tmp_path):
    proc = start_server(tiny_model, tmp_path / "victim", BASE_FLAGS + ["--kv-cache-memory-bytes", "16M"])
    try:
        verify = subprocess.Popen([sys.executable, "-m", "tpfit", "verify", "--url", proc.url, "--concurrency", "4",
                                   "--output-tokens", "400", "--requests", "400", "--timeout", "120", "--json"],
                                  cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(6)
        for pid in session_pids(proc.proc.pid):  # the whole server dies at once, as in an OOM kill
            os.kill(pid, signal.SIGKILL)
        start = time.monotonic()
        out, err = verify.communicate(timeout=90)
        assert time.monotonic() - start < 90
    finally:
        proc.stop()
    assert verify.returncode == 1, out + err
    assert "Traceback" not in err
    report = json.loads(out)
    assert not report["verdict"]["passed"]
    assert any("stopped answering" in r or "failed" in r for r in report["verdict"]["reasons"])
    assert not proc.alive
    assert not session_pids(proc.proc.pid)  # nothing of the server's session is left


def test_tensor_parallel_2_real_start(tiny_model, tmp_path):
    # two CPU workers (gloo); each holds 1 of the 2 KV heads, so 64 MiB per worker holds twice the tokens
    proc = start_server(tiny_model, tmp_path / "tp2", BASE_FLAGS + ["--kv-cache-memory-bytes", "64M",
                                                                    "--tensor-parallel-size", "2"],
                        env={"VLLM_CPU_OMP_THREADS_BIND": "0|1"})
    try:
        facts = parse_startup_log(proc.log_text())
        result = tpfit("verify", "--url", proc.url, "--tp", "2", "--dtype", "float32", "--kv-cache-memory-bytes",
                       "64M", "--concurrency", "2", "--output-tokens", "8", "--requests", "2", "--json")
    finally:
        proc.stop()
    report = json.loads(result.stdout)
    rows = {r["quantity"]: r for r in report["comparison"]}
    assert facts.kv_cache_tokens == 131_072
    assert rows["KV cache tokens"]["predicted"] == rows["KV cache tokens"]["actual"] == 131_072
    assert result.returncode == 0, result.stdout + result.stderr


def test_launch_that_vllm_refuses_keeps_the_log_and_says_where(tiny_model, short_tmp):
    # vLLM's own argument parser refuses the flag and exits: tpfit says so with the log's tail and path
    result = tpfit("verify", str(tiny_model), "--launch", "--vllm-python", vllm_python(), "--vllm-args",
                   "--no-such-flag", "--json", env={"TMPDIR": str(short_tmp)})
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "vLLM exited during start-up" in result.stderr and "--no-such-flag" in result.stderr
    (run_dir,) = short_tmp.glob("tpfit-verify-*")
    assert f"log: {run_dir / 'server.log'}" in result.stderr and (run_dir / "server.log").is_file()
