"""Client CPU per request: tpfit's load client vs `vllm bench serve`, same server, same request shape.

    TPFIT_VLLM_PYTHON=/path/to/vllm-venv/bin/python python bench/client_cpu.py [--requests 200]

Starts one real vLLM CPU server (the tiny test model), then, side by side in one run:
  - tpfit's client (tpfit.live.load.run_load) in this process, CPU = time.process_time() around the load;
  - vLLM's own benchmark client (vllm.benchmarks.serve, in the vLLM venv: the `vllm` console script is
    broken in the CPU wheel), CPU = the child's user+sys time (resource.RUSAGE_CHILDREN), minus its import cost
    measured by the same command with 1 request.
Both send random-token prompts of the same length, ignore_eos, the same output length and concurrency.
Goal (issue #4): tpfit's client costs <= 1/5 of the CPU per request. Prints what it reaches.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tpfit.live.client import VllmClient  # noqa: E402
from tpfit.live.launch import VllmProcess, free_port, server_argv  # noqa: E402
from tpfit.live.load import LoadSpec, run_load  # noqa: E402

PROMPT, OUTPUT, CONCURRENCY = 64, 32, 8


def vllm_bench(python: str, url: str, model_dir: str, n: int, out_dir: Path) -> tuple[float, float, dict]:
    code = ("import argparse,sys; from vllm.benchmarks.serve import add_cli_args, main; "
            "p=argparse.ArgumentParser(); add_cli_args(p); main(p.parse_args(sys.argv[1:]))")
    argv = [python, "-c", code, "--backend", "vllm", "--base-url", url, "--model", "tiny", "--tokenizer", model_dir,
            "--dataset-name", "random", "--random-input-len", str(PROMPT), "--random-output-len", str(OUTPUT),
            "--num-prompts", str(n), "--max-concurrency", str(CONCURRENCY), "--ignore-eos", "--save-result",
            "--result-dir", str(out_dir), "--result-filename", f"r{n}.json", "--disable-tqdm"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"vllm bench serve failed:\n{result.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    data = json.loads((out_dir / f"r{n}.json").read_text())
    return cpu, wall, data


async def tpfit_load(url: str, n: int) -> tuple[float, float, int]:
    async with VllmClient(url, max_connections=CONCURRENCY * 2) as client:
        cpu0, t0 = time.process_time(), time.perf_counter()
        result = await run_load(client, LoadSpec(model="tiny", prompt_tokens=PROMPT, output_tokens=OUTPUT,
                                                 concurrency=CONCURRENCY, requests=n, ramp=False))
        return time.process_time() - cpu0, time.perf_counter() - t0, result.requests_ok


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=200)
    args = ap.parse_args()
    python = os.environ.get("TPFIT_VLLM_PYTHON")
    if not python:
        raise SystemExit("set TPFIT_VLLM_PYTHON to the python of a vllm(-cpu) install")
    work = Path(tempfile.mkdtemp(prefix="tpfit-bench-"))
    subprocess.run([python, str(ROOT / "tests" / "realserver" / "make_tiny_model.py"), str(work / "tiny")], check=True,
                   capture_output=True)
    proc = VllmProcess(argv=server_argv(python, str(work / "tiny"), ["--max-model-len", "512", "--enforce-eager",
                                                                     "--dtype", "float32", "--kv-cache-memory-bytes",
                                                                     "64M"], port=free_port(), served_name="tiny"),
                       log_path=work / "server.log", env={"TMPDIR": str(work), "VLLM_HOST_IP": "127.0.0.1"})
    proc.start()
    try:
        proc.wait_ready(timeout_s=300, model="tiny")
        asyncio.run(tpfit_load(proc.url, 8))  # warm both paths once
        cpu_t, wall_t, ok = asyncio.run(tpfit_load(proc.url, args.requests))
        base_cpu, _, _ = vllm_bench(python, proc.url, str(work / "tiny"), 1, work)
        cpu_v, wall_v, data = vllm_bench(python, proc.url, str(work / "tiny"), args.requests, work)
    finally:
        proc.stop()
    per_t = cpu_t / max(ok, 1)
    per_v = (cpu_v - base_cpu) / max(data.get("completed", args.requests), 1)
    print(f"requests: {args.requests} x ({PROMPT} prompt + {OUTPUT} output tokens), concurrency {CONCURRENCY}")
    print(f"tpfit client:     {per_t * 1000:7.2f} ms CPU/request, {ok / wall_t:6.1f} req/s")
    print(f"vllm bench serve: {per_v * 1000:7.2f} ms CPU/request (import cost {base_cpu:.1f} s removed), "
          f"{data.get('request_throughput', 0):6.1f} req/s")
    print(f"ratio tpfit / vllm bench: {per_t / per_v:.2f}   goal <= 0.20")
    return 0


if __name__ == "__main__":
    sys.exit(main())
