"""NVIDIA AIConfigurator's own estimate for each row of calibration/aiconfigurator-silicon/rows.csv, so
bench/speed_accuracy.py can print it beside tpfit's.

    /path/to/venv-with-aiconfigurator/bin/python bench/aic_estimates.py [--held-out] [--stride N] [--out FILE]

Needs `pip install aiconfigurator` (not a tpfit dependency; run it in its own venv). Writes
calibration/aiconfigurator-silicon/aic_estimates.csv: row id, AIC version, TTFT ms, TPOT ms, or the error.
AIConfigurator's performance database was collected on the same kind of systems as these rows, so its
figures are a reference point, not an independent prediction.
"""

from __future__ import annotations

import csv
import logging
import sys
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROWS = ROOT / "calibration" / "aiconfigurator-silicon" / "rows.csv"
OUT = ROOT / "calibration" / "aiconfigurator-silicon" / "aic_estimates.csv"
PER_ROW_LIMIT_S = 120


def main() -> int:
    from aiconfigurator import __version__ as aic_version
    from aiconfigurator.cli.api import cli_estimate

    logging.disable(logging.WARNING)
    # every Nth row (each estimate takes seconds of CPU: --stride 4 keeps a quarter, spread over all models)
    stride = int(sys.argv[sys.argv.index("--stride") + 1]) if "--stride" in sys.argv else 1
    rows = list(csv.DictReader(ROWS.open()))
    if "--held-out" in sys.argv:  # the rows bench/speed_accuracy.py reports on (its fit_split: odd CRC-32)
        rows = [r for r in rows if zlib.crc32(f"silicon_sample.csv {r['id']}".encode()) % 2]
    rows = rows[::stride]
    out = Path(sys.argv[sys.argv.index("--out") + 1]) if "--out" in sys.argv else OUT
    done = {r["id"] for r in csv.DictReader(out.open())} if out.exists() else set()
    new = not out.exists()
    with out.open("a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(["id", "aiconfigurator_version", "ttft_ms", "tpot_ms", "error"])
        for r in rows:
            if r["id"] in done:
                continue
            t = time.monotonic()
            tp = int(r["tp_size"])
            moe = r["moe_tp_size"] not in ("", "0")
            try:
                res = cli_estimate(
                    r["model_path"], r["system"], mode="agg", backend_name="vllm", isl=int(r["isl"]),
                    osl=int(r["osl"]), batch_size=int(r["batch_size"]), tp_size=tp, pp_size=int(r["pp_size"]),
                    moe_tp_size=int(r["moe_tp_size"]) if moe else None,
                    moe_ep_size=int(r["moe_ep_size"]) if moe else None)
                w.writerow([r["id"], aic_version, f"{res.ttft:.3f}", f"{res.tpot:.4f}", ""])
            except Exception as err:  # AIC refuses some shapes; record why and go on
                w.writerow([r["id"], aic_version, "", "", f"{type(err).__name__}: {str(err)[:120]}"])
            f.flush()
            print(f"{r['id']}: {time.monotonic() - t:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
