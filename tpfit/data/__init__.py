"""Package data: the GPU catalog, the bundled model facts, the fitted memory constants."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources


@lru_cache(maxsize=None)
def load_data(name: str) -> dict:
    """One JSON file of this package, read once."""
    return json.loads(resources.files(__name__).joinpath(name).read_text())


def memory_constants() -> dict:
    """The fitted memory constants and where they came from (memory_model.json, bench/fit_memory_model.py)."""
    return load_data("memory_model.json")
