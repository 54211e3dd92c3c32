"""A plan round-trips through JSON; the recommended layout passes every rule (properties)."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import load_config
from tpfit.core.engine import EngineArgs
from tpfit import Plan, Workload, make_plan
from tpfit.core.rules import check_layout
from tpfit.hardware.cluster import Cluster
from tpfit.kinds import Objective
from tpfit.model.spec import ModelSpec
from tpfit.report.json import plan_json, plan_to_dict
from tpfit.report.terminal import render_to_text

CONFIG_NAMES = ["meta-llama--Llama-3.1-70B.json", "mistralai--Mixtral-8x7B-v0.1.json", "Qwen--Qwen3-32B-FP8.json",
                "deepseek-ai--DeepSeek-V2-Lite.json", "google--gemma-2-9b-it.json", "openai--gpt-oss-20b.json"]


@settings(max_examples=25, deadline=None)
@given(config=st.sampled_from(CONFIG_NAMES), gpus=st.sampled_from(["1xh100", "2x3090", "3xa100", "4xl40s", "8xh100"]),
       context=st.sampled_from([2048, 4096, 8192, 32768]), concurrency=st.integers(1, 64))
def test_plan_round_trips_and_best_passes_rules(config, gpus, context, concurrency):
    spec = load_config(config)
    cluster = Cluster.parse(gpus)
    engine = EngineArgs()
    plan = make_plan(spec, cluster, Workload(context=context, concurrency=concurrency), engine)
    doc = plan_to_dict(plan)
    assert json.loads(json.dumps(doc)) == doc
    # `tpfit plan --json` writes it with msgspec: read back, the standard library writes the same text (every
    # value, int or float, and key order as plan_to_dict made them)
    text = plan_json(plan)
    assert json.dumps(json.loads(text)) == json.dumps(doc) and text.isascii()  # the summary's "×" escaped
    # the saved Plan value reads back equal (what `tpfit deploy --plan` deploys)
    assert Plan.from_dict(json.loads(json.dumps(doc["plan"]))) == plan
    # the same inputs, read back from JSON, give the same plan
    again = make_plan(ModelSpec.from_dict(json.loads(json.dumps(spec.to_dict()))), cluster,
                      Workload(context=context, concurrency=concurrency), engine)
    assert plan_to_dict(again) == doc
    if plan.best is not None:
        assert not check_layout(plan.model, plan.best.layout, cluster, plan.engine)


def test_terminal_report_names_the_recommendation():
    plan = make_plan(load_config("Qwen--Qwen3-32B.json"), Cluster.parse("3xh100"), Workload(context=8192, concurrency=8))
    text = render_to_text(plan, width=140)
    assert "TP1 PP3" in text and "TP=3 is refused (64 attention heads)" in text
    assert "--pipeline-parallel-size 3" in text and "Rule of thumb" in text


def test_memory_bar_fits_a_narrow_terminal():
    plan = make_plan(load_config("Qwen--Qwen3-32B.json"), Cluster.parse("3xh100"), Workload(context=8192, concurrency=8))
    for width in (60, 80, 140):
        lines = render_to_text(plan, width=width).splitlines()
        bars = [line for line in lines if line.startswith("  stage ")]
        # one line per stage, its figures on that line (at 80 columns they used to wrap onto the next)
        assert len(bars) == len(plan.best.memory.gpus) and all(line.endswith("GiB free") and len(line) <= width for line in bars), lines


def test_ranking_avoids_tp_without_nvlink_and_uses_it_for_latency_with_nvlink():
    # vLLM docs: on GPUs without NVLink (e.g. L40S) prefer pipeline parallelism or replicas to tensor parallelism
    # for throughput; with NVLink, TP=2 answers one request faster than one GPU can
    spec = load_config("meta-llama--Llama-3.1-8B.json")
    pcie = make_plan(spec, Cluster.parse("2xl40s"), Workload(context=2048, concurrency=128), EngineArgs())
    latency = Workload(context=8192, concurrency=1, objective=Objective.LATENCY)
    nvlink = make_plan(spec, Cluster.parse("2xh100"), latency, EngineArgs())
    assert pcie.best.layout.tp == 1
    assert nvlink.best.layout.tp == 2


def test_no_negative_zero_in_the_speed_figures():
    """A step's pipeline term is a difference of sums, zero up to float noise without PP: its rounding printed
    "-0.0" for 36 layouts of DeepSeek-V3 on 2x8 H100 (and, with Python 3.12's compensated sum(), for other ones)."""
    plan = make_plan(load_config("deepseek-ai--DeepSeek-V3.json"), Cluster.parse("2x8xh100"), Workload(context=8192),
                     EngineArgs())
    text = plan_json(plan)
    assert '"pipeline": 0.0' in text and "-0.0" not in text
