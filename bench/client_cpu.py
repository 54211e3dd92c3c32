"""Client CPU per request: tpfit's load client vs `vllm bench serve`'s, same server, same requests.

    TPFIT_VLLM_PYTHON=/path/to/vllm-venv/bin/python python bench/client_cpu.py [--requests 300] [--rounds 5]
                                                                               [--url URL --model NAME]

Starts one real vLLM CPU server (the tiny test model) unless --url is given, then runs the two clients in
alternating rounds against it:
  - tpfit: tpfit.live.load.run_load in this process (streamed completions, /metrics watched every
    0.2 s), CPU = time.process_time() around the load;
  - vLLM: bench/vllm_bench_client.py in the vLLM install, which drives `vllm bench serve`'s own request
    function (vllm.benchmarks.lib.endpoint_request_func, aiohttp) and times itself the same way.
  - floor: a bare selector loop in this process that sends the same requests on keep-alive sockets and
    per read only takes a timestamp and checks for the end of the response -- less work than any client
    that times each token can do, so no Python client of this shape can cost less.
All send the same prompt (the load's token-exact prompt) with ignore_eos, the same output length and
concurrency, and none counts its imports or start-up. The server coalesces tokens differently from run
to run on a busy 2-core machine, which changes every client's CPU per request; hence rounds, each pair
side by side, and the median ratio.
Goal (issue #4): tpfit's client costs <= 1/5 of the CPU per request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tpfit.live.client import VllmClient  # noqa: E402
from tpfit.live.launch import VllmProcess, free_port, server_argv  # noqa: E402
from tpfit.live.load import LoadSpec, make_prompt_ids, run_load  # noqa: E402
from tpfit.live.stream import CompletionStreams  # noqa: E402

PROMPT, OUTPUT, CONCURRENCY = 64, 32, 8


def floor_client(url: str, n: int, request: bytes) -> dict:
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    sel = selectors.DefaultSelector()
    buf = bytearray(65536)
    socks, stamps, sent, done = [], [], 0, 0
    for _ in range(CONCURRENCY):
        sock = socket.create_connection((host, int(port)))
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ)
        socks.append(sock)
    cpu, wall = time.process_time(), time.perf_counter()
    for sock in socks:
        sock.sendall(request)
        sent += 1
    while done < n:
        for key, _ in sel.select():
            k = key.fileobj.recv_into(buf)
            stamps.append(time.perf_counter())
            if buf[k - 5:k] == b"0\r\n\r\n":  # the last chunk of a chunked response
                done += 1
                if sent < n:
                    key.fileobj.sendall(request)
                    sent += 1
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    for sock in socks:
        sock.close()
    return {"cpu_s": cpu, "wall_s": wall, "ok": done, "reads": len(stamps)}


def vllm_client(python: str, url: str, model: str, n: int, prompt: list[int]) -> dict:
    argv = [python, str(ROOT / "bench" / "vllm_bench_client.py"), url, model, str(n), json.dumps(prompt), str(OUTPUT),
            str(CONCURRENCY)]
    result = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if result.returncode != 0:
        raise SystemExit(f"vllm's client failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


async def tpfit_client(url: str, model: str, n: int) -> dict:
    async with VllmClient(url, max_connections=CONCURRENCY * 2) as client:
        spec = LoadSpec(model=model, prompt_tokens=PROMPT, output_tokens=OUTPUT, concurrency=CONCURRENCY,
                        requests=n, ramp=False)
        await run_load(client, replace(spec, requests=CONCURRENCY))  # warm the connections
        cpu, wall = time.process_time(), time.perf_counter()
        result = await run_load(client, spec)
        return {"cpu_s": time.process_time() - cpu, "wall_s": time.perf_counter() - wall, "ok": result.requests_ok}


async def load_prompt(url: str, model: str) -> list[int]:
    async with VllmClient(url) as client:
        return await make_prompt_ids(client, model, PROMPT)


def compare(url: str, model: str, python: str, n: int, rounds: int) -> int:
    prompt = asyncio.run(load_prompt(url, model))
    print(f"requests: {n} x ({PROMPT} prompt + {OUTPUT} output tokens), concurrency {CONCURRENCY}, {rounds} rounds")
    request = CompletionStreams(url).encode({"model": model, "prompt": prompt, "max_tokens": OUTPUT,
                                             "ignore_eos": True, "temperature": 0.0})
    print("ms CPU per request (requests/s)")
    print(f"{'round':>5s} {'tpfit':>15s} {'vllm bench':>15s} {'floor':>15s} {'tpfit/vllm':>10s} {'floor/vllm':>10s}")
    ratios, floors = [], []
    for i in range(rounds):
        runs = {}
        order = ("tpfit", "vllm", "floor") if i % 2 == 0 else ("floor", "vllm", "tpfit")
        for who in order:
            runs[who] = (asyncio.run(tpfit_client(url, model, n)) if who == "tpfit"
                         else vllm_client(python, url, model, n, prompt) if who == "vllm"
                         else floor_client(url, n, request))
        if any(r["ok"] != n for r in runs.values()):
            counts = ", ".join(f"{k} {r['ok']}" for k, r in runs.items())
            raise SystemExit(f"round {i + 1}: not every request completed ({counts} of {n})")
        per = {k: r["cpu_s"] / n * 1000 for k, r in runs.items()}
        ratios.append(per["tpfit"] / per["vllm"])
        floors.append(per["floor"] / per["vllm"])
        cells = " ".join(f"{per[k]:7.3f} ({n / runs[k]['wall_s']:5.1f})" for k in ("tpfit", "vllm", "floor"))
        print(f"{i + 1:5d} {cells} {ratios[-1]:10.2f} {floors[-1]:10.2f}")
    print(f"median tpfit / vllm bench: {statistics.median(ratios):.2f} (min {min(ratios):.2f}, max {max(ratios):.2f})"
          f"   goal <= 0.20")
    print(f"median floor / vllm bench: {statistics.median(floors):.2f}: no Python client that stamps every read "
          f"costs less")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--url", help="a running vLLM server (default: start one with the tiny test model)")
    ap.add_argument("--model", default="tiny")
    args = ap.parse_args()
    python = os.environ.get("TPFIT_VLLM_PYTHON")
    if not python:
        raise SystemExit("set TPFIT_VLLM_PYTHON to the python of a vllm(-cpu) install")
    if args.url:
        return compare(args.url, args.model, python, args.requests, args.rounds)
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
        return compare(proc.url, "tiny", python, args.requests, args.rounds)
    finally:
        proc.stop()


if __name__ == "__main__":
    sys.exit(main())
