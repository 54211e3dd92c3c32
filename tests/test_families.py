"""Model families: the registry, and config keys that are missing or malformed (SpecError naming the key)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import SHARED
from tpfit.errors import SpecError
from tpfit.kinds import AttentionKind, MlpKind
from tpfit.model.families import Decoder, HFConfig, family, find_family, model_types
from tpfit.model.hf_config import make_spec
from tpfit.model.spec import LayerSpec

CONFIGS = SHARED / "model-configs"


def config(name: str) -> dict:
    return json.loads((CONFIGS / name).read_text())


def test_every_family_reads_a_real_config():
    real = {json.loads(p.read_text()).get("model_type") for p in CONFIGS.glob("*.json")}
    untested = set(model_types()) - real
    assert not untested, f"families without a real config in shared/model-configs: {untested}"


# (config, a key its family needs): deleting it must name it
@pytest.mark.parametrize("name,key", [
    ("meta-llama--Llama-3.1-8B.json", "intermediate_size"),
    ("meta-llama--Llama-3.1-8B.json", "hidden_size"),
    ("meta-llama--Llama-3.1-8B.json", "num_attention_heads"),
    ("meta-llama--Llama-3.1-8B.json", "vocab_size"),
    ("microsoft--phi-2.json", "intermediate_size"),
    ("mistralai--Mixtral-8x22B-v0.1.json", "num_local_experts"),
    ("deepseek-ai--DeepSeek-V3.json", "kv_lora_rank"),
    ("deepseek-ai--DeepSeek-V3.json", "moe_intermediate_size"),
    ("nvidia--Nemotron-H-56B-Base-8K.json", "hybrid_override_pattern"),
    ("nvidia--Nemotron-H-56B-Base-8K.json", "ssm_state_size"),
    ("nvidia--Llama-3_3-Nemotron-Super-49B-v1.json", "block_configs"),
    ("Qwen--Qwen3-Next-80B-A3B-Thinking.json", "linear_num_key_heads"),
    ("meta-llama--Llama-4-Scout-17B-16E-Instruct.json", "intermediate_size"),
])
def test_missing_key_names_it(name, key):
    cfg = config(name)
    text = cfg.get("text_config", cfg)
    assert key in text
    del text[key]
    with pytest.raises(SpecError) as err:
        make_spec(cfg, model_id=name)
    assert err.value.field == key and repr(key) in str(err.value)


@pytest.mark.parametrize("key,value", [("hidden_size", "big"), ("num_hidden_layers", 31.5), ("intermediate_size", [1]),
                                       ("num_key_value_heads", "eight")])
def test_malformed_key_names_it(key, value):
    cfg = config("meta-llama--Llama-3.1-8B.json")
    cfg[key] = value
    with pytest.raises(SpecError) as err:
        make_spec(cfg, model_id="llama")
    assert err.value.field == key and key in str(err.value) and repr(value) in str(err.value)


def test_malformed_nested_block_names_it():
    cfg = config("nvidia--Llama-3_3-Nemotron-Super-49B-v1.json")
    cfg["block_configs"][3] = "attention"
    with pytest.raises(SpecError) as err:
        make_spec(cfg, model_id="nemotron")
    assert err.value.field == "block_configs[3]"
    cfg = config("nvidia--Llama-3_3-Nemotron-Super-49B-v1.json")
    del cfg["block_configs"][0]["ffn"]
    with pytest.raises(SpecError) as err:
        make_spec(cfg, model_id="nemotron")
    assert err.value.field == "ffn"


def test_unknown_model_type_lists_the_registry():
    with pytest.raises(SpecError) as err:
        make_spec({**config("meta-llama--Llama-3.1-8B.json"), "model_type": "no_such_family"}, model_id="x")
    assert err.value.field == "model_type" and all(t in str(err.value) for t in model_types())


def test_a_new_family_is_one_registered_builder():
    # what a new module under tpfit/model/families does: register a builder for its model_type
    @family("tpfit_test_family")
    def build(c: HFConfig) -> Decoder:
        layer = LayerSpec(attention=AttentionKind.FULL, num_attention_heads=c.num_attention_heads,
                          num_key_value_heads=c.num_key_value_heads, head_dim=c.head_dim, mlp=MlpKind.GATED,
                          intermediate_size=c.int("intermediate_size"))
        return Decoder(layers=(layer,) * c.num_hidden_layers)

    assert find_family("tpfit_test_family") is build
    spec = make_spec({**config("meta-llama--Llama-3.1-8B.json"), "model_type": "tpfit_test_family"}, model_id="t")
    llama = make_spec(config("meta-llama--Llama-3.1-8B.json"), model_id="t")
    assert spec.layers == llama.layers and spec.head_dim == llama.head_dim == 128
    with pytest.raises(RuntimeError):
        family("tpfit_test_family")(build)
