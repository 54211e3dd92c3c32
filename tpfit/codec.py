"""Frozen Structs <-> plain JSON values, driven by their type hints, so a saved value reads back equal.

`encode` turns a value into dicts, lists, strings, numbers, booleans and None; `decode(cls, data)` rebuilds it
and checks every field's JSON type on the way, raising `DocumentError` naming the field's path
(`candidates.3.memory.gpus.0.kv_cache_bytes`). Pure: no file, no environment.
"""

from __future__ import annotations

import types
import typing
from enum import Enum
from functools import lru_cache

import msgspec

from tpfit.errors import DocumentError, TpfitError


def encode(value: object) -> object:
    """A Struct value as plain JSON values: enums as their value, tuples as lists, frozensets sorted.

    msgspec's JSON encoder writes exactly that (`order="deterministic"` sorts the sets; no value here holds a dict,
    whose keys it would sort too), and its decoder reads it back as dicts, lists and scalars, in C both ways."""
    return msgspec.json.decode(msgspec.json.encode(value, order="deterministic"))


@lru_cache(maxsize=None)
def _fields(cls: type) -> tuple[msgspec.structs.FieldInfo, ...]:
    return msgspec.structs.fields(cls)


def _what(data: object) -> str:
    text = repr(data)
    return text if len(text) <= 40 else f"{type(data).__name__} {text[:37]}..."


def decode(hint: object, data: object, path: str = "") -> typing.Any:
    """`data` (plain JSON values) as a value of type `hint`; DocumentError naming `path` when it is not one.

    Numbers keep their JSON kind: an int in a float field stays an int, as `encode` wrote it."""
    where = path or "the value"
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if data is None and type(None) in options:
            return None
        kinds = [o for o in options if o is not type(None)]
        if len(kinds) == 1:
            return decode(kinds[0], data, path)
        for kind in kinds:
            try:
                return decode(kind, data, path)
            except DocumentError:
                continue
        raise DocumentError(f"{where} is {_what(data)}, not one of {hint}", field=path)
    if origin in (tuple, frozenset):
        if not isinstance(data, list):
            raise DocumentError(f"{where} is {_what(data)}, not a list", field=path)
        args = typing.get_args(hint)
        if origin is frozenset or (len(args) == 2 and args[1] is Ellipsis):
            items = tuple(decode(args[0], v, f"{path}.{i}") for i, v in enumerate(data))
            return frozenset(items) if origin is frozenset else items
        if len(data) != len(args):
            raise DocumentError(f"{where} has {len(data)} items, not {len(args)}", field=path)
        return tuple(decode(a, v, f"{path}.{i}") for i, (a, v) in enumerate(zip(args, data)))
    if isinstance(hint, type) and issubclass(hint, Enum):
        try:
            return hint(data)
        except ValueError:
            raise DocumentError(f"{where} is {_what(data)}; use one of {', '.join(str(m.value) for m in hint)}",
                                field=path) from None
    if isinstance(hint, type) and issubclass(hint, msgspec.Struct):
        return _decode_struct(hint, data, path)
    if hint is bool:
        ok = isinstance(data, bool)
    elif hint is int:
        ok = isinstance(data, int) and not isinstance(data, bool)
    elif hint is float:
        ok = isinstance(data, (int, float)) and not isinstance(data, bool)
    elif hint is str:
        ok = isinstance(data, str)
    else:
        raise TypeError(f"{where}: cannot decode a {hint}")
    if not ok:
        raise DocumentError(f"{where} is {_what(data)}, not a {hint.__name__}", field=path)
    return data


def _decode_struct(cls: type, data: object, path: str) -> object:
    where = path or "the value"
    if not isinstance(data, dict):
        raise DocumentError(f"{where} is {_what(data)}, not an object", field=path)
    fields = {f.name: f for f in _fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        sub = f"{path}.{unknown[0]}".lstrip(".")
        raise DocumentError(f"{sub} is not a field of {cls.__name__}", field=sub)
    kwargs = {}
    for name, f in fields.items():
        sub = f"{path}.{name}".lstrip(".")
        if name not in data:
            if f.required:
                raise DocumentError(f"{sub} is missing", field=sub)
            continue
        kwargs[name] = decode(f.type, data[name], sub)
    try:
        return cls(**kwargs)
    except (TpfitError, ValueError, TypeError) as err:  # the value's own invariants (__post_init__)
        raise DocumentError(f"{where}: {err}", field=path) from None
