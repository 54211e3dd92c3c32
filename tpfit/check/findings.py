"""What `tpfit check` reports: findings with a severity, a place, what vLLM would do, and the fix as an edit."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from tpfit.deployment.facts import Where


class Severity(str, Enum):
    ERROR = "error"
    """vLLM refuses to start, or the server dies or is killed: exit code 1."""
    WARNING = "warning"
    INFO = "info"


class Kind(str, Enum):
    """Finding kinds; the SARIF rule ids."""

    UNKNOWN_FLAG = "unknown-flag"
    DEPRECATED_FLAG = "deprecated-flag"
    FLAG_VALUE = "flag-value"
    LAYOUT = "layout"
    MEMORY = "memory"
    CAPACITY = "capacity"
    GPU_COUNT = "gpu-count"
    SHARED_MEMORY = "shared-memory"
    PODMAN_IPC = "podman-compose-ipc"
    STARTUP_PROBE = "startup-probe"
    PROBE_PORT = "probe-port"
    IMAGE = "image"
    SECRET = "plaintext-secret"
    HF_CACHE = "hf-cache"
    MODEL_MOUNT = "model-mount"
    TRUST_REMOTE_CODE = "trust-remote-code"
    ENFORCE_EAGER = "enforce-eager"
    GPU_UTILIZATION = "gpu-memory-utilization"
    NOT_CHECKED = "not-checked"
    LINE_ENDINGS = "line-endings"


class Op(str, Enum):
    """What a fix changes."""

    SET_FLAG = "set-flag"
    """Set a vLLM flag's value (or add the flag)."""
    REMOVE_FLAG = "remove-flag"
    CONTAINER_OPTION = "container-option"
    """Add docker/podman run words (`--ipc=host`, `-v ...`)."""
    YAML_SET = "yaml-set"
    """Set `key: value` in a YAML mapping (compose service, Kubernetes container or pod)."""
    YAML_APPEND = "yaml-append"
    """Append an item to a YAML list under `key` (created when missing)."""
    ENV_REFERENCE = "env-reference"
    """Replace a literal environment value by a reference (pass-through, interpolation or a Secret)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Edit:
    op: Op
    flag: str | None = None
    value: object = None
    """The flag value (None for a flag without one), the YAML value, or the container option words."""
    key: str | None = None
    target: object = field(default=None, compare=False, repr=False)
    """The YAML mapping to change, or the env var / Arg to rewrite."""
    unit: object = field(default=None, compare=False, repr=False)

    def describe(self) -> str:
        if self.op is Op.SET_FLAG:
            return f"{self.flag} {self.value}" if self.value is not None else f"add {self.flag}"
        if self.op is Op.REMOVE_FLAG:
            return f"remove {self.flag}"
        if self.op is Op.CONTAINER_OPTION:
            return "add " + " ".join(self.value)
        if self.op is Op.ENV_REFERENCE:
            return f"pass {self.key} by reference"
        return f"{self.key}: {_short(self.value)}"

    def to_dict(self) -> dict:
        value = self.value if isinstance(self.value, (str, int, float, type(None))) else _plain(self.value)
        return {"op": self.op.value, "flag": self.flag, "key": self.key, "value": value}


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _short(value) -> str:
    import json

    return json.dumps(_plain(value), separators=(", ", ": "))


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    kind: Kind
    severity: Severity
    message: str
    where: Where
    unit: str
    vllm: str = ""
    """What vLLM does: its message where it refuses, else what happens when it runs."""
    fix: str = ""
    edits: tuple[Edit, ...] = ()

    def to_dict(self) -> dict:
        return {"kind": self.kind.value, "severity": self.severity.value, "message": self.message,
                "line": self.where.line, "path": self.where.path, "unit": self.unit, "vllm": self.vllm,
                "fix": self.fix, "edits": [e.to_dict() for e in self.edits]}
