"""ServerFacts: what a running vLLM says about itself (/version, /v1/models, /metrics) and, when its
start-up log is at hand, what it printed about memory. Also tpfit's one /metrics parser (per engine, with
the latency histograms and the renamed series), read by verify's load and by watch."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from tpfit.errors import MetricsFormatError, ServerError
from tpfit.live.startup_log import StartupFigures, parse_startup_log
from tpfit.vllm_facts import CURRENT_VLLM_VERSION


@dataclass(frozen=True, slots=True, kw_only=True)
class Histogram:
    """A Prometheus histogram as scraped: cumulative counts per upper bound (`le`, +Inf last)."""

    buckets: tuple[tuple[float, float], ...] = ()
    total: float = 0.0
    """The `_sum` series (seconds for the latency histograms)."""
    count: float = 0.0

    def since(self, earlier: Histogram | None) -> Histogram:
        """The observations between two scrapes; after a restart (fewer observations) all of these."""
        if earlier is None or earlier.count > self.count or len(earlier.buckets) != len(self.buckets):
            return self
        before = dict(earlier.buckets)
        return Histogram(buckets=tuple((le, n - before.get(le, 0.0)) for le, n in self.buckets),
                         total=self.total - earlier.total, count=self.count - earlier.count)

    def plus(self, other: Histogram) -> Histogram:
        """Two engines' histograms added bucket by bucket (vLLM gives every engine the same bounds)."""
        if not other.buckets:
            return self
        if not self.buckets:
            return other
        mine = dict(self.buckets)
        return Histogram(buckets=tuple((le, n + mine.get(le, 0.0)) for le, n in other.buckets),
                         total=self.total + other.total, count=self.count + other.count)

    def quantile(self, q: float) -> float | None:
        """Prometheus' `histogram_quantile`: linear inside the bucket that holds rank q x count; None when
        empty; the highest finite bound when the rank falls in +Inf."""
        if not self.buckets or self.count <= 0:
            return None
        rank = q * self.buckets[-1][1]
        lower, below = 0.0, 0.0
        for le, n in self.buckets:
            if n >= rank:
                if math.isinf(le):
                    return lower
                return lower + (le - lower) * ((rank - below) / (n - below) if n > below else 1.0)
            lower, below = le, n
        return lower


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsSample:
    """The /metrics values tpfit reads, for one engine or summed over engines."""

    engine: str = ""
    """The `engine` label (the data-parallel rank); "" when summed."""
    model_name: str = ""
    kv_cache_usage: float = 0.0
    """vllm:kv_cache_usage_perc (before 0.10: vllm:gpu_cache_usage_perc), 0..1."""
    requests_running: float = 0.0
    requests_waiting: float = 0.0
    preemptions_total: float = 0.0
    request_errors_total: float = 0.0
    """vllm:request_success_total with finished_reason=error or abort."""
    generation_tokens_total: float = 0.0
    prompt_tokens_total: float = 0.0
    queue_time_sum_s: float = 0.0
    """vllm:request_queue_time_seconds histogram sum: time finished requests spent waiting for KV blocks."""
    queue_time_count: float = 0.0
    ttft: Histogram = field(default_factory=Histogram)
    """vllm:time_to_first_token_seconds."""
    itl: Histogram = field(default_factory=Histogram)
    """vllm:inter_token_latency_seconds (before 0.11: vllm:time_per_output_token_seconds)."""
    cache_config: dict[str, str] = field(default_factory=dict)
    """Labels of vllm:cache_config_info (block_size, num_gpu_blocks, kv_cache_memory_bytes, ...)."""
    broken: dict[str, float] = field(default_factory=dict)
    """Field -> the value its series gave where that is no reading: NaN, infinite or negative (a broken exporter;
    every series tpfit reads counts something). The field keeps 0; `tpfit watch` shows no value for it."""

    @property
    def kv_cache_tokens(self) -> int | None:
        """The engine's KV capacity: `kv_cache_size_tokens` where the release exports it (right for hybrid
        models), else num_gpu_blocks x block_size."""
        tokens = _num(self.cache_config.get("kv_cache_size_tokens"))
        if tokens is not None:
            return tokens
        blocks, size = _num(self.cache_config.get("num_gpu_blocks")), _num(self.cache_config.get("block_size"))
        return blocks * size if blocks is not None and size is not None else None


METRIC_ALIASES = {"vllm:gpu_cache_usage_perc": "vllm:kv_cache_usage_perc",
                  "vllm:time_per_output_token_seconds": "vllm:inter_token_latency_seconds"}
"""Old name -> new name (core/monitoring.py says when each changed); the new one wins when both are shown."""

WATCHED = ("vllm:cache_config_info", "vllm:request_success_total", "vllm:kv_cache_usage_perc",
           "vllm:gpu_cache_usage_perc", "vllm:num_requests_running", "vllm:num_requests_waiting",
           "vllm:num_preemptions", "vllm:generation_tokens", "vllm:prompt_tokens_total",
           "vllm:request_queue_time_seconds", "vllm:time_to_first_token_seconds",
           "vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds")
_SUMMED = {"vllm:kv_cache_usage_perc": "kv_cache_usage", "vllm:num_requests_running": "requests_running",
           "vllm:num_requests_waiting": "requests_waiting", "vllm:num_preemptions_total": "preemptions_total",
           "vllm:generation_tokens_total": "generation_tokens_total", "vllm:prompt_tokens_total": "prompt_tokens_total",
           "vllm:request_queue_time_seconds_sum": "queue_time_sum_s",
           "vllm:request_queue_time_seconds_count": "queue_time_count"}
def broken_reading(sample: MetricsSample, attr: str) -> str:
    """Why `attr` of the sample has no reading ("vllm:kv_cache_usage_perc reads NaN"), or "" when it has one."""
    if attr not in sample.broken:
        return ""
    series = next(k for k, v in _SUMMED.items() if v == attr)
    return f"{series} reads {sample.broken[attr]:g}"


_HISTOGRAMS = {"vllm:time_to_first_token_seconds": "ttft", "vllm:inter_token_latency_seconds": "itl"}


def _watched_lines(text: str) -> str:
    """Only the series tpfit reads: /metrics is ~50 KB of histograms, scraped several times a second."""
    keep = []
    for line in text.splitlines():
        name = line.split(" ", 3)[2] if line.startswith(("# TYPE ", "# HELP ")) and line.count(" ") >= 2 else line
        if name.startswith(WATCHED) and not name.startswith("vllm:num_requests_waiting_by_reason"):
            keep.append(line)
    return "\n".join(keep) + "\n"


def _canonical(name: str) -> tuple[str, bool]:
    """(new name, whether `name` was an old alias), also for a histogram's _bucket/_sum/_count series."""
    for old, new in METRIC_ALIASES.items():
        if name.startswith(old):
            return new + name[len(old):], True
    return name, False


def _le(text: str | None) -> float | None:
    try:
        le = float(text) if text is not None else None
    except ValueError:
        return None
    return None if le is None or math.isnan(le) else le


def parse_engine_metrics(text: str) -> dict[str, MetricsSample]:
    """Prometheus text exposition -> one MetricsSample per `engine` label (prometheus_client's parser).

    Raises MetricsFormatError when the body is not Prometheus text; an empty body gives {}."""
    per: dict[str, dict] = {}
    seen_new: set[tuple[str, str]] = set()
    try:
        samples = [s for family in text_string_to_metric_families(_watched_lines(text)) for s in family.samples]
    except (ValueError, TypeError, IndexError, KeyError) as err:
        raise MetricsFormatError(f"not Prometheus text ({type(err).__name__}: {str(err)[:80]})") from err
    for s in samples:  # the new names first, so an old alias shown beside them is ignored
        name, old = _canonical(s.name)
        if not old:
            seen_new.add((s.labels.get("engine", ""), name.split("_bucket")[0]))
    for s in samples:
        engine = s.labels.get("engine", "")
        name, old = _canonical(s.name)
        if old and (engine, name.split("_bucket")[0]) in seen_new:
            continue
        e = per.setdefault(engine, {"values": {}, "hist": {}, "cache": {}, "model": "", "broken": {}})
        if not math.isfinite(s.value) or s.value < 0:  # NaN, +-Inf or below 0 from a broken exporter: not a reading
            if name in _SUMMED:
                e["broken"][_SUMMED[name]] = s.value
            continue
        e["model"] = e["model"] or s.labels.get("model_name", "")
        if name == "vllm:cache_config_info":
            e["cache"] = {k: v for k, v in s.labels.items() if k != "engine"}
        elif name == "vllm:request_success_total":
            if s.labels.get("finished_reason") in ("error", "abort"):
                e["values"]["request_errors_total"] = e["values"].get("request_errors_total", 0.0) + s.value
        elif name in _SUMMED:
            e["values"][_SUMMED[name]] = e["values"].get(_SUMMED[name], 0.0) + s.value
        else:
            for base, key in _HISTOGRAMS.items():
                if not name.startswith(base):
                    continue
                h = e["hist"].setdefault(key, {"buckets": {}, "total": 0.0, "count": 0.0})
                suffix = name[len(base):]
                le = _le(s.labels.get("le"))
                if suffix == "_bucket" and le is not None:
                    h["buckets"][le] = h["buckets"].get(le, 0.0) + s.value
                elif suffix == "_sum":
                    h["total"] += s.value
                elif suffix == "_count":
                    h["count"] += s.value
    out = {}
    for engine, e in per.items():
        hists = {key: Histogram(buckets=tuple(sorted(h["buckets"].items())), total=h["total"], count=h["count"])
                 for key, h in e["hist"].items()}
        out[engine] = MetricsSample(engine=engine, model_name=e["model"], cache_config=e["cache"], **e["values"],
                                    **hists, broken=e["broken"])
    return dict(sorted(out.items(), key=lambda kv: (not kv[0].isdigit(), int(kv[0]) if kv[0].isdigit() else 0, kv[0])))


def combine(samples: Iterable[MetricsSample]) -> MetricsSample:
    """Engines summed; KV usage is the mean weighted by each engine's capacity (the plain mean when a
    capacity is unknown), so two half-full caches read 0.5, not 1.0."""
    samples = list(samples)
    if not samples:
        return MetricsSample()
    caps = [s.kv_cache_tokens for s in samples]
    if all(caps) and sum(caps):
        usage = sum(s.kv_cache_usage * c for s, c in zip(samples, caps)) / sum(caps)
    else:
        usage = sum(s.kv_cache_usage for s in samples) / len(samples)
    ttft, itl = Histogram(), Histogram()
    for s in samples:
        ttft, itl = ttft.plus(s.ttft), itl.plus(s.itl)
    return MetricsSample(
        model_name=samples[0].model_name, kv_cache_usage=usage,
        **{key: sum(getattr(s, key) for s in samples) for key in _SUMMED.values() if key != "kv_cache_usage"},
        request_errors_total=sum(s.request_errors_total for s in samples), ttft=ttft, itl=itl,
        cache_config=samples[0].cache_config, broken={k: v for s in samples for k, v in s.broken.items()},
    )


def parse_metrics(text: str) -> MetricsSample:
    """Prometheus text exposition -> the series tpfit reads, summed over engines."""
    return combine(parse_engine_metrics(text).values())


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


def _not_vllm(client, path: str, what: str) -> ServerError:
    return ServerError(f"{client.base_url} is not a vLLM server: GET {path} {what}", url=client.base_url + path)


async def read_server_facts(client, *, log_text: str | None = None) -> ServerFacts:
    """Read a live server through `client` (a VllmClient)."""
    version = (await client.get_json("/version")).get("version")
    if not isinstance(version, str) or not version:
        raise _not_vllm(client, "/version", f'has no "version" (vLLM answers {{"version": "{CURRENT_VLLM_VERSION}"}})')
    models = (await client.get_json("/v1/models")).get("data")
    model = models[0] if isinstance(models, list) and models else None
    if not isinstance(model, dict) or not isinstance(model.get("id"), str):
        raise _not_vllm(client, "/v1/models", 'lists no model (vLLM answers {"data": [{"id": ...}]})')
    max_model_len = model.get("max_model_len")
    if not isinstance(max_model_len, int) or isinstance(max_model_len, bool) or max_model_len < 1:
        raise _not_vllm(client, "/v1/models", f"gives {model['id']!r} no max_model_len (vLLM lists it with each "
                                              "model)")
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
        url=client.base_url, version=version, model_id=model["id"], model_root=str(model.get("root") or ""),
        max_model_len=max_model_len, block_size=_num(cache.get("block_size")),
        num_blocks=_num(cache.get("num_gpu_blocks")), kv_cache_memory_bytes=_num(cache.get("kv_cache_memory_bytes")),
        kv_cache_tokens=tokens, max_concurrency=concurrency, cache_dtype=cache.get("cache_dtype", "auto"),
        gpu_memory_utilization=_num(cache.get("gpu_memory_utilization"), float), startup=startup,
    )
