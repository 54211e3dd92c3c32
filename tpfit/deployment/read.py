"""Read a deployment file of any supported kind, within bounds: one clear error for anything else.

Bounds (a deployment file is a few KB): at most 512 KiB (ruamel's round-trip reader takes ~5 s of CPU for
that), UTF-8 text, YAML nested at most 64 levels and with at most 256 aliases. Anything outside them, unparsable, or starting no vLLM server is a UsageError (exit 2).
"""

from __future__ import annotations

import re
import warnings

from tpfit.deployment.facts import DeploymentFile
from tpfit.errors import UsageError
from tpfit.units import MIB

MAX_BYTES = MIB // 2
MAX_DEPTH = 64
MAX_ALIASES = 256
_YAML_START = re.compile(r"^(?:---|%YAML|[A-Za-z_][\w.-]*\s*:(?:\s|$)|-\s)")
_ACTION = r"\{\{-?\s*(?:\.|include|toYaml|template|if|range|with|end|else|\$)"
_TEMPLATE = re.compile(_ACTION)
"""A Go template action as Helm charts write them: `{{ .Values.tp }}`, `{{- include "x" . }}`, `{{ end }}`."""
_TEMPLATE_AS_VALUE = re.compile(r"(?:[:\[,]|^\s*-)\s*" + _ACTION, re.M)
"""An action where YAML reads a value (`tp: {{ .Values.tp }}`, `[--model, {{ .Values.model }}]`): it parses as a
flow mapping, which a reader then refuses. One inside a string (a Prometheus rule's `summary: vLLM {{ $labels.instance
}} does not answer`, which `tpfit deploy --monitoring` writes) is text, not a sign of a chart."""
_ALIAS = re.compile(r"(?:^|[\s\[{,:])\*[^\s\[\]{},]+")


def looks_like_yaml(name: str, text: str) -> bool:
    if name.endswith((".yaml", ".yml")):
        return True
    if name.endswith((".sh", ".bash")):
        return False
    for line in text.splitlines():
        s = line.strip()
        if s and not s.startswith("#"):
            return bool(_YAML_START.match(s)) and not s.startswith(("vllm ", "docker ", "podman ", "python"))
    return False


def _nesting(text: str) -> int:
    """Deepest nesting of flow collections and of indentation (in 2-space steps), cheaply."""
    depth = worst = 0
    for c in text:
        if c in "[{":
            depth += 1
            worst = max(worst, depth)
        elif c in "]}":
            depth = max(0, depth - 1)
    indent = max((len(l) - len(l.lstrip(" ")) for l in text.splitlines() if l.strip()), default=0)
    return max(worst, indent // 2)


def decode(data: bytes, name: str) -> str:
    if len(data) > MAX_BYTES:  # only MAX_BYTES + 1 are read: the size itself is not known here
        raise UsageError("is larger than 512 KiB, too big for a deployment file", flag="FILE", value=name)
    if b"\x00" in data:
        raise UsageError("a binary file, not a shell script, compose file or Kubernetes manifest", flag="FILE",
                         value=name)
    try:
        return data.decode("utf-8").removeprefix("\ufeff")  # a byte order mark (editors on Windows write one)
    except UnicodeDecodeError as err:
        raise UsageError(f"not UTF-8 text (byte {err.start}); give a shell script, compose file or Kubernetes "
                         "manifest", flag="FILE", value=name) from None


def load_yaml(text: str, name: str) -> list:
    """All documents, round-trip (comments and line numbers kept)."""
    from ruamel.yaml import YAML

    if _nesting(text) > MAX_DEPTH:
        raise UsageError(f"nested deeper than {MAX_DEPTH} levels; not a deployment file", flag="FILE", value=name)
    if len(_ALIAS.findall(text)) > MAX_ALIASES:
        raise UsageError(f"more than {MAX_ALIASES} YAML aliases; not a deployment file", flag="FILE", value=name)
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    try:
        with warnings.catch_warnings():  # ruamel warns on stderr (reused anchors): the file's problem, not ours
            warnings.simplefilter("ignore")
            return [d for d in yaml.load_all(text)]
    # ruamel raises YAMLError, warnings-as-errors (duplicate keys) and, on some broken input, plain Python errors:
    # any of them means "not YAML tpfit can read", said once here
    except Exception as err:  # noqa: BLE001
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if _TEMPLATE.search(text):
            raise UsageError(_helm_template(first), flag="FILE", value=name) from None
        raise UsageError(f"not valid YAML: {first}", flag="FILE", value=name) from None


def _helm_template(problem: str) -> str:
    """A Helm chart's template is YAML only once rendered: what went wrong, and how to check it instead."""
    return (f"a Helm (Go) template, not YAML until it is rendered ({problem}); check what it renders: "
            "helm template NAME CHART | tpfit check -")


def read_deployment(data: bytes, name: str) -> DeploymentFile:
    """The vLLM servers a file starts; UsageError when it is not a deployment tpfit can read or starts none."""
    text = decode(data, name)
    docs = load_yaml(text, name) if looks_like_yaml(name, text) else None
    try:
        if docs is not None:
            from tpfit.deployment.read_yaml import read_yaml_documents

            found = read_yaml_documents(docs, name, text)
        else:
            from tpfit.deployment.read_shell import read_shell

            found = read_shell(text, name)
    except UsageError as err:  # a reader's error (a field of the file): named with the file
        chart = docs is not None and _TEMPLATE_AS_VALUE.search(text)
        raise UsageError(_helm_template(str(err)) if chart else str(err), flag="FILE", value=name) from None
    if not found.units:
        why = "; ".join(found.notes) or "looked for vllm serve, python -m vllm.entrypoints.openai.api_server, " \
                                        "docker/podman run with a vLLM image"
        raise UsageError(f"no vLLM server found ({why})", flag="FILE", value=name)
    return found
