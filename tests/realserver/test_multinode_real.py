"""The multi-node recipes `tpfit deploy --format ray` writes, run as two "nodes" on loopback with the real
vLLM CPU build (no container wrapper: RUNTIME=host for Ray, the script itself for nnodes).

- nnodes.sh (vLLM's own --nnodes launcher): head and a --headless worker, PP=2 across them; the server
  answers, `tpfit verify --url` passes, and killing the worker mid-load gives a failed verdict, not a hang.
- ray-cluster.sh: a Ray head and a Ray worker join; the head waits for both before `vllm serve`; vLLM's
  CPU build then refuses the Ray executor with "current platform cpu does not support ray." (the recipe
  says it needs GPUs); --stop tears the cluster down.
PP on the CPU build needs compiled mode: with --enforce-eager and an explicit KV size vLLM 0.32 skips its
warm-up, and the second stage dies at the first request (`assert self.intermediate_tensors is not None`).
"""

from __future__ import annotations

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
from tests.realserver.conftest import SERVER_ENV, vllm_python
from tpfit.live.launch import VllmProcess, free_port, session_pids

SHIM_BIN = Path(__file__).resolve().parent / "bin"
NODE_FLAGS = ["--dtype", "float32", "--kv-cache-memory-bytes", "64M"]
START_TIMEOUT_S = 420  # two compiled fp32 nodes on 2 shared cores: 100-200 s measured


def tpfit(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tpfit", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout)


@pytest.fixture
def run_dir():
    """Short (vLLM's IPC socket paths stop at 107 characters), removed after."""
    path = Path(tempfile.mkdtemp(prefix="tpm", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def recipes(tiny_model, run_dir) -> Path:
    """What a user would run: `tpfit deploy` for two nodes of one GPU, PP=2 across them."""
    out = run_dir / "deploy"
    result = tpfit("deploy", str(tiny_model), "--gpus", "2x1xH100", "--pp", "2", "--context", "512",
                   "--served-model-name", "tiny", "--format", "ray", "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


def node_env(run_dir: Path, name: str) -> dict[str, str]:
    python = vllm_python()
    tmp = run_dir / name
    tmp.mkdir(exist_ok=True)
    return {**SERVER_ENV, "PATH": f"{SHIM_BIN}:{Path(python).parent}:{os.environ['PATH']}",
            "TPFIT_VLLM_PYTHON": python, "TMPDIR": str(tmp), "VLLM_CACHE_ROOT": str(run_dir / "vllm-cache"),
            "HEAD_IP": "127.0.0.1", "JOIN_TIMEOUT_S": "300"}


def test_nnodes_recipe_forms_a_two_node_server_and_reports_a_lost_worker(recipes, run_dir):
    script = str(recipes / "nnodes.sh")
    master, port = str(free_port()), free_port()
    head = VllmProcess(argv=["bash", script, *NODE_FLAGS, "--host", "127.0.0.1", "--port", str(port)],
                       log_path=run_dir / "head.log",
                       env={**node_env(run_dir, "h"), "NODE_RANK": "0", "MASTER_PORT": master})
    worker = VllmProcess(argv=["bash", script, *NODE_FLAGS, "--port", "0"], log_path=run_dir / "worker.log",
                         env={**node_env(run_dir, "w"), "NODE_RANK": "1", "MASTER_PORT": master})
    try:
        head.start()
        worker.start()
        head.wait_ready(timeout_s=START_TIMEOUT_S, model="tiny")
        assert worker.alive, worker.log_text()[-3000:]
        log = head.log_text()
        assert "interface lo" in log and "node address 127.0.0.1" in log  # detected from HEAD_IP, not guessed
        assert "Worker_PP0" in log and "Worker_PP1" in worker.log_text()  # one stage on each node

        ok = tpfit("verify", "--url", head.url, "--concurrency", "2", "--output-tokens", "8", "--requests", "4",
                   "--json", timeout=300)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert json.loads(ok.stdout)["load"]["requests_ok"] == 4

        # a long load, then the worker node disappears: the head's failure must be reported, not hang
        load = subprocess.Popen([sys.executable, "-m", "tpfit", "verify", "--url", head.url, "--concurrency", "2",
                                 "--output-tokens", "256", "--requests", "40", "--timeout", "60", "--json"],
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(8)
        for pid in session_pids(worker.proc.pid):
            os.kill(pid, signal.SIGKILL)
        started = time.monotonic()
        out, err = load.communicate(timeout=240)
        assert load.returncode == 1, out + err
        verdict = json.loads(out)["verdict"]
        # measured: the head's requests stall (vLLM 0.32 CPU does not notice a lost remote stage), and verify
        # ends at its --timeout: ['the load did not finish in 60 s', '39 request(s) failed, ...']
        assert not verdict["passed"] and any("request(s) failed" in r for r in verdict["reasons"]), verdict
        assert time.monotonic() - started < 240
    finally:
        worker.stop()
        head.stop()
    assert not head.alive and not worker.alive


def test_ray_recipe_waits_for_its_nodes_then_vllm_cpu_refuses_ray(recipes, run_dir):
    script = str(recipes / "ray-cluster.sh")
    ray_port = str(free_port())
    env = {**node_env(run_dir, "r"), "RUNTIME": "host", "RAY_PORT": ray_port}
    head_log = (run_dir / "ray-head.log").open("w")
    head = subprocess.Popen(["bash", script, "--head", *NODE_FLAGS], stdout=head_log, stderr=subprocess.STDOUT,
                            env={**os.environ, **env}, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        text = ""
        while "1 of 2 nodes" not in text:  # the head started Ray and is waiting for the worker
            assert head.poll() is None and time.monotonic() < deadline, text
            time.sleep(2)
            text = (run_dir / "ray-head.log").read_text()
        assert "starting vllm serve" not in text
        worker = subprocess.run(["bash", script, "--worker"], capture_output=True, text=True,
                                env={**os.environ, **env}, timeout=180)
        assert worker.returncode == 0 and "joined the Ray cluster" in worker.stdout, worker.stdout + worker.stderr
        assert head.wait(timeout=300) != 0  # vLLM's CPU build refuses Ray: the script ends, it does not hang
        text = (run_dir / "ray-head.log").read_text()
        assert "all 2 nodes joined; starting vllm serve" in text
        assert "ValueError: current platform cpu does not support ray." in text
        evidence = ROOT / "tests" / "data" / "vllm-logs" / "cpu-ray-refused.log"
        assert re.search(r"current platform cpu does not support ray\.", evidence.read_text())
    finally:
        if head.poll() is None:
            os.killpg(head.pid, signal.SIGKILL)
        head_log.close()
        stop = subprocess.run(["bash", script, "--stop"], capture_output=True, text=True,
                              env={**os.environ, **env}, timeout=120)
        assert stop.returncode == 0, stop.stderr
