"""The flags each vLLM release's `vllm serve` accepts (tpfit/data/vllm_flags.json, read from vLLM's arg_utils
by tools/build_vllm_flags.py), so a flag an image's version does not have is found before it starts."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import lru_cache

from tpfit.vllm_facts import parse_version
from tpfit.data import load_data

NONE, REQUIRED, OPTIONAL = "none", "required", "optional"


@dataclass(frozen=True, slots=True, kw_only=True)
class FlagTable:
    """The flags of one release, and where a missing one exists."""

    version: str
    """The release read (the newest one not newer than the version asked for)."""
    asked: str

    def _entry(self, flag: str) -> dict | None:
        return _flags().get(flag)

    def _index(self) -> int:
        return _versions().index(self.version)

    def canonical(self, flag: str) -> str:
        """`-tp` -> `--tensor-parallel-size`; `--a_b` -> `--a-b` (vLLM's FlexibleArgumentParser)."""
        if flag.startswith("--"):
            flag = "--" + flag[2:].replace("_", "-")
        e = self._entry(flag)
        return e.get("alias", flag) if e else flag

    def has(self, flag: str) -> bool:
        e = self._entry(flag)
        return e is not None and any(a <= self._index() <= b for a, b in e["in"])

    def takes_value(self, flag: str) -> str:
        """none, required or optional (nargs='?'); unknown flags are read as taking a value when one follows."""
        e = self._entry(flag)
        return e["value"] if e else OPTIONAL

    def deprecated(self, flag: str) -> bool:
        e = self._entry(flag)
        return e is not None and any(a <= self._index() <= b for a, b in e["deprecated_in"])

    def releases_with(self, flag: str) -> tuple[str, str] | None:
        """(first, last) release tpfit read that has the flag, or None when no release has it."""
        e = self._entry(flag)
        if not e:
            return None
        vs = _versions()
        return vs[e["in"][0][0]], vs[e["in"][-1][1]]

    def closest(self, flag: str) -> str | None:
        """The flag of this release nearest in spelling (a typo's fix)."""
        names = [f for f in _flags() if f.startswith("--") and self.has(f)]
        match = difflib.get_close_matches(flag, names, n=1, cutoff=0.75)
        return match[0] if match else None


@lru_cache(maxsize=1)
def _table() -> dict:
    return load_data("vllm_flags.json")


def _flags() -> dict:
    return _table()["flags"]


def _versions() -> list[str]:
    return _table()["versions"]


def known_versions() -> tuple[str, str]:
    return _versions()[0], _versions()[-1]


def flag_table(version: str) -> FlagTable:
    """The table for `version`: the release tpfit read of the same minor version ("0.8.3" reads 0.8.5; flags
    change between minor releases), else the newest older one, else the oldest."""
    want = parse_version(version)
    same = [v for v in _versions() if parse_version(v)[:2] == want[:2]]
    older = [v for v in _versions() if parse_version(v) <= want]
    chosen = (same or older or _versions())[-1 if (same or older) else 0]
    return FlagTable(version=chosen, asked=version)
