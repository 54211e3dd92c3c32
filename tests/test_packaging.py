"""Every file tpfit reads at run time ships in the wheel: pyproject's package-data covers each non-Python file."""

from __future__ import annotations

from fnmatch import fnmatch

import pytest

from tests.conftest import ROOT

tomllib = pytest.importorskip("tomllib", reason="the standard library reads TOML from Python 3.11 (tpfit runs on 3.10)")


def test_package_data_covers_every_data_file():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    missing = []
    for path in sorted((ROOT / "tpfit").rglob("*")):
        if not path.is_file() or path.suffix in (".py", ".pyc") or "__pycache__" in path.parts:
            continue
        package = ".".join(path.parent.relative_to(ROOT).parts)
        if not any(fnmatch(path.name, pattern) for pattern in declared.get(package, ())):
            missing.append(str(path.relative_to(ROOT)))
    assert missing == [], f"add to [tool.setuptools.package-data] in pyproject.toml: {missing}"
