"""YAML for deployment files: plain block style, no anchors/aliases (readers of manifests expect none)."""

from __future__ import annotations

import re

import yaml

# Strings some YAML reader could take for a number: PyYAML leaves "._" or "1_0" plain, but YAML 1.1
# readers with underscore digits (ruamel, used by check-jsonschema) read them as floats or fail.
_NUMBER_LIKE = re.compile(r"[-+]?[0-9._:]+(?:[eE][-+]?[0-9_]*)?")

_BREAKS = "\x85\u2028\u2029"
"""YAML 1.1 line breaks besides CR and LF: only a double-quoted scalar keeps them (as the escapes \\N, \\L, \\P)."""


class _PlainDumper(yaml.SafeDumper):
    def ignore_aliases(self, data) -> bool:  # noqa: ANN001 - PyYAML's signature
        return True


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    if any(c in _BREAKS for c in data):  # PyYAML writes them raw in single quotes, which read back as a space
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style='"')
    if _NUMBER_LIKE.fullmatch(data):
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="'")
    return yaml.SafeDumper.represent_str(dumper, data)


_PlainDumper.add_representer(str, _represent_str)


def dump(obj: object) -> str:
    return yaml.dump(obj, Dumper=_PlainDumper, sort_keys=False, width=1000, allow_unicode=True)


def dump_all(objs: list) -> str:
    return yaml.dump_all(objs, Dumper=_PlainDumper, sort_keys=False, width=1000, allow_unicode=True)
