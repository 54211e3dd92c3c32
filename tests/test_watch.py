"""tpfit watch without sockets: real vLLM 0.32 /metrics bodies (tests/data/vllm-metrics, captured by
bench/capture_metrics.py under back-pressure), folded by the pure view model; the loop driven through
httpx.MockTransport replaying those bodies, with an injected clock and sleep."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from tests.conftest import ROOT
from tpfit.core.monitoring import AlertKind, PlanTargets, Thresholds
from tpfit.errors import ServerError, ServerTimeout
from tpfit.live.server_facts import Histogram, parse_engine_metrics, parse_metrics
from tpfit.live.watch import ScrapeState, Status, make_view, once_thresholds, read_scrape, watch
from tpfit.report.watch import render_watch

CAPTURES = ROOT / "tests" / "data" / "vllm-metrics"
BODY = {name: (CAPTURES / f"{name}.txt").read_text() for name in ("idle", "preempted", "running", "waiting", "after")}
MANIFEST = json.loads((CAPTURES / "manifest.json").read_text())
URL = "http://10.0.0.7:8000"
# the capture's server: 1 MiB of fp32 KV for the tiny Llama = 1,024 tokens, two requests of 512
TINY = PlanTargets(model_id="tiny", gpus="1xcpu", context_tokens=512, concurrency=2, kv_cache_tokens=1024,
                   num_gpu_blocks=8, block_size=128, max_concurrency=2.0, vllm_version="0.32.0")


def as_engine(body: str, engine: str) -> str:
    """The same series under another `engine` label: a DP=2 server's second rank (vLLM labels each rank)."""
    return "\n".join(line.replace('engine="0"', f'engine="{engine}"') for line in body.splitlines()
                     if line.startswith("vllm:")) + "\n"


# ---- parsing -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(BODY))
def test_parse_matches_the_capture_manifest(name):
    s = parse_metrics(BODY[name])
    want = MANIFEST["bodies"][name]
    assert (s.kv_cache_usage, s.requests_running, s.requests_waiting, s.preemptions_total) == (
        want["kv_cache_usage"], want["running"], want["waiting"], want["preemptions_total"])
    # the capacity vLLM exports: kv_cache_size_tokens="1024", num_gpu_blocks="8", block_size="128"
    assert s.kv_cache_tokens == 1024 == int(s.cache_config["num_gpu_blocks"]) * int(s.cache_config["block_size"])


def test_histograms_and_counters_from_a_real_body():
    s = parse_metrics(BODY["after"])
    # 16 requests of 400 tokens went through, plus the seed /tokenize-free warm-up of verify
    assert s.ttft.count >= 16 and s.itl.count >= 16 * 399 * 0.9
    assert s.ttft.buckets[-1][0] == float("inf") and s.ttft.buckets[-1][1] == s.ttft.count
    assert s.generation_tokens_total >= 16 * 400 and s.prompt_tokens_total > 0
    p50, p99 = s.itl.quantile(0.5), s.itl.quantile(0.99)
    assert 0 < p50 <= p99


def test_histogram_quantile_is_prometheus_linear_interpolation():
    # 10 observations in (0, 0.1], 90 in (0.1, 0.5]: rank 50 lies 40/90 into the second bucket
    h = Histogram(buckets=((0.1, 10.0), (0.5, 100.0), (float("inf"), 100.0)), total=20.0, count=100.0)
    assert h.quantile(0.5) == pytest.approx(0.1 + 0.4 * 40 / 90)
    assert h.quantile(0.05) == pytest.approx(0.05)
    # a rank in +Inf gives the highest finite bound, as histogram_quantile does
    assert Histogram(buckets=((1.0, 0.0), (float("inf"), 5.0)), count=5.0).quantile(0.9) == 1.0
    assert Histogram().quantile(0.5) is None


def test_renamed_metrics_read_the_same():
    # vLLM <= 0.9 exported the KV gauge as gpu_cache_usage_perc, <= 0.10 the ITL histogram as
    # time_per_output_token_seconds
    old = BODY["waiting"].replace("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc").replace(
        "vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds")
    a, b = parse_metrics(BODY["waiting"]), parse_metrics(old)
    assert (a.kv_cache_usage, a.itl, a.ttft) == (b.kv_cache_usage, b.itl, b.ttft)
    # both names shown (--show-hidden-metrics-for-version): the new one counts, once
    both = BODY["waiting"] + "\n".join(l for l in old.splitlines() if "gpu_cache_usage_perc" in l
                                       and not l.startswith("#")) + "\n"
    assert parse_metrics(both).kv_cache_usage == a.kv_cache_usage


def test_engines_are_read_apart_and_summed():
    body = BODY["waiting"] + as_engine(BODY["idle"], "1")
    engines = parse_engine_metrics(body)
    assert list(engines) == ["0", "1"]
    assert engines["0"].requests_running == 3 and engines["1"].requests_running == 0
    total = parse_metrics(body)
    # one full cache and one empty one of the same size: half the KV blocks are in use
    assert total.kv_cache_usage == 0.5 and total.requests_waiting == 1
    assert total.ttft.count == engines["0"].ttft.count + engines["1"].ttft.count


# ---- the view ------------------------------------------------------------------------------------------


def fold(steps, *, thresholds=Thresholds(), targets=TINY, urls=(URL,)):
    """Views over (time, url, body-or-error) steps, as the loop folds them."""
    history, view = [], None
    for at, url, body in steps:
        scrape = read_scrape(url, at, error=body) if isinstance(body, Exception) else read_scrape(url, at, body)
        history.append(scrape)
        view = make_view(history, urls=list(urls), now_s=at, thresholds=thresholds, targets=targets, previous=view)
    return view


def test_view_under_back_pressure_beside_the_plan():
    view = fold([(0, URL, BODY["idle"]), (30, URL, BODY["running"]), (61, URL, BODY["waiting"])])
    kv, free, cap = view.line("kv_cache_usage"), view.line("free_kv_tokens"), view.line("kv_cache_tokens")
    assert (kv.value, free.value, cap.value, cap.plan) == (1.0, 0, 1024, 1024)
    assert kv.plan == 1.0  # 2 requests of 512 tokens fill the 1,024 planned tokens
    assert view.line("requests_running").value == 3 and view.line("requests_running").plan == 2
    assert view.line("requests_running").status is Status.WARN  # more than planned
    assert free.status is Status.WARN  # not one more request of 512 tokens fits
    # 4 preemptions between the idle and the waiting scrape, 61 s apart
    assert view.line("preemptions_per_min").value == pytest.approx(4 / 61 * 60)
    kinds = {a.kind: a for a in view.alerts}
    # preempting since the 30 s scrape, the KV cache full since then, one request waiting now: all pending
    assert view.line("preemptions_per_min").status is Status.WARN and kinds[AlertKind.PREEMPTIONS].since_s == 30
    assert not kinds[AlertKind.KV_SATURATED].firing and not kinds[AlertKind.QUEUE].firing and not view.alerting
    assert "lower --max-num-seqs to 2" in kinds[AlertKind.PREEMPTIONS].fix
    assert view.line("ttft_p99_s").value is not None and view.line("generation_tokens_per_s").value > 0
    # 60 s after the first preemption it fires (the default for: 1 minute)
    later = fold([(0, URL, BODY["idle"]), (30, URL, BODY["running"]), (61, URL, BODY["waiting"]),
                  (90, URL, BODY["waiting"])])
    assert later.line("preemptions_per_min").status is Status.ALERT and later.alerting


def test_queue_alert_fires_after_its_duration_with_the_replan():
    steps = [(t, URL, BODY["waiting"]) for t in (0, 30, 59)]
    assert not any(a.firing for a in fold(steps).alerts if a.kind is AlertKind.QUEUE)
    view = fold(steps + [(60, URL, BODY["waiting"])])
    queue = next(a for a in view.alerts if a.kind is AlertKind.QUEUE)
    assert queue.firing and "1 request(s) waiting with KV at 100% and 3 running for 60 s" == queue.message
    # demand seen: 3 running + 1 waiting = 4; the re-plan asks for max(4, 2 x 2)
    assert queue.fix.endswith("`tpfit plan tiny --gpus 1xcpu --context 512 --concurrency 4`")


def test_once_fires_at_the_scrape():
    view = fold([(0, URL, BODY["waiting"]), (2, URL, BODY["waiting"])], thresholds=once_thresholds(Thresholds()))
    assert {a.kind for a in view.alerts if a.firing} >= {AlertKind.KV_SATURATED, AlertKind.QUEUE}


def test_capacity_below_the_plan_alerts():
    planned_more = PlanTargets(**{**{f: getattr(TINY, f) for f in TINY.__struct_fields__}, "kv_cache_tokens": 2048})
    view = fold([(0, URL, BODY["idle"])], targets=planned_more)
    alert = next(a for a in view.alerts if a.kind is AlertKind.KV_CAPACITY)
    assert alert.firing and "an engine holds 1,024 KV tokens, the plan 2,048 (-50.0%)" in alert.message
    assert view.line("kv_cache_tokens").status is Status.ALERT
    assert not any(a.kind is AlertKind.KV_CAPACITY for a in fold([(0, URL, BODY["idle"])]).alerts)


def test_restart_resets_counters_without_negative_rates():
    view = fold([(0, URL, BODY["after"]), (10, URL, BODY["idle"]), (20, URL, BODY["running"])])
    assert view.servers[0].message.startswith("restarted 10 s ago")
    # after: 27 preemptions; the restarted server counts from 0 again: idle 0, running 2
    assert view.line("preemptions_per_min").value == pytest.approx((0 + 2) / 20 * 60)
    assert view.line("generation_tokens_per_s").value >= 0


def test_server_down_stalled_malformed_then_back():
    steps = [(0, URL, BODY["running"]), (10, URL, ServerError("cannot connect", url=URL)),
             (20, URL, ServerTimeout("did not answer in time (ReadTimeout)", url=URL))]
    view = fold(steps)
    assert view.servers[0].state is ScrapeState.STALLED
    assert view.servers[0].message == "stalled for 10 s: did not answer in time (ReadTimeout)"
    assert all(x.status is Status.UNKNOWN for x in view.lines if x.key in ("kv_cache_usage", "requests_running"))
    down = next(a for a in view.alerts if a.kind is AlertKind.SERVER_DOWN)
    assert not down.firing and down.since_s == 10  # 60 s before it alerts
    garbled = 'vllm:num_requests_running{engine="0",model_name="tiny" 3.0\n'
    view = fold(steps + [(75, URL, garbled)])
    assert view.servers[0].state is ScrapeState.MALFORMED and view.alerting  # down since 10 s: > 60 s
    assert view.servers[0].message.startswith("malformed /metrics for 65 s: not Prometheus text")
    assert fold([(0, URL, "<html>502 Bad Gateway</html>")]).servers[0].state is ScrapeState.NOT_VLLM
    view = fold(steps + [(75, URL, garbled), (80, URL, BODY["waiting"])])
    assert view.servers[0].message.startswith("up again 0 s ago, after: not Prometheus text")
    assert not any(a.kind is AlertKind.SERVER_DOWN for a in view.alerts)


def test_two_servers_summed_and_per_engine():
    a, b = URL, "http://10.0.0.8:8000"
    view = fold([(0, a, BODY["waiting"]), (0, b, BODY["idle"] + as_engine(BODY["idle"], "1"))], urls=(a, b))
    assert [(e.url, e.engine) for e in view.engines] == [(a, "0"), (b, "0"), (b, "1")]
    assert view.line("kv_cache_tokens").value == 3 * 1024 and view.line("kv_cache_tokens").plan == 3 * 1024
    assert view.line("kv_cache_usage").value == pytest.approx(1 / 3)
    assert view.line("requests_running").plan == 2 * 2  # each server runs the plan
    # one engine full, two idle: saturated where it is full, as the rule's max by (instance, engine)
    saturated = next(a for a in view.alerts if a.kind is AlertKind.KV_SATURATED)
    assert saturated.message == f"KV cache at 100% on {a} #0 (threshold 90%)"


def _broken(body: str, series: str, value: str) -> str:
    """The real body with one series' value replaced, as a broken exporter writes it."""
    return "\n".join(line.rsplit(" ", 1)[0] + " " + value if line.startswith(series + "{") else line
                     for line in body.splitlines()) + "\n"


@pytest.mark.parametrize("value", ["NaN", "-1.0", "+Inf"])
def test_a_broken_gauge_is_no_reading_not_ok(value):
    """A NaN, negative or infinite KV usage or queue is said to be no reading; it read as 0 % and 0 waiting, 'ok'."""
    body = _broken(_broken(BODY["waiting"], "vllm:kv_cache_usage_perc", value), "vllm:num_requests_waiting", value)
    view = fold([(0, URL, BODY["waiting"]), (30, URL, body)])
    kv, free, waiting = view.line("kv_cache_usage"), view.line("free_kv_tokens"), view.line("requests_waiting")
    for line in (kv, free, waiting):
        assert line.value is None and line.status is Status.UNKNOWN, line
    assert kv.note == f"no reading: vllm:kv_cache_usage_perc reads {float(value):g}"
    assert waiting.note == f"no reading: vllm:num_requests_waiting reads {float(value):g}"
    assert view.line("requests_running").value == 3  # the series that read well still do
    assert not {AlertKind.KV_SATURATED, AlertKind.QUEUE} & {a.kind for a in view.alerts}
    assert view.line("kv_cache_usage_peak").value == 1.0  # the good scrape's
    counter = _broken(BODY["waiting"], "vllm:num_preemptions_total", value)
    view = fold([(0, URL, BODY["idle"]), (30, URL, counter), (61, URL, BODY["waiting"])])
    assert view.line("preemptions_per_min").value is None
    assert view.line("preemptions_per_min").note.startswith("no reading: vllm:num_preemptions_total reads")
    out = io.StringIO()
    render_watch(view, Console(file=out, width=120, color_system=None))
    assert "no reading" in out.getvalue()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.one_of(
    st.text(max_size=400),
    st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
    st.tuples(st.sampled_from(list(BODY)), st.integers(0, 52_000)).map(lambda t: BODY[t[0]][: t[1]]),
    st.tuples(st.sampled_from(list(BODY)), st.integers(0, 52_000), st.text(min_size=1, max_size=8)).map(
        lambda t: BODY[t[0]][: t[1]] + t[2] + BODY[t[0]][t[1]:]),
    st.sampled_from(["", "\n", "# TYPE", 'vllm:kv_cache_usage_perc{engine="0"} NaN',
                     'vllm:kv_cache_usage_perc{engine="0"} +Inf', 'vllm:num_requests_running 1 2 3 4',
                     '# TYPE vllm:time_to_first_token_seconds histogram\n'
                     'vllm:time_to_first_token_seconds_bucket{le="a"} 1']),
))
def test_any_body_gives_a_status_never_a_crash(body):
    scrape = read_scrape(URL, 5.0, body)
    assert scrape.state in (ScrapeState.OK, ScrapeState.MALFORMED, ScrapeState.NOT_VLLM)
    if scrape.state is not ScrapeState.OK:
        assert scrape.error
    view = make_view([read_scrape(URL, 0.0, BODY["running"]), scrape], urls=[URL], now_s=5.0,
                     thresholds=Thresholds(), targets=TINY)
    render_watch(view, Console(file=io.StringIO(), width=100, color_system=None))
    json.dumps(view.to_dict())


# ---- the loop, without sockets -------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.t

    async def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.t += s


def replay(answers):
    """A transport answering /metrics from `answers` in turn (a body, an HTTP status, or an exception)."""
    queue = list(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/version":
            return httpx.Response(200, json={"version": "0.32.0"})
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": "tiny", "max_model_len": 512}]})
        item = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(item, Exception):
            raise item
        if isinstance(item, int):
            return httpx.Response(item, text="Internal Server Error")
        return httpx.Response(200, text=item)
    return httpx.MockTransport(handler)


def test_loop_survives_restart_stall_and_garbage():
    clock = FakeClock()
    views = []
    cut = BODY["running"][: BODY["running"].index("vllm:kv_cache_usage_perc{") + 30]  # a body cut mid-line
    transport = replay([BODY["running"], 500, httpx.ReadTimeout("stalled"), cut,
                        httpx.ConnectError("refused"), BODY["idle"], BODY["waiting"]])
    last = asyncio.run(watch([URL], thresholds=Thresholds(), targets=TINY, interval_s=2.0, duration_s=12.0,
                             on_view=views.append, clock=clock, sleep=clock.sleep, transport=transport))
    states = [v.servers[0].state for v in views]
    assert states == [ScrapeState.OK, ScrapeState.DOWN, ScrapeState.STALLED, ScrapeState.MALFORMED,
                      ScrapeState.DOWN, ScrapeState.OK, ScrapeState.OK]
    assert "answered HTTP 500" in views[1].servers[0].message
    assert views[5].servers[0].message.startswith("up again")
    assert clock.sleeps == [2.0] * 6 and last is views[-1]
    assert last.servers[0].info.version == "0.32.0" and last.servers[0].info.model == "tiny"
    assert last.line("requests_waiting").value == 1


def test_once_takes_two_scrapes_and_one_view():
    clock = FakeClock()
    views = []
    view = asyncio.run(watch([URL], thresholds=Thresholds(), targets=TINY, interval_s=1.5, once=True,
                             on_view=views.append, clock=clock, sleep=clock.sleep,
                             transport=replay([BODY["idle"], BODY["waiting"]])))
    assert views == [view] and clock.sleeps == [1.5] and view.alerting
    assert view.line("preemptions_per_min").value == pytest.approx(4 / 1.5 * 60)


# ---- rendering and the command -------------------------------------------------------------------------


def test_terminal_view_matches_the_checked_in_text():
    view = fold([(0, URL, BODY["idle"]), (30, URL, BODY["running"]), (61, URL, BODY["waiting"])])
    out = io.StringIO()
    render_watch(view, Console(file=out, width=110, color_system=None))
    assert out.getvalue() == (ROOT / "tests" / "data" / "watch-view.txt").read_text()


def test_readme_shows_the_checked_in_view():
    assert (ROOT / "tests" / "data" / "watch-view.txt").read_text() in (ROOT / "README.md").read_text()


def tpfit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tpfit", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=60)


@pytest.mark.parametrize("args,needle", [
    (["--once"], "--url"),
    (["--url", "localhost:8000", "--once"], "--url localhost:8000"),
    (["--url", "http://127.0.0.1:9", "--threshold", "kv=1"], "--threshold kv=1"),
    (["--url", "http://127.0.0.1:9", "--threshold", "kv_cache_usage=0"], "--threshold kv_cache_usage"),
    (["--url", "http://127.0.0.1:9", "--plan", "/nonexistent/plan.json"], "plan"),
    (["--url", "http://127.0.0.1:9", "--interval", "0"], "--interval"),
    # one server given twice was summed twice: its KV cache, its requests and the plan's concurrency doubled
    (["--url", "http://127.0.0.1:9", "--url", "http://127.0.0.1:9/", "--once"],
     "--url http://127.0.0.1:9/: names the server http://127.0.0.1:9 again"),
    (["--url", "http://LOCALHOST:80", "--url", "http://localhost", "--once"], "names the server http://LOCALHOST:80"),
])
def test_watch_bad_input(args, needle):
    result = tpfit("watch", *args)
    assert result.returncode == 2 and needle in result.stderr and "Traceback" not in result.stderr


def test_the_same_url_twice_is_refused_in_process_too():
    """The check compared the first spelling with `is not`: the same URL given twice as one string object (one
    literal, as a library caller or an in-process run passes it) was not refused, and the view summed it twice."""
    from tests.inprocess import tpfit as in_process

    url = "http://127.0.0.1:9"
    run = in_process("watch", "--url", url, "--url", url, "--once", "--interval", "0.2")
    assert run.returncode == 2 and f"--url {url}: names the server {url} again" in run.stderr, run.stderr


def test_watch_once_json_on_a_dead_port_is_a_status_and_exit_1(tmp_path):
    plan = tmp_path / "plan.json"
    made = tpfit("plan", "llama-3.1-8b", "--gpus", "1xh100", "--context", "8192", "--concurrency", "12", "--json")
    plan.write_text(made.stdout)
    result = tpfit("watch", "--url", "http://127.0.0.1:9", "--plan", str(plan), "--once", "--json",
                   "--interval", "0.2")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    view = json.loads(result.stdout)
    assert view["servers"][0]["state"] == "down" and view["alerting"]
    assert view["lines"]["kv_cache_tokens"]["plan"] == 456_176 and view["plan"]["concurrency"] == 12
