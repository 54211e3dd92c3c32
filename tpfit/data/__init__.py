"""Package data: the GPU catalog, the bundled model facts, the fitted memory model (read here, at the edge).

The files are read as plain files beside this module (tpfit installs as files, never zipped): importlib.resources
would add its imports (zipfile, tempfile, ...) to every `tpfit plan` start for no gain.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from tpfit.core.memory_model import MemoryModel

DATA_DIR = Path(__file__).parent
"""The folder holding tpfit's data files (gpus.json, models.json, calibration/, ...)."""


@lru_cache(maxsize=None)
def load_data(name: str) -> dict:
    """One JSON file of this package, read once (msgspec's decoder: `tpfit plan` never imports the json module)."""
    return msgspec.json.decode((DATA_DIR / name).read_bytes())


@lru_cache(maxsize=1)
def load_memory_model() -> MemoryModel:
    """The fitted memory model tpfit ships (memory_model.json, written by bench/fit_memory_model.py)."""
    from tpfit.core.memory_model import MemoryModel

    return MemoryModel.from_dict(load_data("memory_model.json"))
