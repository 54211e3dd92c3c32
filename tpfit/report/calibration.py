"""A GpuCalibration -> terminal tables (what `tpfit calibrate` measured)."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tpfit.hardware.calibration import GpuCalibration
from tpfit.units import GB, KIB, MIB

_TFLOPS = 1e12


def render_calibration(cal: GpuCalibration, console: Console, *, written_to: str | None = None) -> None:
    """Headline figures, then one row per all-reduce world size."""
    console.print(escape(cal.source) + (f"  (catalog id {escape(cal.gpu_id)})" if cal.gpu_id else "  (not in the catalog)"))
    figures = Table(title="Measured", title_justify="left")
    figures.add_column("figure")
    figures.add_column("value", justify="right", no_wrap=True)
    figures.add_row("memory bandwidth, copy (GB/s, read + write)", f"{cal.mem_bw_bytes_per_s / GB:,.0f}")
    for key, value in sorted(cal.gemm_flops_per_s.items()):
        figures.add_row(f"GEMM {key.replace('_', ' ')} (TFLOP/s)", f"{value / _TFLOPS:,.4g}")
    figures.add_row("P2P copy GPU0->GPU1 (GB/s)",
                    f"{cal.p2p_bytes_per_s / GB:,.0f}" if cal.p2p_bytes_per_s else "not measured")
    if cal.step_overhead_s is not None:
        version = f"vLLM {cal.vllm_version}" if cal.vllm_version else "vLLM"
        figures.add_row(f"{escape(version)} step overhead (ms)", f"{cal.step_overhead_s * 1e3:.2f}")
    console.print(figures)
    if cal.allreduce:
        reduces = Table(title="All-reduce: time = latency + bytes / bandwidth", title_justify="left")
        reduces.add_column("ranks", justify="right")
        reduces.add_column("backend")
        reduces.add_column("latency (us)", justify="right", no_wrap=True)
        reduces.add_column("bandwidth (GB/s)", justify="right", no_wrap=True)
        reduces.add_column("8 KiB (us)", justify="right", no_wrap=True)
        reduces.add_column("4 MiB (us)", justify="right", no_wrap=True)
        for fit in cal.allreduce:
            reduces.add_row(str(fit.world_size), fit.backend, f"{fit.latency_s * 1e6:,.1f}",
                            f"{fit.bus_bytes_per_s / GB:,.1f}", f"{fit.time_s(8 * KIB) * 1e6:,.1f}",
                            f"{fit.time_s(4 * MIB) * 1e6:,.1f}")
        console.print(reduces)
    if written_to:
        console.print(f"wrote {escape(written_to)}")
