"""shared/DESIGN.md: the core never does I/O and never imports an output or live module.

Two checks: the core's imports (what it can name), and its behaviour (planning with files, the
environment and the clock made to fail: nothing the core runs may touch them).
"""

from __future__ import annotations

import ast
import builtins
import io
import os
import pathlib
import time
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import load_config
from tpfit.core.engine import EngineArgs
from tpfit.core.plan import Plan, Workload, make_plan
from tpfit.core.recommend import make_flags, summarize
from tpfit.data import load_memory_model
from tpfit.hardware.cluster import Cluster

CORE = Path(__file__).resolve().parents[1] / "tpfit" / "core"
FORBIDDEN = {"os", "pathlib", "socket", "time", "random", "httpx", "pynvml", "subprocess", "io", "datetime",
             "importlib", "shutil", "tempfile"}
FORBIDDEN_PREFIXES = ("tpfit.report", "tpfit.deploy", "tpfit.live", "tpfit.cli", "tpfit.data")
FORBIDDEN_CALLS = {"open", "input", "print", "exec", "eval", "__import__"}


@pytest.mark.parametrize("path", [*sorted(CORE.glob("*.py")), CORE.parent / "codec.py"], ids=lambda p: p.name)
def test_core_module_imports_and_calls_nothing_impure(path):
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in FORBIDDEN_CALLS, f"{path.name} calls {node.func.id}()"
        for name in names:
            assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"
            assert not name.startswith(FORBIDDEN_PREFIXES), f"{path.name} imports {name}"


class _Forbidden(Exception):
    pass


def _refuse(what: str):
    def refuse(*args, **kwargs):
        raise _Forbidden(f"the core reached {what}")
    return refuse


class _NoEnviron(Mapping):
    def __getitem__(self, key):
        raise _Forbidden(f"the core read the environment ({key})")

    def __iter__(self):
        raise _Forbidden("the core listed the environment")

    def __len__(self):
        raise _Forbidden("the core read the environment")


@contextmanager
def sealed():
    """Files, the environment and the clock raise inside the block."""
    with pytest.MonkeyPatch.context() as mp:
        for target, name in ((builtins, "open"), (io, "open"), (os, "open"), (os, "getenv"), (os, "listdir"),
                             (os, "stat"), (pathlib.Path, "open"), (pathlib.Path, "read_text"),
                             (pathlib.Path, "read_bytes"), (pathlib.Path, "exists"), (time, "time"),
                             (time, "monotonic"), (time, "perf_counter"), (time, "time_ns"), (time, "sleep")):
            mp.setattr(target, name, _refuse(f"{target.__name__}.{name}"))
        mp.setattr(os, "environ", _NoEnviron())
        yield


@pytest.mark.parametrize("config,gpus,context", [
    ("meta-llama--Llama-3.1-70B.json", "2xh100", 8192),  # dense, fits
    ("meta-llama--Llama-3.1-70B.json", "2x3090", 4096),  # does not fit: the AWQ fallback is planned too
    ("deepseek-ai--DeepSeek-V3.json", "2x8xh100", 8192),  # MoE, MLA, FP8 blocks, two nodes
])
def test_planning_touches_no_file_environment_or_clock(config, gpus, context):
    spec, cluster, memory_model = load_config(config), Cluster.parse(gpus), load_memory_model()  # the edge reads
    with sealed():
        plan = make_plan(spec, cluster, Workload(context=context, concurrency=2), EngineArgs(),
                         memory_model=memory_model)
        assert plan.candidates
        summarize(plan)
        if plan.best is not None:
            make_flags(plan, plan.best)
        # reading a saved plan back (tpfit/codec.py, through the core's Plan.from_dict) is pure too
        assert Plan.from_dict(plan.to_dict()) == plan


def test_the_seal_catches_a_file_read_and_the_environment():
    with sealed(), pytest.raises(_Forbidden):
        load_config("meta-llama--Llama-3.1-8B.json")
    from tpfit.model.hub import is_offline

    with sealed(), pytest.raises(_Forbidden):
        is_offline()
