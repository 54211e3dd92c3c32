"""--fix: apply the findings' edits to the file as it was written (shell text edited in place, YAML round-trip
through ruamel.yaml so comments, order and quoting stay)."""

from __future__ import annotations

import io
import re
import shlex

from tpfit.check.findings import Edit, Finding, Op
from tpfit.deployment.facts import Arg, DeploymentFile, EnvVar, Format, Runtime, Unit
from tpfit.deployment.read_yaml import ListStore
from tpfit.deployment.shell import TextStore


class _TextEdits:
    """Pending (start, end, replacement) edits of each text, applied back to front."""

    def __init__(self) -> None:
        self.by_store: dict[int, tuple[TextStore, list[tuple[int, int, str]]]] = {}

    def add(self, store: TextStore, start: int, end: int, text: str) -> None:
        self.by_store.setdefault(id(store), (store, []))[1].append((start, end, text))

    def apply(self) -> dict[int, str]:
        out = {}
        for key, (store, edits) in self.by_store.items():
            text = store.text
            for start, end, new in sorted(edits, key=lambda e: (e[0], e[1]), reverse=True):
                text = text[:start] + new + text[end:]
            out[key] = text
        return out


def _remove_span(text: str, start: int, end: int) -> tuple[int, int]:
    """Widen a word span to take the blank before it, and a `\\` continuation line it leaves empty."""
    s = start
    while s > 0 and text[s - 1] in " \t":
        s -= 1
    line_start = text.rfind("\n", 0, s) + 1
    rest = text[end:].split("\n", 1)[0]
    if text[line_start:s].strip() == "" and rest.strip() in ("\\", ""):
        nl = text.find("\n", end)
        return line_start, (len(text) if nl < 0 else nl + 1)
    return s, end


class Fixer:
    def __init__(self, dep: DeploymentFile) -> None:
        self.dep = dep
        self.text = _TextEdits()
        self.list_deletes: dict[int, tuple[ListStore, set[int]]] = {}
        self.applied: list[str] = []
        self.skipped: list[str] = []

    # ---- vLLM flags ----

    def set_flag(self, unit: Unit, flag: str, value: str | None) -> bool:
        cmd = unit.command
        arg = cmd.get(flag)
        if arg is not None:
            if value is None:
                return True
            return self._replace_value(arg, value)
        store = cmd.store
        words = [flag] if value is None else [flag, value]
        if isinstance(store, ListStore):
            store.seq.extend(words)
            return True
        if isinstance(store, TextStore) and not store.read_only and cmd.anchor is not None:
            end = cmd.anchor.span[1]
            self.text.add(store, end, end, " " + shlex.join(words))
            return True
        return False

    def _replace_value(self, arg: Arg, value: str) -> bool:
        w = arg.words[-1]
        if isinstance(w.store, ListStore):
            i = w.span[0]
            w.store.seq[i] = f"{arg.flag}={value}" if len(arg.words) == 1 else value
            return True
        if isinstance(w.store, TextStore) and not w.store.read_only:
            new = f"{arg.flag}={shlex.quote(value)}" if len(arg.words) == 1 else shlex.quote(value)
            self.text.add(w.store, w.span[0], w.span[1], new)
            return True
        return False

    def remove_flag(self, arg: Arg) -> bool:
        first = arg.words[0]
        if isinstance(first.store, ListStore):
            key = id(first.store)
            self.list_deletes.setdefault(key, (first.store, set()))[1].update(w.span[0] for w in arg.words)
            return True
        if isinstance(first.store, TextStore) and not first.store.read_only:
            start, end = _remove_span(first.store.text, first.span[0], arg.words[-1].span[1])
            self.text.add(first.store, start, end, "")
            return True
        return False

    # ---- containers ----

    def container_option(self, unit: Unit, words: tuple[str, ...]) -> bool:
        """Options before the image; `words` are shell text as check/rules.py writes them (`--ipc=host`, the cache's
        `-v "${HF_HOME:-...}":...`, which must stay expandable), never the file's own words."""
        image = unit.handle
        if unit.runtime not in (Runtime.DOCKER, Runtime.PODMAN) or image is None or image.store.read_only:
            return False
        self.text.add(image.store, image.span[0], image.span[0], " ".join(words) + " ")
        return True

    def env_reference(self, unit: Unit, env: EnvVar) -> bool:
        name = env.name
        if unit.runtime in (Runtime.DOCKER, Runtime.PODMAN, Runtime.HOST):
            store = unit.command.store
            if not isinstance(store, TextStore) or store.read_only:
                return False
            pattern = re.compile(r"""(['"]?)""" + re.escape(name) + "=" + r"""(?:'[^']*'|"[^"]*"|\S+)""")
            lines = store.text.split("\n")
            index = env.where.line - store.first_line
            if not 0 <= index < len(lines):
                return False
            offset = sum(len(l) + 1 for l in lines[:index])
            m = pattern.search(lines[index])
            if not m:
                return False
            start, end = offset + m.start(), offset + m.end()
            if unit.runtime is Runtime.HOST:  # `HF_TOKEN=... vllm serve`: drop the assignment, export it instead
                self.text.add(store, start, end + 1, "")
            else:  # `-e HF_TOKEN=...` -> `-e HF_TOKEN`: passed through from the caller's environment
                self.text.add(store, start, end, m.group(1) + name + m.group(1))
            return True
        if unit.handle is None:
            return False
        node = unit.handle[0]
        if unit.runtime in (Runtime.COMPOSE, Runtime.PODMAN_COMPOSE):
            envs = node.get("environment")
            if isinstance(envs, dict):
                envs[name] = f"${{{name}}}"
                return True
            if isinstance(envs, list):
                for i, item in enumerate(envs):
                    if isinstance(item, str) and item.startswith(name + "="):
                        envs[i] = f"{name}=${{{name}}}"
                        return True
            return False
        for item in node.get("env") or []:
            if isinstance(item, dict) and item.get("name") == name:
                item.pop("value", None)
                token = name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
                secret = "hf-token" if token else name.lower().replace("_", "-")
                item["valueFrom"] = {"secretKeyRef": {"name": secret, "key": "token"}}
                return True
        return False

    # ---- apply ----

    def apply(self, edit: Edit) -> bool:
        unit = edit.unit
        if edit.op is Op.SET_FLAG:
            return self.set_flag(unit, edit.flag, edit.value)
        if edit.op is Op.REMOVE_FLAG:
            return self.remove_flag(edit.target)
        if edit.op is Op.CONTAINER_OPTION:
            return self.container_option(unit, edit.value)
        if edit.op is Op.ENV_REFERENCE:
            return self.env_reference(unit, edit.target)
        if not isinstance(edit.target, dict):
            return False  # the file holds something else there: left to do by hand
        if edit.op is Op.YAML_SET:
            edit.target[edit.key] = edit.value
            return True
        if edit.op is Op.YAML_APPEND:
            items = edit.target.get(edit.key)
            if items is None:
                edit.target[edit.key] = items = []
            if not isinstance(items, list):
                return False
            if edit.value not in items:
                items.append(edit.value)
            return True
        return False

    def result(self) -> str:
        for store, indices in self.list_deletes.values():
            for i in sorted(indices, reverse=True):
                del store.seq[i]
        texts = self.text.apply()
        if self.dep.format is Format.SHELL:
            return next(iter(texts.values()), self.dep.text)
        for key, (store, _) in self.text.by_store.items():
            old = store.node[store.key]
            new = texts[key]
            store.node[store.key] = type(old)(new) if type(old) is not str and isinstance(old, str) else new
        return dump_yaml(self.dep.documents, self.dep.text)


def _indent_of(text: str) -> tuple[int, int]:
    """(mapping indent, dash offset) as the file writes them: `key:\\n- a` (0) or `key:\\n  - a` (2)."""
    lines = text.splitlines()
    for prev, line in zip(lines, lines[1:]):
        if prev.rstrip().endswith(":") and line.lstrip().startswith("- "):
            return 2, max(0, (len(line) - len(line.lstrip())) - (len(prev) - len(prev.lstrip())))
    return 2, 0


def dump_yaml(docs: list, original: str) -> str:
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096
    mapping, offset = _indent_of(original)
    yaml.indent(mapping=mapping, sequence=offset + 2, offset=offset)
    buf = io.StringIO()
    if len(docs) == 1:
        yaml.dump(docs[0], buf)
    else:
        yaml.explicit_start = original.lstrip().startswith("---")
        yaml.dump_all(docs, buf)
    return buf.getvalue()


def fix_text(dep: DeploymentFile, findings: tuple[Finding, ...]) -> tuple[str, list[str], list[str]]:
    """(the corrected text, the edits applied, the fixes left to do by hand)."""
    fixer = Fixer(dep)
    applied, manual = [], []
    seen: set[tuple] = set()
    for f in findings:
        if not f.edits:
            if f.fix and f.severity.value != "info":
                manual.append(f"{f.where.line}: {f.fix}")
            continue
        for e in f.edits:
            key = (e.op, e.flag, e.key, str(e.value), id(e.target), id(e.unit))
            if key in seen:
                continue
            seen.add(key)
            (applied if fixer.apply(e) else manual).append(f"{f.where.line}: {e.describe()}")
    return fixer.result(), applied, manual
