"""A Grafana dashboard from a plan (`tpfit deploy --format grafana`): the lines of `tpfit watch` as panels,
with the plan's figures and the alert thresholds drawn as threshold lines."""

from __future__ import annotations

import json

from tpfit.core.monitoring import MetricNames, PlanTargets, format_duration, promql_string
from tpfit.deploy.alerts import AlertSettings
from tpfit.vllm_facts import CURRENT_VLLM_VERSION

SCHEMA_VERSION = 39
"""Grafana's dashboard JSON schema version (Grafana 11); older Grafanas migrate newer files on import."""
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def _panel(pid: int, title: str, targets: list[tuple[str, str]], *, unit: str, x: int, y: int, w: int = 12,
           h: int = 8, kind: str = "timeseries", thresholds: list[tuple[float, str]] = (),
           description: str = "", max_value: float | None = None) -> dict:
    steps = [{"color": "green", "value": None}] + [{"color": color, "value": v} for v, color in thresholds]
    defaults: dict = {"unit": unit, "thresholds": {"mode": "absolute", "steps": steps}}
    if max_value is not None:
        defaults["min"], defaults["max"] = 0, max_value
    if kind == "timeseries":
        defaults["custom"] = {"thresholdsStyle": {"mode": "line" if thresholds else "off"}}
    return {
        "id": pid, "type": kind, "title": title, "description": description, "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {},
        "targets": [{"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": expr, "legendFormat": legend}
                    for i, (expr, legend) in enumerate(targets)],
    }


def dashboard(targets: PlanTargets | None, settings: AlertSettings, *, title: str | None = None) -> dict:
    """The dashboard as a dict (import it in Grafana: Dashboards > New > Import)."""
    t = settings.thresholds.for_plan(targets)
    names = MetricNames.for_version(targets.vllm_version if targets else CURRENT_VLLM_VERSION)
    s = "{" + f'job={promql_string(settings.job)},instance=~"$instance"' + "}"
    w = format_duration(t.window_s)
    plan_use = (min(1.0, targets.concurrency * targets.context_tokens / targets.kv_cache_tokens)
                if targets and targets.kv_cache_tokens else None)

    def quantiles(metric: str) -> list[tuple[str, str]]:
        return [(f"histogram_quantile({q}, sum by (le, instance) (rate({metric}_bucket{s}[{w}])))",
                 f"p{int(q * 100)} {{{{instance}}}}") for q in (0.5, 0.99)]

    kv_lines = [(t.kv_cache_usage, "red")] + ([(round(plan_use, 4), "yellow")] if plan_use else [])
    panels = [
        _panel(1, "KV cache usage", [(f"max by (instance, engine) ({names.kv_cache_usage}{s})",
                                      "{{instance}} engine {{engine}}")],
               unit="percentunit", x=0, y=0, max_value=1, thresholds=sorted(kv_lines),
               description=f"Red: the alert threshold ({t.kv_cache_usage:.0%})"
               + (f"; yellow: the plan's {targets.concurrency} requests of {targets.context_tokens:,} tokens "
                  f"({plan_use:.0%})." if targets and plan_use else ".")),
        _panel(2, "Requests running and waiting", [(f"sum by (instance) ({names.requests_running}{s})",
                                                    "running {{instance}}"),
                                                   (f"sum by (instance) ({names.requests_waiting}{s})",
                                                    "waiting {{instance}}")],
               unit="short", x=12, y=0, thresholds=[(targets.concurrency, "yellow")] if targets else [],
               description=f"Yellow: the plan's concurrency ({targets.concurrency})." if targets else ""),
        _panel(3, "Preemptions per minute", [(f"sum by (instance) (rate({names.preemptions}{s}[{w}])) * 60",
                                              "{{instance}}")],
               unit="short", x=0, y=8, thresholds=[(max(t.preemptions_per_min, 0.001), "red")],
               description="Any preemption means the KV cache ran out and requests are recomputed."),
        _panel(4, "KV cache capacity (blocks)", [(f"{names.cache_config}{s}",
                                                  "{{instance}} engine {{engine}}: {{num_gpu_blocks}} blocks "
                                                  "of {{block_size}} tokens")],
               unit="none", x=12, y=8, kind="table",
               description=(f"The plan: {targets.num_gpu_blocks:,} blocks of {targets.block_size} tokens "
                            f"({targets.kv_cache_tokens:,} tokens) per engine." if targets else
                            "vLLM exports its KV capacity as labels of this info series.")),
        _panel(5, "Time to first token", quantiles(names.time_to_first_token), unit="s", x=0, y=16,
               thresholds=[(t.ttft_p99_s, "red")] if t.ttft_p99_s is not None else []),
        _panel(6, "Inter-token latency", quantiles(names.inter_token_latency), unit="s", x=12, y=16,
               thresholds=[(t.itl_p99_s, "red")] if t.itl_p99_s is not None else []),
        _panel(7, "Tokens per second", [(f"sum by (instance) (rate({names.generation_tokens}{s}[{w}]))",
                                         "generated {{instance}}"),
                                        (f"sum by (instance) (rate({names.prompt_tokens}{s}[{w}]))",
                                         "prompt {{instance}}")], unit="short", x=0, y=24),
        _panel(8, "Queue time p99", [(f"histogram_quantile(0.99, sum by (le, instance) "
                                      f"(rate({names.queue_time}_bucket{s}[{w}])))", "{{instance}}")],
               unit="s", x=12, y=24, description="Time requests waited for a slot in vLLM's scheduler."),
    ]
    plan_text = ("No plan: figures only." if targets is None else
                 f"**Plan**: {targets.model_id} on {targets.gpus}, {targets.concurrency} requests of "
                 f"{targets.context_tokens:,} tokens; {targets.kv_cache_tokens:,} KV tokens and "
                 f"{targets.max_concurrency:.2f} such requests per engine (vLLM {targets.vllm_version}). "
                 "Made by tpfit; `tpfit watch --url URL --plan plan.json` shows the same live.")
    panels.append({"id": 9, "type": "text", "title": "Plan", "gridPos": {"x": 0, "y": 32, "w": 24, "h": 3},
                   "options": {"mode": "markdown", "content": plan_text}})
    return {
        "title": title or f"vLLM {targets.model_id if targets else settings.job} (tpfit)",
        "uid": None, "tags": ["vllm", "tpfit"], "timezone": "browser", "editable": True,
        "schemaVersion": SCHEMA_VERSION, "version": 1, "refresh": "30s",
        "time": {"from": "now-3h", "to": "now"},
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"},
            {"name": "instance", "type": "query", "datasource": DATASOURCE, "label": "Server",
             "query": f"label_values({names.requests_running}{{job={promql_string(settings.job)}}}, instance)",
             "includeAll": True, "multi": True, "current": {"text": "All", "value": "$__all"}, "refresh": 2,
             "allValue": ".*"},
        ]},
        "annotations": {"list": []},
        "panels": panels,
    }


def dashboard_file(targets: PlanTargets | None, settings: AlertSettings) -> str:
    """The dashboard JSON, one key per line and one panel or variable per line (diffs stay readable)."""
    items = []
    for key, value in dashboard(targets, settings).items():
        if key in ("panels", "templating"):
            rows = value if key == "panels" else value["list"]
            body = ",\n".join(f"  {json.dumps(row)}" for row in rows)
            text = f"[\n{body}\n ]" if key == "panels" else f'{{"list": [\n{body}\n ]}}'
        else:
            text = json.dumps(value)
        items.append(f" {json.dumps(key)}: {text}")
    return "{\n" + ",\n".join(items) + "\n}\n"

