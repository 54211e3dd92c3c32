"""YAML for deployment files: plain block style, no anchors/aliases (readers of manifests expect none)."""

from __future__ import annotations

import yaml


class _PlainDumper(yaml.SafeDumper):
    def ignore_aliases(self, data) -> bool:  # noqa: ANN001 - PyYAML's signature
        return True


def dump(obj: object) -> str:
    return yaml.dump(obj, Dumper=_PlainDumper, sort_keys=False, width=1000, allow_unicode=True)


def dump_all(objs: list) -> str:
    return yaml.dump_all(objs, Dumper=_PlainDumper, sort_keys=False, width=1000, allow_unicode=True)
