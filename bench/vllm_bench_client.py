"""Run inside a vLLM install: time `vllm bench serve`'s own request path (its aiohttp session set up as
benchmark() does, and vllm.benchmarks.lib.endpoint_request_func.async_request_openai_completions) for N
requests at a fixed concurrency, and print the CPU it used as JSON. bench/client_cpu.py calls it, so both
clients are timed the same way: process CPU around the load only, no imports or start-up.

    python bench/vllm_bench_client.py URL MODEL N PROMPT_IDS_JSON OUTPUT_TOKENS CONCURRENCY

Every request sends the same prompt (PROMPT_IDS_JSON, a list of token ids: the one tpfit's load sends),
so the server does the same work for both clients.
"""

import asyncio
import json
import sys
import time

import aiohttp
from vllm.benchmarks.lib.endpoint_request_func import (
    AIOHTTP_TIMEOUT,
    RequestFuncInput,
    async_request_openai_completions,
)


async def main(url: str, model: str, n: int, prompt: list[int], output: int, concurrency: int) -> dict:
    inputs = [RequestFuncInput(prompt=prompt, api_url=url + "/v1/completions", prompt_len=len(prompt),
                               output_len=output, model=model, ignore_eos=True) for _ in range(n)]
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency, ttl_dns_cache=300,
                                     use_dns_cache=True, keepalive_timeout=60, enable_cleanup_closed=True,
                                     force_close=False)
    sem = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(connector=connector, trust_env=True, timeout=AIOHTTP_TIMEOUT) as session:
        async def one(x):
            async with sem:
                return await async_request_openai_completions(x, session)

        await asyncio.gather(*(one(x) for x in inputs[:concurrency]))  # warm the connections
        cpu, wall = time.process_time(), time.perf_counter()
        outs = await asyncio.gather(*(one(x) for x in inputs))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    ok = sum(o.success and o.output_tokens == output for o in outs)
    return {"cpu_s": cpu, "wall_s": wall, "ok": ok, "errors": [o.error[-200:] for o in outs if not o.success][:3]}


if __name__ == "__main__":
    url, model, n, prompt, output, concurrency = sys.argv[1:7]
    print(json.dumps(asyncio.run(main(url, model, int(n), json.loads(prompt), int(output), int(concurrency)))))
