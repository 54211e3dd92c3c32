"""Package data: the GPU catalog, the bundled model facts, the fitted memory model (read here, at the edge)."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tpfit.core.memory_model import MemoryModel


@lru_cache(maxsize=None)
def load_data(name: str) -> dict:
    """One JSON file of this package, read once."""
    return json.loads(resources.files(__name__).joinpath(name).read_text())


@lru_cache(maxsize=1)
def load_memory_model() -> MemoryModel:
    """The fitted memory model tpfit ships (memory_model.json, written by bench/fit_memory_model.py)."""
    from tpfit.core.memory_model import MemoryModel

    return MemoryModel.from_dict(load_data("memory_model.json"))
