"""ServerFacts: what a running vLLM says about itself (/version, /v1/models, /metrics) and, when its
start-up log is at hand, what it printed about memory."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from tpfit.live.startup_log import StartupFigures, parse_startup_log


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsSample:
    """The /metrics values verify watches (summed over engines)."""

    kv_cache_usage: float = 0.0
    """vllm:kv_cache_usage_perc, 0..1."""
    requests_running: float = 0.0
    requests_waiting: float = 0.0
    preemptions_total: float = 0.0
    request_errors_total: float = 0.0
    """vllm:request_success_total with finished_reason=error or abort."""
    generation_tokens_total: float = 0.0
    queue_time_sum_s: float = 0.0
    """vllm:request_queue_time_seconds histogram sum: time finished requests spent waiting for KV blocks."""
    queue_time_count: float = 0.0
    cache_config: dict[str, str] = field(default_factory=dict)
    """Labels of vllm:cache_config_info (block_size, num_gpu_blocks, kv_cache_memory_bytes, ...)."""


WATCHED = ("vllm:cache_config_info", "vllm:request_success_total", "vllm:kv_cache_usage_perc",
           "vllm:gpu_cache_usage_perc", "vllm:num_requests_running", "vllm:num_requests_waiting",
           "vllm:num_preemptions", "vllm:generation_tokens", "vllm:request_queue_time_seconds")


def _watched_lines(text: str) -> str:
    """Only the series verify reads: /metrics is ~50 KB of histograms, scraped several times a second."""
    keep = []
    for line in text.splitlines():
        name = line.split(" ", 3)[2] if line.startswith("# TYPE ") or line.startswith("# HELP ") else line
        if name.startswith(WATCHED) and not name.startswith(("vllm:num_requests_waiting_by_reason",)):
            keep.append(line)
    return "\n".join(keep) + "\n"


def parse_metrics(text: str) -> MetricsSample:
    """Prometheus text exposition -> the few series verify needs (prometheus_client's parser)."""
    values: dict[str, float] = {}
    cache: dict[str, str] = {}
    for family in text_string_to_metric_families(_watched_lines(text)):
        for s in family.samples:
            name = s.name
            if name == "vllm:cache_config_info":
                cache = {k: v for k, v in s.labels.items() if k not in ("engine",)}
            elif name in ("vllm:request_queue_time_seconds_sum", "vllm:request_queue_time_seconds_count"):
                values[name] = values.get(name, 0.0) + s.value
            elif name == "vllm:request_success_total" and s.labels.get("finished_reason") in ("error", "abort"):
                values["errors"] = values.get("errors", 0.0) + s.value
            elif name in ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc", "vllm:num_requests_running",
                          "vllm:num_requests_waiting", "vllm:num_preemptions_total", "vllm:num_preemptions",
                          "vllm:generation_tokens_total", "vllm:generation_tokens"):
                key = name.removesuffix("_total").replace("gpu_cache", "kv_cache")
                values[key] = values.get(key, 0.0) + s.value
    return MetricsSample(
        kv_cache_usage=values.get("vllm:kv_cache_usage_perc", 0.0),
        requests_running=values.get("vllm:num_requests_running", 0.0),
        requests_waiting=values.get("vllm:num_requests_waiting", 0.0),
        preemptions_total=values.get("vllm:num_preemptions", 0.0),
        request_errors_total=values.get("errors", 0.0),
        generation_tokens_total=values.get("vllm:generation_tokens", 0.0),
        queue_time_sum_s=values.get("vllm:request_queue_time_seconds_sum", 0.0),
        queue_time_count=values.get("vllm:request_queue_time_seconds_count", 0.0),
        cache_config=cache,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerFacts:
    url: str
    version: str
    model_id: str
    """The served model name."""
    model_root: str
    """What the server loaded (a Hugging Face id or a local path)."""
    max_model_len: int
    block_size: int | None = None
    num_blocks: int | None = None
    kv_cache_memory_bytes: int | None = None
    kv_cache_tokens: int | None = None
    max_concurrency: float | None = None
    cache_dtype: str = "auto"
    gpu_memory_utilization: float | None = None
    startup: StartupFigures | None = None
    """Figures from the start-up log, when tpfit launched the server or was given its log."""

    @property
    def device(self) -> str:
        return "cpu" if self.startup and self.startup.device == "CPU" else "gpu"

    def to_dict(self) -> dict:
        return asdict(self)


def _num(text: str | None, kind=int):
    try:
        return kind(text) if text not in (None, "None", "") else None
    except ValueError:
        return None


async def read_server_facts(client, *, log_text: str | None = None) -> ServerFacts:
    """Read a live server through `client` (a VllmClient)."""
    version = (await client.get_json("/version")).get("version", "")
    models = (await client.get_json("/v1/models")).get("data") or [{}]
    model = models[0]
    sample = parse_metrics(await client.metrics_text())
    cache = sample.cache_config
    startup = parse_startup_log(log_text) if log_text else None
    tokens = _num(cache.get("kv_cache_size_tokens"))
    if tokens is None and startup is not None:
        tokens = startup.kv_cache_tokens
    concurrency = _num(cache.get("kv_cache_max_concurrency"), float)
    if concurrency is None and startup is not None:
        concurrency = startup.max_concurrency
    return ServerFacts(
        url=client.base_url, version=version, model_id=model.get("id", ""), model_root=model.get("root", ""),
        max_model_len=int(model.get("max_model_len") or 0), block_size=_num(cache.get("block_size")),
        num_blocks=_num(cache.get("num_gpu_blocks")), kv_cache_memory_bytes=_num(cache.get("kv_cache_memory_bytes")),
        kv_cache_tokens=tokens, max_concurrency=concurrency, cache_dtype=cache.get("cache_dtype", "auto"),
        gpu_memory_utilization=_num(cache.get("gpu_memory_utilization"), float), startup=startup,
    )
