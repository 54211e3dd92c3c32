"""A bounded load at the planned context and concurrency: streamed completions of token-exact prompts,
latency percentiles, and /metrics watched while it runs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from itertools import pairwise

from tpfit.errors import ServerError
from tpfit.live.server_facts import parse_metrics

SCRAPE_INTERVAL_S = 0.2


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadSpec:
    """What to send: `requests` completions of `prompt_tokens` + `output_tokens`, at most `concurrency` at once."""

    model: str
    prompt_tokens: int
    output_tokens: int
    concurrency: int
    requests: int
    ramp: bool = True
    """Climb to `concurrency` in steps (1, 2, 4, ... requests at once) before the full-concurrency phase."""
    timeout_s: float = 300.0


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadResult:
    requests_ok: int
    requests_failed: int
    errors: tuple[str, ...]
    duration_s: float
    output_tokens: int
    ttft_s: dict[str, float]
    itl_s: dict[str, float]
    e2e_s: dict[str, float]
    kv_usage_peak: float
    waiting_peak: float
    running_peak: float
    preemptions: float
    server_errors: float
    queue_time_mean_s: float = 0.0
    """Mean time the load's requests waited in vLLM's queue (from its histogram: reliable, unlike the gauges)."""
    aborted: str = ""
    """Why the load stopped early ("" when it ran to the end)."""
    concurrency_reached: int = 0

    @property
    def output_tokens_per_s(self) -> float:
        return self.output_tokens / self.duration_s if self.duration_s else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "output_tokens_per_s": round(self.output_tokens_per_s, 1)}


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "p90": 0.0, "p99": 0.0}
    s = sorted(values)

    def pick(q: float) -> float:
        return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]
    return {"p50": round(pick(0.5), 6), "p90": round(pick(0.9), 6), "p99": round(pick(0.99), 6)}


async def make_prompt_ids(client, model: str, length: int) -> list[int]:
    """A prompt of exactly `length` tokens: the server's own /tokenize of a seed text, repeated."""
    seed = await client.post_json("/tokenize", {"model": model, "prompt": "the model serves tokens from its cache "
                                                                             "and the plan says how many fit",
                                                "add_special_tokens": False})
    ids = seed.get("tokens") or []
    if not ids:
        raise ServerError(f"{client.base_url}/tokenize returned no tokens", url=client.base_url)
    return (ids * (length // len(ids) + 1))[:length]


@dataclass
class _Tally:
    ttft: list[float] = field(default_factory=list)
    itl: list[float] = field(default_factory=list)
    e2e: list[float] = field(default_factory=list)
    ok: int = 0
    failed: int = 0
    tokens: int = 0
    errors: list[str] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0


async def run_load(client, spec: LoadSpec, *, on_progress: Callable[[int, int, int], None] | None = None
                   ) -> LoadResult:
    """Send the load; never raises for request failures (they are counted), stops on a dead server."""
    now = client.streams.now  # the clock that stamps the tokens
    prompt = await make_prompt_ids(client, spec.model, spec.prompt_tokens)
    request = client.streams.encode({"model": spec.model, "prompt": prompt, "max_tokens": spec.output_tokens,
                                     "ignore_eos": True, "temperature": 0.0})
    tally = _Tally()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(spec.requests):
        queue.put_nowait(i)
    first = parse_metrics(await client.metrics_text())
    peaks = {"kv": first.kv_cache_usage, "waiting": first.requests_waiting, "running": first.requests_running}
    last = [first]
    stop = asyncio.Event()
    aborted = ""

    async def one() -> None:
        t0 = now()
        tally.in_flight += 1
        tally.max_in_flight = max(tally.max_in_flight, tally.in_flight)
        try:
            r = await client.streams.complete(request, timeout_s=spec.timeout_s)
            times = r.token_times
            if times:
                tally.ttft.append(times[0] - t0)
                tally.itl.extend([b - a for a, b in pairwise(times)])
            tally.e2e.append(now() - t0)
            n = r.completion_tokens if r.completion_tokens is not None else len(times)  # the server's count
            tally.tokens += n
            if n < spec.output_tokens:
                tally.failed += 1
                tally.errors.append(f"a request ended after {n} of {spec.output_tokens} tokens")
            else:
                tally.ok += 1
        except ServerError as err:
            tally.failed += 1
            tally.errors.append(str(err))
        finally:
            tally.in_flight -= 1

    def take() -> bool:
        try:
            queue.get_nowait()
            return True
        except asyncio.QueueEmpty:
            return False

    async def report() -> None:
        if on_progress:
            on_progress(tally.ok + tally.failed, spec.requests, tally.in_flight)

    async def phases() -> None:
        level = 1
        while spec.ramp and level < spec.concurrency and not stop.is_set():
            batch = [one() for _ in range(level) if take()]
            await asyncio.gather(*batch)
            await report()
            level *= 2
        await asyncio.gather(*(worker() for _ in range(spec.concurrency)))

    async def worker() -> None:
        while not stop.is_set():
            if not take():
                return
            await one()
            await report()

    async def scrape() -> None:
        nonlocal aborted
        misses = 0
        while not stop.is_set():
            await asyncio.sleep(SCRAPE_INTERVAL_S)
            try:
                sample = parse_metrics(await client.metrics_text())
                misses = 0
            except ServerError as err:
                misses += 1
                if misses >= 3:  # the server is gone: stop sending
                    aborted = f"the server stopped answering during the load ({err})"
                    stop.set()
                continue
            last[0] = sample
            peaks["kv"] = max(peaks["kv"], sample.kv_cache_usage)
            peaks["waiting"] = max(peaks["waiting"], sample.requests_waiting)
            peaks["running"] = max(peaks["running"], sample.requests_running)

    start = now()
    scraper = asyncio.create_task(scrape())
    runner = asyncio.create_task(phases())
    try:
        await asyncio.wait_for(asyncio.shield(runner), timeout=spec.timeout_s)
    except asyncio.TimeoutError:
        aborted = aborted or f"the load did not finish in {spec.timeout_s:.0f} s"
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
    duration = now() - start
    stop.set()
    scraper.cancel()  # don't wait out its sleep
    await asyncio.gather(scraper, return_exceptions=True)
    try:
        end = parse_metrics(await client.metrics_text())
        last[0] = end
    except ServerError as err:
        aborted = aborted or f"the server stopped answering during the load ({err})"
        end = last[0]
    return LoadResult(
        requests_ok=tally.ok, requests_failed=tally.failed + queue.qsize() * bool(aborted),
        errors=tuple(dict.fromkeys(tally.errors))[:5], duration_s=round(duration, 3), output_tokens=tally.tokens,
        ttft_s=percentiles(tally.ttft), itl_s=percentiles(tally.itl), e2e_s=percentiles(tally.e2e),
        kv_usage_peak=round(max(peaks["kv"], end.kv_cache_usage), 4), waiting_peak=peaks["waiting"],
        running_peak=peaks["running"], preemptions=end.preemptions_total - first.preemptions_total,
        server_errors=end.request_errors_total - first.request_errors_total, aborted=aborted,
        queue_time_mean_s=round((end.queue_time_sum_s - first.queue_time_sum_s)
                                / max(end.queue_time_count - first.queue_time_count, 1), 4),
        concurrency_reached=tally.max_in_flight,
    )
