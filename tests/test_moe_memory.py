"""MoE memory: vLLM's fused-MoE workspace and the model runner a model starts on, against vLLM's source shapes
and the real vLLM 0.26 start-ups in calibration/vllm-0.26-h200x2."""

from __future__ import annotations

from tests.conftest import load_config
from tpfit.core.engine import semantics_for, uses_model_runner_v2
from tpfit.core.layout import Layout
from tpfit.core.memory import BatchDefaults, activation_bytes, moe_workspace_bytes, profile_era
from tpfit.core.memory_model import ProfileEra
from tpfit.data import load_memory_model
from tpfit.units import GIB

MM = load_memory_model()


def test_workspace_is_tritonexperts_shapes():
    # Qwen3-30B-A3B, 16384 tokens, top-8, hidden 2048, expert width 768 / TP 2 = 384: ws13 = M x 8 x max(384, 2048),
    # ws2 = M x 8 x max(768, 2048), bf16 -> 2 x 16384 x 8 x 2048 x 2 bytes = exactly 1 GiB
    q30 = load_config("Qwen--Qwen3-30B-A3B.json")
    layers = range(0, q30.num_hidden_layers)
    assert moe_workspace_bytes(q30, Layout(tp=2), layers, 16384) == GIB
    # the hidden size dominates both, so expert parallel (full width 768 per GPU) and TP=1 change nothing: vLLM
    # logged 3.21 GiB peak activation for all three (q30t2, q30t2ep, q30t1)
    assert moe_workspace_bytes(q30, Layout(tp=2, enable_expert_parallel=True), layers, 16384) == GIB
    assert moe_workspace_bytes(q30, Layout(tp=1), layers, 16384) == GIB
    # Mixtral-8x7B: expert width 14336 > hidden 4096: TP=2 -> 7168 + 14336 per token and top-2
    mix = load_config("mistralai--Mixtral-8x7B-v0.1.json")
    assert moe_workspace_bytes(mix, Layout(tp=2), range(0, 32), 2048) == 2048 * 2 * (7168 + 14336) * 2
    # data parallel: each rank's experts see every rank's tokens, at a width split over TP x DP
    assert moe_workspace_bytes(mix, Layout(tp=1, dp=2), range(0, 32), 2048) == 4096 * 2 * (7168 + 14336) * 2
    # a dense model has none
    assert moe_workspace_bytes(load_config("meta-llama--Llama-3.1-8B.json"), Layout(), range(0, 32), 16384) == 0


def test_gpt_oss_mxfp4_workspace_is_oaitritonexperts_shapes():
    # OAITritonExperts: ws13 = M x K (the output), ws2 = M x top_k x N/2; gpt-oss-20b: K = 2880, top-4, width 2880
    oss = load_config("openai--gpt-oss-20b.json")
    got = moe_workspace_bytes(oss, Layout(), range(0, oss.num_hidden_layers), 8192)
    assert got == 8192 * 2880 * 2 + 8192 * 4 * 2880 * 2


def test_model_runner_per_release_and_architecture():
    def v2(version, arch, *, moe=False, hybrid=False, quantized=False):
        return uses_model_runner_v2(version, architecture=arch, is_moe=moe, is_hybrid=hybrid, is_quantized=quantized)

    assert not v2((0, 19, 0), "LlamaForCausalLM")  # V1 only before 0.22
    assert v2((0, 22, 0), "Qwen3ForCausalLM") and not v2((0, 22, 0), "LlamaForCausalLM")
    assert v2((0, 23, 0), "LlamaForCausalLM") and not v2((0, 23, 0), "LlamaForCausalLM", quantized=True)
    assert v2((0, 24, 0), "DeepseekV2ForCausalLM", moe=True) and not v2((0, 24, 0), "Qwen2ForCausalLM")
    # 0.26: every dense model, the listed MoE architectures, no other MoE, no hybrid
    assert v2((0, 26, 0), "Qwen2ForCausalLM") and v2((0, 26, 0), "DeepseekV2ForCausalLM", moe=True)
    assert not v2((0, 26, 0), "Qwen3MoeForCausalLM", moe=True) and not v2((0, 26, 0), "MixtralForCausalLM", moe=True)
    assert not v2((0, 26, 0), "NemotronHForCausalLM", hybrid=True)
    assert v2((0, 29, 0), "Qwen3MoeForCausalLM", moe=True) and v2((0, 33, 0), "Qwen3NextForCausalLM", moe=True, hybrid=True)


def test_v1_runner_peak_is_workspace_over_sampler():
    # vLLM 0.26 started Qwen3-30B-A3B on the V1 runner and logged 3.21 GiB peak at 16384 tokens and 2.28 GiB at 2048
    # (calibration/vllm-0.26-h200x2 q30t1, q30t1b2k): the workspace (1 GiB, 1/8 GiB) over the V1 sampler warm-up
    # of 1024 x 151936 logits
    q30 = load_config("Qwen--Qwen3-30B-A3B.json")
    sem = semantics_for("0.26.0")
    assert profile_era(q30, sem) is ProfileEra.MODEL_RUNNER_V1
    layers = range(0, q30.num_hidden_layers)
    for tokens, logged in ((16384, 3.21), (2048, 2.28)):
        got = activation_bytes(q30, Layout(), layers, last_stage=True, sem=sem, mm=MM,
                               batch=BatchDefaults(max_num_seqs=1024, max_num_batched_tokens=tokens)) / GIB
        assert abs(got - logged) < 0.1, (tokens, got)
    # DeepSeek-V2-Lite is on V2's list in 0.26 (its smaller sampler warm-up: 1.66 GiB logged, dsv2lt1)
    assert profile_era(load_config("deepseek-ai--DeepSeek-V2-Lite.json"), sem) is ProfileEra.MODEL_RUNNER_V2


def test_a_second_process_group_costs_more_before_the_snapshot():
    # vLLM 0.26 on 2xH200 / 4xH200, total - free at start: dense TP=2 1.53 GiB (l8t2), TP=4 1.50 (l8-tp4); a second
    # group with its own communicators: the experts' beside TP (q30t2, q30t2ep, mixt2) and PP beside TP (l70-tp2pp2)
    # 2.00 GiB; PP alone is one group (l8-pp2 on 2xH100: 1.43)
    from bench.calibration_rows import own_rows
    from tpfit.core.memory import pre_snapshot_bytes

    rows = [r for r in own_rows() if r.layout.world_size > 1]
    assert {r.name.split()[0] for r in rows} >= {"q30t2", "mixt2", "l8t2", "l70-tp2pp2", "l8-pp2"}
    for r in rows:
        got = pre_snapshot_bytes(r.layout, MM, moe=r.spec.is_moe) / GIB
        assert abs(got - r.logged["pre_snapshot_gib"]) < 0.1, r.name


def test_language_model_only_leaves_the_vision_tower_out():
    from tpfit import make_plan
    from tpfit.core.engine import EngineArgs
    from tpfit.hardware.cluster import Cluster

    # vLLM 0.26, Llama-4-Scout (bf16) at TP=2 with --language-model-only on 2xH200: "Model loading took 102.97 GiB"
    # (calibration/vllm-0.26-h200x2/sct2.log); the tower is the config's vision_config, bf16, split by TP
    spec = load_config("meta-llama--Llama-4-Scout-17B-16E-Instruct.json")

    def weights(only):
        engine = EngineArgs(vllm_version="0.26.0", max_model_len=8192, language_model_only=only)
        plan = make_plan(spec, Cluster.parse("2xh200"), engine=engine, layouts=(Layout(tp=2),))
        return plan.candidates[0].memory.gpus[0].weight_bytes, plan

    text, plan = weights(True)
    full, _ = weights(False)
    assert abs(text / GIB - 102.97) < 0.05
    assert spec.vision_params > 0 and abs((full - text) - spec.vision_params * 2 / 2) / (full - text) < 0.05
    assert plan.model.vision_params == 0


def test_v1_runner_subtracts_its_graph_estimate_not_the_pool():
    from pathlib import Path

    from tpfit import make_plan
    from tpfit.core.engine import EngineArgs
    from tpfit.hardware.cluster import Cluster
    from tpfit.live.startup_log import parse_startup_log

    # the 0.26 log: "Estimated CUDA graph memory: 0.49 GiB" subtracted (KV 18.83 = 125.82 - 102.97 - 3.41 - 0.12 -
    # 0.49), then "CUDA graph pool memory: 0.71 GiB (actual)" taken outside the budget
    log = Path(__file__).resolve().parents[1] / "calibration" / "vllm-0.26-h200x2" / "sct2.log"
    figures = parse_startup_log(log.read_text())
    assert (figures.estimated_cuda_graph_gib, figures.cuda_graph_gib) == (0.49, 0.71)
    mm = load_memory_model()
    assert 0.5 < mm.cuda_graph_estimate_share_v1 < 1
    spec = load_config("Qwen--Qwen3-30B-A3B.json")
    engine = EngineArgs(vllm_version="0.26.0", max_model_len=8192)
    g = make_plan(spec, Cluster.parse("1xh200"), engine=engine, layouts=(Layout(),)).candidates[0].memory.gpus[0]
    budgeted = int(g.cuda_graph_bytes * mm.cuda_graph_estimate_share_v1)
    assert g.cuda_graph_budget_bytes == budgeted
    assert g.kv_cache_bytes == g.requested_bytes - g.weight_bytes - g.activation_bytes - g.non_torch_bytes - budgeted
    assert g.outside_budget_bytes == g.cuda_graph_bytes - budgeted + g.pre_snapshot_bytes
