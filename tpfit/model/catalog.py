"""The bundled offline catalog: architecture facts of popular models under short aliases."""

from __future__ import annotations

from functools import lru_cache

from tpfit.data import load_data
from tpfit.model.hf_config import make_spec
from tpfit.model.spec import ModelSpec


def _models() -> dict[str, dict]:
    return load_data("models.json")["models"]


def _key(name: str) -> str:
    return name.strip().lower()


@lru_cache(maxsize=1)
def _index() -> dict[str, str]:
    index = {}
    for alias, entry in _models().items():
        index[_key(alias)] = alias
        index[_key(entry["hf_id"])] = alias
        index[_key(entry["hf_id"].split("/")[-1])] = alias
    return index


def catalog_aliases() -> list[str]:
    return sorted(_models())


def catalog_models() -> list[tuple[str, str]]:
    """(alias, Hugging Face id) of every bundled model, by alias (the web page's model picker)."""
    return [(alias, _models()[alias]["hf_id"]) for alias in catalog_aliases()]


def catalog_names() -> list[str]:
    """Every name the catalog answers to (aliases and Hugging Face ids), for close-match suggestions."""
    return sorted(set(_models()) | {m["hf_id"] for m in _models().values()})


def find_in_catalog(name: str) -> ModelSpec | None:
    alias = _index().get(_key(name))
    if alias is None:
        return None
    entry = _models()[alias]
    return make_spec(entry["facts"], model_id=entry["hf_id"], source=f"catalog:{alias}")
