"""tpfit watch: a running vLLM's KV-cache headroom, queue and latency beside the plan's figures.

`make_view` is pure: scrapes (frozen values) in, a view model out, folded over time (each view carries
since when each alert condition holds). `watch` is the thin loop: scrape every server, fold, hand the
view to the renderer; its clock and sleep are arguments, so tests drive it without waiting.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field, replace

import msgspec

from tpfit.core.monitoring import SEVERITY, AlertKind, PlanTargets, Thresholds, fix_for
from tpfit.errors import MetricsFormatError, ServerError, ServerTimeout
from tpfit.kinds import Kind
from tpfit.live.server_facts import Histogram, MetricsSample, broken_reading, combine, parse_engine_metrics


class ScrapeState(Kind):
    """What one scrape of /metrics found."""

    OK = "ok"
    DOWN = "down"
    """Connection refused, reset, or an HTTP error status."""
    STALLED = "stalled"
    """Connected, but no answer within the scrape timeout."""
    MALFORMED = "malformed"
    """An answer that is not Prometheus text."""
    NOT_VLLM = "not_vllm"
    """Prometheus text without any vllm: series (an empty body, another exporter, an engine not up yet)."""


class Status(Kind):
    """A line's standing against its threshold."""

    OK = "ok"
    WARN = "warn"
    """Crossed now; an alert once it has held for its duration (or a figure off the plan)."""
    ALERT = "alert"
    UNKNOWN = "unknown"
    """No reading (server down, or the series has had no observation in the window)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Scrape:
    """One scrape of one server's /metrics."""

    url: str
    at_s: float
    """Clock reading when the answer came (seconds, monotonic)."""
    state: ScrapeState
    engines: tuple[MetricsSample, ...] = ()
    error: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerInfo:
    """What a server says about itself once (/version, /v1/models)."""

    version: str = ""
    model: str = ""
    max_model_len: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Line:
    """One figure beside the plan's."""

    key: str
    label: str
    value: float | None
    unit: str
    plan: float | None = None
    status: Status = Status.OK
    note: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineRow:
    """One engine (a DP rank of one server) at the last scrape."""

    url: str
    engine: str
    kv_cache_usage: float | None
    """None when the exporter gave no reading (NaN, negative: MetricsSample.broken), as for the figures below."""
    kv_cache_tokens: int | None
    free_kv_tokens: int | None
    running: float | None
    waiting: float | None
    preemptions_per_min: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerRow:
    url: str
    state: ScrapeState
    message: str
    """One status line: "up", "restarted 12 s ago (its counters reset)", "down for 30 s: cannot connect ..."."""
    info: ServerInfo = field(default_factory=ServerInfo)


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert:
    kind: AlertKind
    scope: str
    """The server URL, or "all" for a figure summed over servers."""
    message: str
    fix: str
    since_s: float
    """Clock reading since which the condition holds."""
    firing: bool
    """Held for its duration (Prometheus' `for:`); pending before that."""

    @property
    def severity(self) -> str:
        return SEVERITY[self.kind]


@dataclass(frozen=True, slots=True, kw_only=True)
class WatchView:
    at_s: float
    window_s: float
    servers: tuple[ServerRow, ...]
    engines: tuple[EngineRow, ...]
    lines: tuple[Line, ...]
    """Summed over every engine of every server."""
    alerts: tuple[Alert, ...]
    targets: PlanTargets | None = None
    rounds: int = 1
    """Scrape rounds so far (one round scrapes every server)."""

    @property
    def alerting(self) -> bool:
        """An alert condition holds for its duration: `watch --once` exits 1."""
        return any(a.firing for a in self.alerts)

    def line(self, key: str) -> Line:
        return next(x for x in self.lines if x.key == key)

    def to_dict(self) -> dict:
        return {
            "at_s": round(self.at_s, 3), "window_s": self.window_s, "rounds": self.rounds,
            "alerting": self.alerting,
            "servers": [asdict(s) for s in self.servers],
            "engines": [asdict(e) for e in self.engines],
            "lines": {x.key: asdict(x) for x in self.lines},
            "alerts": [{**asdict(a), "severity": a.severity} for a in self.alerts],
            "plan": msgspec.structs.asdict(self.targets) if self.targets else None,
        }


# ---- pure arithmetic over scrapes ---------------------------------------------------------------------


def _increase(values: Sequence[float]) -> float:
    """A counter's increase over consecutive readings, as Prometheus' `increase`: a drop is a restart,
    after which the new reading counts from zero."""
    total = 0.0
    for a, b in zip(values, values[1:]):
        total += b - a if b >= a else b
    return total


def _hist_increase(hists: Sequence[Histogram]) -> Histogram:
    total = Histogram()
    for a, b in zip(hists, hists[1:]):
        total = total.plus(b.since(a))
    return total


@dataclass(frozen=True, slots=True, kw_only=True)
class _Series:
    """One engine's readings inside the window, oldest first."""

    url: str
    engine: str
    at_s: tuple[float, ...]
    samples: tuple[MetricsSample, ...]

    @property
    def span_s(self) -> float:
        return self.at_s[-1] - self.at_s[0] if len(self.at_s) > 1 else 0.0

    def increase(self, attr: str) -> float | None:
        """The counter's increase over the window; None when a reading in it was broken (NaN, negative)."""
        if any(attr in s.broken for s in self.samples):
            return None
        return _increase([getattr(s, attr) for s in self.samples])

    def restarted(self) -> bool:
        def went_down(a: MetricsSample, b: MetricsSample, attr: str) -> bool:
            return attr not in a.broken and attr not in b.broken and getattr(b, attr) < getattr(a, attr)

        return any(went_down(a, b, "generation_tokens_total") or b.ttft.count < a.ttft.count
                   or went_down(a, b, "prompt_tokens_total") for a, b in zip(self.samples, self.samples[1:]))


def _series(history: Sequence[Scrape], since_s: float) -> list[_Series]:
    by: dict[tuple[str, str], tuple[list, list]] = {}
    for scrape in history:
        if scrape.state is not ScrapeState.OK or scrape.at_s < since_s:
            continue
        for s in scrape.engines:
            at, samples = by.setdefault((scrape.url, s.engine), ([], []))
            at.append(scrape.at_s)
            samples.append(s)
    return [_Series(url=u, engine=e, at_s=tuple(at), samples=tuple(ss)) for (u, e), (at, ss) in by.items()]


def _fmt_s(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def _server_row(url: str, history: Sequence[Scrape], now_s: float, info: ServerInfo | None) -> ServerRow:
    mine = [s for s in history if s.url == url]
    info = info or ServerInfo()
    if not mine:
        return ServerRow(url=url, state=ScrapeState.DOWN, message="not scraped yet", info=info)
    last = mine[-1]
    if last.state is not ScrapeState.OK:
        ok_before = [s for s in mine if s.state is ScrapeState.OK]
        first_bad = last
        for s in reversed(mine):
            if s.state is ScrapeState.OK:
                break
            first_bad = s
        gone = now_s - first_bad.at_s
        what = {ScrapeState.DOWN: "down", ScrapeState.STALLED: "stalled", ScrapeState.MALFORMED: "malformed /metrics",
                ScrapeState.NOT_VLLM: "no vLLM metrics"}[last.state]
        seen = "" if ok_before else " (never answered with vLLM metrics)"
        return ServerRow(url=url, state=last.state, message=f"{what} for {_fmt_s(gone)}{seen}: {last.error}",
                         info=info)
    # back after an outage, or counters that went down between two answers: a restart
    for a, b in zip(reversed(mine[:-1]), reversed(mine)):
        if a.state is not ScrapeState.OK:
            return ServerRow(url=url, state=ScrapeState.OK, info=info,
                             message=f"up again {_fmt_s(now_s - b.at_s)} ago, after: {a.error}")
        if any(x.restarted() for x in _series([a, b], a.at_s)):
            return ServerRow(url=url, state=ScrapeState.OK, info=info,
                             message=f"restarted {_fmt_s(now_s - b.at_s)} ago (its counters reset)")
        if now_s - b.at_s > 600:
            break
    return ServerRow(url=url, state=ScrapeState.OK, message="up", info=info)


def _pct(x: float | None) -> str:
    return "?" if x is None else f"{x:.0%}"


def make_view(history: Sequence[Scrape], *, urls: Sequence[str], now_s: float, thresholds: Thresholds,
              targets: PlanTargets | None = None, previous: WatchView | None = None,
              info: dict[str, ServerInfo] | None = None) -> WatchView:
    """The view at `now_s` from the scrapes so far (pure). `previous` carries since when each alert
    condition holds; with Thresholds whose durations are 0 (`--once`) a condition fires at once."""
    t = thresholds.for_plan(targets)
    info = info or {}
    servers = tuple(_server_row(u, history, now_s, info.get(u)) for u in urls)
    latest: dict[str, Scrape] = {}
    for s in history:
        latest[s.url] = s
    current = [e for u in urls if u in latest and latest[u].state is ScrapeState.OK for e in latest[u].engines]
    series = _series(history, now_s - t.window_s)
    spans = {(x.url, x.engine): x for x in series}

    engines = []
    for u in urls:
        if u not in latest or latest[u].state is not ScrapeState.OK:
            continue
        for e in latest[u].engines:
            cap = e.kv_cache_tokens
            usage = _reading(e, "kv_cache_usage")
            x = spans.get((u, e.engine))
            grew = x.increase("preemptions_total") if x and x.span_s else None
            engines.append(EngineRow(url=u, engine=e.engine, kv_cache_usage=usage, kv_cache_tokens=cap,
                                     free_kv_tokens=None if cap is None or usage is None else int((1 - usage) * cap),
                                     running=_reading(e, "requests_running"), waiting=_reading(e, "requests_waiting"),
                                     preemptions_per_min=None if grew is None else round(grew / x.span_s * 60, 3)))

    total = combine(current)
    have = bool(current)
    caps = [e.kv_cache_tokens for e in current]
    capacity = sum(caps) if have and all(c is not None for c in caps) else None
    usage_now = _reading(total, "kv_cache_usage") if have else None
    free = None if capacity is None or usage_now is None else int((1 - usage_now) * capacity)
    span = max((x.span_s for x in series), default=0.0)
    rated = span > 0

    def rate(attr: str, per_s: float = 1.0) -> float | None:
        grew = [x.increase(attr) for x in series]
        return sum(grew) / span * per_s if rated and None not in grew else None

    ttft = _sum_hists(_hist_increase([s.ttft for s in x.samples]) for x in series)
    itl = _sum_hists(_hist_increase([s.itl for s in x.samples]) for x in series)
    kv_peak = max((s.kv_cache_usage for x in series for s in x.samples if "kv_cache_usage" not in s.broken),
                  default=None)
    demand_peak = _demand_peak(history, now_s - t.window_s)
    preempt_per_min = rate("preemptions_total", 60.0)
    gen_rate, prompt_rate = rate("generation_tokens_total"), rate("prompt_tokens_total")

    n_servers = max(1, len(urls))
    n_engines = max(len(current), 1)
    plan_cap = targets.kv_cache_tokens * n_engines if targets else None
    plan_conc = targets.concurrency * n_servers if targets else None
    plan_use = (min(1.0, plan_conc * targets.context_tokens / plan_cap) if targets and plan_cap else None)

    # ---- conditions: (kind, scope, holds now, message, hold duration)
    conditions: list[tuple[AlertKind, str, bool, str, float]] = []
    for row in servers:
        conditions.append((AlertKind.SERVER_DOWN, row.url, row.state is not ScrapeState.OK, row.message,
                           t.down_for_s))
    if have:
        read = [e for e in engines if e.kv_cache_usage is not None]
        if read:
            # per engine, as the rule's `max by (instance, engine)`: one full DP rank preempts while another idles
            fullest = max(read, key=lambda e: e.kv_cache_usage or 0.0)
            where = f" on {fullest.url} #{fullest.engine}" if len(engines) > 1 else ""
            conditions.append((AlertKind.KV_SATURATED, "all", (fullest.kv_cache_usage or 0.0) >= t.kv_cache_usage,
                               f"KV cache at {_pct(fullest.kv_cache_usage)}{where} (threshold "
                               f"{_pct(t.kv_cache_usage)})", t.kv_cache_usage_for_s))
        if "requests_waiting" not in total.broken:
            running = "?" if "requests_running" in total.broken else f"{total.requests_running:.0f}"
            conditions.append((AlertKind.QUEUE, "all", total.requests_waiting > t.waiting,
                               f"{total.requests_waiting:.0f} request(s) waiting with KV at {_pct(usage_now)} and "
                               f"{running} running", t.waiting_for_s))
        if targets:
            short = [e for e in current if e.kv_cache_tokens is not None
                     and e.kv_cache_tokens < targets.kv_cache_tokens * (1 - t.kv_capacity_shortfall)]
            worst = min(short, key=lambda e: e.kv_cache_tokens or 0) if short else None
            conditions.append((AlertKind.KV_CAPACITY, "all", bool(short),
                               f"an engine holds {worst.kv_cache_tokens:,} KV tokens, the plan "
                               f"{targets.kv_cache_tokens:,} ({(worst.kv_cache_tokens or 0) / targets.kv_cache_tokens - 1:+.1%})"
                               if worst else "", 0.0))
    if preempt_per_min is not None:
        conditions.append((AlertKind.PREEMPTIONS, "all", preempt_per_min > t.preemptions_per_min,
                           f"{preempt_per_min:.1f} preemption(s)/min over the last {_fmt_s(span)}",
                           t.preemptions_for_s))
    ttft_p99, itl_p99 = ttft.quantile(0.99), itl.quantile(0.99)
    if t.ttft_p99_s is not None and ttft_p99 is not None:
        conditions.append((AlertKind.TTFT, "all", ttft_p99 > t.ttft_p99_s,
                           f"TTFT p99 {ttft_p99 * 1000:.0f} ms > {t.ttft_p99_s * 1000:.0f} ms", t.latency_for_s))
    if t.itl_p99_s is not None and itl_p99 is not None:
        conditions.append((AlertKind.ITL, "all", itl_p99 > t.itl_p99_s,
                           f"inter-token latency p99 {itl_p99 * 1000:.1f} ms > {t.itl_p99_s * 1000:.1f} ms",
                           t.latency_for_s))

    before = {(a.kind, a.scope): a.since_s for a in previous.alerts} if previous else {}
    alerts = []
    for kind, scope, holds, message, hold_s in conditions:
        if not holds:
            continue
        since = before.get((kind, scope), now_s)
        held = now_s - since
        text = message + (f" for {_fmt_s(held)}" if held >= 1 and kind is not AlertKind.SERVER_DOWN else "")
        alerts.append(Alert(kind=kind, scope=scope, message=text, since_s=since, firing=held >= hold_s,
                            fix=fix_for(kind, targets, demand=demand_peak)))
    state = {(a.kind, a.scope): a for a in alerts}

    def status(kind: AlertKind, *, value: object) -> Status:
        """A line's status from its alert: pending is warn, firing is alert; unknown without a reading."""
        if value is None:
            return Status.UNKNOWN
        a = state.get((kind, "all"))
        if a is not None:
            return Status.ALERT if a.firing else Status.WARN
        return Status.OK

    running_now = _reading(total, "requests_running") if have else None
    waiting_now = _reading(total, "requests_waiting") if have else None

    def broken(*attrs: str) -> str:
        """What the exporter gave instead of a reading, for the line's note."""
        said = [broken_reading(total, a) for a in attrs] if have else []
        return "no reading: " + ", ".join(x for x in said if x) if any(said) else ""

    lines = (
        Line(key="kv_cache_usage", label="KV cache usage", unit="%", plan=plan_use,
             value=usage_now, status=status(AlertKind.KV_SATURATED, value=usage_now),
             note=broken("kv_cache_usage") or (f"plan: {plan_conc} x {targets.context_tokens:,} tokens"
                                               if targets else "")),
        Line(key="kv_cache_usage_peak", label="KV cache usage, peak", unit="%", plan=plan_use, value=kv_peak,
             status=Status.UNKNOWN if kv_peak is None else
             (Status.WARN if kv_peak >= t.kv_cache_usage else Status.OK)),
        Line(key="free_kv_tokens", label="Free KV tokens", unit="tokens", value=free,
             plan=(plan_cap - plan_conc * targets.context_tokens) if targets and plan_cap else None,
             status=Status.UNKNOWN if free is None else
             (Status.WARN if targets and free < targets.context_tokens else Status.OK),
             note="less than one request of the plan's context" if targets and free is not None
             and free < targets.context_tokens else broken("kv_cache_usage")),
        Line(key="kv_cache_tokens", label="KV cache capacity", unit="tokens", value=capacity, plan=plan_cap,
             status=status(AlertKind.KV_CAPACITY, value=capacity)),
        Line(key="requests_running", label="Requests running", unit="requests", plan=plan_conc,
             value=running_now,
             status=Status.UNKNOWN if running_now is None else
             (Status.WARN if plan_conc is not None and running_now > plan_conc else Status.OK),
             note="more than planned" if running_now is not None and plan_conc is not None
             and running_now > plan_conc else broken("requests_running")),
        Line(key="requests_waiting", label="Requests waiting", unit="requests", plan=0 if targets else None,
             value=waiting_now, status=status(AlertKind.QUEUE, value=waiting_now), note=broken("requests_waiting")),
        Line(key="preemptions_per_min", label="Preemptions", unit="/min", plan=0 if targets else None,
             value=preempt_per_min, status=status(AlertKind.PREEMPTIONS, value=preempt_per_min),
             note=_broken_in(series, "preemptions_total")),
        Line(key="ttft_p50_s", label="TTFT p50", unit="s", value=ttft.quantile(0.5),
             plan=targets.predicted_ttft_s if targets else None,
             status=Status.UNKNOWN if ttft.count <= 0 else Status.OK,
             note="plan: predicted" if targets and targets.predicted_ttft_s is not None else ""),
        Line(key="ttft_p99_s", label="TTFT p99", unit="s", value=ttft_p99, plan=t.ttft_p99_s,
             status=status(AlertKind.TTFT, value=ttft_p99), note="plan: target" if t.ttft_p99_s is not None else ""),
        Line(key="itl_p50_s", label="Inter-token latency p50", unit="s", value=itl.quantile(0.5),
             plan=targets.predicted_tpot_s if targets else None,
             status=Status.UNKNOWN if itl.count <= 0 else Status.OK,
             note="plan: predicted TPOT" if targets and targets.predicted_tpot_s is not None else ""),
        Line(key="itl_p99_s", label="Inter-token latency p99", unit="s", value=itl_p99, plan=t.itl_p99_s,
             status=status(AlertKind.ITL, value=itl_p99), note="plan: TPOT target" if t.itl_p99_s is not None else ""),
        Line(key="generation_tokens_per_s", label="Generated tokens", unit="tok/s",
             value=gen_rate,
             plan=(targets.predicted_output_tokens_per_s * n_servers
                   if targets and targets.predicted_output_tokens_per_s is not None else None),
             status=Status.UNKNOWN if gen_rate is None else Status.OK,
             note=_broken_in(series, "generation_tokens_total") or ("plan: predicted at its concurrency" if targets
                                                                    and targets.predicted_output_tokens_per_s
                                                                    is not None else "")),
        Line(key="prompt_tokens_per_s", label="Prompt tokens", unit="tok/s", value=prompt_rate,
             status=Status.UNKNOWN if prompt_rate is None else Status.OK,
             note=_broken_in(series, "prompt_tokens_total")),
    )
    return WatchView(at_s=now_s, window_s=t.window_s, servers=servers, engines=tuple(engines), lines=lines,
                     alerts=tuple(alerts), targets=targets, rounds=previous.rounds + 1 if previous else 1)


def _reading(sample: MetricsSample, attr: str) -> float | None:
    """The sample's figure, None where the exporter gave no reading (MetricsSample.broken)."""
    return None if attr in sample.broken else getattr(sample, attr)


def _broken_in(series: Sequence[_Series], attr: str) -> str:
    """A line's note where a reading of the counter in the window was broken: "no reading: ... reads nan"."""
    said = next((broken_reading(s, attr) for x in series for s in x.samples if attr in s.broken), "")
    return f"no reading: {said}" if said else ""


def _sum_hists(hists) -> Histogram:
    total = Histogram()
    for h in hists:
        total = total.plus(h)
    return total


def _demand_peak(history: Sequence[Scrape], since_s: float) -> int | None:
    """Most requests seen at once (running + waiting, all servers of one scrape round) in the window."""
    rounds: dict[float, float] = {}
    for s in history:
        if s.state is ScrapeState.OK and s.at_s >= since_s:
            rounds[s.at_s] = rounds.get(s.at_s, 0.0) + sum(e.requests_running + e.requests_waiting for e in s.engines)
    return int(max(rounds.values())) if rounds else None


def read_scrape(url: str, at_s: float, body: str | None = None, *, error: ServerError | None = None) -> Scrape:
    """A scrape from a body or the error reading it (pure: the clock reading is given)."""
    if error is not None:
        state = ScrapeState.STALLED if isinstance(error, ServerTimeout) else ScrapeState.DOWN
        return Scrape(url=url, at_s=at_s, state=state, error=str(error))
    try:
        engines = parse_engine_metrics(body or "")
    except MetricsFormatError as err:
        return Scrape(url=url, at_s=at_s, state=ScrapeState.MALFORMED, error=str(err))
    if not engines:
        return Scrape(url=url, at_s=at_s, state=ScrapeState.NOT_VLLM,
                      error="no vllm: series in /metrics (not a vLLM server, or its engine is not up yet)")
    return Scrape(url=url, at_s=at_s, state=ScrapeState.OK, engines=tuple(engines.values()))


def once_thresholds(t: Thresholds) -> Thresholds:
    """`--once`: nothing is waited out, so a condition that holds at the scrape counts."""
    return msgspec.structs.replace(t, kv_cache_usage_for_s=0.0, waiting_for_s=0.0, preemptions_for_s=0.0,
                                   latency_for_s=0.0, down_for_s=0.0)


# ---- the loop -----------------------------------------------------------------------------------------


async def _read_info(client) -> ServerInfo:
    version = (await client.get_json("/version")).get("version", "")
    model = ((await client.get_json("/v1/models")).get("data") or [{}])[0]
    mml = model.get("max_model_len")
    return ServerInfo(version=str(version), model=str(model.get("id", "")),
                      max_model_len=int(mml) if isinstance(mml, int) else None)


async def watch(urls: Sequence[str], *, thresholds: Thresholds, targets: PlanTargets | None = None,
                interval_s: float = 2.0, duration_s: float | None = None, once: bool = False,
                scrape_timeout_s: float = 5.0, on_view: Callable[[WatchView], None] = lambda view: None,
                clock: Callable[[], float] = time.monotonic,
                sleep: Callable[[float], Awaitable[None]] = asyncio.sleep, transport=None) -> WatchView:
    """Scrape every server each `interval_s` until `duration_s` passes (forever when None); `once`: two
    scrapes `interval_s` apart (rates need two), one view. Never raises for a server's failures."""
    from tpfit.live.client import VllmClient

    t = once_thresholds(thresholds) if once else thresholds
    keep_s = t.window_s + max(t.kv_cache_usage_for_s, t.waiting_for_s, t.down_for_s) + 10 * interval_s
    history: deque[Scrape] = deque()
    info: dict[str, ServerInfo] = {}
    view: WatchView | None = None
    clients = [VllmClient(u, transport=transport) for u in urls]
    start = clock()
    try:
        rounds = 0
        while True:
            async def one(client) -> Scrape:
                url = client.base_url
                if url not in info:
                    try:
                        info[url] = await asyncio.wait_for(_read_info(client), scrape_timeout_s)
                    except (ServerError, asyncio.TimeoutError, AttributeError, TypeError, ValueError):
                        pass  # asked again at the next scrape
                try:
                    body = await client.metrics_text(timeout_s=scrape_timeout_s)
                except ServerError as err:
                    return read_scrape(url, clock(), error=err)
                return read_scrape(url, clock(), body)

            scrapes = await asyncio.gather(*(one(c) for c in clients))
            now = clock()
            history.extend(replace(s, at_s=now) for s in scrapes)  # one round, one time: rates line up
            while history and history[0].at_s < now - keep_s:
                history.popleft()
            rounds += 1
            view = make_view(history, urls=[c.base_url for c in clients], now_s=now, thresholds=t,
                             targets=targets, previous=view, info=info)
            if not once or rounds >= 2:
                on_view(view)
            if (once and rounds >= 2) or (duration_s is not None and now - start >= duration_s):
                return view
            await sleep(interval_s)
    finally:
        for c in clients:
            await c.__aexit__(None, None, None)
