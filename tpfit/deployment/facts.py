"""What a deployment file says about each vLLM server it starts: plain values, with where each came from.

`tpfit deploy` writes these facts; `tpfit check` reads them back (shared/DESIGN.md: check is deploy run
backwards). A `Where` names the line and, for YAML, the path, so a finding can point at it and a fix can edit it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Format(str, Enum):
    """The kind of file a deployment came from."""

    SHELL = "shell"
    COMPOSE = "compose"
    KUBERNETES = "kubernetes"
    SERVER = "server"
    """A running server read through --url."""


class Runtime(str, Enum):
    """What starts the vLLM process: on the host, or in a container of one of these engines."""

    HOST = "host"
    DOCKER = "docker"
    PODMAN = "podman"
    COMPOSE = "compose"
    PODMAN_COMPOSE = "podman-compose"
    KUBERNETES = "kubernetes"
    SERVER = "server"

    @property
    def container(self) -> bool:
        return self not in (Runtime.HOST, Runtime.SERVER)


@dataclass(frozen=True, slots=True, kw_only=True)
class Where:
    """A place in the file: 1-based line, and the YAML path for YAML files ("" for shell)."""

    line: int = 0
    path: str = ""

    def __str__(self) -> str:
        return f"{self.line}" + (f" ({self.path})" if self.path else "")


@dataclass(frozen=True, slots=True, kw_only=True)
class Word:
    """One shell word (or YAML list item) of a command line, as the program receives it.

    `span` is (start, end) in the text that holds it: the file for shell scripts, the YAML string for
    `sh -c "..."`; for a YAML list item it is (index, index + 1) in that list.
    """

    text: str
    where: Where
    span: tuple[int, int]
    store: object = field(default=None, compare=False, repr=False)
    """The TextStore or YAML list the word lives in."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Arg:
    """One vLLM flag as written: `--max-model-len 8192`, `--max-model-len=8192`, `--enforce-eager`."""

    flag: str
    """The flag as written (`-tp`, `--tensor_parallel_size`)."""
    name: str
    """The name vLLM's parser reads it as (`--tensor-parallel-size`)."""
    value: str | None
    where: Where
    words: tuple[Word, ...]
    """The one or two words it occupies (a fix replaces or removes exactly these)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class VllmCommand:
    """A vLLM server invocation: `vllm serve MODEL ...`, the OpenAI api_server module, or an image's args."""

    model: str | None
    model_where: Where
    args: tuple[Arg, ...]
    anchor: Word | None
    """The word after which new flags are inserted (`serve`, the api_server module, the image, or None for a YAML
    list, where they are appended)."""
    store: object = field(default=None, compare=False, repr=False)
    """Where the words live, for --fix: a TextStore (a shell text) or the YAML list holding them."""

    def get(self, name: str) -> Arg | None:
        """The last occurrence of a flag (argparse keeps the last), by any of its names."""
        found = None
        for a in self.args:
            if a.name == name:
                found = a
        return found


@dataclass(frozen=True, slots=True, kw_only=True)
class EnvVar:
    name: str
    value: str | None
    """The literal value; None when it comes from a secret, a file or the caller's environment."""
    where: Where


class ProbeKind(str, Enum):
    """What asks a server whether it is up: Kubernetes' three probes (`startupProbe`, ...), compose's healthcheck."""

    STARTUP = "startup"
    READINESS = "readiness"
    LIVENESS = "liveness"
    HEALTHCHECK = "healthcheck"


KUBERNETES_PROBES = (ProbeKind.STARTUP, ProbeKind.READINESS, ProbeKind.LIVENESS)
"""The probes a Kubernetes container has, each the key `{kind}Probe`."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Probe:
    """A Kubernetes probe (or a compose healthcheck): how long it lets a server start before it acts."""

    kind: ProbeKind
    initial_delay_s: float
    period_s: float
    failure_threshold: int
    where: Where
    port: int | None = None
    """The port it asks: an httpGet's or tcpSocket's (a named one through the container's ports), the port of a
    healthcheck's localhost URL; None when it names none tpfit can read."""

    @property
    def budget_s(self) -> float:
        """Seconds before the probe gives up on a server that does not answer yet."""
        return self.initial_delay_s + self.period_s * self.failure_threshold


@dataclass(frozen=True, slots=True, kw_only=True)
class Unit:
    """One vLLM server as a file starts it: the command, its container and what the container gets."""

    name: str
    runtime: Runtime
    command: VllmCommand
    where: Where
    image: str | None = None
    image_where: Where = Where()
    gpus: int | None = None
    """GPUs the container gets; None when not limited (`--gpus all`, compose `count: all`, on the host)."""
    gpus_where: Where = Where()
    gpu_product: str | None = None
    """A GPU model named by a node selector or affinity (`nvidia.com/gpu.product`, GKE accelerator)."""
    nodes: int = 1
    """Pods per replica (LeaderWorkerSet size)."""
    ipc_host: bool = False
    shm_bytes: int | None = None
    """Size of /dev/shm when set (`--shm-size`, `shm_size`, an in-memory emptyDir); None = the runtime's default."""
    env: tuple[EnvVar, ...] = ()
    mounts: tuple[str, ...] = ()
    """Container paths with a volume mounted."""
    probes: tuple[Probe, ...] = ()
    published: tuple[int, ...] | None = None
    """Container ports published to the host (`-p HOST:CONTAINER`, compose `ports`); None when the file publishes
    none or shares the host's network (`--network host`), where the server's own port is reached directly."""
    gpu_ids: tuple[str, ...] = ()
    """Host GPU ids given to the container (compose `device_ids`, docker `device=0,1`)."""
    alternative_of: int | None = None
    """Index (in the file's units) of a server an `exec` started above this one in the script: this one runs only
    where that one did not (another branch of an `if` or `case`), never beside it."""
    handle: object = field(default=None, compare=False, repr=False)
    """For --fix: the image Word of a docker/podman run; (service, path) of a compose service; (container, pod,
    path, pod path) of a Kubernetes container."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DeploymentFile:
    """Everything read from one file."""

    name: str
    format: Format
    units: tuple[Unit, ...]
    text: str = ""
    documents: object = field(default=None, compare=False, repr=False)
    """The round-trip YAML documents (ruamel) a fix edits and writes back."""
    notes: tuple[str, ...] = ()
    """What was seen and skipped (objects without a vLLM container, lines that start no server)."""
