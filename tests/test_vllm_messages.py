"""vLLM's refusal messages: written once, printed by the planner, found again by `tpfit explain`."""

from __future__ import annotations

import string

import pytest

from tests.conftest import load_config
from msgspec.structs import replace

from tpfit import EngineArgs, Workload, make_plan
from tpfit.core.plan import AWQ_FALLBACK
from tpfit.core.vllm_messages import (
    FREE_MEMORY_BELOW_REQUEST, KV_CACHE_BELOW_MAX_LEN, MAX_LEN_ABOVE_DERIVED, MESSAGES, VllmMessage,
)
from tpfit.hardware.cluster import Cluster
from tpfit.live.explain import RULES, explain

SAMPLE = {"supported": [-1, 32, 64, 128], "device": "", "max_len_key": "max_position_embeddings",
          "model_max_length": None, "method": "fp8", "derived": 2048.0, "free_gib": 37.68, "total_gib": 79.18,
          "gpu_memory_utilization": 0.92, "requested_gib": 72.84, "needed_gib": 1.07, "available_gib": 0.5,
          "reason": "Numerical instability. Please use bfloat16 or float32 instead.", "model_type": "gemma2"}


def fields(message: VllmMessage) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(message.template) if name]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: m.template[:40])
def test_a_formatted_message_is_found_with_its_fields(message):
    values = {name: SAMPLE.get(name, 96) for name in fields(message)}
    text = message.format(**values)
    m = message.search(f"ERROR 11-26 12:00:00 [core.py:123] ValueError: {text} [type=value_error]")
    assert m is not None and m.group(0) == text
    assert {k: str(v) for k, v in m.groupdict().items()} == {k: str(v) for k, v in values.items()}


def test_explain_knows_every_message_a_log_can_hold():
    known = {id(signature) for signature, _ in RULES}
    assert [m.template for m in MESSAGES if m.in_logs and id(m) not in known] == []


def test_releases_word_it_differently_and_it_is_still_found():
    # vLLM 0.26 names the device; the CPU backend adds a clause after the estimate; a log may drop the apostrophe
    m = FREE_MEMORY_BELOW_REQUEST.search("Free memory on device cuda:0 (138.3/139.8 GiB) on startup is less than "
                                         "desired GPU memory utilization (0.99, 138.4 GiB). Decrease GPU memory")
    assert (m["device"], m["free_gib"], m["requested_gib"]) == ("cuda:0 ", "138.3", "138.4")
    m = KV_CACHE_BELOW_MAX_LEN.search("To serve at least one request with the models max seq len (2048), (0.0 GiB KV "
                                      "cache is needed, which is larger than the available KV cache memory (0.0 GiB). "
                                      "Based on the available memory, the estimated maximum model length is 896. Try "
                                      "increasing `gpu_memory_utilization` (which also controls CPU memory on the CPU")
    assert (m["max_model_len"], m["estimated"]) == ("2048", "896")
    m = MAX_LEN_ABOVE_DERIVED.search("User-specified max_model_len (8192) is greater than the derived max_model_len "
                                     "(max_position_embeddings=2048.0 or model_max_length=4096 in model's config.json).")
    assert (m["derived"], m["model_max_length"]) == ("2048.0", "4096")


@pytest.mark.parametrize("config,gpus,engine", [
    ("Qwen--Qwen3-32B.json", "6xh100", EngineArgs()),  # heads, KV heads, vocab, MLP widths vs TP; world size
    ("Qwen--Qwen3-32B-FP8.json", "8xh100", EngineArgs()),  # FP8 blocks
    ("deepseek-ai--DeepSeek-V3.json", "8xh100", EngineArgs()),  # experts, MLA
    ("meta-llama--Llama-3.1-70B.json", "2xh100", EngineArgs(max_model_len=300_000)),  # above the derived maximum
    ("meta-llama--Llama-3.1-70B.json", "2x3090", EngineArgs(max_model_len=4096)),  # no KV memory
    ("meta-llama--Llama-3.1-70B.json", "2xh100", EngineArgs()),  # KV below one 131072-token request
    ("meta-llama--Llama-3.1-8B.json", "1xh200", EngineArgs(gpu_memory_utilization=0.999)),  # free memory at start
    ("openai--gpt-oss-20b.json", "1xh100", EngineArgs(dtype="float16")),  # MXFP4 computes in bfloat16 only
])
def test_every_refusal_the_planner_predicts_is_explained(config, gpus, engine):
    plan = make_plan(load_config(config), Cluster.parse(gpus), Workload(), engine)
    errors = {v.vllm_error for c in plan.candidates for v in c.violations}
    errors |= {c.memory.vllm_error for c in plan.candidates if c.memory and c.memory.vllm_error}
    assert errors
    for error in errors:
        assert explain(f"(EngineCore pid=1) ERROR {error}"), error


def test_a_dtype_the_quantization_method_does_not_take_is_refused_and_explained():
    """vLLM's own text (0.26, an AWQ checkpoint on an Ampere GPU, where it loads as awq_marlin) is found, and the
    planner refuses a float32 AWQ plan and a float16 MXFP4 one with the same message."""
    line = ("(EngineCore pid=1) ValueError: torch.float32 is not supported for quantization method awq_marlin. "
            "Supported dtypes: [torch.float16, torch.bfloat16]")
    (diagnosis,) = explain(line)
    assert diagnosis.kind == "quant_dtype" and "awq_marlin" in diagnosis.cause and "torch.float32" in diagnosis.cause
    awq = make_plan(replace(load_config("meta-llama--Llama-3.1-8B.json"), quant=AWQ_FALLBACK), Cluster.parse("1xa100"),
                    Workload(context=4096), EngineArgs(dtype="float32"))
    assert awq.best is None
    (refusal,) = {v for c in awq.candidates for v in c.violations}
    assert refusal.rule == "quant_dtype"
    assert refusal.vllm_error == ("torch.float32 is not supported for quantization method awq. Supported dtypes: "
                                  "[torch.float16, torch.bfloat16]")
    for dtype in ("auto", "float16", "bfloat16"):  # what AWQ computes in: no such refusal
        ok = make_plan(replace(load_config("meta-llama--Llama-3.1-8B.json"), quant=AWQ_FALLBACK),
                       Cluster.parse("1xa100"), Workload(context=4096), EngineArgs(dtype=dtype))
        assert ok.best is not None, dtype
