"""Safetensors headers: tensor dtypes and shapes without reading the data.

A .safetensors file starts with an 8-byte little-endian header length and a JSON header
{name: {"dtype", "shape", "data_offsets"}} (the format's spec); only those bytes are read.
"""

from __future__ import annotations

import json
import struct
from math import prod
from pathlib import Path

from msgspec import Struct

from tpfit.errors import SourceError

DTYPE_BITS = {"F64": 64, "F32": 32, "F16": 16, "BF16": 16, "I64": 64, "I32": 32, "I16": 16, "I8": 8, "U8": 8,
              "BOOL": 8, "F8_E4M3": 8, "F8_E5M2": 8, "F8_E8M0": 8, "F4": 4, "U32": 32, "U16": 16}
MAX_HEADER_BYTES = 100 << 20


class TensorInfo(Struct, frozen=True, kw_only=True):
    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return prod(self.shape) * DTYPE_BITS.get(self.dtype, 16) // 8


def read_header(path: Path) -> tuple[TensorInfo, ...]:
    """The tensors of one .safetensors file (header only)."""
    try:
        with path.open("rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if length > MAX_HEADER_BYTES:
                raise SourceError(f"{path}: safetensors header of {length} bytes is not plausible", source=str(path))
            header = json.loads(f.read(length))
    except (OSError, struct.error, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SourceError(f"{path}: cannot read the safetensors header ({err})", source=str(path)) from err
    return tuple(TensorInfo(name=k, dtype=v["dtype"], shape=tuple(v["shape"]))
                 for k, v in header.items() if k != "__metadata__")


def read_folder(folder: Path) -> tuple[TensorInfo, ...]:
    out: list[TensorInfo] = []
    for path in sorted(folder.glob("*.safetensors")):
        out.extend(read_header(path))
    return tuple(out)
