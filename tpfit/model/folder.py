"""A local model: a folder with config.json (+ safetensors headers, quantization sidecars) or a config path."""

from __future__ import annotations

import json
from pathlib import Path

from msgspec.structs import replace

from tpfit.errors import SourceError
from tpfit.limits import MAX_JSON_BYTES
from tpfit.model.safetensors import read_folder
from tpfit.model.spec import ModelSpec
from tpfit.model.validate import make_checked_spec

SIDECARS = ("hf_quant_config.json",)
"""Files beside config.json that carry the quantization (ModelOpt)."""


def read_json(path: Path, what: str) -> dict:
    if path.exists() and not path.is_file():
        raise SourceError(f"{path} is not a regular file; give a {what} JSON file", source=str(path))
    try:
        size = path.stat().st_size
        text = path.read_text(encoding="utf-8") if size <= MAX_JSON_BYTES else ""
    except OSError as err:
        raise SourceError(f"cannot read {what} {path}: {err.strerror or err}", source=str(path)) from err
    except UnicodeDecodeError as err:
        raise SourceError(f"{path} is not a text file (byte {err.start} is not UTF-8); give the {what} JSON file",
                          source=str(path)) from err
    if size > MAX_JSON_BYTES:
        raise SourceError(f"{path} is {size:,} bytes, too large for a {what} file (at most {MAX_JSON_BYTES:,})",
                          source=str(path))
    try:
        data = json.loads(text)
    except RecursionError as err:
        raise SourceError(f"{path} nests too deeply to be a {what} file", source=str(path)) from err
    except json.JSONDecodeError as err:
        raise SourceError(f"{path} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}); "
                          "is the file complete?", source=str(path)) from err
    if not isinstance(data, dict):
        raise SourceError(f"{path} must hold a JSON object", source=str(path))
    return data


def load_folder(path: Path, *, model_id: str | None = None) -> ModelSpec:
    """Load a model from a folder holding config.json, or from a config.json file itself."""
    if path.is_dir():
        config_path = path / "config.json"
        if not config_path.is_file():
            raise SourceError(f"{path} has no config.json; point at a model folder or a config.json file",
                              source=str(path))
    else:
        config_path = path
    folder = config_path.parent
    config = read_json(config_path, "config")
    sidecar = None
    for name in SIDECARS:
        if (folder / name).is_file():
            sidecar = read_json(folder / name, "quantization config")
    quant_cfg = folder / "quantize_config.json"  # AutoGPTQ / AutoAWQ sidecar
    if quant_cfg.is_file() and "quantization_config" not in config:
        config = {**config, "quantization_config": read_json(quant_cfg, "quantization config")}
    # a folder's model is named by the folder; a config saved under its own name (Llama-3.1-8B.json) by that name
    name = folder.name if config_path.name == "config.json" else config_path.stem
    spec = make_checked_spec(config, model_id=model_id or str(config.get("_name_or_path") or name),
                             sidecar=sidecar, source=str(config_path), spec_source=str(path))
    tensors = read_folder(folder) if path.is_dir() else ()
    if tensors:
        spec = replace(spec, checkpoint_bytes=sum(t.nbytes for t in tensors))
    return spec
