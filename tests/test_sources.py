"""Model and GPU sources: real configs, the bundled catalog, the HF cache, `--gpus` descriptions."""

from __future__ import annotations

import json

import pytest

from tests.conftest import ALL_CONFIGS, CONFIGS, SHARED, load_config
from tpfit.errors import OfflineError, SourceError, UsageError
from tpfit.hardware.cluster import Cluster
from tpfit.model.catalog import catalog_aliases, find_in_catalog
from tpfit.model.load import load_model
from tpfit.model.spec import ModelSpec
from tpfit.units import GIB, MIB


@pytest.mark.parametrize("text,gpus,nodes,gpu_id", [
    ("2x3090", 2, 1, "rtx-3090"), ("4xH100", 4, 1, "h100-sxm"), ("8xH100-80GB", 8, 1, "h100-sxm"),
    ("2x8xH100", 8, 2, "h100-sxm"), ("h200", 1, 1, "h200"), ("1x4090", 1, 1, "rtx-4090"), ("2×A100", 2, 1, "a100-80gb-sxm"),
])
def test_cluster_parse(text, gpus, nodes, gpu_id):
    c = Cluster.parse(text)
    assert (c.gpus_per_node, c.nodes, c.gpu.id) == (gpus, nodes, gpu_id)


def test_h100_memory_is_what_cuda_reports():
    # nvidia-smi says 81559 MiB; free at idle 81079 MiB (shared/fixtures/gpu-hosts/h100x2-nvlink), which is the
    # total vLLM logs: "Free memory on device (78.66/79.18 GiB)"
    gpu = Cluster.parse("1xh100").gpu
    assert gpu.memory_bytes == 81559 * MIB and gpu.cuda_total_bytes == 81079 * MIB
    assert round(gpu.cuda_total_bytes / GIB, 2) == 79.18


def test_size_only_gpus():
    c = Cluster.parse("2x24GB")
    assert c.gpus_per_node == 2 and c.gpu.memory_bytes == 24 * 1024 * MIB
    assert c.gpu.cuda_total_bytes < c.gpu.memory_bytes


@pytest.mark.parametrize("text,needle", [("2xfoo", "unknown GPU 'foo'"), ("0x3090", "at least 1"), ("", "cannot read"),
                                         ("x3090", "unknown GPU 'x3090'")])
def test_cluster_parse_errors(text, needle):
    with pytest.raises(UsageError, match=needle):
        Cluster.parse(text)


@pytest.mark.parametrize("config", ALL_CONFIGS)
def test_every_shared_config_loads_or_says_not_supported(config):
    try:
        spec = load_config(config)
    except SourceError:
        raise
    except ValueError as err:
        assert "not supported yet" in str(err)
        return
    assert spec.num_hidden_layers == len(spec.layers) > 0
    assert ModelSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_multimodal_reads_text_config():
    spec = load_config("Qwen--Qwen3-VL-32B-Instruct.json")
    assert (spec.num_hidden_layers, spec.num_attention_heads, spec.num_key_value_heads) == (64, 64, 8)
    assert spec.extra_replicated_params > 0 and any("vision tower" in n for n in spec.notes)


def test_quantization_formats():
    assert load_config("Qwen--Qwen3-32B-FP8.json").quant.block_n == 128
    assert load_config("openai--gpt-oss-20b.json").quant.method == "mxfp4"
    ct = load_config("RedHatAI--Llama-4-Scout-17B-16E-Instruct-FP8-dynamic.json").quant
    assert (ct.method, ct.weight_bits) == ("compressed-tensors", 8)


def test_modelopt_sidecar(tmp_path):
    # nvidia/Llama-3.1-70B-Instruct-FP8 keeps its quantization in hf_quant_config.json beside config.json
    (tmp_path / "config.json").write_text((CONFIGS / "nvidia--Llama-3.1-70B-Instruct-FP8.json").read_text())
    (tmp_path / "hf_quant_config.json").write_text(
        (CONFIGS / "sidecar" / "nvidia--Llama-3.1-70B-Instruct-FP8.hf_quant_config.json").read_text())
    spec = load_model(str(tmp_path))
    assert spec.quant.method == "modelopt" and spec.quant.weight_bits == 8


def test_catalog_aliases_and_ids():
    assert "llama-3.1-70b" in catalog_aliases()
    assert find_in_catalog("meta-llama/Llama-3.1-70B-Instruct") == find_in_catalog("llama-3.1-70b")
    # the catalog holds the same numbers as the real config it was built from
    real = load_config("meta-llama--Llama-3.1-70B-Instruct.json")
    bundled = find_in_catalog("llama-3.1-70b")
    assert (bundled.layers, bundled.vocab_size, bundled.max_model_len) == (real.layers, real.vocab_size, real.max_model_len)


def _fake_hub_cache(root, repo_id: str, config_text: str) -> None:
    # huggingface_hub's cache layout: models--owner--name/{refs/main, snapshots/<commit>/config.json}
    repo = root / ("models--" + repo_id.replace("/", "--"))
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    (snap / "config.json").write_text(config_text)


def test_hub_id_from_local_cache_offline(tmp_path, monkeypatch):
    _fake_hub_cache(tmp_path, "someorg/my-llama", (CONFIGS / "meta-llama--Llama-3.1-8B.json").read_text())
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    spec = load_model("someorg/my-llama")
    assert spec.model_id == "someorg/my-llama" and spec.num_hidden_layers == 32 and spec.source == "hub:someorg/my-llama"
    with pytest.raises(OfflineError, match="not in the local Hugging Face cache"):
        load_model("someorg/not-cached")


def test_shared_is_beside_the_checkout():
    assert (SHARED / "calibration" / "vllm-startup-figures.jsonl").is_file()
