"""A saved `tpfit plan --json` reads back as the Plan it was written from (`Plan.from_dict`), and `tpfit deploy
--plan` writes from it exactly the files `tpfit deploy` writes from the plan in memory."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, load_config
from tpfit.cli.monitoring import make_monitoring
from tpfit.core.plan import Plan, Workload, make_plan
from tpfit.data import load_memory_model
from tpfit.deploy.files import deployment_files
from tpfit.deploy.render import FORMATS, MONITORED_FORMATS
from tpfit.errors import DocumentError, UsageError
from tpfit.hardware.cluster import Cluster
from tpfit.report.json import plan_to_dict, read_plan_file
from tpfit.request import PlanRequest
from tpfit.vllm_facts import DEFAULT_CUDA

PLANS = [
    # dense, one node, TP=2
    pytest.param(dict(model="llama-3.1-70b", gpus="2xh100", context=8192, concurrency=3), id="dense-tp2"),
    # MoE with expert parallel layouts among the candidates
    pytest.param(dict(model="qwen3-30b-a3b", gpus="2xh100", context=8192, concurrency=16), id="moe"),
    # MLA + MoE across two nodes: PP across nodes, the Ray backend flag
    pytest.param(dict(model="llama-3.1-405b", gpus="2x8xh100", context=8192, concurrency=4), id="multi-node"),
    # PCIe cards: four replicas win (DP=4)
    pytest.param(dict(model="llama-3.1-8b", gpus="4xl40s", context=4096, concurrency=64), id="dp4"),
    # an FP8 checkpoint, and online FP8 with an FP8 KV cache and explicit flags
    pytest.param(dict(model="qwen3-32b-fp8", gpus="2xh100", context=16384, concurrency=8), id="fp8-checkpoint"),
    pytest.param(dict(model="qwen3-32b", gpus="1xh100", context=8192, concurrency=4, quantization="fp8",
                      kv_cache_dtype="fp8", max_num_seqs=32, enforce_eager=True, ttft=1.5, tpot=0.05),
                 id="online-fp8"),
    # MXFP4 experts on an older release
    pytest.param(dict(model="gpt-oss-120b", gpus="2xh100", context=8192, concurrency=8, vllm_version="0.19"),
                 id="mxfp4-0.19"),
]


def _saved(plan: Plan, tmp_path) -> Plan:
    """As `tpfit plan --json > plan.json` then `tpfit deploy --plan plan.json` read it."""
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan_to_dict(plan), indent=1))
    return read_plan_file(path)


def _files(plan: Plan, fmt: str) -> dict[str, str]:
    monitoring = fmt in MONITORED_FORMATS
    return deployment_files(
        plan, fmt, command="tpfit deploy", cuda=DEFAULT_CUDA, driver=None, port=8000, gpu_ids=(), gpu_ids_text=None,
        served_model_name=None, model_path=None, shm_size=None, monitoring=monitoring,
        monitoring_for=lambda doc, d: make_monitoring(doc, d, job=None, threshold=["ttft_p99=2s"],
                                                      alert_label=["team=ml"]))


@pytest.mark.parametrize("options", PLANS)
def test_a_saved_plan_reads_back_equal_and_deploys_the_same_files(options, tmp_path):
    plan = PlanRequest.from_options(options).make()
    again = _saved(plan, tmp_path)
    assert again == plan  # every field, down to each layer of the model and each GPU of each candidate
    single_node = plan.cluster.nodes == 1 or plan.best.layout.tp * plan.best.layout.pp <= plan.cluster.gpus_per_node
    wrote = 0
    for fmt in FORMATS:
        try:
            expected = _files(plan, fmt)
        except UsageError as err:  # a multi-node plan in a single-node format: the same refusal from the file
            assert not single_node and "--format" in str(err)
            with pytest.raises(UsageError, match="--format"):
                _files(again, fmt)
            continue
        assert _files(again, fmt) == expected, fmt
        wrote += 1
    assert wrote >= (len(FORMATS) if single_node else 4)


def test_a_plan_with_an_awq_fallback_reads_back_equal(tmp_path):
    plan = make_plan(load_config("meta-llama--Llama-3.1-70B.json"), Cluster.parse("2x3090"),
                     Workload(context=4096, concurrency=2), memory_model=load_memory_model())
    assert plan.fallback is not None and plan.fallback.best is not None
    assert _saved(plan, tmp_path) == plan


def test_the_cli_writes_the_same_files_from_a_saved_plan(tmp_path):
    """The whole path: `tpfit plan --json` saved, `tpfit deploy --plan` against `tpfit deploy MODEL` (the header's
    command line is the only difference)."""
    args = ["llama-3.1-8b", "--gpus", "4xl40s", "--context", "4096", "--concurrency", "64"]
    run = lambda *a: subprocess.run([sys.executable, "-m", "tpfit", *a], capture_output=True, text=True,  # noqa: E731
                                    cwd=ROOT, timeout=120)
    saved = run("plan", *args, "--json")
    assert saved.returncode == 0, saved.stderr
    (tmp_path / "plan.json").write_text(saved.stdout)
    for fmt in ("k8s", "alerts"):
        direct = run("deploy", *args, "--format", fmt, "--monitoring" if fmt == "k8s" else "--job=vllm",
                     "--out", str(tmp_path / f"direct-{fmt}"))
        loaded = run("deploy", "--plan", str(tmp_path / "plan.json"), "--format", fmt,
                     "--monitoring" if fmt == "k8s" else "--job=vllm", "--out", str(tmp_path / f"saved-{fmt}"))
        assert direct.returncode == loaded.returncode == 0, direct.stderr + loaded.stderr
        names = sorted(p.name for p in (tmp_path / f"direct-{fmt}").iterdir())
        assert names == sorted(p.name for p in (tmp_path / f"saved-{fmt}").iterdir()) and names
        for name in names:
            a, b = ((tmp_path / f"{side}-{fmt}" / name).read_text().splitlines() for side in ("direct", "saved"))
            differ = [(x, y) for x, y in zip(a, b) if x != y]
            assert len(a) == len(b) and all("Generated by tpfit" in x for x, _ in differ), (name, differ)


# ---- bad files: one line naming the field ---------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_doc() -> dict:
    plan = make_plan(load_config("Qwen--Qwen3-30B-A3B.json"), Cluster.parse("2xh100"), memory_model=load_memory_model())
    return json.loads(json.dumps(plan_to_dict(plan)))


@pytest.mark.parametrize("path,value,named", [
    (("candidates", 0, "memory", "verdict"), "maybe", "plan.candidates.0.memory.verdict"),
    (("model", "layers", 3, "num_key_value_heads"), 5, "plan.model.layers.3"),
    (("model", "layers", 3, "attention"), "psychic", "plan.model.layers.3.attention"),
    (("candidates", 1, "weight_bytes_per_gpu", 0), 1.5, "plan.candidates.1.weight_bytes_per_gpu.0"),
    (("cluster", "gpus_per_node"), True, "plan.cluster.gpus_per_node"),
    (("semantics", "version"), [0, 33], "plan.semantics.version"),
    (("recommended",), 999, "recommended"),
    (("fallback",), "awq", "plan.fallback"),
    (("workload", "surprise"), 1, "plan.workload.surprise"),
])
def test_a_broken_plan_value_names_the_field(saved_doc, tmp_path, path, value, named):
    doc = json.loads(json.dumps(saved_doc))
    target = doc["plan"]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    (tmp_path / "p.json").write_text(json.dumps(doc))
    with pytest.raises(UsageError) as err:
        read_plan_file(tmp_path / "p.json")
    line = str(err.value)
    assert line.startswith(f"--plan {tmp_path / 'p.json'}: ") and named in line and "\n" not in line, line


def test_a_missing_field_and_a_deeper_fallback_are_named(saved_doc):
    doc = json.loads(json.dumps(saved_doc))
    del doc["plan"]["engine"]
    with pytest.raises(DocumentError, match=r"^engine is missing$"):
        Plan.from_dict(doc["plan"])
    doc = json.loads(json.dumps(saved_doc))
    doc["plan"]["fallback"] = json.loads(json.dumps(saved_doc["plan"]))
    doc["plan"]["fallback"]["fallback"] = json.loads(json.dumps(saved_doc["plan"]))
    with pytest.raises(DocumentError, match="fallback.fallback"):
        Plan.from_dict(doc["plan"])


def test_a_figure_changed_by_hand_is_refused_not_ignored(saved_doc, tmp_path):
    """The readable part of the file must say what the Plan value says: a flag edited there is named, since
    deploy writes the Plan's own flags."""
    doc = json.loads(json.dumps(saved_doc))
    doc["candidates"][doc["recommended"]]["flags"][1]["value"] = "99999"
    (tmp_path / "p.json").write_text(json.dumps(doc))
    with pytest.raises(UsageError, match=rf"candidates\.{doc['recommended']}\.flags\.1\.value differs from the plan"):
        read_plan_file(tmp_path / "p.json")


@pytest.mark.parametrize("change,needle", [
    (lambda d: d.update(schema_version=1), "schema_version is 1, this tpfit reads 2"),
    (lambda d: d.update(schema_version="2"), "schema_version is '2', this tpfit reads 2"),
    (lambda d: d.pop("plan"), "plan is missing"),
    (lambda d: d.update(plan=[1]), "plan: the value is [1], not an object"),
    (lambda d: d.clear() or d.update(services={}), "not a `tpfit plan --json` file"),
])
def test_a_foreign_or_old_file_is_one_line_and_exit_2(saved_doc, tmp_path, change, needle):
    doc = json.loads(json.dumps(saved_doc))
    change(doc)
    (tmp_path / "p.json").write_text(json.dumps(doc))
    result = subprocess.run([sys.executable, "-m", "tpfit", "deploy", "--plan", str(tmp_path / "p.json")],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and needle in lines[0] and "--plan" in lines[0], result.stderr
