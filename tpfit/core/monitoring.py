"""What to watch on a running vLLM and what to do when it crosses a line: the exporter's metric names per
vLLM version (`vllm/v1/metrics/loggers.py`), the plan's figures a server is held to, the thresholds, and
the fix for each alert. `tpfit watch` and the Prometheus rules / Grafana dashboard of `tpfit deploy` share
them, so the terminal and the pager say the same thing."""

from __future__ import annotations

import json
import shlex

from msgspec import Struct
from msgspec.structs import replace

from tpfit.core.engine import parse_version
from tpfit.errors import UsageError
from tpfit.kinds import Kind
from tpfit.vllm_facts import CURRENT_VLLM_VERSION


class AlertKind(Kind):
    """One condition worth waking someone for; each has a rule, a watch line and a fix."""

    SERVER_DOWN = "server_down"
    """/metrics does not answer (Prometheus: `up == 0`)."""
    KV_CAPACITY = "kv_capacity"
    """The server's KV cache is smaller than the plan predicted: it did not get the memory planned."""
    KV_SATURATED = "kv_saturated"
    """KV cache usage above the threshold for a while: the next long request will wait or preempt."""
    PREEMPTIONS = "preemptions"
    """vLLM evicted running requests to free KV blocks and will recompute them (vLLM issue #18115)."""
    QUEUE = "queue"
    """Requests waiting: demand is above what the server admits (--max-num-seqs or the KV cache)."""
    TTFT = "ttft"
    """Time to first token p99 above its target."""
    ITL = "itl"
    """Inter-token latency p99 above its target."""


SEVERITY = {
    AlertKind.SERVER_DOWN: "critical", AlertKind.KV_CAPACITY: "warning", AlertKind.KV_SATURATED: "warning",
    AlertKind.PREEMPTIONS: "critical", AlertKind.QUEUE: "warning", AlertKind.TTFT: "warning",
    AlertKind.ITL: "warning",
}
"""Preemptions are critical: each one recomputes a whole request, and throughput collapses with them."""


# ---- metric names -------------------------------------------------------------------------------------

KV_USAGE_RENAMED_IN = (0, 10, 0)
"""`vllm:gpu_cache_usage_perc` -> `vllm:kv_cache_usage_perc` (PR #18354, deprecated in 0.9; vLLM hides a
deprecated metric one minor release later, so from 0.10 only the new name is exported by default)."""
ITL_RENAMED_IN = (0, 11, 0)
"""`vllm:time_per_output_token_seconds` -> `vllm:inter_token_latency_seconds` (PR #24110, deprecated in 0.11,
hidden in 0.12, removed by PR #32661)."""


class MetricNames(Struct, frozen=True, kw_only=True):
    """The exported names (counters with the `_total` prometheus_client adds) one vLLM release uses.

    Every name here appears in a real /metrics scrape of vLLM 0.32 (tests/realserver/test_watch_real.py)."""

    kv_cache_usage: str = "vllm:kv_cache_usage_perc"
    """Gauge, 0..1 of the KV blocks in use."""
    inter_token_latency: str = "vllm:inter_token_latency_seconds"
    """Histogram of the time between two tokens of a request."""
    requests_running: str = "vllm:num_requests_running"
    requests_waiting: str = "vllm:num_requests_waiting"
    preemptions: str = "vllm:num_preemptions_total"
    generation_tokens: str = "vllm:generation_tokens_total"
    prompt_tokens: str = "vllm:prompt_tokens_total"
    request_success: str = "vllm:request_success_total"
    time_to_first_token: str = "vllm:time_to_first_token_seconds"
    e2e_latency: str = "vllm:e2e_request_latency_seconds"
    queue_time: str = "vllm:request_queue_time_seconds"
    cache_config: str = "vllm:cache_config_info"
    """Info gauge (value 1); the capacity is in its labels (`num_gpu_blocks`, `block_size`,
    `kv_cache_size_tokens` in recent releases), so PromQL can compare it but not multiply it."""

    @classmethod
    def for_version(cls, vllm_version: str) -> MetricNames:
        """The names a release exports by default: the old KV and ITL names before their renames."""
        v = parse_version(vllm_version)
        return cls(
            kv_cache_usage="vllm:kv_cache_usage_perc" if v >= KV_USAGE_RENAMED_IN else "vllm:gpu_cache_usage_perc",
            inter_token_latency=("vllm:inter_token_latency_seconds" if v >= ITL_RENAMED_IN
                                 else "vllm:time_per_output_token_seconds"),
        )


# ---- the plan's figures -------------------------------------------------------------------------------


class PlanTargets(Struct, frozen=True, kw_only=True):
    """The figures of a plan a running server is held to (per engine: each DP rank has its own KV cache)."""

    model_id: str
    gpus: str
    """The `--gpus` spec that re-plans on the same hardware, e.g. `2xh100-sxm`."""
    context_tokens: int
    """Tokens per request the plan was made for (its --max-model-len)."""
    concurrency: int
    """Requests at once the plan was asked to hold (--concurrency)."""
    kv_cache_tokens: int
    """Predicted KV cache tokens of one engine."""
    num_gpu_blocks: int
    block_size: int
    max_concurrency: float
    """Requests of `context_tokens` one engine's KV cache holds."""
    data_parallel_size: int = 1
    """Engines (DP ranks) per server in the plan; each has the KV cache above."""
    vllm_version: str = CURRENT_VLLM_VERSION
    ttft_p99_s: float | None = None
    """The plan's `--ttft` target, held against TTFT p99."""
    itl_p99_s: float | None = None
    """The plan's `--tpot` target, held against inter-token latency p99."""
    predicted_ttft_s: float | None = None
    """The plan's predicted TTFT at its concurrency (its `speed` block), shown beside TTFT p50."""
    predicted_tpot_s: float | None = None
    predicted_output_tokens_per_s: float | None = None
    """Predicted output tokens/s of the whole deployment at the planned concurrency."""

    def plan_command(self, concurrency: int) -> str:
        """The `tpfit plan` that sizes the deployment for `concurrency` requests (quoted for a shell)."""
        return shlex.join(["tpfit", "plan", self.model_id, "--gpus", self.gpus, "--context", str(self.context_tokens),
                           "--concurrency", str(concurrency)])

    @classmethod
    def from_plan_dict(cls, doc: dict, *, ttft_p99_s: float | None = None,
                       itl_p99_s: float | None = None) -> PlanTargets:
        """From `tpfit plan --json` (its recommended layout, its --ttft/--tpot targets and predicted speed).
        KeyError/TypeError when it is not one."""
        best = doc["candidates"][doc["recommended"]]
        mem, lay, cluster, work = best["memory"], best["layout"], doc["cluster"], doc["workload"]
        speed = best.get("speed") or {}
        nodes = f"{cluster['nodes']}x" if cluster["nodes"] > 1 else ""
        return cls(
            model_id=doc["model"]["id"], gpus=f"{nodes}{cluster['gpus_per_node']}x{cluster['gpu']}",
            context_tokens=int(mem["max_model_len"]), concurrency=int(work["concurrency"]),
            kv_cache_tokens=int(mem["kv_cache_tokens"]), num_gpu_blocks=int(mem["num_gpu_blocks"]),
            block_size=int(mem["block_size"]), max_concurrency=float(mem["max_concurrency"]),
            data_parallel_size=int(lay.get("dp", 1)), vllm_version=doc["engine"]["vllm_version"],
            ttft_p99_s=ttft_p99_s if ttft_p99_s is not None else work.get("ttft_s"),
            itl_p99_s=itl_p99_s if itl_p99_s is not None else work.get("tpot_s"),
            predicted_ttft_s=speed.get("ttft_s"), predicted_tpot_s=speed.get("tpot_s"),
            predicted_output_tokens_per_s=speed.get("total_output_tok_s"),
        )


# ---- thresholds ---------------------------------------------------------------------------------------


MIN_WINDOW_S = 1.0
"""The shortest `window`: a shorter range holds no two scrapes, so its rates and percentiles are never there."""


class Thresholds(Struct, frozen=True, kw_only=True):
    """Where each alert starts and how long the condition must hold. Defaults follow the published rules
    (llm-d: KV > 0.90 for 10 m; Gateway API Inference Extension: KV 0.8, queue 5) made stricter where the
    plan makes them exact: with --max-num-seqs from the plan, any waiting request is demand above it."""

    kv_cache_usage: float = 0.90
    """KV usage (0..1) that counts as saturated."""
    kv_cache_usage_for_s: float = 300.0
    waiting: float = 0.0
    """Alert when more requests than this wait (summed over the server's engines)."""
    waiting_for_s: float = 60.0
    preemptions_per_min: float = 0.0
    """Alert when preemptions per minute exceed this (0: any preemption)."""
    preemptions_for_s: float = 60.0
    ttft_p99_s: float | None = None
    """TTFT p99 target; None: no TTFT alert unless the plan has a target."""
    itl_p99_s: float | None = None
    latency_for_s: float = 300.0
    kv_capacity_shortfall: float = 0.05
    """Alert when the server's KV tokens are this fraction or more below the plan's (tpfit's KV-token error
    on real start-ups is at most 2.9 %)."""
    down_for_s: float = 60.0
    window_s: float = 300.0
    """Rates and percentiles are taken over this window (Prometheus: the `[5m]` range)."""

    def __post_init__(self) -> None:
        if not 0 < self.kv_cache_usage <= 1:
            raise UsageError("a fraction of the KV cache, above 0 and at most 1, e.g. 0.9",
                             flag="--threshold kv_cache_usage", value=self.kv_cache_usage)
        if not 0 <= self.kv_capacity_shortfall < 1:
            raise UsageError("a fraction, 0 or more and below 1, e.g. 0.05", flag="--threshold kv_capacity_shortfall",
                             value=self.kv_capacity_shortfall)
        for name in ("kv_cache_usage_for_s", "waiting_for_s", "preemptions_for_s", "latency_for_s", "down_for_s"):
            if getattr(self, name) < 0:
                raise UsageError("a duration of 0 or more seconds", flag=f"--threshold {name.removesuffix('_s')}",
                                 value=getattr(self, name))
        if not self.window_s >= MIN_WINDOW_S:
            raise UsageError(f"a window of at least {MIN_WINDOW_S:g} s (rates and percentiles need two scrapes in it; "
                             "the default is 5m)", flag="--threshold window", value=self.window_s)

    @classmethod
    def parse(cls, settings: list[str] | tuple[str, ...]) -> Thresholds:
        """`--threshold NAME=VALUE` settings over the defaults. Durations take 90s, 5m, 1h or seconds;
        latencies take 500ms, 2s or seconds; fractions take 0.9 or 90%.

        Valid: "kv_cache_usage=0.85", "kv_cache_usage=85%", "waiting_for=2m", "ttft_p99=2s", "itl_p99=80ms".
        Not valid: "kv_cache_usage" (no value), "foo=1" (unknown name), "waiting_for=soon"."""
        values: dict[str, float] = {}
        for item in settings:
            name, sep, text = item.partition("=")
            key = name.strip().replace("-", "_")
            field_name = _THRESHOLD_ALIASES.get(key, key)
            if not sep or field_name not in _THRESHOLD_KINDS:
                raise UsageError(f"use NAME=VALUE with NAME one of {', '.join(sorted(_THRESHOLD_ALIASES))}",
                                 flag="--threshold", value=item)
            try:
                values[field_name] = _THRESHOLD_KINDS[field_name](text.strip())
            except ValueError as err:
                raise UsageError(str(err), flag="--threshold", value=item) from None
        return cls(**values)

    def for_plan(self, targets: PlanTargets | None) -> Thresholds:
        """The plan's latency targets where none were given here."""
        if targets is None:
            return self
        return replace(self, ttft_p99_s=self.ttft_p99_s if self.ttft_p99_s is not None else targets.ttft_p99_s,
                       itl_p99_s=self.itl_p99_s if self.itl_p99_s is not None else targets.itl_p99_s)


def promql_string(text: str) -> str:
    """A PromQL string literal: `promql_string('vllm') == '"vllm"'`; quotes, backslashes and control characters
    escaped (JSON's escapes are a subset of the Go escapes PromQL reads), so a job named `a"b` selects that job."""
    return json.dumps(text, ensure_ascii=False)


def template_text(text: str) -> str:
    """Text for an alert's labels or annotations, which Prometheus expands as Go templates: each `{{` written as
    `{{ "{{" }}`, so a value given on the command line (or a model path) is shown as given, not parsed."""
    return text.replace("{{", '{{ "{{" }}')


def parse_duration(text: str) -> float:
    """Seconds from `90s`, `5m`, `1h`, `500ms` or a bare number of seconds.

    Valid: "300", "90s", "5m", "1h", "250ms", "1.5s". Not valid: "", "soon", "-5m"."""
    t = text.strip().lower()
    for suffix, scale in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0), ("", 1.0)):
        if t.endswith(suffix):
            number = t[: len(t) - len(suffix)] if suffix else t
            try:
                value = float(number) * scale
            except ValueError:
                continue
            if value < 0 or value != value or value == float("inf"):
                break
            return value
    raise ValueError(f"not a duration: {text!r}; use seconds or 90s, 5m, 1h, 250ms")


def parse_fraction(text: str) -> float:
    """`0.9` or `90%` -> 0.9."""
    t = text.strip()
    try:
        value = float(t[:-1]) / 100 if t.endswith("%") else float(t)
    except ValueError:
        raise ValueError(f"not a fraction: {text!r}; use 0.9 or 90%") from None
    if value != value:
        raise ValueError(f"not a fraction: {text!r}; use 0.9 or 90%")
    return value


def _count(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"not a number: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"not a count of 0 or more: {text!r}")
    return value


_THRESHOLD_KINDS = {
    "kv_cache_usage": parse_fraction, "kv_cache_usage_for_s": parse_duration, "waiting": _count,
    "waiting_for_s": parse_duration, "preemptions_per_min": _count, "preemptions_for_s": parse_duration,
    "ttft_p99_s": parse_duration, "itl_p99_s": parse_duration, "latency_for_s": parse_duration,
    "kv_capacity_shortfall": parse_fraction, "down_for_s": parse_duration, "window_s": parse_duration,
}
_THRESHOLD_ALIASES = {name.removesuffix("_s"): name for name in _THRESHOLD_KINDS}
"""Settings are named without the unit suffix: `--threshold waiting_for=2m` sets `waiting_for_s`."""


# ---- the fix for each alert ---------------------------------------------------------------------------


def fix_for(kind: AlertKind, targets: PlanTargets | None, *, demand: int | None = None) -> str:
    """What tpfit would change, with the plan's numbers. `demand`: requests seen at once (running + waiting),
    when known; the re-plan asks for that many, or for twice the plan's concurrency."""
    if kind is AlertKind.SERVER_DOWN:
        return ("read the server's log: `tpfit explain LOG` names vLLM's start-up and out-of-memory errors with "
                "the fix; `tpfit doctor` checks the host")
    if targets is None:
        return {
            AlertKind.KV_CAPACITY: "compare the server with its plan: `tpfit verify --url URL`",
            AlertKind.KV_SATURATED: "add a replica, or lower --max-num-seqs so requests queue instead of "
                                    "being preempted; `tpfit plan MODEL --concurrency N` sizes it",
            AlertKind.PREEMPTIONS: "the KV cache ran out: lower --max-num-seqs or add a replica; "
                                   "`tpfit plan MODEL --concurrency N` sizes it",
            AlertKind.QUEUE: "demand is above what the server admits: add a replica; "
                             "`tpfit plan MODEL --concurrency N` sizes it",
            AlertKind.TTFT: "requests queue or prefill long prompts: add a replica",
            AlertKind.ITL: "long prefills interrupt decoding: lower --max-num-batched-tokens, or add a replica",
        }[kind]
    t = targets
    want = max(demand or 0, 2 * t.concurrency)
    replan = f"`{t.plan_command(want)}`"
    held = f"the plan held {t.concurrency} request{'s' if t.concurrency != 1 else ''} of {t.context_tokens:,} tokens"
    seqs = max(1, int(t.max_concurrency))
    if kind is AlertKind.KV_CAPACITY:
        return (f"the plan predicted {t.kv_cache_tokens:,} KV tokens per engine; the server did not get the "
                "memory planned (another process on the GPU, a different --gpu-memory-utilization or vLLM "
                f"version): run `tpfit doctor` on the host and `tpfit verify --url URL`, or re-plan: {replan}")
    if kind is AlertKind.KV_SATURATED:
        return (f"{held}; lower --max-num-seqs to {seqs} (the requests of {t.context_tokens:,} tokens its KV "
                f"cache holds) so requests queue instead of being preempted, or add a replica: {replan}")
    if kind is AlertKind.PREEMPTIONS:
        return (f"the KV cache ran out and vLLM recomputes evicted requests; lower --max-num-seqs to {seqs} "
                f"({t.max_concurrency:.2f} requests of {t.context_tokens:,} tokens fit) or add a replica: {replan}")
    if kind is AlertKind.QUEUE:
        return f"{held}; add a replica or plan for the traffic: {replan}"
    if kind is AlertKind.TTFT:
        return f"requests wait in the queue or prefill long prompts; {held}; add a replica: {replan}"
    return (f"long prefills interrupt decoding: lower --max-num-batched-tokens, or spread the load over "
            f"replicas: {replan}")


def format_duration(seconds: float) -> str:
    """Prometheus duration: `format_duration(300) == '5m'`, `format_duration(90) == '90s'`, `0 -> '0s'`,
    `format_duration(1.5) == '1500ms'` (whole seconds only where they are exact: `[0s]` is no range)."""
    ms = int(round(seconds * 1000))
    if ms % 1000:
        return f"{ms}ms"
    s = ms // 1000
    if s and s % 3600 == 0:
        return f"{s // 3600}h"
    if s and s % 60 == 0:
        return f"{s // 60}m"
    return f"{s}s"
