"""tpfit watch and the generated rules against a real vLLM (CPU build) on loopback: a watch during
verify's load, a server killed mid-watch, and the names the rules and dashboard use in a live /metrics."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

from tests.conftest import ROOT
from tests.realserver.conftest import BASE_FLAGS, start_server
from tests.test_alerts import dashboard_exprs, full_settings, metric_names_in, rule_exprs, targets
from tpfit.deploy.alerts import PROMETHEUS_SERIES, alert_rules
from tpfit.deploy.grafana import dashboard
from tpfit.live.launch import session_pids


def tpfit(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tpfit", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout)


def scrape(url: str) -> str:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
        return r.read().decode()


def test_watch_during_verify_load_sees_the_load_and_the_servers_capacity(server):
    # One `tpfit watch --json` process scraping every 0.3 s for the whole load (a process per scrape started too
    # slowly on a loaded 2-core machine: CI saw the load end after three), since vLLM CPU's gauges often read 0
    # mid-load; then one `--once` report while the load still runs.
    load = subprocess.Popen([sys.executable, "-m", "tpfit", "verify", "--url", server.url, "--concurrency", "8",
                             "--output-tokens", "400", "--requests", "96", "--timeout", "240", "--json"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watch = subprocess.Popen([sys.executable, "-m", "tpfit", "watch", "--url", server.url, "--json", "--interval",
                              "0.3", "--duration", "150"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    views, once = [], None
    try:
        for line in watch.stdout:  # one JSON report per round; ends when the watch stops
            views.append(json.loads(line))
            if views[-1]["lines"]["requests_running"]["value"] > 0 and len(views) >= 2 or load.poll() is not None:
                break
        if load.poll() is None:
            once = tpfit("watch", "--url", server.url, "--once", "--json", "--interval", "0.3")
        out, err = load.communicate(timeout=240)
    finally:
        for proc in (load, watch):
            if proc.poll() is None:
                proc.kill()
        watch.communicate(timeout=30)
    assert load.returncode == 0, out + err
    busy = [v for v in views if v["lines"]["requests_running"]["value"] > 0]
    assert busy, [v["lines"]["requests_running"] for v in views]
    assert any(v["lines"]["kv_cache_usage"]["value"] > 0 or v["lines"]["kv_cache_usage_peak"]["value"] > 0
               for v in busy)
    if once is not None:  # a one-shot report, exit 0 or 1 (an alert may hold under load), never a traceback
        assert once.returncode in (0, 1) and "Traceback" not in once.stderr, once.stderr
        views.append(json.loads(once.stdout))
    # the capacity is the server's own cache_config_info, read here independently of tpfit's parser
    labels = re.search(r"^vllm:cache_config_info\{([^}]*)\}", scrape(server.url), re.M).group(1)
    size = int(re.search(r'kv_cache_size_tokens="(\d+)"', labels).group(1))
    assert size == 65_536  # 64 MiB of fp32 KV, 1,024 bytes a token
    assert all(v["lines"]["kv_cache_tokens"]["value"] == size for v in views)
    assert all(v["servers"][0]["state"] == "ok" and v["servers"][0]["info"]["model"] == "tiny" for v in views)


def test_every_name_in_the_rules_and_dashboard_is_in_a_live_scrape(server):
    body = scrape(server.url)
    real = {re.split(r"[{ ]", line, maxsplit=1)[0] for line in body.splitlines() if line and line[0] != "#"}
    used = metric_names_in(rule_exprs(alert_rules(targets(), full_settings())) + dashboard_exprs(
        dashboard(targets(), full_settings())))
    assert used - real == set(PROMETHEUS_SERIES), used - real


def test_server_killed_mid_watch_gives_a_status_line(tiny_model, tmp_path):
    proc = start_server(tiny_model, tmp_path / "victim", BASE_FLAGS + ["--kv-cache-memory-bytes", "16M"])
    watch = None
    try:
        watch = subprocess.Popen([sys.executable, "-m", "tpfit", "watch", "--url", proc.url, "--json", "--interval",
                                  "0.5", "--duration", "12", "--threshold", "down_for=2s"], cwd=ROOT,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = json.loads(watch.stdout.readline())  # one round while the server is up
        assert first["servers"][0]["state"] == "ok"
        for pid in session_pids(proc.proc.pid):  # the whole server dies at once, as in an OOM kill
            os.kill(pid, signal.SIGKILL)
        out, err = watch.communicate(timeout=60)
    finally:
        if watch is not None and watch.poll() is None:
            watch.kill()
        proc.stop()
    assert "Traceback" not in err and watch.returncode == 1, err
    last = json.loads(out.splitlines()[-1])
    server = last["servers"][0]
    assert server["state"] == "down" and server["message"].startswith("down for ")
    assert "cannot connect" in server["message"] and last["alerting"]
    assert [a["kind"] for a in last["alerts"]] == ["server_down"] and last["alerts"][0]["fix"]
    assert not session_pids(proc.proc.pid)
