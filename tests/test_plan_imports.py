"""`tpfit plan` imports only what planning uses (issue #11, cold start).

Each module below was once on the plan path or would be an easy one to pull back in; the start-up time itself is
measured by bench/plan_speed.py, never here.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import CONFIGS, ROOT

NEVER = {
    "asyncio": "the live stack's event loop (watch, verify)",
    "httpx": "the live client and the Hub",
    "huggingface_hub": "Hub downloads, only for a Hugging Face id",
    "pydantic": "typer 0.29 builds a pydantic adapter per option (pyproject keeps typer below 0.29)",
    "importlib.resources": "tpfit/data reads its files directly",
    "yaml": "deploy and check",
    "prometheus_client": "watch",
    "pynvml": "only without --gpus",
    "torch": "calibrate",
    "starlette": "the web page (ui)",
    "tpfit.live": "verify, doctor, watch, explain",
    "tpfit.deploy": "deploy",
    "tpfit.deployment": "check",
    "tpfit.check": "check",
    "tpfit.model.hub": "a Hugging Face id",
    "tpfit.report.html": "--html",
    "string": "explain's log patterns (core/vllm_messages.py); its import compiles string.Template's regex",
    "pkgutil": "the family registry lists its folder with os",
    "typing_extensions": "msgspec's fallback to typing suffices (tpfit/cli/app.py _import_msgspec)",
    "tpfit.model.families.deepseek": "another family's module: the model's own is imported first (families/)",
}
"""Module (or package) -> what it is for, instead of `tpfit plan` with --gpus."""

JSON_ONLY = {
    "rich": "--json writes plain JSON; the table is the terminal output's",
    "tpfit.report.terminal": "the table",
    "dataclasses": "tpfit's value types are msgspec Structs (rich's table imports dataclasses)",
}
BUNDLED_ONLY = {
    "tpfit.model.folder": "a local folder or config.json",
    "tpfit.model.safetensors": "a local folder's safetensors headers",
    "json": "package data and --json's text go through msgspec; a user's config.json is read with json",
}


def _imported(*args: str) -> set[str]:
    code = ("import sys\nfrom tpfit.cli.app import run\nsys.argv = ['tpfit', *sys.argv[1:]]\n"
            "try:\n    run()\nexcept SystemExit as e:\n    assert e.code in (0, 1), e.code\n"
            "print(*sorted(sys.modules), file=sys.stderr)")
    run = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    return set(run.stderr.split())


def _loaded(modules: set[str], names: dict[str, str]) -> dict[str, str]:
    return {m: why for m, why in names.items() if any(x == m or x.startswith(m + ".") for x in modules)}


@pytest.mark.parametrize("args, absent", [
    pytest.param(("plan", "llama-3.1-70b", "--gpus", "2xH100", "--json"), NEVER | JSON_ONLY | BUNDLED_ONLY,
                 id="bundled-json"),
    pytest.param(("plan", "llama-3.1-8b", "--gpus", "1xH100"), NEVER | BUNDLED_ONLY, id="bundled-table"),
    pytest.param(("plan", str(CONFIGS / "Qwen--Qwen3-30B-A3B.json"), "--gpus", "2xH100", "--json"),
                 NEVER | JSON_ONLY, id="config-json"),
])
def test_plan_imports_only_what_it_uses(args, absent):
    assert _loaded(_imported(*args), absent) == {}


def test_the_check_sees_an_import():
    """The same run without --json draws the table with rich: the check must notice it."""
    assert set(_loaded(_imported("plan", "llama-3.1-8b", "--gpus", "1xH100"), JSON_ONLY)) == set(JSON_ONLY)
