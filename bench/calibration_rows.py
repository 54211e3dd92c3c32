"""Real vLLM start-ups to check tpfit against: shared/calibration (vLLM 0.19, H100) and our own runs
in calibration/*/runs.json (vLLM 0.26 on H100 and H200). Each row pairs the logged figures with the
config it ran and the GPU it ran on.

Rows whose model config is not in shared/model-configs are skipped, with the reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tpfit.core.engine import EngineArgs
from tpfit.core.layout import Layout
from tpfit.live.startup_log import parse_startup_log
from tpfit.model.folder import load_folder
from tpfit.model.spec import ModelSpec

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
CONFIGS = SHARED / "model-configs"

# Same architecture, config saved under the base model's name: the checkpoint differs only in weights'
# values (chat tuning), not in any number tpfit reads.
SAME_ARCHITECTURE = {
    "Qwen/Qwen2.5-72B-Instruct": "Qwen--Qwen2.5-72B.json",
    "deepseek-ai/DeepSeek-V2-Lite-Chat": "deepseek-ai--DeepSeek-V2-Lite.json",
}


@dataclass
class Row:
    name: str
    source: str
    spec: ModelSpec
    layout: Layout
    engine: EngineArgs
    logged: dict
    outcome: str = "ok"
    gpu: str = "h100-sxm"


def _config_for(model_id: str) -> Path | None:
    path = CONFIGS / (model_id.replace("/", "--") + ".json")
    if path.is_file():
        return path
    if model_id in SAME_ARCHITECTURE:
        return CONFIGS / SAME_ARCHITECTURE[model_id]
    return None


def shared_rows() -> tuple[list[Row], list[str]]:
    rows, skipped = [], []
    for i, line in enumerate((SHARED / "calibration" / "vllm-startup-figures.jsonl").read_text().splitlines()):
        d = json.loads(line)
        name = f"{d['model']} tp{d['tp']} pp{d['pp']} len{d['max_model_len']} q={d['quantization']} kv={d['kv_cache_dtype']} dtype={d['dtype']}"
        path = _config_for(d["model"])
        if path is None:
            skipped.append(f"{name}: config not in shared/model-configs")
            continue
        if d["quantization"] not in (None, "None", "fp8", "mxfp4"):
            skipped.append(f"{name}: checkpoint {d['quantization']} config not in shared/model-configs")
            continue
        spec = load_folder(path, model_id=d["model"])
        online = "fp8" if d["quantization"] == "fp8" and spec.quant is None else None
        engine = EngineArgs(
            vllm_version=d["vllm_version"], gpu_memory_utilization=d["gpu_memory_utilization"],
            max_model_len=d["max_model_len"], max_num_seqs=d["max_num_seqs"],
            max_num_batched_tokens=d["max_num_batched_tokens"],
            kv_cache_dtype=d["kv_cache_dtype"] if d["kv_cache_dtype"] not in (None, "None") else "auto",
            quantization=online, dtype=d["dtype"] if d["dtype"] == "float32" else "auto", api_server=True,
        )
        logged = {k: d[k] for k in ("weights_gib", "activation_peak_gib", "non_torch_gib", "cuda_graph_gib",
                                    "kv_cache_gib", "kv_cache_tokens", "max_concurrency")}
        logged["activation_gib"] = logged.pop("activation_peak_gib")
        rows.append(Row(name=name, source=f"shared/calibration line {i + 1}", spec=spec,
                        layout=Layout(tp=d["tp"], pp=d["pp"]), engine=engine, logged=logged,
                        outcome=d["outcome"]))
    return rows, skipped


def own_rows() -> list[Row]:
    rows = []
    for manifest_path in sorted((ROOT / "calibration").glob("*/runs.json")):
        rows += _manifest_rows(manifest_path)
    return rows


def _manifest_rows(manifest_path: Path) -> list[Row]:
    folder = manifest_path.parent
    manifest = json.loads(manifest_path.read_text())
    rows = []
    for r in manifest["runs"]:
        figures = parse_startup_log((folder / r["log"]).read_text())
        spec = load_folder(CONFIGS / r["config"], model_id=r["config"][:-5].replace("--", "/"))
        engine = EngineArgs(vllm_version=manifest["vllm_version"], gpu_memory_utilization=r["gpu_memory_utilization"],
                            max_model_len=r["max_model_len"], max_num_seqs=r["max_num_seqs"],
                            max_num_batched_tokens=r.get("max_num_batched_tokens"), kv_cache_dtype=r["kv_cache_dtype"], api_server=manifest["api_server"],
                            language_model_only=bool(r.get("language_model_only")))
        logged = {k: getattr(figures, k) for k in ("weights_gib", "activation_gib", "non_torch_gib", "cuda_graph_gib",
                                                   "estimated_cuda_graph_gib", "kv_cache_gib", "kv_cache_tokens",
                                                   "max_concurrency")}
        if figures.total_gib is not None and figures.free_at_start_gib is not None:
            logged["pre_snapshot_gib"] = round(figures.total_gib - figures.free_at_start_gib, 2)
        rows.append(Row(name=f"{r['log'][:-4]} {manifest['gpu']} ({spec.model_id} tp{r['tp']} pp{r['pp']})",
                        source=f"calibration/{folder.name}/{r['log']}", spec=spec,
                        layout=Layout(tp=r["tp"], pp=r["pp"]), engine=engine, logged=logged, gpu=manifest["gpu"],
                        outcome=r.get("outcome", "ok")))
    return rows
