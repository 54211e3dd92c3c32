"""Build tpfit/data/gpus.json from ../shared/gpu-catalog.json (run by hand when the catalog changes).

Keeps the catalog's values and sources; adds short aliases and the memory CUDA reports
(cudaMemGetInfo total = nvidia-smi total - driver reservation).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT.parent / "shared" / "gpu-catalog.json"
OUT = ROOT / "tpfit" / "data" / "gpus.json"

# Measured, driver 580.159.04 (nvidia-smi total -> what CUDA reports, = total - "reserved" in nvidia-smi -q):
#   H100 80GB HBM3: 81559 -> 81079 MiB, vLLM "Free memory on device (78.66/79.18 GiB)"
#     (../shared/fixtures/gpu-hosts/h100x2-nvlink, calibration/vllm-0.26-h100);
#   H200: 143771 -> 143155 MiB (616 MiB reserved), vLLM "(138.3/139.8 GiB)" (tests/data/gpu-hosts/h200x4-device-*,
#     calibration/vllm-0.26-h200x4).
#   RTX 3090: 24576 -> 24146 MiB, vLLM 0.6's "Memory profiling results: total_gpu_memory=23.58GiB" for
#     Llama-3.1-8B on one 3090 (vllm-project/vllm issue #10517, 2024-12-02; another 3090 host logged
#     "Free memory on device (22.93/23.56 GiB)", so hosts differ by ~0.02 GiB).
# Other GPUs get the H100's fraction, flagged as estimated.
MEASURED_CUDA_MIB = {"h100-sxm": (81559, 81079), "h200": (143771, 143155), "rtx-3090": (24576, 24146)}
H100_SMI_MIB, H100_CUDA_MIB = MEASURED_CUDA_MIB["h100-sxm"]

EXTRA_ALIASES = {
    "h100-sxm": ["h100", "h100-80gb", "h100-sxm5"],
    "a100-80gb-sxm": ["a100", "a100-80gb"],
    "a100-40gb-sxm": ["a100-40gb"],
    "rtx-3090": ["3090"], "rtx-3090-ti": ["3090ti", "3090-ti"], "rtx-4090": ["4090"], "rtx-5090": ["5090"],
    "rtx-4080": ["4080"], "rtx-5080": ["5080"], "rtx-3060-12gb": ["3060"], "rtx-3080-10gb": ["3080"],
    "rtx-4060-ti-16gb": ["4060ti"], "rtx-4070-ti-super": ["4070tisuper"],
    "rtx-a6000": ["a6000"], "rtx-a5000": ["a5000"], "rtx-a4000": ["a4000"], "rtx-6000-ada": ["6000ada"],
    "rtx-pro-6000-blackwell": ["pro6000"], "v100-16gb": ["v100"], "h200": ["h200-141gb"],
}


def main() -> int:
    catalog = json.loads(SRC.read_text())
    gpus = []
    for g in catalog["gpus"]:
        smi_mib = g["memory_mib"]
        estimated = smi_mib is None
        if estimated:
            smi_mib = int(g["memory_gb"] * 1024)
        measured = MEASURED_CUDA_MIB.get(g["id"], (None, None))[0] == smi_mib
        cuda_mib = MEASURED_CUDA_MIB[g["id"]][1] if measured else round(smi_mib * H100_CUDA_MIB / H100_SMI_MIB)
        aliases = sorted({g["id"], g["id"].replace("rtx-", ""), *EXTRA_ALIASES.get(g["id"], [])})
        gpus.append({
            "id": g["id"], "name": g["marketing_name"], "vendor": g["vendor"], "aliases": aliases,
            "nvml_names": g["nvml_names"], "memory_gb": g["memory_gb"], "memory_mib": smi_mib,
            "memory_mib_estimated": estimated, "cuda_total_mib": cuda_mib,
            "cuda_total_measured": measured,
            "mem_bw_gbs": g["mem_bw_gbs"], "bf16_dense_tflops": g["bf16_dense_tflops"],
            "fp8_dense_tflops": g["fp8_dense_tflops"], "fp8_supported": g["fp8_supported"],
            "compute_capability": g["compute_capability"], "nvlink": g["nvlink"], "pcie": g["pcie"],
            "vllm_support": g["vllm_support"], "unverified_fields": g["unverified_fields"], "sources": g["sources"],
        })
    OUT.write_text(json.dumps({
        "schema_version": 1,
        "built_from": "shared/gpu-catalog.json (schema %s) by tools/build_gpu_catalog.py" % catalog["schema_version"],
        "cuda_total_note": "cuda_total_mib = memory CUDA reports (cudaMemGetInfo total), which vLLM multiplies by "
                           "gpu_memory_utilization; measured on H100 80GB HBM3, H200 and RTX 3090, elsewhere scaled by the H100's fraction",
        "vllm_rules": catalog["vllm_rules"],
        "gpus": gpus,
    }, indent=1) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)}: {len(gpus)} GPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
