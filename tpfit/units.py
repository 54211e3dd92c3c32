"""Units: the only place where bytes become GiB (vLLM `vllm/utils/mem_constants.py`)."""

from __future__ import annotations

import re

GIB = 1 << 30
"""Bytes in a GiB: vLLM's `GiB_bytes`, the unit of every memory figure in its logs."""
KIB = 1 << 10
"""Bytes in a KiB."""
MIB = 1 << 20
"""Bytes in a MiB: nvidia-smi's unit."""
GB = 1_000_000_000
"""Bytes in a decimal GB: the unit of marketing sizes (an "80 GB" H100)."""


def cdiv(a: int, b: int) -> int:
    """Ceiling division on integers, as vLLM's `cdiv`."""
    return -(-a // b)


def round_up(a: int, multiple: int) -> int:
    return cdiv(a, multiple) * multiple


def format_gib(n_bytes: float, digits: int = 2) -> str:
    """`format_gib(1 << 30) == '1.00'`: GiB with fixed decimals, for tables and messages."""
    return f"{n_bytes / GIB:.{digits}f}"


def gib(n_bytes: float) -> float:
    """GiB as a float rounded to 2 decimals, for JSON output."""
    return round(n_bytes / GIB, 2)


_SIZE = r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(i?)[bB]?\s*$"
"""Compiled on first use (re's own cache): `tpfit plan` reads no size."""


def parse_size(text: str) -> int:
    """Parse a byte size the way vLLM's human-readable ints do.

    Valid: "4096", "64M", "2G", "2GiB", "1.5G" (binary multiples: 1K = 1024).
    Not valid: "", "two", "-1G".
    """
    m = re.match(_SIZE, text)
    if not m:
        raise ValueError(f"not a size: {text!r}; use a byte count such as 2147483648 or 2G")
    value, unit = float(m.group(1)), m.group(2).upper()
    scale = {"": 1, "K": 1 << 10, "M": MIB, "G": GIB, "T": 1 << 40}[unit]
    return int(value * scale)
