"""shared/DESIGN.md: the core never does I/O and never imports an output or live module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[1] / "tpfit" / "core"
FORBIDDEN = {"os", "pathlib", "socket", "time", "random", "httpx", "pynvml", "subprocess"}
FORBIDDEN_PREFIXES = ("tpfit.report", "tpfit.deploy", "tpfit.live", "tpfit.cli")


@pytest.mark.parametrize("path", sorted(CORE.glob("*.py")), ids=lambda p: p.name)
def test_core_module_is_pure(path):
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for name in names:
            assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"
            assert not name.startswith(FORBIDDEN_PREFIXES), f"{path.name} imports {name}"
