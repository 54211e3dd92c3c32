"""quantization_config / hf_quant_config.json -> QuantSpec (vLLM's quantization method names)."""

from __future__ import annotations

from tpfit.errors import SpecError
from tpfit.model.spec import QuantSpec

ONLINE_METHODS = ("fp8",)
"""`--quantization` values tpfit can apply to an unquantized checkpoint."""


def parse_quant(qc: dict | None, sidecar: dict | None = None, *, model_id: str = "") -> QuantSpec | None:
    """The checkpoint's weight format, or None for an unquantized model."""
    if sidecar and not qc:
        return _parse_modelopt(sidecar, model_id)
    if not qc:
        return None
    method = str(qc.get("quant_method", "")).lower()
    if method == "fp8":
        block = qc.get("weight_block_size") or [0, 0]
        return QuantSpec(method="fp8", weight_bits=8, block_n=int(block[0]), block_k=int(block[1]), group_size=0)
    if method in ("awq", "gptq", "awq_marlin", "gptq_marlin"):
        bits = int(qc.get("bits") or qc.get("w_bit") or 4)
        group = int(qc.get("group_size") or qc.get("q_group_size") or 128)
        zero = bool(qc.get("zero_point", True)) if method.startswith("awq") else not bool(qc.get("sym", True))
        return QuantSpec(method=method.split("_")[0], weight_bits=bits, group_size=group, has_zero_points=zero,
                         lm_head_quantized=bool(qc.get("lm_head", False)))
    if method == "mxfp4":
        return QuantSpec(method="mxfp4", weight_bits=4, group_size=32, experts_only=True)
    if method == "compressed-tensors":
        return _parse_compressed_tensors(qc, model_id)
    if method in ("modelopt", "modelopt_fp4"):
        return _parse_modelopt({"quantization": qc}, model_id)
    raise SpecError(f"not supported yet: quantization method {method!r}", model_id=model_id, field="quant_method")


def _parse_compressed_tensors(qc: dict, model_id: str) -> QuantSpec:
    groups = list((qc.get("config_groups") or {}).values())
    fmt = str(qc.get("format", ""))
    experts = [g for g in groups if any("gate" in str(t) or "experts" in str(t) for t in g.get("targets") or [])]
    if fmt == "mixed-precision" and len(experts) == 1 and (experts[0].get("weights") or {}).get("num_bits") == 4:
        # DeepSeek-V4-Flash-NVFP4-FP8: NVFP4 experts (4-bit floats, an fp8 scale per 16), FP8-block attention;
        # the experts carry nearly all the bytes, the rest is counted in the model dtype (an over-estimate)
        w = experts[0]["weights"]
        return QuantSpec(method="compressed-tensors", weight_bits=4, group_size=int(w.get("group_size") or 16),
                         experts_only=True)
    if len(groups) != 1 or fmt == "mixed-precision":
        raise SpecError(f"not supported yet: compressed-tensors with {len(groups)} config groups ({fmt})",
                        model_id=model_id, field="quantization_config")
    w = groups[0].get("weights") or {}
    bits = int(w.get("num_bits", 8))
    strategy = str(w.get("strategy", "channel"))
    group = int(w.get("group_size") or (-1 if strategy == "channel" else 0))
    block = w.get("block_structure") or [0, 0]
    return QuantSpec(method="compressed-tensors", weight_bits=bits, group_size=group,
                     block_n=int(block[0]), block_k=int(block[1]),
                     has_zero_points=not bool(w.get("symmetric", True)))


def _parse_modelopt(sidecar: dict, model_id: str) -> QuantSpec:
    algo = str((sidecar.get("quantization") or {}).get("quant_algo", "")).upper()
    if algo == "FP8":
        return QuantSpec(method="modelopt", weight_bits=8, group_size=0)
    if algo == "NVFP4":
        return QuantSpec(method="modelopt_fp4", weight_bits=4, group_size=16)
    raise SpecError(f"not supported yet: ModelOpt quant_algo {algo!r}", model_id=model_id, field="quant_algo")


def online_quant(method: str) -> QuantSpec:
    """The QuantSpec of `--quantization METHOD` applied while loading an unquantized checkpoint."""
    if method == "fp8":
        return QuantSpec(method="fp8", weight_bits=8, group_size=0, online=True)
    raise SpecError(f"not supported yet: --quantization {method} on an unquantized checkpoint; "
                    f"tpfit models {', '.join(ONLINE_METHODS)}", field="quantization")
