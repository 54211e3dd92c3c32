"""Prometheus alerting rules from a plan (`tpfit deploy --format alerts`): the same conditions, thresholds
and fixes as `tpfit watch`, on the names vLLM's exporter really has (counters with `_total`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from tpfit.core.monitoring import (
    SEVERITY, AlertKind, MetricNames, PlanTargets, Thresholds, fix_for, format_duration, promql_string, template_text,
)
from tpfit.deploy.shell import comment
from tpfit.deploy.yamlout import dump
from tpfit.vllm_facts import CURRENT_VLLM_VERSION

PROMETHEUS_SERIES = ("up",)
"""Series Prometheus itself writes for every target (not in vLLM's /metrics): `up` is 0 when a scrape fails."""

RULE_NAMES = {
    AlertKind.SERVER_DOWN: "VllmServerDown", AlertKind.KV_CAPACITY: "VllmKvCacheBelowPlan",
    AlertKind.KV_SATURATED: "VllmKvCacheSaturated", AlertKind.PREEMPTIONS: "VllmPreemptions",
    AlertKind.QUEUE: "VllmRequestsWaiting", AlertKind.TTFT: "VllmTtftAboveTarget",
    AlertKind.ITL: "VllmInterTokenLatencyAboveTarget",
}

OWN_LABELS = ("alertname", "severity", "tpfit_alert", "job", "instance", "model_name", "engine", "num_gpu_blocks")
"""Labels an alert already has a meaning for: Prometheus's alert name, the two each rule sets (its severity and
kind), and the series labels the rules group by and their texts read. A user's `--alert-label` of one of these names
would replace it on every alert (one severity for all, texts naming the wrong server), so it is refused."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertSettings:
    """What the rules select and add: the scrape job, and labels every alert carries (team, routing)."""

    job: str
    """The Prometheus job that scrapes the servers (the ServiceMonitor's Service name, or the compose
    scrape config's job_name, when tpfit writes those)."""
    labels: tuple[tuple[str, str], ...] = field(default=())
    thresholds: Thresholds = field(default_factory=Thresholds)


def regex_at_least(n: int) -> str:
    """An RE2 pattern matching the decimal integers >= n (no leading zeros): Prometheus keeps the KV
    capacity in a label, so a numeric floor on it is a label regex.

    `regex_at_least(120)` matches 120..129 (`12[0-9]`), 130..199 (`1[3-9][0-9]`), 200..999 (`[2-9][0-9]{2}`)
    and anything of 4 digits or more; not 119 or 99."""
    d = str(max(0, n))
    alts = [f"[1-9][0-9]{{{len(d)},}}", d]
    for i, ch in enumerate(d):
        if ch == "9":
            continue
        rest = len(d) - i - 1
        digit = f"[{int(ch) + 1}-9]" if ch != "8" else "9"
        alts.append(d[:i] + digit + (f"[0-9]{{{rest}}}" if rest else ""))
    return "|".join(alts)


def _sel(job: str, extra: str = "") -> str:
    return "{" + f"job={promql_string(job)}" + (f",{extra}" if extra else "") + "}"


def alert_rules(targets: PlanTargets | None, settings: AlertSettings, *, vllm_version: str | None = None) -> dict:
    """The rules file as a dict: one group, one rule per AlertKind that the plan and thresholds allow."""
    t = settings.thresholds.for_plan(targets)
    names = MetricNames.for_version(vllm_version or (targets.vllm_version if targets else CURRENT_VLLM_VERSION))
    job = settings.job
    s = _sel(job)
    window = format_duration(t.window_s)
    by = "instance, model_name"
    plan_note = (f" The plan: {targets.concurrency} requests of {targets.context_tokens:,} tokens, "
                 f"{targets.kv_cache_tokens:,} KV tokens per engine." if targets else "")

    def rule(kind: AlertKind, expr: str, hold_s: float, summary: str, description: str) -> dict:
        return {
            "alert": RULE_NAMES[kind], "expr": expr, "for": format_duration(hold_s),
            "labels": {"severity": SEVERITY[kind], "tpfit_alert": kind.value,
                       **{k: template_text(v) for k, v in settings.labels}},
            "annotations": {"summary": summary, "description": description + plan_note,
                            "runbook": template_text(fix_for(kind, targets))},
        }

    rules = [
        rule(AlertKind.SERVER_DOWN, f"up{s} == 0", t.down_for_s,
             "vLLM {{ $labels.instance }} does not answer /metrics",
             f"Prometheus could not scrape {{{{ $labels.instance }}}} (job {template_text(job)}) for "
             f"{format_duration(t.down_for_s)}."),
    ]
    if targets is not None:
        floor = math.ceil(targets.num_gpu_blocks * (1 - t.kv_capacity_shortfall))
        matchers = f'block_size="{targets.block_size}",num_gpu_blocks!~"{regex_at_least(floor)}"'
        rules.append(rule(
            AlertKind.KV_CAPACITY, names.cache_config + _sel(job, matchers),
            0.0, "vLLM {{ $labels.instance }} has a smaller KV cache than planned",
            f"Engine {{{{ $labels.engine }}}} has {{{{ $labels.num_gpu_blocks }}}} KV blocks of {targets.block_size} "
            f"tokens; the plan predicted {targets.num_gpu_blocks:,} (alert below {floor:,}, "
            f"{t.kv_capacity_shortfall:.0%} short)."))
    rules += [
        rule(AlertKind.KV_SATURATED, f"max by ({by}, engine) ({names.kv_cache_usage}{s}) >= {t.kv_cache_usage:g}",
             t.kv_cache_usage_for_s, "vLLM {{ $labels.instance }} KV cache above "
             f"{t.kv_cache_usage:.0%}",
             "KV cache usage is {{ $value | humanizePercentage }} on engine {{ $labels.engine }}: new long requests "
             "will wait, running ones may be preempted."),
        rule(AlertKind.PREEMPTIONS, f"sum by ({by}) (rate({names.preemptions}{s}[{window}])) * 60 > "
             f"{t.preemptions_per_min:g}", t.preemptions_for_s, "vLLM {{ $labels.instance }} preempts requests",
             "{{ $value | printf \"%.1f\" }} preemptions per minute: the KV cache ran out and vLLM evicts running "
             "requests to recompute them later."),
        rule(AlertKind.QUEUE, f"sum by ({by}) ({names.requests_waiting}{s}) > {t.waiting:g}", t.waiting_for_s,
             "Requests wait on vLLM {{ $labels.instance }}",
             "{{ $value }} request(s) waiting: demand is above what the server admits (--max-num-seqs or the KV "
             "cache)."),
    ]
    for kind, metric, target, what in ((AlertKind.TTFT, names.time_to_first_token, t.ttft_p99_s, "TTFT"),
                                       (AlertKind.ITL, names.inter_token_latency, t.itl_p99_s,
                                        "Inter-token latency")):
        if target is None:
            continue
        rules.append(rule(
            kind, f"histogram_quantile(0.99, sum by (le, {by}) (rate({metric}_bucket{s}[{window}]))) > {target:g}",
            t.latency_for_s, f"vLLM {{{{ $labels.instance }}}} {what} p99 above {target:g} s",
            f"{what} p99 is {{{{ $value | humanizeDuration }}}} over {window} (target {target:g} s)."))
    group = "tpfit-vllm" + (f"-{job}" if job else "")
    return {"groups": [{"name": group, "rules": rules}]}


def alerts_file(targets: PlanTargets | None, settings: AlertSettings, header: tuple[str, ...] = ()) -> str:
    note = ("Prometheus alerting rules; check with: promtool check rules alerts.yaml",
            f"Selects job=\"{settings.job}\"; change it with --job if your scrape job is named differently.")
    return comment(header + note) + dump(alert_rules(targets, settings))
