"""Prometheus rules, the Grafana dashboard and the monitoring add-ons of `tpfit deploy`, checked by
Prometheus' own promtool (rules syntax, PromQL, templates, and alerts firing and clearing on synthetic
series), the compose-spec and Kubernetes schemas, and the names of a real vLLM 0.32 /metrics."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import ROOT
from tests.test_deploy import as_doc, made_plan, plan_doc, validate_compose, validate_k8s
from tpfit.core.monitoring import AlertKind, MetricNames, PlanTargets, Thresholds
from tpfit.deploy.alerts import PROMETHEUS_SERIES, RULE_NAMES, AlertSettings, alert_rules, regex_at_least
from tpfit.deploy.common import deployment_from_plan
from tpfit.deploy.grafana import dashboard
from tpfit.deploy.monitoring import Monitoring
from tpfit.deploy.render import render
from tpfit.errors import UsageError

CAPTURES = ROOT / "tests" / "data" / "vllm-metrics"
JOB = "llama-3-1-8b-instruct"


def promtool() -> str:
    path = shutil.which("promtool")
    if not path:
        if os.environ.get("CI"):
            pytest.fail("CI must check the rules with promtool: .ci/run installs Debian's prometheus package")
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    return path


def targets() -> PlanTargets:
    return PlanTargets.from_plan_dict(plan_doc("llama-3.1-8b", "1xh100", 8192, 12))


def full_settings(**kw) -> AlertSettings:
    return AlertSettings(job=JOB, labels=(("team", "ml"),),
                         thresholds=Thresholds.parse(["ttft_p99=2s", "itl_p99=100ms"]), **kw)


def exported_names(path: Path) -> set[str]:
    """Every series name in a real /metrics body (histograms as _bucket/_sum/_count and their base)."""
    names = set()
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            name = re.split(r"[{ ]", line, maxsplit=1)[0]
            names.add(name)
            names.add(re.sub(r"_(bucket|sum|count)$", "", name))
    return names


def metric_names_in(exprs: list[str]) -> set[str]:
    """The series names PromQL expressions select (vllm:* names and bare words before a `{`)."""
    found = set()
    for expr in exprs:
        found |= set(re.findall(r"vllm:[a-z_]+", expr))
        found |= set(re.findall(r"(?<![\w:])([a-zA-Z_][a-zA-Z0-9_]*)\{", expr))
    return found


def rule_exprs(doc: dict) -> list[str]:
    return [r["expr"] for g in doc["groups"] for r in g["rules"]]


def dashboard_exprs(dash: dict) -> list[str]:
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exprs += [v["query"] for v in dash["templating"]["list"] if v["type"] == "query"]
    return exprs


# ---- names ---------------------------------------------------------------------------------------------


def test_every_name_in_the_rules_and_dashboard_is_exported_by_real_vllm():
    # tests/data/vllm-metrics: real vLLM 0.32 (CPU) scrapes (bench/capture_metrics.py); the realserver test
    # repeats this against a live server
    real = exported_names(CAPTURES / "waiting.txt")
    used = metric_names_in(rule_exprs(alert_rules(targets(), full_settings())) + dashboard_exprs(
        dashboard(targets(), full_settings())))
    assert used - real == set(PROMETHEUS_SERIES)  # `up` is Prometheus' own series for every target
    assert {"vllm:num_preemptions_total", "vllm:kv_cache_usage_perc", "vllm:inter_token_latency_seconds_bucket"} <= used
    assert "vllm:num_preemptions" not in used  # llm-d's rule names this and never fires


def test_old_releases_get_the_names_they_export():
    old = alert_rules(targets(), full_settings(), vllm_version="0.9.2")
    text = " ".join(rule_exprs(old))
    assert "vllm:gpu_cache_usage_perc" in text and "vllm:time_per_output_token_seconds_bucket" in text
    assert MetricNames.for_version("0.10.0").kv_cache_usage == "vllm:kv_cache_usage_perc"
    assert MetricNames.for_version("0.10.2").inter_token_latency == "vllm:time_per_output_token_seconds"
    assert MetricNames.for_version("0.11.0").inter_token_latency == "vllm:inter_token_latency_seconds"


# ---- promtool ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["plan+latency", "plan", "no-plan", "vllm-0.9"])
def test_rules_pass_promtool_check(case, tmp_path):
    tool = promtool()
    t = None if case == "no-plan" else targets()
    doc = alert_rules(t, full_settings() if case == "plan+latency" else AlertSettings(job=JOB),
                      vllm_version="0.9.2" if case == "vllm-0.9" else None)
    path = tmp_path / "alerts.yaml"
    path.write_text(yaml.safe_dump(doc))
    result = subprocess.run([tool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    n = len(doc["groups"][0]["rules"])
    assert f"SUCCESS: {n} rules found" in result.stdout
    assert n == {"plan+latency": 7, "plan": 5, "no-plan": 4, "vllm-0.9": 5}[case]


def _go_value(v: float) -> str:
    return f"{v:g}"


def _humanize_duration(v: float) -> str:
    # Prometheus template func humanizeDuration, for values below a minute
    if v >= 1:
        return f"{v:.4g}s"
    prefix = ""
    for p in ("m", "u", "n"):
        if abs(v) >= 1:
            break
        prefix, v = p, v * 1000
    return f"{v:.4g}{prefix}s"


def expand(template: str, labels: dict, value: float) -> str:
    """Prometheus' annotation templates, for the forms tpfit writes."""
    out = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], template)
    out = out.replace("{{ $value | humanizePercentage }}", f"{value * 100:.4g}%")
    out = out.replace('{{ $value | printf "%.1f" }}', f"{value:.1f}")
    out = out.replace("{{ $value | humanizeDuration }}", _humanize_duration(value))
    out = out.replace("{{ $value }}", _go_value(value))
    assert "{{" not in out, out
    return out


# Synthetic series per alert, 1 minute apart: (series, values), when it fires with which labels and value,
# and when it has cleared. The value is what the expression returns at the firing time.
INSTANCE = "10.0.0.7:8000"
BASE = f'job="{JOB}",instance="{INSTANCE}",model_name="llama"'
SCENARIOS = {
    AlertKind.SERVER_DOWN: dict(
        series=[(f'up{{job="{JOB}",instance="{INSTANCE}"}}', "1 1 0x5 1x10")],
        fires="4m", labels={"instance": INSTANCE, "job": JOB}, value=0, clears="10m"),
    AlertKind.KV_CAPACITY: dict(
        # 26,000 blocks where 28,511 are planned (alert below 27,086); the good one never fires
        series=[(f'vllm:cache_config_info{{{BASE},engine="0",block_size="16",num_gpu_blocks="26000"}}', "1x4"),
                (f'vllm:cache_config_info{{{BASE},engine="1",block_size="16",num_gpu_blocks="28511"}}', "1x20")],
        fires="2m", labels={"instance": INSTANCE, "job": JOB, "model_name": "llama", "engine": "0",
                            "block_size": "16", "num_gpu_blocks": "26000"}, value=1, clears="12m"),
    AlertKind.KV_SATURATED: dict(
        series=[(f'vllm:kv_cache_usage_perc{{{BASE},engine="0"}}', "0.5 0.95x10 0.3x10")],
        fires="8m", labels={"instance": INSTANCE, "model_name": "llama", "engine": "0"}, value=0.95, clears="15m"),
    AlertKind.PREEMPTIONS: dict(
        series=[(f'vllm:num_preemptions_total{{{BASE},engine="0"}}', "0 0 0+5x10 50x15")],
        fires="9m", labels={"instance": INSTANCE, "model_name": "llama"}, value=5.0, clears="20m"),
    AlertKind.QUEUE: dict(
        series=[(f'vllm:num_requests_waiting{{{BASE},engine="0"}}', "0 3x6 0x10"),
                (f'vllm:num_requests_waiting{{{BASE},engine="1"}}', "0 2x6 0x10")],
        fires="4m", labels={"instance": INSTANCE, "model_name": "llama"}, value=5, clears="12m"),
    AlertKind.TTFT: dict(
        # 10 requests a minute between 2.5 s and 5 s for 10 minutes, then all under 0.5 s
        series=[(f'vllm:time_to_first_token_seconds_bucket{{{BASE},engine="0",le="{le}"}}', v)
                for le, v in (("0.5", "0x10 0+10x15"), ("2.5", "0x10 0+10x15"), ("5.0", "0+10x10 100+10x15"),
                              ("+Inf", "0+10x10 100+10x15"))],
        fires="9m", labels={"instance": INSTANCE, "model_name": "llama"}, value=2.5 + 2.5 * 0.99, clears="24m"),
    AlertKind.ITL: dict(
        series=[(f'vllm:inter_token_latency_seconds_bucket{{{BASE},engine="0",le="{le}"}}', v)
                for le, v in (("0.05", "0x10 0+100x15"), ("0.1", "0x10 0+100x15"), ("0.25", "0+100x10 1000+100x15"),
                              ("+Inf", "0+100x10 1000+100x15"))],
        fires="9m", labels={"instance": INSTANCE, "model_name": "llama"}, value=0.1 + 0.15 * 0.99, clears="24m"),
}


def test_each_alert_fires_and_clears_in_promtool(tmp_path):
    tool = promtool()
    doc = alert_rules(targets(), full_settings())
    rules = {r["alert"]: r for r in doc["groups"][0]["rules"]}
    assert set(rules) == set(RULE_NAMES.values())
    (tmp_path / "alerts.yaml").write_text(yaml.safe_dump(doc))
    tests = []
    for kind, sc in SCENARIOS.items():
        rule = rules[RULE_NAMES[kind]]
        labels = {**sc["labels"], **rule["labels"]}
        annotations = {k: expand(v, labels, sc["value"]) for k, v in rule["annotations"].items()}
        tests.append({
            "interval": "1m",
            "input_series": [{"series": s, "values": v} for s, v in sc["series"]],
            "alert_rule_test": [
                {"eval_time": sc["fires"], "alertname": rule["alert"],
                 "exp_alerts": [{"exp_labels": labels, "exp_annotations": annotations}]},
                {"eval_time": sc["clears"], "alertname": rule["alert"], "exp_alerts": []},
            ],
        })
    (tmp_path / "test.yaml").write_text(yaml.safe_dump({"rule_files": ["alerts.yaml"], "evaluation_interval": "1m",
                                                        "tests": tests}))
    result = subprocess.run([tool, "test", "rules", str(tmp_path / "test.yaml")], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_a_job_and_labels_with_quotes_and_braces_fire_as_given(tmp_path):
    """--job and --alert-label values are the user's text: a `"` or `\\` in the job ended (or escaped inside) the
    PromQL string of every selector, and a `{{` in a label value or in the job named in the description was
    parsed as a Go template, so promtool refused the file."""
    tool = promtool()
    job, team = 'a"b\\c {{x}}', "{{ on call"
    doc = alert_rules(targets(), AlertSettings(job=job, labels=(("team", team),)))
    (tmp_path / "alerts.yaml").write_text(yaml.safe_dump(doc))
    rule = next(r for r in doc["groups"][0]["rules"] if r["alert"] == RULE_NAMES[AlertKind.SERVER_DOWN])
    labels = {"instance": INSTANCE, "job": job, "severity": "critical", "tpfit_alert": "server_down", "team": team}
    def literal(text: str) -> str:  # the annotation as Prometheus expands it for these labels
        text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], text)
        return text.replace('{{ "{{" }}', "{{")

    annotations = {k: literal(v) for k, v in rule["annotations"].items()}
    assert f"(job {job})" in annotations["description"]
    series = "up{job=%s,instance=%s}" % (json.dumps(job), json.dumps(INSTANCE))
    test = {"interval": "1m", "input_series": [{"series": series, "values": "0x5"}],
            "alert_rule_test": [{"eval_time": "3m", "alertname": rule["alert"],
                                 "exp_alerts": [{"exp_labels": labels, "exp_annotations": annotations}]}]}
    (tmp_path / "test.yaml").write_text(yaml.safe_dump({"rule_files": ["alerts.yaml"], "evaluation_interval": "1m",
                                                        "tests": [test]}))
    result = subprocess.run([tool, "test", "rules", str(tmp_path / "test.yaml")], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("window, expected", [("1.5s", "[1500ms]"), ("90s", "[90s]"), ("5m", "[5m]")])
def test_windows_keep_their_fraction_of_a_second(window, expected, tmp_path):
    """format_duration rounded to whole seconds: window=10ms became `[0s]`, which promtool refuses, and 1.5s
    became `[2s]`. Now a window under 1 s is refused (no two scrapes fit) and fractions are written in ms."""
    doc = alert_rules(targets(), AlertSettings(job=JOB, thresholds=Thresholds.parse([f"window={window}"])))
    assert all(expected in e for e in rule_exprs(doc) if "rate(" in e)
    with pytest.raises(UsageError, match="--threshold window"):
        Thresholds.parse(["window=10ms"])


def test_dashboard_queries_pass_promtool(tmp_path):
    # Grafana sends each target's expr to Prometheus; as recording rules, promtool parses every one
    tool = promtool()
    exprs = [e.replace("$instance", ".*") for e in dashboard_exprs(dashboard(targets(), full_settings()))]
    exprs = [e for e in exprs if not e.startswith("label_values(")]  # a Grafana function, not PromQL
    doc = {"groups": [{"name": "dashboard", "rules": [{"record": f"tpfit:panel_{i}", "expr": e}
                                                      for i, e in enumerate(exprs)]}]}
    (tmp_path / "rec.yaml").write_text(yaml.safe_dump(doc))
    result = subprocess.run([tool, "check", "rules", str(tmp_path / "rec.yaml")], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# ---- dashboard structure --------------------------------------------------------------------------------


def test_dashboard_structure():
    dash = json.loads(json.dumps(dashboard(targets(), full_settings())))
    assert dash["schemaVersion"] >= 36 and dash["title"] and "vllm" in dash["tags"]
    variables = {v["name"] for v in dash["templating"]["list"]}
    assert variables == {"datasource", "instance"}
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    cells = set()
    for p in dash["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & mine, f"panel {p['title']} overlaps another"
        cells |= mine
        for t in p.get("targets", []):
            assert t["expr"] and re.fullmatch(r"[A-Z]", t["refId"]) and t["datasource"]["uid"] == "${datasource}"
            assert f'job="{JOB}"' in t["expr"] and 'instance=~"$instance"' in t["expr"]
        refs = [t["refId"] for t in p.get("targets", [])]
        assert len(refs) == len(set(refs))
    by_title = {p["title"]: p for p in dash["panels"]}
    kv = by_title["KV cache usage"]["fieldConfig"]["defaults"]
    # the alert threshold and the plan's usage (12 x 8,192 tokens of 456,176) as threshold lines
    assert [s["value"] for s in kv["thresholds"]["steps"]] == [None, round(12 * 8192 / 456_176, 4), 0.9]
    assert by_title["Requests running and waiting"]["fieldConfig"]["defaults"]["thresholds"]["steps"][1]["value"] == 12
    assert "28,511 blocks of 16 tokens" in by_title["KV cache capacity (blocks)"]["description"]


# ---- regex floor on a label ------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=10**7), st.integers(min_value=0, max_value=10**8))
def test_regex_at_least_matches_exactly_the_integers_above(floor, n):
    assert bool(re.fullmatch(regex_at_least(floor), str(n))) == (n >= floor)


# ---- deploy --monitoring ---------------------------------------------------------------------------------


def _monitoring(job: str = JOB) -> tuple:
    plan = made_plan("llama-3.1-8b", "1xh100", 8192, 12)
    d = deployment_from_plan(plan, command="tpfit deploy test")
    return d, Monitoring(targets=PlanTargets.from_plan_dict(as_doc(plan)), settings=AlertSettings(job=job))


def test_compose_monitoring_scrapes_the_server_under_the_rules_job(tmp_path):
    tool = promtool()
    d, m = _monitoring()
    files = render(d, "compose", m)
    assert set(files) == {"compose.yaml", "prometheus.yml", "alerts.yaml"}
    validate_compose(files["compose.yaml"], tmp_path)
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    result = subprocess.run([tool, "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    compose = yaml.safe_load(files["compose.yaml"])
    scrape = yaml.safe_load(files["prometheus.yml"])["scrape_configs"][0]
    server = next(name for name in compose["services"] if name != "prometheus")
    assert scrape["job_name"] == JOB and scrape["static_configs"][0]["targets"] == [f"{server}:{d.port}"]
    assert "./alerts.yaml:/etc/prometheus/alerts.yaml:ro" in compose["services"]["prometheus"]["volumes"]


@pytest.mark.parametrize("fmt,job", [("k8s", JOB), ("lws", JOB), ("k8s", 'team "a" vllm'), ("lws", "vllm")])
def test_k8s_monitoring_adds_a_service_monitor_and_rules(fmt, job, tmp_path):
    """The job the ServiceMonitor gives its targets is the one the rules select, --job included (the monitor kept
    the app label's value, so rules for --job vllm selected a job nothing scraped)."""
    d, m = _monitoring(job)
    text = render(d, fmt, m)[f"{fmt}.yaml"]
    objs = [o for o in yaml.safe_load_all(text) if o]
    core = [o for o in objs if not o["apiVersion"].startswith("monitoring.coreos.com")]
    validate_k8s(yaml.safe_dump_all(core))
    monitor = next(o for o in objs if o["kind"] == "ServiceMonitor")
    service = next(o for o in objs if o["kind"] == "Service")
    # the ServiceMonitor selects the Service by its labels and port name, and names the job as the rules do
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
    scraped_as = service["metadata"]["labels"][monitor["spec"]["jobLabel"]]
    for relabel in monitor["spec"]["endpoints"][0].get("relabelings", []):  # Prometheus' replace, no source labels
        if relabel["targetLabel"] == "job" and relabel.get("action", "replace") == "replace":
            scraped_as = relabel["replacement"]
    assert scraped_as == job
    rule = next(o for o in objs if o["kind"] == "PrometheusRule")
    assert all(f"job={json.dumps(job)}" in expr for expr in rule_exprs(rule["spec"]))
    if shutil.which("promtool") or os.environ.get("CI"):
        (tmp_path / "r.yaml").write_text(yaml.safe_dump(rule["spec"]))
        result = subprocess.run([promtool(), "check", "rules", str(tmp_path / "r.yaml")], capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr


def tpfit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tpfit", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)


def test_deploy_alerts_cli_writes_rules_with_the_runbook(tmp_path):
    result = tpfit("deploy", "llama-3.1-8b", "--gpus", "1xh100", "--context", "8192", "--concurrency", "12",
                   "--format", "alerts", "--threshold", "kv_cache_usage=85%", "--threshold", "waiting_for=2m",
                   "--alert-label", "team=ml", "--job", "vllm")
    assert result.returncode == 0, result.stderr
    doc = yaml.safe_load(result.stdout)
    rules = {r["alert"]: r for r in doc["groups"][0]["rules"]}
    assert rules["VllmKvCacheSaturated"]["expr"].endswith(">= 0.85")
    assert rules["VllmRequestsWaiting"]["for"] == "2m" and rules["VllmServerDown"]["expr"] == 'up{job="vllm"} == 0'
    assert all(r["labels"]["team"] == "ml" and r["annotations"]["runbook"] for r in rules.values())
    assert "--concurrency 24" in rules["VllmRequestsWaiting"]["annotations"]["runbook"]
    assert "lower --max-num-seqs to 55" in rules["VllmPreemptions"]["annotations"]["runbook"]


def test_the_plans_latency_targets_become_rules(tmp_path):
    plan = tpfit("plan", "llama-3.1-8b", "--gpus", "1xh100", "--context", "8192", "--concurrency", "12",
                 "--ttft", "1.5", "--tpot", "0.04", "--json")
    (tmp_path / "plan.json").write_text(plan.stdout)
    result = tpfit("deploy", "--plan", str(tmp_path / "plan.json"), "--format", "alerts")
    assert result.returncode == 0, result.stderr
    rules = {r["alert"]: r for r in yaml.safe_load(result.stdout)["groups"][0]["rules"]}
    assert rules["VllmTtftAboveTarget"]["expr"].endswith("> 1.5")
    assert rules["VllmInterTokenLatencyAboveTarget"]["expr"].endswith("> 0.04")


@pytest.mark.parametrize("args,needle", [
    (["--format", "serve", "--monitoring"], "--monitoring"),
    (["--format", "alerts", "--alert-label", "bad label=x"], "--alert-label"),
    # a label every alert already has (its own severity; the server the texts name) is not replaced on all of them
    (["--format", "alerts", "--alert-label", "severity=page"], "--alert-label severity=page"),
    (["--format", "alerts", "--alert-label", "instance=x"], "--alert-label instance=x"),
    (["--format", "alerts", "--threshold", "kv_cache_usage=2"], "--threshold kv_cache_usage"),
    (["--format", "grafana", "--threshold", "window=soon"], "--threshold window=soon"),
    (["--format", "alerts", "--job", " "], "--job"),
])
def test_deploy_monitoring_bad_input(args, needle):
    result = tpfit("deploy", "llama-3.1-8b", "--gpus", "1xh100", *args)
    assert result.returncode == 2 and needle in result.stderr and "Traceback" not in result.stderr


def test_thresholds_parse():
    t = Thresholds.parse(["kv_cache_usage=85%", "waiting_for=2m", "ttft_p99=500ms", "itl-p99=0.08", "window=1h"])
    assert (t.kv_cache_usage, t.waiting_for_s, t.ttft_p99_s, t.itl_p99_s, t.window_s) == (0.85, 120, 0.5, 0.08, 3600)
    assert math.isclose(Thresholds.parse(["kv_capacity_shortfall=2.5%"]).kv_capacity_shortfall, 0.025)


def test_the_runbook_counts_the_plans_requests_in_english():
    """It said "the plan held 1 requests"."""
    from tpfit.core.monitoring import AlertKind, PlanTargets, fix_for

    def held(concurrency: int) -> str:
        targets = PlanTargets(model_id="m", gpus="1xh100", context_tokens=8192, concurrency=concurrency,
                              kv_cache_tokens=50_000, num_gpu_blocks=3125, block_size=16, max_concurrency=6.1)
        return fix_for(AlertKind.KV_SATURATED, targets)

    assert "the plan held 1 request of 8,192 tokens" in held(1)
    assert "the plan held 12 requests of 8,192 tokens" in held(12)
