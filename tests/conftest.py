"""Shared test helpers: the real configs and captures live in ../shared (beside the checkout)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
CONFIGS = SHARED / "model-configs"
ALL_CONFIGS = sorted(p.name for p in CONFIGS.glob("*.json"))


def load_config(name: str):
    from tpfit.model.folder import load_folder

    return load_folder(CONFIGS / name, model_id=name[:-5].replace("--", "/"))


@pytest.fixture(scope="session")
def shared() -> Path:
    assert SHARED.is_dir(), "tests read ../shared (real configs and captures); it must sit beside the checkout"
    return SHARED


@pytest.fixture(scope="session", autouse=True)
def _no_user_calibrations(tmp_path_factory):
    """Plans in tests use the built-in calibrations only, never a `tpfit calibrate` file of this machine's user
    (subprocesses inherit the variable)."""
    import os

    old = os.environ.get("TPFIT_CALIBRATION_DIR")
    os.environ["TPFIT_CALIBRATION_DIR"] = str(tmp_path_factory.mktemp("no-user-calibrations"))
    yield
    if old is None:
        os.environ.pop("TPFIT_CALIBRATION_DIR", None)
    else:
        os.environ["TPFIT_CALIBRATION_DIR"] = old
