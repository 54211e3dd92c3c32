"""tpfit verify: predicted vs actual memory figures, a bounded load, and a verdict with reasons.

`compare` and `judge` are pure; `tpfit.live.verify_run` reaches the server and calls them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from tpfit.core.memory import MemoryPlan
from tpfit.core.perf import Speed
from tpfit.live.load import LoadResult
from tpfit.live.server_facts import ServerFacts
from tpfit.units import GIB


@dataclass(frozen=True, slots=True, kw_only=True)
class Comparison:
    quantity: str
    predicted: float | None
    actual: float | None

    @property
    def error_pct(self) -> float | None:
        if self.predicted is None or not self.actual:
            return None
        return round((self.predicted - self.actual) / self.actual * 100, 2)

    def to_dict(self) -> dict:
        return {**asdict(self), "error_pct": self.error_pct}


def compare(memory: MemoryPlan, facts: ServerFacts) -> tuple[Comparison, ...]:
    """The figures vLLM printed (log) or exports (/metrics cache_config_info) beside tpfit's."""
    first = memory.gpus[0]
    s = facts.startup
    # /metrics' cache_config_info carries exact bytes; the log rounds to 0.01 GiB
    kv_actual = (facts.kv_cache_memory_bytes / GIB if facts.kv_cache_memory_bytes
                 else (s.kv_cache_gib if s and s.kv_cache_gib is not None else None))
    rows = [
        Comparison(quantity="weights (GiB)", predicted=round(first.weight_bytes / GIB, 4),
                   actual=s.weights_gib if s else None),
        Comparison(quantity="KV cache (GiB)", predicted=round(first.kv_cache_bytes / GIB, 4), actual=kv_actual),
        Comparison(quantity="KV cache tokens", predicted=memory.kv_cache_tokens, actual=facts.kv_cache_tokens),
        Comparison(quantity="max concurrency", predicted=round(memory.max_concurrency, 2), actual=facts.max_concurrency),
    ]
    return tuple(rows)


def compare_speed(speed: Speed, load: LoadResult) -> tuple[Comparison, ...]:
    """The speed model's figures beside the load's: median TTFT and inter-token time against the predicted means,
    and output tokens/s over the whole load (its ramp included, so a lower bound of the steady figure)."""
    return (
        Comparison(quantity="TTFT (s)", predicted=round(speed.ttft_s, 4), actual=load.ttft_s.get("p50")),
        Comparison(quantity="TPOT (s)", predicted=round(speed.tpot_s, 5), actual=load.itl_s.get("p50")),
        Comparison(quantity="output tokens/s", predicted=round(speed.total_output_tok_s, 1),
                   actual=round(load.output_tokens_per_s, 1)),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    passed: bool
    reasons: tuple[str, ...]

    def to_dict(self) -> dict:
        return asdict(self)


def judge(load: LoadResult, *, concurrency: int, context: int, kv_capacity_requests: float | None = None,
          ttft_p99_s: float | None = None, itl_p99_s: float | None = None) -> Verdict:
    """Pass, or fail with every reason: errors, preemptions, a full KV cache, missed SLOs, a dead server.

    `kv_capacity_requests` is the server's own "maximum concurrency" at `context` tokens."""
    fails = []
    if load.aborted:
        fails.append(load.aborted)
    if load.requests_failed or load.server_errors:
        fails.append(f"{load.requests_failed} request(s) failed, server counted {load.server_errors:.0f} error(s)"
                     + (f": {load.errors[0]}" if load.errors else ""))
    if load.preemptions > 0:
        fails.append(f"{load.preemptions:.0f} preemption(s): the KV cache could not hold {concurrency} requests at "
                     "this context (vLLM evicted running requests and recomputed them)")
    if load.kv_usage_peak >= 0.999:
        fails.append(f"KV cache reached {load.kv_usage_peak:.0%} usage")
    if kv_capacity_requests is not None and kv_capacity_requests < concurrency:
        fails.append(f"KV cache full: it holds {kv_capacity_requests:.2f} requests of {context} tokens (vLLM's own "
                     f"figure), {concurrency} were sent at once; requests waited {load.queue_time_mean_s * 1000:.0f} ms "
                     "on average in vLLM's queue")
    if ttft_p99_s is not None and load.ttft_s["p99"] > ttft_p99_s:
        fails.append(f"TTFT p99 {load.ttft_s['p99'] * 1000:.0f} ms > --ttft-p99 {ttft_p99_s * 1000:.0f} ms")
    if itl_p99_s is not None and load.itl_s["p99"] > itl_p99_s:
        fails.append(f"inter-token latency p99 {load.itl_s['p99'] * 1000:.1f} ms > --itl-p99 {itl_p99_s * 1000:.1f} ms")
    if fails:
        return Verdict(passed=False, reasons=tuple(fails))
    notes = [f"{load.requests_ok} requests, no errors, no preemptions, KV cache peak {load.kv_usage_peak:.0%}"]
    if load.concurrency_reached < concurrency:
        notes.append(f"only {load.concurrency_reached} requests were in flight at once (planned {concurrency})")
    return Verdict(passed=True, reasons=tuple(notes))
