"""vLLM releases from 0.6 on: the V0 engine's profile length and refusal (0.6, 0.7), V1 before 0.19 read as 0.19,
and releases outside the modelled range refused, naming it."""

from __future__ import annotations

import subprocess
import sys

import pytest
from msgspec.structs import replace

from tests.conftest import CONFIGS, load_config
from tpfit import make_plan
from tpfit.core.engine import EngineArgs, MODELLED_VLLM_VERSIONS, semantics_for
from tpfit.core.layout import Layout
from tpfit.hardware.cluster import Cluster
from tpfit.units import GIB

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
L8 = "meta-llama--Llama-3.1-8B.json"


def plan_one(config: str, gpus: str, **engine):
    spec = load_config(config)
    return make_plan(spec, Cluster.parse(gpus), engine=EngineArgs(**engine), layouts=(Layout(),)).candidates[0].memory


def test_v0_profiles_max_model_len_tokens_and_refuses_with_its_message():
    # vLLM 0.6.0 on one RTX 3090, Llama-3.1-8B at --max-model-len 32768: no chunked prefill at <= 32K, so the profile
    # run is max(32768, 2048) tokens (SchedulerConfig), 256 sequences, and the activation it leaves reserved is that
    # long forward's; the KV cache then holds fewer tokens than one request needs
    m = plan_one(L8, "1x3090", vllm_version="0.6.0", max_model_len=32768)
    assert (m.max_num_batched_tokens, m.max_num_seqs, m.gpu_memory_utilization) == (32768, 256, 0.9)
    short = plan_one(L8, "1x3090", vllm_version="0.6.0", max_model_len=8192)
    assert short.max_num_batched_tokens == 8192
    act, act_short = m.gpus[0].activation_bytes, short.gpus[0].activation_bytes
    assert 3 * GIB < act and 3.5 < act / act_short < 4.5  # the forward grows with the profile length
    assert m.verdict == "refused_at_start"
    stored = m.gpus[0].num_blocks * 16
    assert m.vllm_error == (
        f"The model's max seq len (32768) is larger than the maximum number of tokens that can be stored in KV cache "
        f"({stored}). Try increasing `gpu_memory_utilization` or decreasing `max_model_len` when initializing the "
        "engine.")
    assert m.max_model_len_fit == stored < 32768 and f"--max-model-len {stored}" in m.reasons[0]
    # the same request on 0.26 (V1, chunked prefill, 2048-token profile for `vllm serve` on a 24 GB card) starts
    assert plan_one(L8, "1x3090", vllm_version="0.26.0", max_model_len=32768).verdict == "starts"
    # V0 turns chunked prefill on above 32K: a 512-token profile run (2048 from 0.6.5), so a longer context costs
    # less activation
    long = plan_one(L8, "1x3090", vllm_version="0.6.0", max_model_len=65536)
    assert long.max_num_batched_tokens == 512 and long.gpus[0].activation_bytes < act / 4
    assert plan_one(L8, "1x3090", vllm_version="0.6.6", max_model_len=65536).max_num_batched_tokens == 2048


def test_v0_budget_has_no_graph_estimate_no_null_block_and_no_free_memory_check():
    sem = semantics_for("0.7.3")
    assert sem.engine_v0 and not sem.cudagraphs_in_budget and sem.default_gpu_memory_utilization == 0.9
    m = plan_one(L8, "1xh100", vllm_version="0.6.0", max_model_len=8192)
    g = m.gpus[0]
    assert g.kv_cache_bytes == g.requested_bytes - g.weight_bytes - g.activation_bytes - g.non_torch_bytes
    assert g.requested_bytes == int(g.total_bytes * 0.9)
    busy = replace(Cluster.parse("1xh100"), free_bytes=(72 * GIB,))
    spec = load_config(L8)
    v0 = make_plan(spec, busy, engine=EngineArgs(vllm_version="0.6.0"), layouts=(Layout(),)).candidates[0].memory
    assert "Free memory on device" not in v0.vllm_error


def test_v1_before_0_19_is_read_as_0_19():
    a, b = semantics_for("0.10.2"), semantics_for("0.19.0")
    assert not a.engine_v0 and replace(a, version=b.version) == b
    assert plan_one(L8, "1xh100", vllm_version="0.8.5").kv_cache_tokens == plan_one(
        L8, "1xh100", vllm_version="0.19.0").kv_cache_tokens


def test_outside_the_modelled_range_is_refused_naming_it():
    assert MODELLED_VLLM_VERSIONS[0] == "0.6.0"
    result = subprocess.run([sys.executable, "-m", "tpfit", "plan", "llama-3.1-8b", "--gpus", "1x3090",
                             "--vllm-version", "0.5.4"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 2 and "0.6.0" in result.stderr and "0.33.0" in result.stderr
    ok = subprocess.run([sys.executable, "-m", "tpfit", "plan", "llama-3.1-8b", "--gpus", "1x3090",
                         "--vllm-version", "0.6.0", "--max-model-len", "32768", "--json"], capture_output=True,
                        text=True, cwd=ROOT, timeout=120)
    assert ok.returncode == 1 and "larger than the maximum number of tokens" in ok.stdout


def test_v0_against_vllm_0_6_logs_of_llama_8b_on_one_3090():
    # vLLM 0.6 on one RTX 3090 (vllm-project/vllm issue #10517): Llama-3.1-8B-Instruct at 20k, 29k and 35k tokens,
    # utilization 0.90; "total_gpu_memory=23.58GiB"; 20k started with 1952 blocks; 29k was refused: "The model's
    # max seq len (29000) is larger than the maximum number of tokens that can be stored in KV cache (23648)";
    # 35k (> 32K: chunked prefill, a 512-token profile run) started with 0.06 GiB peak activation
    def v0(length):
        return plan_one("meta-llama--Llama-3.1-8B-Instruct.json", "1x3090", vllm_version="0.6.4", max_model_len=length,
                        gpu_memory_utilization=0.9)

    # The same log's breakdown: "peak_torch_memory=17.06GiB" at 20k and 17.98 at 29k over 14.99 GiB of weights
    # (2.07 and 2.99 GiB of activation), "non_torch_memory=0.35GiB" (V0 counts the CUDA context there; tpfit's
    # single-GPU non-torch is 0.24): the activation is a shade high and the non-torch low, and they partly cancel.
    short = v0(20000)
    assert round(short.gpus[0].total_bytes / GIB, 2) == 23.58
    assert abs(short.gpus[0].activation_bytes / GIB - 2.07) / 2.07 < 0.03
    assert abs(short.gpus[0].num_blocks - 1952) / 1952 < 0.02
    refused = v0(29000)
    assert abs(refused.gpus[0].activation_bytes / GIB - 2.99) / 2.99 < 0.03
    stored = refused.gpus[0].num_blocks * 16
    assert refused.verdict == "refused_at_start" and f"stored in KV cache ({stored})" in refused.vllm_error
    assert abs(stored - 23648) / 23648 < 0.015
    long = v0(35000)
    assert long.verdict != "refused_at_start" and long.max_num_batched_tokens == 512
    assert abs(long.gpus[0].activation_bytes / GIB - 0.06) < 0.02


def test_explain_reads_v0s_refusal():
    from tpfit.live.explain import explain

    # vLLM 0.6's refusal in vllm-project/vllm issue #10517 (Llama-3.1-8B on one 3090 at 29000 tokens)
    log = ("ValueError: The model's max seq len (29000) is larger than the maximum number of tokens that can be stored "
           "in KV cache (23648). Try increasing `gpu_memory_utilization` or decreasing `max_model_len` when "
           "initializing the engine.")
    d = explain(log)[0]
    assert d.kind == "max_model_len_exceeds_kv_cache" and "--max-model-len 23648" in d.fix


# The first vLLM release whose model registry has each architecture, as read in the wheels of 0.6.0 to 0.22.0:
# (the last release that refuses it, the first that loads it), one config per family.
FIRST_LOADS = {
    "deepseek-ai--DeepSeek-V3.json": ("0.6.5", "0.6.6"),
    "moonshotai--Kimi-K2-Instruct.json": ("0.6.5", "0.6.6"),
    "meta-llama--Llama-4-Scout-17B-16E-Instruct.json": ("0.8.2", "0.8.3"),
    "Qwen--Qwen3-8B.json": ("0.8.3", "0.8.4"),
    "Qwen--Qwen3-30B-A3B.json": ("0.8.3", "0.8.4"),
    "nvidia--Nemotron-H-56B-Base-8K.json": ("0.9.0", "0.9.1"),
    "openai--gpt-oss-20b.json": ("0.10.0", "0.10.1"),
    "Qwen--Qwen3-Next-80B-A3B-Thinking.json": ("0.10.1", "0.10.2"),
    "Qwen--Qwen3-VL-32B-Instruct.json": ("0.10.2", "0.11.0"),
    "RedHatAI--DeepSeek-V4-Flash-NVFP4-FP8.json": ("0.19.1", "0.20.0"),
}


@pytest.mark.parametrize("config", sorted(FIRST_LOADS))
def test_a_release_older_than_the_architecture_refuses_it_with_vllms_message(config):
    from tpfit.errors import UsageError

    refuses, loads = FIRST_LOADS[config]
    spec = load_config(config)
    with pytest.raises(UsageError) as err:
        make_plan(spec, Cluster.parse("8xh200"), engine=EngineArgs(vllm_version=refuses), layouts=(Layout(tp=8),))
    text = str(err.value)
    assert f"Model architectures ['{spec.architecture}'] are not supported for now" in text
    assert f"use vLLM >= {loads}" in text and text.startswith(f"--vllm-version {refuses}:")
    plan = make_plan(spec, Cluster.parse("8xh200"), engine=EngineArgs(vllm_version=loads), layouts=(Layout(tp=8),))
    assert plan.candidates


def test_every_family_architecture_has_a_first_release():
    from tpfit.vllm_facts import FIRST_RELEASE_WITH_ARCHITECTURE, IN_EVERY_MODELLED_RELEASE

    known = set(FIRST_RELEASE_WITH_ARCHITECTURE) | IN_EVERY_MODELLED_RELEASE
    archs = {load_config(p.name).architecture for p in CONFIGS.glob("*.json")}
    assert archs <= known, archs - known
    assert not set(FIRST_RELEASE_WITH_ARCHITECTURE) & IN_EVERY_MODELLED_RELEASE


def test_nemotron_nas_before_0_8_3_and_the_cli_exit_code():
    nas = str(CONFIGS / "nvidia--Llama-3_3-Nemotron-Super-49B-v1.json")
    old = subprocess.run([sys.executable, "-m", "tpfit", "plan", nas, "--gpus", "2xh100", "--vllm-version", "0.8.2"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert old.returncode == 2 and "DeciLM-7B" in old.stderr and ">= 0.8.3" in old.stderr
    assert len(old.stderr.strip().splitlines()) == 1 and not old.stdout
    v4 = str(CONFIGS / "RedHatAI--DeepSeek-V4-Flash-NVFP4-FP8.json")
    new = subprocess.run([sys.executable, "-m", "tpfit", "plan", v4, "--gpus", "8xh200", "--vllm-version", "0.6.0"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert new.returncode == 2 and "['DeepseekV4ForCausalLM'] are not supported for now" in new.stderr


def test_hybrid_state_blocks_follow_each_releases_prefix_caching_default():
    from tpfit.core.engine import mamba_cache_mode
    from tpfit.core.memory import state_blocks
    from tpfit.kinds import MambaCacheMode

    nemotron, qnext = "NemotronHForCausalLM", "Qwen3NextForCausalLM"
    assert mamba_cache_mode((0, 26, 0), qnext) is mamba_cache_mode((0, 27, 1), nemotron) is MambaCacheMode.NONE
    assert mamba_cache_mode((0, 25, 0), qnext) is mamba_cache_mode((0, 33, 0), nemotron) is MambaCacheMode.ALIGN
    assert mamba_cache_mode((0, 19, 0), nemotron) is MambaCacheMode.ALL
    assert (state_blocks(MambaCacheMode.NONE, 8192, 544), state_blocks(MambaCacheMode.ALIGN, 8192, 544),
            state_blocks(MambaCacheMode.ALL, 8192, 544)) == (1, 2, 16)
    # vLLM 0.26 on 2xH200, Qwen3-Next-80B TP=2 (calibration/vllm-0.26-h200x2/qnt2.log): prefix caching off, 400.00x
    # concurrency at 8192 tokens; 0.25 and 0.33 keep two state blocks a request, so they hold fewer requests
    spec = load_config("Qwen--Qwen3-Next-80B-A3B-Thinking.json")

    def conc(version):
        engine = EngineArgs(vllm_version=version, max_model_len=8192, kv_cache_memory_bytes=int(47.32 * GIB))
        return make_plan(spec, Cluster.parse("2xh200"), engine=engine, layouts=(Layout(tp=2),)).candidates[0] \
            .memory.max_concurrency

    assert abs(conc("0.26.0") - 400.0) / 400 < 0.005
    assert conc("0.25.0") < 0.9 * conc("0.26.0") and conc("0.33.0") < 0.9 * conc("0.26.0")


def test_language_model_only_needs_a_release_that_has_the_flag():
    old = subprocess.run([sys.executable, "-m", "tpfit", "plan", "llama-3.1-8b", "--gpus", "1xh100", "--vllm-version",
                          "0.10.0", "--language-model-only"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert old.returncode == 2 and old.stderr.startswith("error: --language-model-only: vLLM 0.10.0 has no "
                                                         "--language-model-only")
    assert len(old.stderr.strip().splitlines()) == 1


def test_a_release_without_data_or_expert_parallel_plans_and_deploys_without_them(tmp_path):
    """vLLM 0.6 and 0.7 have no --data-parallel-size nor --enable-expert-parallel (their arg_utils.py): plan
    recommended replicas for them and deploy wrote `--data-parallel-size 2`, which their parser refuses (tpfit check
    said so of deploy's own file); asked for, each is one line naming the option."""
    from tests.inprocess import tpfit

    for version in ("0.6.6", "0.7.3"):
        plan = tpfit("plan", "llama-3.1-8b", "--gpus", "2xH100", "--context", "4096", "--concurrency", "64",
                     "--vllm-version", version, "--json")
        assert plan.returncode == 0, plan.stderr
        doc = __import__("json").loads(plan.stdout)
        assert {c["layout"]["dp"] for c in doc["candidates"]} == {1}
        assert not any(c["layout"]["ep"] > 1 for c in doc["candidates"])
        (tmp_path / "plan.json").write_text(plan.stdout)
        deploy = tpfit("deploy", "--plan", str(tmp_path / "plan.json"), "--format", "docker")
        assert deploy.returncode == 0 and "--data-parallel-size" not in deploy.stdout
        (tmp_path / "run.sh").write_text(deploy.stdout)
        check = tpfit("check", str(tmp_path / "run.sh"), "--gpus", "2xH100")
        assert check.returncode == 0, check.stdout
    moe = tpfit("plan", "mixtral-8x7b", "--gpus", "4xH100", "--vllm-version", "0.7.3", "--json")
    assert not any(c["layout"]["ep"] > 1 for c in __import__("json").loads(moe.stdout)["candidates"])
    for args, flag in ((("--dp", "2"), "--dp 2"), (("--enable-expert-parallel",), "--enable-expert-parallel")):
        asked = tpfit("plan", "mixtral-8x7b", "--gpus", "4xH100", "--vllm-version", "0.7.3", *args)
        assert asked.returncode == 2 and asked.stderr.startswith(f"error: {flag}: vLLM 0.7.3 has no"), asked.stderr
        assert "--vllm-version 0.8.5 or newer" in asked.stderr and len(asked.stderr.strip().splitlines()) == 1
    # the default release reads no flag table: it has every flag
    assert tpfit("plan", "llama-3.1-8b", "--gpus", "2xH100", "--dp", "2").returncode == 0


# Real releases spelled beyond X.Y.Z (the package index lists them, and vllm/vllm-openai has their tags)
POST_RELEASES = [("0.6.3.post1", "0.6.3.post1", "0.6.3"), ("v0.8.5.post1", "0.8.5.post1", "0.8.5"),
                 ("0.8.5post1", "0.8.5.post1", "0.8.5"), ("0.10.1.1", "0.10.1.1", "0.10.1"),
                 ("v0.9.0.1", "0.9.0.1", "0.9.0")]


@pytest.mark.parametrize(("given", "name", "base"), POST_RELEASES)
def test_post_releases_and_hotfixes_plan_as_their_base_and_keep_their_name(given, name, base):
    import json

    from tests.inprocess import tpfit
    from tpfit.deployment.flags import flag_table
    from tpfit.vllm_facts import parse_version, read_release

    args = ("plan", "llama-3.1-8b", "--gpus", "1xH100", "--context", "8192", "--json", "--vllm-version")
    post, plain = tpfit(*args, given), tpfit(*args, base)
    assert post.returncode == plain.returncode == 0, post.stderr
    assert json.loads(post.stdout)["engine"]["vllm_version"] == name
    assert post.stdout.replace(name, base) == plain.stdout  # the same plan: only the release's name differs
    assert read_release(given).name == name and parse_version(given) == parse_version(base)
    docker = tpfit("deploy", "llama-3.1-8b", "--gpus", "1xH100", "--format", "docker", "--vllm-version", given)
    assert docker.returncode == 0, docker.stderr
    assert f"vllm/vllm-openai:v{name}" in docker.stdout and f"vllm/vllm-openai:v{base} " not in docker.stdout
    table = flag_table(name)
    assert table.version == flag_table(base).version and table.asked == name


def test_an_image_tag_or_server_of_a_post_release_reads_as_that_release(tmp_path):
    import json

    from tests.inprocess import tpfit
    from tpfit.core.monitoring import MetricNames
    from tpfit.deployment.containers import image_version

    assert image_version("vllm/vllm-openai:v0.8.5.post1") == "0.8.5.post1"
    assert image_version("vllm/vllm-openai:v0.10.1.1-cu130") == "0.10.1.1"
    assert image_version("vllm/vllm-openai:latest") is None
    # verify plans the server's own version (GET /version): a post release's EngineArgs and metric names
    assert EngineArgs(vllm_version="0.8.5.post1").vllm_version == "0.8.5.post1"
    assert MetricNames.for_version("0.8.5.post1") == MetricNames.for_version("0.8.5")
    script = tmp_path / "run.sh"  # --language-model-only came in 0.17.1: check names the release of the tag
    script.write_text("docker run --gpus all vllm/vllm-openai:v0.8.5.post1 --model llama-3.1-8b --max-model-len 4096 "
                      "--language-model-only\n")
    found = json.loads(tpfit("check", str(script), "--gpus", "1xH100", "--json").stdout)["findings"]
    flag = next(f for f in found if f["kind"] == "unknown-flag")
    assert "0.8.5.post1" in flag["message"], flag


@pytest.mark.parametrize(("text", "why"), [("0.26.0.1", "no release 0.26.0.1"), ("0.26.0.post2", "no release"),
                                           ("0.26.0.1.2", "not a vLLM release"), ("abc", "not a vLLM release"),
                                           ("0.26.0rc1", "pre-release"), ("0.26", None), ("0.26.0+cpu", None)])
def test_read_release_takes_releases_only(text, why):
    from tpfit.vllm_facts import read_release

    if why is None:
        assert read_release(text).name == "0.26.0"
        return
    with pytest.raises(ValueError, match=why):
        read_release(text)


def test_a_development_build_of_a_server_plans_as_the_release_it_leads_to():
    """A source install or nightly image reports `0.11.1.dev5+gabc1234` at /version: verify refused it as
    '--vllm-version 0.11.1.dev5: ... a pre-release' (a flag verify has not got, exit 2); a server older than tpfit
    models raised StopIteration deep in the planner."""
    from tpfit.deployment.read_server import server_deployment
    from tpfit.errors import UsageError
    from tpfit.live.server_facts import ServerFacts
    from tpfit.live.verify_run import VerifyRequest, plan_for_server
    from tpfit.vllm_facts import build_release

    assert build_release("0.11.1.dev5+gabc1234") == build_release("0.11.1rc2") == "0.11.1"
    assert build_release("0.26.0+cpu") == "0.26.0" and build_release("v0.8.5.post1") == "0.8.5.post1"
    # a development build after a post release, and a hotfix published after tpfit's list: their X.Y.Z
    assert build_release("0.6.4.post2.dev3+g1a2b") == "0.6.4" and build_release("0.33.0.1") == "0.33.0"
    with pytest.raises(ValueError):
        build_release("unknown")
    tiny = str(ROOT / "tests" / "data" / "tiny-llama-config")
    facts = ServerFacts(url="http://127.0.0.1:8000", version="0.11.1.dev5+gabc1234", model_id="tiny", model_root=tiny,
                        max_model_len=512, block_size=128, kv_cache_memory_bytes=1 << 20)
    req = VerifyRequest(model=None, url=facts.url, kv_cache_memory_bytes="1M", kv_bytes=1 << 20)
    assert plan_for_server(facts, req).engine.vllm_version == "0.11.1"
    assert server_deployment(facts).units[0].image == "vllm/vllm-openai:v0.11.1"
    old = ServerFacts(**{**facts.to_dict(), "version": "0.5.4"})
    with pytest.raises(UsageError, match="the server runs vLLM 0.5.4; tpfit models 0.6.0") as err:
        plan_for_server(old, req)
    assert err.value.flag == "--url"


def test_a_yarn_factor_sets_the_longest_context_as_each_release_derives_it(tmp_path):
    """Qwen's model card has users add YaRN to Qwen3's config (factor 4 over 32,768 positions, max_position_embeddings
    left at 40,960). vLLM before 0.30 derived original x factor = 131,072 tokens and served --max-model-len 131072;
    0.30 stopped multiplying a YaRN factor in (config/model.py `_get_and_verify_max_len` in the 0.29.0 and 0.30.0
    wheels). tpfit refused it for every release ('--max-model-len 131072 > the model's 40960')."""
    import json

    from tests.inprocess import tpfit

    config = json.loads((CONFIGS / "Qwen--Qwen3-8B.json").read_text())
    config["rope_scaling"] = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}
    (tmp_path / "config.json").write_text(json.dumps(config))
    for version, derived, code in (("0.29.0", 131072, 0), ("0.26.0", 131072, 0), ("0.30.0", 40960, 1),
                                   ("0.33.0", 40960, 1)):
        run = tpfit("plan", str(tmp_path), "--gpus", "1xH100", "--max-model-len", "131072", "--vllm-version", version,
                    "--json")
        doc = json.loads(run.stdout)
        assert (run.returncode, doc["model"]["max_model_len"]) == (code, derived), (version, doc["summary"])
        refused = "--max-model-len 131072 > the model's 40960" in doc["summary"]
        assert refused == (derived == 40960), (version, doc["summary"])


@pytest.mark.parametrize(("given", "releases"), [
    ("0.7.4", "0.7.0, 0.7.1, 0.7.2, 0.7.3"),  # 0.7.3 was 0.7's last: 0.8.0 came next
    ("0.10.3", "0.10.0, 0.10.1, 0.10.2"),
    ("v0.26.1", "0.26.0"),
])
def test_a_release_vllm_never_published_is_refused(given, releases):
    """--vllm-version 0.7.4 planned as 'vLLM 0.7.4', and deploy pinned an image tag that does not exist: vLLM's
    releases of an older minor are known (vllm_facts.RELEASES, the package index's list); the current minor's later
    patches are still taken."""
    from tests.inprocess import tpfit

    run = tpfit("plan", "llama-3.1-8b", "--gpus", "1xH100", "--context", "4096", "--vllm-version", given)
    name = given.lstrip("v")
    assert run.returncode == 2 and run.stderr.strip() == (
        f"error: --vllm-version {given}: vLLM has no release {name} ({name.rsplit('.', 1)[0]}'s are {releases}); plan "
        "with one of those"), run.stderr
    for fine in ("0.7.3", "0.8.5.post1", "0.33.1", "0.26"):
        assert tpfit("plan", "llama-3.1-8b", "--gpus", "1xH100", "--context", "4096", "--vllm-version",
                     fine).returncode == 0, fine


def test_the_flag_table_reads_each_minors_last_release():
    """vllm_facts.RELEASES (which --vllm-version takes) and tpfit/data/vllm_flags.json (which flags a release has)
    are two homes of vLLM's releases: the table reads the last release of every minor RELEASES lists, and nothing
    else, so a release added to one but not the other fails here."""
    import json
    from pathlib import Path

    from tpfit.vllm_facts import RELEASES

    table = json.loads((Path(__file__).parents[1] / "tpfit/data/vllm_flags.json").read_text())["versions"]
    last: dict[str, str] = {}
    for release in RELEASES:  # in order: a minor's last one wins
        last[release.rsplit(".", 1)[0]] = release
    assert sorted(table, key=lambda v: tuple(map(int, v.split(".")))) == list(last.values())


@pytest.mark.parametrize(("args", "version", "dtype", "needle"), [
    # vLLM refuses float16 for Gemma 2 from 0.9.1 (_check_valid_dtype); 0.9.0 had no such rule
    (("gemma-2-9b", "--gpus", "1xH100", "--dtype", "float16"), "0.33.0", "float16",
     "gemma2 does not compute in float16 in vLLM"),
    (("gemma-2-9b", "--gpus", "1xH100", "--dtype", "float16"), "0.9.0", "float16", "fits as TP1 PP1"),
    # no bfloat16 on a V100: auto falls back to float32 for Gemma 2 (float16 is refused for it), float16 for the rest
    (("gemma-2-9b", "--gpus", "4xV100"), "0.33.0", "float32", "does not fit in float32"),
    (("llama-3.1-8b", "--gpus", "4xV100"), "0.9.1", "float16", "fits as "),
    # before 0.9.1 --dtype auto kept the checkpoint's bfloat16, which vLLM refuses below compute capability 8.0
    (("llama-3.1-8b", "--gpus", "4xV100"), "0.8.5", "bfloat16",
     "bfloat16 needs compute capability 8.0, Tesla V100 16GB (SXM2 / PCIe) has 7.0; use --dtype half (vLLM before "
     "0.9.1 keeps bfloat16 under --dtype auto)"),
])
def test_the_dtype_vllm_serves_is_each_releases(args, version, dtype, needle):
    """Gemma 2 with --dtype float16 was planned (vLLM 0.9.1 and later refuse it: 'The model type 'gemma2' does not
    support float16'); on a V100 under --dtype auto it was planned in float16 where vLLM falls back to float32, and
    bfloat16 checkpoints in float16 for releases before 0.9.1, which keep bfloat16 and refuse it (the 0.9.0, 0.9.1 and
    0.33 wheels' config `_resolve_auto_dtype`, `_FLOAT16_NOT_SUPPORTED_MODELS`; 0.8.5's worker)."""
    import json

    from tests.inprocess import tpfit

    run = tpfit("plan", *args, "--context", "4096", "--vllm-version", version, "--json")
    doc = json.loads(run.stdout)
    assert doc["model"]["dtype"] == dtype and needle in doc["summary"], (doc["model"]["dtype"], doc["summary"])
    if "does not compute in float16" in needle:
        (reason,) = {r["vllm_error"] for c in doc["candidates"] for r in c["reasons"]}
        assert reason == ("The model type 'gemma2' does not support float16. Reason: Numerical instability. Please "
                          "use bfloat16 or float32 instead.")


def test_a_float32_checkpoint_is_served_in_float16_before_0_9_1():
    """vLLM up to 0.9.0 casts a float32 checkpoint to float16 under --dtype auto ("Following common practice"; 0.6.0
    and 0.9.0 config.py), 0.9.1 to bfloat16 where the GPU has it: the tiny test model's float32 config on a V100."""
    import json

    from tests.conftest import ROOT
    from tests.inprocess import tpfit

    tiny = str(ROOT / "tests" / "data" / "tiny-llama-config")
    for version, gpus, dtype in (("0.8.5", "1xV100", "float16"), ("0.8.5", "1xH100", "float16"),
                                 ("0.33.0", "1xV100", "float16"), ("0.33.0", "1xH100", "bfloat16")):
        run = tpfit("plan", tiny, "--gpus", gpus, "--vllm-version", version, "--json")
        doc = json.loads(run.stdout)
        assert run.returncode == 0 and doc["model"]["dtype"] == dtype, (version, gpus, doc["summary"])


def test_a_float32_gemma2_checkpoint_is_served_in_bfloat16_before_0_9_1(tmp_path):
    """vLLM up to 0.9.0 casts float32 to float16 under --dtype auto but Gemma 2 to bfloat16 ("For Gemma 2, we downcast
    float32 to bfloat16 instead of float16 by default", 0.6.0 and 0.7.3 config.py), which a V100 lacks: vLLM refuses
    it there. From 0.9.1 a V100 gets float32 (float16 is refused for gemma2). The only model type resolve_model
    names for the older rule, untested until now."""
    import json

    from tests.inprocess import tpfit

    config = json.loads((CONFIGS / "google--gemma-2-9b-it.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "torch_dtype": "float32"}))
    for version, gpus, dtype, needle in (
            ("0.8.5", "1xH100", "bfloat16", "fits as TP1 PP1"),
            ("0.8.5", "1xV100", "bfloat16", "bfloat16 needs compute capability 8.0"),
            ("0.33.0", "1xV100", "float32", "does not fit in float32")):
        run = tpfit("plan", str(tmp_path), "--gpus", gpus, "--vllm-version", version, "--context", "4096", "--json")
        doc = json.loads(run.stdout)
        assert doc["model"]["dtype"] == dtype and needle in doc["summary"], (version, gpus, doc["summary"])
