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
    """The tensors of one .safetensors file (header only); SourceError naming the file when it is not one."""
    try:
        with path.open("rb") as f:
            start = f.read(8)
            length = struct.unpack("<Q", start)[0] if len(start) == 8 else None
            header = json.loads(f.read(length)) if length is not None and length <= MAX_HEADER_BYTES else None
    except OSError as err:
        raise SourceError(f"{path}: cannot read the safetensors header ({err.strerror or err})",
                          source=str(path)) from err
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise SourceError(f"{path}: the safetensors header is not JSON ({err}); is the file complete?",
                          source=str(path)) from err
    if length is None or length > MAX_HEADER_BYTES:
        what = f"{len(start)} bytes long" if length is None else f"headed by a length of {length:,} bytes"
        raise SourceError(f"{path}: not a safetensors file ({what}); remove it or give the model's own files",
                          source=str(path))
    tensors = header.items() if isinstance(header, dict) else None
    try:
        return tuple(TensorInfo(name=k, dtype=_dtype(v["dtype"]), shape=_shape(v["shape"]))
                     for k, v in tensors if k != "__metadata__")
    except (TypeError, KeyError, ValueError):
        raise SourceError(f"{path}: the safetensors header is not a table of tensors " + '({name: {"dtype", "shape", '
                          '"data_offsets"}}); is it the model\'s own file?', source=str(path)) from None


def _dtype(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(value)
    return value


def _shape(value: object) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(type(n) is int and n >= 0 for n in value):
        raise ValueError(value)
    return tuple(value)


def read_folder(folder: Path) -> tuple[TensorInfo, ...]:
    out: list[TensorInfo] = []
    for path in sorted(folder.glob("*.safetensors")):
        out.extend(read_header(path))
    return tuple(out)
