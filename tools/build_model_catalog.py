"""Build tpfit/data/models.json: architecture facts of popular models, for offline `tpfit plan`.

Reads ../shared/model-configs and keeps only the numbers tpfit's config parser reads (no other
fields), under a short alias and the Hugging Face id. Run by hand when the list changes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT.parent / "shared" / "model-configs"
OUT = ROOT / "tpfit" / "data" / "models.json"

MODELS = {  # alias -> (file in shared/model-configs, Hugging Face id)
    "llama-3.1-8b": ("meta-llama--Llama-3.1-8B-Instruct.json", "meta-llama/Llama-3.1-8B-Instruct"),
    "llama-3.1-70b": ("meta-llama--Llama-3.1-70B-Instruct.json", "meta-llama/Llama-3.1-70B-Instruct"),
    "llama-3.1-405b": ("meta-llama--Llama-3.1-405B.json", "meta-llama/Llama-3.1-405B"),
    "llama-3.2-1b": ("meta-llama--Llama-3.2-1B.json", "meta-llama/Llama-3.2-1B"),
    "llama-3.2-3b": ("meta-llama--Llama-3.2-3B.json", "meta-llama/Llama-3.2-3B"),
    "llama-2-7b": ("meta-llama--Llama-2-7b-hf.json", "meta-llama/Llama-2-7b-hf"),
    "llama-2-13b": ("meta-llama--Llama-2-13b-hf.json", "meta-llama/Llama-2-13b-hf"),
    "llama-2-70b": ("meta-llama--Llama-2-70b-hf.json", "meta-llama/Llama-2-70b-hf"),
    "llama-4-scout": ("meta-llama--Llama-4-Scout-17B-16E-Instruct.json", "meta-llama/Llama-4-Scout-17B-16E-Instruct"),
    "qwen2.5-7b": ("Qwen--Qwen2.5-7B-Instruct.json", "Qwen/Qwen2.5-7B-Instruct"),
    "qwen2.5-14b": ("Qwen--Qwen2.5-14B.json", "Qwen/Qwen2.5-14B"),
    "qwen2.5-32b": ("Qwen--Qwen2.5-32B.json", "Qwen/Qwen2.5-32B"),
    "qwen2.5-72b": ("Qwen--Qwen2.5-72B.json", "Qwen/Qwen2.5-72B"),
    "qwen3-8b": ("Qwen--Qwen3-8B.json", "Qwen/Qwen3-8B"),
    "qwen3-14b": ("Qwen--Qwen3-14B.json", "Qwen/Qwen3-14B"),
    "qwen3-32b": ("Qwen--Qwen3-32B.json", "Qwen/Qwen3-32B"),
    "qwen3-32b-fp8": ("Qwen--Qwen3-32B-FP8.json", "Qwen/Qwen3-32B-FP8"),
    "qwen3-30b-a3b": ("Qwen--Qwen3-30B-A3B.json", "Qwen/Qwen3-30B-A3B"),
    "qwen3-235b-a22b": ("Qwen--Qwen3-235B-A22B.json", "Qwen/Qwen3-235B-A22B"),
    "qwen3-coder-480b": ("Qwen--Qwen3-Coder-480B-A35B-Instruct.json", "Qwen/Qwen3-Coder-480B-A35B-Instruct"),
    "mistral-7b": ("mistralai--Mistral-7B-v0.1.json", "mistralai/Mistral-7B-v0.1"),
    "mistral-nemo": ("mistralai--Mistral-Nemo-Instruct-2407.json", "mistralai/Mistral-Nemo-Instruct-2407"),
    "mixtral-8x7b": ("mistralai--Mixtral-8x7B-Instruct-v0.1.json", "mistralai/Mixtral-8x7B-Instruct-v0.1"),
    "mixtral-8x22b": ("mistralai--Mixtral-8x22B-Instruct-v0.1.json", "mistralai/Mixtral-8x22B-Instruct-v0.1"),
    "phi-4": ("microsoft--phi-4.json", "microsoft/phi-4"),
    "gemma-2-9b": ("google--gemma-2-9b-it.json", "google/gemma-2-9b-it"),
    "deepseek-v3": ("deepseek-ai--DeepSeek-V3.json", "deepseek-ai/DeepSeek-V3"),
    "deepseek-r1": ("deepseek-ai--DeepSeek-R1.json", "deepseek-ai/DeepSeek-R1"),
    "deepseek-r1-distill-qwen-32b": ("deepseek-ai--DeepSeek-R1-Distill-Qwen-32B.json",
                                     "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B"),
    "gpt-oss-20b": ("openai--gpt-oss-20b.json", "openai/gpt-oss-20b"),
    "gpt-oss-120b": ("openai--gpt-oss-120b.json", "openai/gpt-oss-120b"),
    "kimi-k2": ("moonshotai--Kimi-K2-Instruct.json", "moonshotai/Kimi-K2-Instruct"),
}

KEEP = {
    "model_type", "architectures", "torch_dtype", "dtype", "hidden_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "head_dim", "intermediate_size", "vocab_size", "tie_word_embeddings",
    "max_position_embeddings", "rope_scaling", "sliding_window", "layer_types", "attention_bias", "mlp_bias",
    "num_local_experts", "num_experts", "n_routed_experts", "num_experts_per_tok", "experts_per_token",
    "moe_intermediate_size", "n_shared_experts", "first_k_dense_replace", "moe_layer_freq", "topk_method",
    "q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "mlp_only_layers",
    "decoder_sparse_step", "quantization_config", "partial_rotary_factor", "attention_chunk_size",
    "interleave_moe_layer_step", "intermediate_size_mlp", "no_rope_layers",
}


def facts(cfg: dict) -> dict:
    out = {k: v for k, v in cfg.items() if k in KEEP}
    if isinstance(cfg.get("text_config"), dict):
        out["text_config"] = facts(cfg["text_config"])
    if isinstance(cfg.get("vision_config"), dict):
        vc = cfg["vision_config"]
        out["vision_config"] = {k: vc[k] for k in ("hidden_size", "intermediate_size", "depth", "num_hidden_layers",
                                                   "patch_size", "out_hidden_size", "projector_output_dim",
                                                   "temporal_patch_size") if k in vc}
    qc = out.get("quantization_config")
    if isinstance(qc, dict):  # keep the format, not the module lists
        out["quantization_config"] = {k: v for k, v in qc.items() if k not in ("ignore", "modules_to_not_convert")}
    return out


def main() -> int:
    models = {}
    for alias, (file, hf_id) in MODELS.items():
        cfg = json.loads((CONFIGS / file).read_text())
        models[alias] = {"hf_id": hf_id, "facts": facts(cfg)}
    OUT.write_text(json.dumps({
        "schema_version": 1,
        "built_from": "shared/model-configs (see its SOURCES.md) by tools/build_model_catalog.py; "
                      "architecture numbers only",
        "models": models,
    }, indent=1, sort_keys=False) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)}: {len(models)} models")
    return 0


if __name__ == "__main__":
    sys.exit(main())
