"""Build tpfit/data/vllm_flags.json: the `vllm serve` flags of each vLLM release, read from its source.

Reads, for each release unpacked under SRC/X.Y.Z (`pip download --no-deps vllm==X.Y.Z`, then
`unzip WHEEL 'vllm/engine/arg_utils.py' 'vllm/entrypoints/*' -d SRC/X.Y.Z`; the files read are FILES below),
every `add_argument(...)` call and the dataclass fields vLLM turns into flags (`FrontendArgs`,
`f"--{key.replace('_', '-')}"`), with whether each flag takes a value: `action="store_true"` and bool
fields (argparse `BooleanOptionalAction`, which also makes `--no-X`) take none. Run by hand when a
release is added:

    python tools/build_vllm_flags.py /tmp/vllm-flags-src [--check-python /path/to/vllm/venv/bin/python]

`--check-python` compares the table of that venv's vLLM release with vLLM's own parser (a real
`FlexibleArgumentParser` with the serve subcommand's arguments) and fails on any difference.
"""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tpfit" / "data" / "vllm_flags.json"
FILES = ("vllm/engine/arg_utils.py", "vllm/entrypoints/openai/cli_args.py", "vllm/entrypoints/cli/serve.py",
         "vllm/entrypoints/launchers/cli_args.py", "vllm/entrypoints/common/cli_args.py")
"""Where the serve flags are defined; `cli_args.py` moved from entrypoints/openai to entrypoints/launchers in
0.29, and to entrypoints/common in 0.33."""
NONE, REQUIRED, OPTIONAL = "none", "required", "optional"


def _version_key(v: str) -> tuple:
    return tuple(int(p) for p in v.split(".post")[0].split(".")[:3])


def _annotations(tree: ast.Module, class_name: str) -> dict[str, str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            return {st.target.id: ast.unparse(st.annotation) for st in node.body
                    if isinstance(st, ast.AnnAssign) and isinstance(st.target, ast.Name)}
    return {}


def _is_bool(annotation: str) -> bool:
    """`bool`, `bool | None`, `Optional[bool]`: argparse flags without a value (`bool | str` takes one)."""
    parts = {p.strip() for p in annotation.replace("Optional[", "").rstrip("]").split("|")} - {"None"}
    return parts == {"bool"}


def _flags_of_call(call: ast.Call, fields: dict[str, str], bool_optional: bool) -> dict[str, dict]:
    names = [a.value for a in call.args if isinstance(a, ast.Constant) and isinstance(a.value, str)
             and a.value.startswith("-")]
    if not names:
        return {}
    value, deprecated, negatable = REQUIRED, False, False
    for kw in call.keywords:
        if kw.arg == "action":
            text = ast.unparse(kw.value)
            if "BooleanOptionalAction" in text:
                value, negatable = NONE, True
            elif any(a in text for a in ("store_true", "store_false", "count", "store_const", "help", "version")):
                value = NONE
        elif kw.arg == "nargs" and ast.unparse(kw.value).strip("'\"") in ("?", "*"):
            value = OPTIONAL
        elif kw.arg == "deprecated" and ast.unparse(kw.value) == "True":
            deprecated = True
        elif kw.arg is None:  # **model_kwargs["max_model_len"] (or **{**kwargs["x"], ...}): the field's type decides
            sub = kw.value
            if isinstance(sub, ast.Dict):
                sub = next((v for k, v in zip(sub.keys, sub.values) if k is None), sub)
            if isinstance(sub, ast.Subscript) and isinstance(sub.slice, ast.Constant):
                field = str(sub.slice.value)
                # the config field may be named apart from the EngineArgs field (enable_stochastic_rounding)
                own = next((n[2:].replace("-", "_") for n in names if n.startswith("--")), "")
                if _is_bool(fields.get(field) or fields.get(own, "")):
                    value, negatable = NONE, bool_optional
    out = {}
    long_name = next((n for n in names if n.startswith("--")), None)
    for name in names:
        out[name] = {"value": value, "deprecated": deprecated}
        if long_name and name != long_name:
            out[name]["alias"] = long_name
        if negatable and name.startswith("--"):
            out["--no-" + name[2:]] = {"value": NONE, "deprecated": deprecated}
    return out


def flags_of_release(folder: Path) -> dict[str, dict]:
    """Every option string `vllm serve` accepts in the release unpacked in `folder`."""
    trees = {f: ast.parse((folder / f).read_text()) for f in FILES if (folder / f).exists()}
    arg_utils = (folder / FILES[0]).read_text()
    bool_optional = "BooleanOptionalAction" in arg_utils and 'kwargs[name]["action"] = argparse.BooleanOptionalAction' \
        in arg_utils.replace("'", '"')
    engine_fields = _annotations(trees[FILES[0]], "EngineArgs")
    flags: dict[str, dict] = {}
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument":
                flags.update(_flags_of_call(node, engine_fields, bool_optional))
    cli_args = next((f for f in (FILES[4], FILES[3], FILES[1]) if f in trees), None)
    frontend: dict[str, str] = {}
    for cls in ("BaseFrontendArgs", "FrontendArgs"):  # 0.32 moved most fields into a base class
        frontend.update(_annotations(trees[cli_args], cls) if cli_args else {})
    if frontend and "f\"--{key.replace(" in (folder / cli_args).read_text().replace("'", '"'):
        for field, annotation in frontend.items():
            name = "--" + field.replace("_", "-")
            if _is_bool(annotation):
                flags.setdefault(name, {"value": NONE, "deprecated": False})
                flags.setdefault("--no-" + field.replace("_", "-"), {"value": NONE, "deprecated": False})
            else:
                flags.setdefault(name, {"value": REQUIRED, "deprecated": False})
    for generic in ("-h", "--help"):
        flags.pop(generic, None)
    return flags


def build(src: Path) -> dict:
    releases = sorted((p for p in src.iterdir() if (p / FILES[0]).exists()), key=lambda p: _version_key(p.name))
    versions = [p.name.split(".post")[0] for p in releases]
    per_version = [flags_of_release(p) for p in releases]
    table: dict[str, dict] = {}
    for i, flags in enumerate(per_version):
        for name, info in flags.items():
            entry = table.setdefault(name, {"value": info["value"], "in": [], "deprecated_in": []})
            entry["value"] = info["value"]  # the newest release's arity
            if "alias" in info:
                entry["alias"] = info["alias"]
            entry["in"].append(i)
            if info["deprecated"]:
                entry["deprecated_in"].append(i)
    for entry in table.values():  # index lists -> [first, last] runs
        for key in ("in", "deprecated_in"):
            runs: list[list[int]] = []
            for i in entry[key]:
                if runs and runs[-1][1] == i - 1:
                    runs[-1][1] = i
                else:
                    runs.append([i, i])
            entry[key] = runs
    return {"source": "add_argument calls and FrontendArgs fields in each release's arg_utils.py, "
                      "entrypoints/openai/cli_args.py and entrypoints/cli/serve.py (tools/build_vllm_flags.py)",
            "versions": versions, "flags": dict(sorted(table.items()))}


_REAL_PARSER = """
import json
from vllm.utils.argparse_utils import FlexibleArgumentParser
try:
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
except ImportError:
    from vllm.entrypoints.openai.cli_args import make_arg_parser
p = make_arg_parser(FlexibleArgumentParser())
out = {}
for a in p._actions:
    for s in a.option_strings:
        out[s] = a.nargs != 0
print(json.dumps(out))
"""


def check_against(python: str, table: dict) -> list[str]:
    """Differences between the table and vLLM's own parser in the venv of `python`."""
    real = json.loads(subprocess.run([python, "-c", _REAL_PARSER], check=True, capture_output=True, text=True,
                                     timeout=300).stdout.strip().splitlines()[-1])
    version = subprocess.run([python, "-c", "import vllm; print(vllm.__version__)"], check=True, capture_output=True,
                             text=True, timeout=300).stdout.strip().split("+")[0]
    index = table["versions"].index(version)
    ours = {name: e["value"] != NONE for name, e in table["flags"].items()
            if any(a <= index <= b for a, b in e["in"])}
    real = {k: v for k, v in real.items() if k not in ("-h", "--help")}
    problems = [f"missing {k}" for k in sorted(set(real) - set(ours))]
    problems += [f"extra {k}" for k in sorted(set(ours) - set(real))]
    problems += [f"arity {k}: ours {ours[k]}, vLLM {real[k]}" for k in sorted(set(real) & set(ours))
                 if ours[k] != real[k]]
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("--check-python")
    args = ap.parse_args()
    table = build(args.src)
    if args.check_python:
        problems = check_against(args.check_python, table)
        if problems:
            print("\n".join(problems), file=sys.stderr)
            return 1
        print("matches vLLM's own parser", file=sys.stderr)
    OUT.write_text(json.dumps(table, indent=0, separators=(",", ":")) + "\n")
    print(f"wrote {OUT}: {len(table['flags'])} flags over {len(table['versions'])} releases", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
