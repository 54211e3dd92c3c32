"""The checks of one deployed vLLM server: its flags against the image's release, its layout and memory
against vLLM's rules (core/rules.py, core/memory.py via make_plan, never a copy), and the container around it
(GPUs, /dev/shm, probes, secrets, caches) against deploy-conventions.md.

Pure: a Unit and what was resolved for it (model, GPUs, plan) in, Findings out.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from tpfit.check.findings import Edit, Finding, Kind, Op, Severity
from tpfit.core.layout import Layout
from tpfit.core.memory import safe_utilization
from tpfit.core.plan import Plan
from tpfit.deploy.common import HF_CACHE_CONTAINER, HF_CACHE_HOST_COMPOSE
from tpfit.deploy.k8s import PROBE_PERIOD_S, startup_probe
from tpfit.deploy.shell import CACHE_VOLUME_SHELL, bind_mount
from tpfit.deploy.startup import (
    DOWNLOAD_BYTES_PER_S, LOAD_BYTES_PER_S, START_OVERHEAD_S, download_bytes, start_seconds, wait_seconds,
)
from tpfit.deployment.facts import DeploymentFile, Format, ProbeKind, Runtime, Unit, Where
from tpfit.deployment.flags import REQUIRED, FlagTable
from tpfit.kinds import Verdict
from tpfit.units import GB, GIB, format_gib
from tpfit.vllm_facts import (
    DEFAULT_PORT, HEALTH_PATH, MIN_SHM_BYTES, cuda_of_image, default_gpu_memory_utilization, is_official_image,
    parse_driver,
)

KSERVE_FLAGS = frozenset({
    "--model_name", "--model_id", "--model_dir", "--model_revision", "--tokenizer_revision", "--backend", "--task",
    "--return_probabilities", "--disable_lower_case", "--disable_special_tokens", "--max_length", "--http_port",
    "--grpc_port", "--workers", "--max_threads", "--enable_docs_url", "--predictor_host", "--protocol",
    "--enable_latency_logging", "--configure_logging", "--log_config_file", "--access_log_format",
    "--return_token_type_ids", "--return_raw_logits", "--tensor_input_names", "--model-id", "--model-name"})
"""Flags of KServe's huggingfaceserver itself (kserve/python/huggingfaceserver `__main__.py`), passed beside vLLM's."""
SECRET_NAME = re.compile(r"(TOKEN|SECRET|PASSWORD|API_KEY|APIKEY|ACCESS_KEY)", re.IGNORECASE)
SECRET_FLAGS = ("--api-key", "--hf-token")
HF_TOKEN_VALUE = re.compile(r"\bhf_[A-Za-z0-9]{20,}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Resolved:
    """What `run` found out for a unit: the flags table, the engine and layout its flags give, and the plan."""

    table: FlagTable
    engine: object | None
    """The EngineArgs the unit's flags give (None when a value is refused)."""
    layout: Layout | None
    plan: Plan | None = None
    """The plan of exactly this layout and flags (one candidate); None when the model or GPUs are unknown."""
    better: Plan | None = None
    """The plan over every layout of the same GPUs, for a concrete fix."""
    gpus_given: int | None = None
    """GPUs the unit's server gets (container limit, or the cluster for a host command)."""
    node_gpus: int | None = None
    """GPUs per node of the machines the deployment targets (--gpus), when given."""
    host_driver: str | None = None
    without_eager: Plan | None = None
    """The same plan without --enforce-eager, when the unit sets it."""
    longest_len: int | None = None
    """The longest --max-model-len this layout's KV cache holds one request of (vLLM's estimate, up to the
    model's maximum)."""


def is_run_time(value: str) -> bool:
    """A value the file leaves to the shell or a template: `$TP`, `$(nproc)`, `` `nproc` ``, `{{ .Values.tp }}`."""
    return "$" in value or "`" in value or "{{" in value


def _f(kind: Kind, sev: Severity, unit: Unit, message: str, where: Where, *, vllm: str = "", fix: str = "",
       edits: tuple[Edit, ...] = ()) -> Finding:
    return Finding(kind=kind, severity=sev, message=message, where=where, unit=unit.name, vllm=vllm, fix=fix,
                   edits=edits)


def check_flags(unit: Unit, table: FlagTable) -> list[Finding]:
    """Each flag against the image's vLLM release: unknown (vLLM's argparse refuses), deprecated."""
    out = []
    release = f"vLLM {table.version}" + (f" (read for {table.asked})" if table.asked != table.version else "")
    for a in unit.command.args:
        if a.flag in KSERVE_FLAGS or a.flag.startswith("--model_"):
            continue
        if not table.has(a.name):
            span = table.releases_with(a.name)
            near = table.closest(a.name)
            if span:
                msg = f"{a.flag}: {release} has no such flag (vLLM {span[0]} to {span[1]} have it)"
            else:
                msg = f"{a.flag}: no vLLM release has this flag"
            fix = f"use {near}" if near and not span else (f"use an image of vLLM {span[0]} to {span[1]}, or remove "
                                                            f"{a.flag}" if span else f"remove {a.flag}")
            edits = (Edit(op=Op.REMOVE_FLAG, flag=a.name, target=a, unit=unit),) if not near or span else (
                Edit(op=Op.REMOVE_FLAG, flag=a.name, target=a, unit=unit),
                Edit(op=Op.SET_FLAG, flag=near, value=a.value, unit=unit))
            out.append(_f(Kind.UNKNOWN_FLAG, Severity.ERROR, unit, msg, a.where,
                          vllm=f"vllm serve: error: unrecognized arguments: {a.flag}", fix=fix, edits=edits))
        elif a.value is None and table.takes_value(a.name) == REQUIRED:  # at the end, or another flag follows
            out.append(_f(Kind.FLAG_VALUE, Severity.ERROR, unit, f"{a.flag} has no value", a.where,
                          vllm=f"vllm serve: error: argument {a.name}: expected one argument",
                          fix=f"give {a.flag} its value, or remove it"))
        elif table.deprecated(a.name):
            out.append(_f(Kind.DEPRECATED_FLAG, Severity.WARNING, unit, f"{a.flag} is deprecated in {release}",
                          a.where, vllm="a deprecation warning at start-up; a later release removes the flag",
                          fix=f"remove {a.flag} (see vLLM's release notes for its replacement)"))
    return out


def check_gpu_count(unit: Unit, r: Resolved) -> list[Finding]:
    """GPUs the container gets vs the GPUs the layout needs on each node (TP x PP x DP, PP across nodes)."""
    lay, given = r.layout, unit.gpus
    if lay is None or given is None:
        return []
    per_node = lay.num_gpus if unit.nodes == 1 else -(-lay.num_gpus // unit.nodes)
    if given == per_node:
        return []
    edits = _gpu_count_edits(unit, per_node)
    holder = "the container" if unit.runtime.container else "CUDA_VISIBLE_DEVICES"
    if given < per_node:
        fix = f"give the container {per_node} GPUs, or lower --tensor-parallel-size"
        best = r.better.best if r.better is not None else None
        if r.node_gpus is not None and r.node_gpus < per_node and best is not None:
            # the nodes have no more GPUs to give: the layout has to shrink to the container's
            edits = _layout_edits(unit, best.layout)
            fix = f"the nodes have {r.node_gpus} GPUs: use {best.layout} (tpfit's plan for {given} GPUs)"
        return [_f(Kind.GPU_COUNT, Severity.ERROR, unit,
                   f"the layout {lay} needs {per_node} GPUs per node, {holder} gives it {given}", unit.gpus_where,
                   vllm=f"World size ({lay.world_size}) is larger than the number of available GPUs ({given}) in "
                        "this node.", fix=fix, edits=edits)]
    return [_f(Kind.GPU_COUNT, Severity.WARNING, unit,
               f"{holder} gives it {given} GPUs, the layout {lay} uses {per_node}: {given - per_node} sit idle",
               unit.gpus_where, vllm="starts on the first GPUs; the others stay unused",
               fix=f"give the container {per_node} GPUs, or raise --tensor-parallel-size / --data-parallel-size",
               edits=edits)]


def _dig(node, *keys):
    for k in keys:
        node = node.get(k) if isinstance(node, dict) else None
    return node


def _gpu_count_edits(unit: Unit, n: int) -> tuple[Edit, ...]:
    if unit.runtime is Runtime.KUBERNETES and unit.handle is not None:
        c = unit.handle[0]
        limits = _dig(c, "resources", "limits")
        part = "limits" if isinstance(limits, dict) and "nvidia.com/gpu" in limits else "requests"
        return (Edit(op=Op.YAML_SET, key="nvidia.com/gpu", value=n, target=_dig(c, "resources", part), unit=unit),)
    if unit.runtime in (Runtime.COMPOSE, Runtime.PODMAN_COMPOSE) and unit.handle is not None and not unit.gpu_ids:
        devices = _dig(unit.handle[0], "deploy", "resources", "reservations", "devices")
        if not isinstance(devices, list) or not devices:
            devices = unit.handle[0].get("gpus")  # the compose spec's `gpus:` entries
        target = devices[0] if isinstance(devices, list) and devices else None
        return (Edit(op=Op.YAML_SET, key="count", value=n, target=target, unit=unit),)
    return ()


def check_layout_and_memory(unit: Unit, r: Resolved) -> list[Finding]:
    """vLLM's verdict on this exact layout and these flags (make_plan over one layout)."""
    if r.plan is None:
        return []
    c = r.plan.candidates[0]
    where = _flag_where(unit, "--tensor-parallel-size")
    out = []
    better = r.better.best if r.better is not None else None
    layout_edits = _layout_edits(unit, better.layout) if better is not None and better.layout != c.layout else ()
    for v in c.violations:
        if unit.gpus is not None and v.rule in ("gpus_available", "world_size"):
            continue  # check_gpu_count names the container's GPU count, the place to fix it
        fix = v.fix + (f" (tpfit plans {better.layout} on these GPUs)" if layout_edits else "")
        out.append(_f(Kind.LAYOUT, Severity.ERROR, unit, f"{v.detail} [{v.rule}]", where, vllm=v.vllm_error,
                      fix=fix, edits=layout_edits))
    m = c.memory
    if m is None:
        return out
    len_where = _flag_where(unit, "--max-model-len")
    if m.verdict is Verdict.REFUSED_AT_START:
        edits: tuple[Edit, ...] = ()
        fix = "use more or larger GPUs, a quantized checkpoint, or a shorter --max-model-len"
        if 0 < m.max_model_len_fit < m.max_model_len:
            edits = (Edit(op=Op.SET_FLAG, flag="--max-model-len", value=str(m.max_model_len_fit), unit=unit),)
            fix = f"--max-model-len {m.max_model_len_fit} (the longest request the KV cache holds)"
        out.append(_f(Kind.MEMORY, Severity.ERROR, unit, "refused at start: " + "; ".join(m.reasons), len_where,
                      vllm=m.vllm_error, fix=fix, edits=edits))
    elif m.verdict is Verdict.OVERFLOWS_AT_RUNTIME:
        safe = safe_utilization(m)
        out.append(_f(Kind.MEMORY, Severity.ERROR, unit, "starts, then runs out of memory: " + "; ".join(m.reasons),
                      _flag_where(unit, "--gpu-memory-utilization") or len_where,
                      vllm="torch.OutOfMemoryError: CUDA out of memory (at the first requests)",
                      fix=f"--gpu-memory-utilization {safe:g}",
                      edits=(Edit(op=Op.SET_FLAG, flag="--gpu-memory-utilization", value=f"{safe:g}", unit=unit),)))
    elif unit.runtime is not Runtime.SERVER:  # a server's own figure comes from check_server
        seqs = max(1, int(m.max_concurrency))
        longest = r.longest_len or m.max_model_len_fit
        out.append(_f(Kind.CAPACITY, Severity.INFO, unit,
                      f"starts with {m.kv_cache_tokens:,} KV tokens: {m.max_concurrency:.2f} requests of "
                      f"{m.max_model_len} tokens at once; up to --max-num-seqs {seqs} every request can reach that "
                      f"length in memory; the longest --max-model-len these GPUs hold is {longest}",
                      len_where, vllm=f"KV cache size: {m.kv_cache_tokens:,} tokens"))
    return out


def _flag_where(unit: Unit, name: str) -> Where:
    a = unit.command.get(name)
    return a.where if a else unit.command.model_where if unit.command.model_where.line else unit.where


def _layout_edits(unit: Unit, lay: Layout) -> tuple[Edit, ...]:
    edits = [Edit(op=Op.SET_FLAG, flag="--tensor-parallel-size", value=str(lay.tp), unit=unit)]
    for name, n in (("--pipeline-parallel-size", lay.pp), ("--data-parallel-size", lay.dp)):
        if n > 1 or unit.command.get(name):
            edits.append(Edit(op=Op.SET_FLAG, flag=name, value=str(n), unit=unit))
    return tuple(edits)


def check_shared_memory(unit: Unit, r: Resolved) -> list[Finding]:
    """Multi-GPU workers exchange tensors through /dev/shm; docker gives 64 MB (vLLM PR #1125, issue #1710)."""
    lay = r.layout
    if not unit.runtime.container or lay is None or lay.num_gpus == 1:
        return []
    out = []
    enough = unit.shm_bytes is not None and unit.shm_bytes >= MIN_SHM_BYTES
    if not unit.ipc_host and not enough:
        have = "the runtime's 64 MB" if unit.shm_bytes is None else f"{format_gib(unit.shm_bytes)} GiB"
        out.append(_f(Kind.SHARED_MEMORY, Severity.ERROR, unit,
                      f"{lay} runs {lay.num_gpus} worker processes with {have} of /dev/shm", unit.where,
                      vllm="Bus error (core dumped), or NCCL: Error while creating shared memory segment",
                      fix=_shm_fix_text(unit), edits=_shm_edits(unit)))
    elif unit.runtime is Runtime.PODMAN_COMPOSE and unit.ipc_host and not enough:
        out.append(_f(Kind.PODMAN_IPC, Severity.WARNING, unit,
                      "podman-compose ignores `ipc: host` (containers/podman-compose#1393): /dev/shm stays 64 MB",
                      unit.where, vllm="Bus error (core dumped) when the workers start",
                      fix="shm_size: 16g", edits=(Edit(op=Op.YAML_SET, key="shm_size", value="16g",
                                                      target=unit.handle[0], unit=unit),)))
    return out


def _shm_fix_text(unit: Unit) -> str:
    if unit.runtime in (Runtime.DOCKER, Runtime.PODMAN):
        return "add --ipc=host (or --shm-size 16g)"
    if unit.runtime is Runtime.KUBERNETES:
        return "mount an in-memory emptyDir at /dev/shm"
    return "ipc: host (or shm_size: 16g)"


def _shm_edits(unit: Unit) -> tuple[Edit, ...]:
    if unit.runtime in (Runtime.DOCKER, Runtime.PODMAN):
        return (Edit(op=Op.CONTAINER_OPTION, value=("--ipc=host",), unit=unit),)
    if unit.handle is None:
        return ()
    if unit.runtime is Runtime.KUBERNETES:
        c, pod = unit.handle[0], unit.handle[1]
        return (Edit(op=Op.YAML_APPEND, key="volumes", value={"name": "dshm", "emptyDir": {"medium": "Memory",
                                                                                           "sizeLimit": "16Gi"}},
                     target=pod, unit=unit),
                Edit(op=Op.YAML_APPEND, key="volumeMounts", value={"name": "dshm", "mountPath": "/dev/shm"},
                     target=c, unit=unit))
    key, value = ("shm_size", "16g") if unit.runtime is Runtime.PODMAN_COMPOSE else ("ipc", "host")
    return (Edit(op=Op.YAML_SET, key=key, value=value, target=unit.handle[0], unit=unit),)


def check_probes(unit: Unit, r: Resolved) -> list[Finding]:
    """A liveness probe acts on a server still loading unless a startup probe covers the load (KServe #5062,
    AIBrix #772): the kubelet kills it and it never comes up."""
    if unit.runtime is not Runtime.KUBERNETES or r.plan is None:
        return []
    live = next((p for p in unit.probes if p.kind is ProbeKind.LIVENESS), None)
    startup = next((p for p in unit.probes if p.kind is ProbeKind.STARTUP), None)
    guard = startup or live
    if guard is None:
        return []
    c = r.plan.candidates[0]
    warm, download = start_seconds(r.plan, c)
    local = (unit.command.model or "/").startswith("/")  # a folder on the node: nothing to download
    budget = guard.budget_s
    what = "startup probe" if startup else "liveness probe (no startup probe)"
    period = max(1, int(startup.period_s)) if startup else PROBE_PERIOD_S
    probe = startup_probe(_port(unit), wait_seconds(r.plan, c, downloads=not local), period_s=period)  # as deploy
    edits: tuple[Edit, ...] = ()
    if unit.handle is not None:
        edits = (Edit(op=Op.YAML_SET, key="startupProbe", value=probe, target=unit.handle[0], unit=unit),)
    fix = (f"startupProbe: httpGet {HEALTH_PATH}, periodSeconds {period}, failureThreshold "
           f"{probe['failureThreshold']}")
    if budget < warm:
        return [_f(Kind.STARTUP_PROBE, Severity.ERROR, unit,
                   f"the {what} gives up after {budget:.0f} s; loading takes about {warm:.0f} s (weights at "
                   f"{LOAD_BYTES_PER_S / GIB:.0f} GiB/s + {START_OVERHEAD_S} s of profiling and graph capture)",
                   guard.where, vllm="killed while loading: the log ends in 'KeyboardInterrupt: terminated', the pod "
                                     "restarts in a loop", fix=fix, edits=edits)]
    if budget < warm + download and not local:
        return [_f(Kind.STARTUP_PROBE, Severity.WARNING, unit,
                   f"the {what} gives up after {budget:.0f} s; a first start also downloads "
                   f"{download_bytes(r.plan) / GB:.0f} GB (about {download:.0f} s at "
                   f"{DOWNLOAD_BYTES_PER_S / 10**6:.0f} MB/s)", guard.where,
                   vllm="killed during the first download; starts once the cache is filled", fix=fix, edits=edits)]
    return []


def check_probe_ports(unit: Unit) -> list[Finding]:
    """Probes asking another port than the server's `--port` never get an answer: Kubernetes restarts the server
    once they give up, compose marks it unhealthy for ever."""
    port = _port(unit)
    wrong = [p for p in unit.probes if p.port is not None and p.port != port]
    if not wrong:
        return []
    if wrong[0].kind is ProbeKind.HEALTHCHECK:
        what, then = "the health check asks", "marks the container unhealthy for ever"
    else:
        many = len(wrong) > 1
        what = f"the {' and '.join(p.kind.value for p in wrong)} probe{'s ask' if many else ' asks'}"
        then = "gets no answer: the pod restarts in a loop once it gives up (or never turns ready)"
    return [_f(Kind.PROBE_PORT, Severity.ERROR, unit, f"{what} port {wrong[0].port}; {_listens_on(unit)}",
               wrong[0].where, vllm=then, fix=f"probe port {port}, or give the server --port {wrong[0].port}")]


def check_published_port(unit: Unit) -> list[Finding]:
    """A container that publishes ports, none of them the server's, is unreachable from outside: `-p 8000:8000`
    beside `--port 9000` maps the host's 8000 to a port nothing listens on."""
    port = _port(unit)
    if unit.published is None or not unit.published or port in unit.published:
        return []
    shown = ", ".join(map(str, unit.published[:4])) + (", ..." if len(unit.published) > 4 else "")
    return [_f(Kind.PROBE_PORT, Severity.ERROR, unit,
               f"publishes container port{'s' if len(unit.published) > 1 else ''} {shown}; {_listens_on(unit)}",
               unit.where, vllm="starts, and answers no request from outside the container (connection refused or "
                                "reset)",
               fix=f"publish {port} (-p {port}:{port}; compose: ports: [\"{port}:{port}\"]), or give the server --port "
                   f"{unit.published[0]}")]


def _listens_on(unit: Unit) -> str:
    """The port findings' second half: `the server listens on 9000 (--port)`, or `... on 8000 (vLLM's default)`."""
    given = unit.command.get("--port") is not None
    return f"the server listens on {_port(unit)}" + (" (--port)" if given else " (vLLM's default)")


def _port(unit: Unit) -> int:
    a = unit.command.get("--port")
    try:
        return int(a.value) if a and a.value else DEFAULT_PORT
    except ValueError:
        return DEFAULT_PORT


def check_image(unit: Unit, r: Resolved) -> list[Finding]:
    """The image tag: pinned, and built for a CUDA the host driver runs (doctor's table)."""
    if unit.image is None or not unit.runtime.container:
        return []
    out = []
    from tpfit.deployment.containers import image_tag_problem, image_version, is_vllm_image, tag_version

    problem = image_tag_problem(unit.image) if is_vllm_image(unit.image) else None
    if problem:
        meant = image_version(unit.image) or r.table.asked
        official = is_official_image(unit.image)
        out.append(_f(Kind.IMAGE, Severity.ERROR if official else Severity.WARNING, unit,
                      f"{unit.image}: {problem} (checked as vLLM {meant})", unit.image_where,
                      vllm=f"docker: manifest for {unit.image} not found: manifest unknown" if official else
                      "runs whatever that build is",
                      fix=f"pin a release: {unit.image.replace(tag_version(unit.image) or '', meant)}"))
    elif is_vllm_image(unit.image) and image_version(unit.image) is None:
        out.append(_f(Kind.IMAGE, Severity.WARNING, unit,
                      f"{unit.image} names no vLLM release: each pull may bring another version (flags checked "
                      f"against vLLM {r.table.version})", unit.image_where,
                      vllm="runs whatever release the tag points to today",
                      fix=f"pin it: {unit.image.split(':')[0]}:v{r.table.version}"))
    if r.host_driver:
        cuda = cuda_of_image(unit.image)
        have = parse_driver(r.host_driver)
        if have and have < cuda.min_driver:
            out.append(_f(Kind.IMAGE, Severity.ERROR, unit,
                          f"{unit.image} is built for CUDA {cuda}, which needs driver >= {cuda.min_driver_text}; "
                          f"this host runs {r.host_driver}", unit.image_where,
                          vllm="RuntimeError: The NVIDIA driver on your system is too old",
                          fix="use an image built for this driver's CUDA (without -cu130), or upgrade the driver"))
    return out


def _masked(value: str) -> str:
    return value[:3] + "…" if len(value) > 6 else "…"


def check_secrets(unit: Unit) -> list[Finding]:
    """Tokens written into the file: anyone who reads the file (or the repository) holds them."""
    out = []
    for e in unit.env:
        if e.value and SECRET_NAME.search(e.name) and not e.value.startswith("$") and e.value.strip():
            out.append(_f(Kind.SECRET, Severity.ERROR, unit, f"{e.name} is written in the file ({_masked(e.value)})",
                          e.where, vllm="works, and leaks the token to everyone who can read the file",
                          fix=_secret_fix(unit, e.name),
                          edits=(Edit(op=Op.ENV_REFERENCE, key=e.name, target=e, unit=unit),)))
    for a in unit.command.args:
        if a.name in SECRET_FLAGS and a.value and not a.value.startswith("$"):
            out.append(_f(Kind.SECRET, Severity.ERROR, unit, f"{a.flag} is given in plain text ({_masked(a.value)})",
                          a.where, vllm="works, and shows the secret in `ps` and in the file",
                          fix=f"remove {a.flag}; set {'VLLM_API_KEY' if a.name == '--api-key' else 'HF_TOKEN'} in the "
                              "environment from a secret",
                          edits=(Edit(op=Op.REMOVE_FLAG, flag=a.name, target=a, unit=unit),)))
        elif a.value and HF_TOKEN_VALUE.search(a.value):
            out.append(_f(Kind.SECRET, Severity.ERROR, unit, f"{a.flag} holds a Hugging Face token", a.where,
                          fix="pass the token through HF_TOKEN from a secret"))
    return out


def _secret_fix(unit: Unit, name: str) -> str:
    if unit.runtime is Runtime.KUBERNETES:
        return f"valueFrom: secretKeyRef (kubectl create secret generic hf-token --from-literal=token=...) for {name}"
    if unit.runtime in (Runtime.COMPOSE, Runtime.PODMAN_COMPOSE):
        return f"{name}: ${{{name}}} (interpolated from the caller's environment)"
    if unit.runtime in (Runtime.DOCKER, Runtime.PODMAN):
        return f"--env {name} (passed through from the caller's environment)"
    return f"export {name} in the environment instead of writing it here"


def check_hf_cache(unit: Unit) -> list[Finding]:
    """A container without the Hugging Face cache mounted downloads the model again on every restart."""
    model = unit.command.model or ""
    if not unit.runtime.container or not model or model.startswith(("/", ".", "~", "{{")) or "://" in model:
        return []
    cache_env = next((e.value for e in unit.env if e.name in ("HF_HOME", "HF_HUB_CACHE", "TRANSFORMERS_CACHE")
                      and e.value), None)
    for m in (m.rstrip("/") for m in unit.mounts):
        if ".cache" in m or "huggingface" in m or (cache_env and m and cache_env.startswith(m)) \
                or m in ("/root", "/home/vllm", "/data", "/models", "/mnt/models"):
            return []
    edits: tuple[Edit, ...] = ()
    if unit.runtime in (Runtime.DOCKER, Runtime.PODMAN):
        edits = (Edit(op=Op.CONTAINER_OPTION, value=("-v", CACHE_VOLUME_SHELL), unit=unit),)
    elif unit.runtime in (Runtime.COMPOSE, Runtime.PODMAN_COMPOSE) and unit.handle is not None:
        volume = f"{HF_CACHE_HOST_COMPOSE}:{HF_CACHE_CONTAINER}"
        edits = (Edit(op=Op.YAML_APPEND, key="volumes", value=volume, target=unit.handle[0], unit=unit),)
    snippet = {Runtime.KUBERNETES: f"a PersistentVolumeClaim mounted at {HF_CACHE_CONTAINER}"}.get(
        unit.runtime, f"-v {CACHE_VOLUME_SHELL}")
    return [_f(Kind.HF_CACHE, Severity.WARNING, unit, f"no Hugging Face cache mounted: {model} is downloaded again "
                                                      "on every restart", unit.where,
               vllm="downloads the whole checkpoint at each start", fix=snippet, edits=edits)]


KSERVE_MODEL_DIR = "/mnt/models"
"""Where KServe's storage initializer puts a `storageUri` model in the predictor container (a volume its webhook
adds, which the manifest does not list)."""


def check_model_mount(unit: Unit) -> list[Finding]:
    """A container that serves a model folder by its path needs that folder mounted: vLLM in the container sees
    only the image and its volumes (`tpfit deploy` binds a local model read-only at the same path)."""
    model = unit.command.model or ""
    if not unit.runtime.container or not model.startswith("/") or is_run_time(model):
        return []
    inside = (m.rstrip("/") for m in unit.mounts)
    if any(model.rstrip("/") == m or model.startswith(m + "/") for m in inside if m) \
            or model.startswith(KSERVE_MODEL_DIR):
        return []
    official = is_official_image(unit.image)
    fix = {Runtime.KUBERNETES: f"mount a volume holding the model at {model} (hostPath, a PersistentVolumeClaim)",
           Runtime.COMPOSE: f"add a bind volume: {{type: bind, source: {model}, target: {model}, read_only: true}}",
           Runtime.PODMAN_COMPOSE: f"add a bind volume: {{type: bind, source: {model}, target: {model}, read_only: "
                                   "true}"}.get(unit.runtime, shlex.join(["--mount", bind_mount(model)]))
    return [_f(Kind.MODEL_MOUNT, Severity.ERROR if official else Severity.WARNING, unit,
               f"serves {model}, but nothing is mounted there" + ("" if official else " (unless the image holds it)"),
               unit.command.model_where, vllm=f"ValueError: Invalid repository ID or local directory specified: "
                                              f"'{model}'", fix=fix)]


def check_engine_flags(unit: Unit, r: Resolved) -> list[Finding]:
    """Flags that cost without a reason: remote code for a model vLLM implements, eager mode that isn't needed."""
    out = []
    trc = unit.command.get("--trust-remote-code")
    if trc is not None and r.plan is not None:
        out.append(_f(Kind.TRUST_REMOTE_CODE, Severity.WARNING, unit,
                      f"--trust-remote-code on {r.plan.model.architecture}, which vLLM implements itself", trc.where,
                      vllm="runs the repository's Python code to read the config/tokenizer",
                      fix="remove --trust-remote-code", edits=(Edit(op=Op.REMOVE_FLAG, flag=trc.name, target=trc,
                                                                    unit=unit),)))
    eager = unit.command.get("--enforce-eager")
    if eager is not None and r.without_eager is not None:
        m = r.without_eager.candidates[0].memory
        if m is not None and m.verdict is Verdict.STARTS:
            out.append(_f(Kind.ENFORCE_EAGER, Severity.WARNING, unit,
                          "--enforce-eager turns CUDA graphs off; without it this layout still starts "
                          f"({m.kv_cache_tokens:,} KV tokens)", eager.where,
                          vllm="decodes without CUDA graphs: slower tokens", fix="remove --enforce-eager",
                          edits=(Edit(op=Op.REMOVE_FLAG, flag=eager.name, target=eager, unit=unit),)))
        else:
            out.append(_f(Kind.ENFORCE_EAGER, Severity.INFO, unit,
                          "--enforce-eager is needed: CUDA graphs would not fit beside this KV cache", eager.where))
    return out


def check_server(unit: Unit, r: Resolved) -> list[Finding]:
    """A running server: the KV cache it reports, beside what vLLM's arithmetic gives for the same flags."""
    if unit.runtime is not Runtime.SERVER or unit.handle is None:
        return []
    facts = unit.handle
    if not facts.kv_cache_tokens:
        return []
    said = (f"the server holds {facts.kv_cache_tokens:,} KV tokens"
            + (f": {facts.max_concurrency:.2f} requests of {facts.max_model_len} tokens" if facts.max_concurrency
               else ""))
    m = r.plan.candidates[0].memory if r.plan is not None else None
    if m is not None and m.kv_cache_tokens:
        err = (m.kv_cache_tokens - facts.kv_cache_tokens) / facts.kv_cache_tokens * 100
        said += f"; tpfit predicts {m.kv_cache_tokens:,} for these flags ({err:+.1f} %)"
    return [_f(Kind.CAPACITY, Severity.INFO, unit, said, unit.where,
               vllm=f"KV cache size: {facts.kv_cache_tokens:,} tokens")]


def check_line_endings(dep: DeploymentFile) -> list[Finding]:
    """A shell script saved with CRLF line endings: bash keeps each CR, so a `\\` before it escapes the CR instead
    of continuing the line (the flags below never reach vLLM) and the last word of each line ends in a CR
    (`--max-model-len 4096\\r`). tpfit reads the script as bash does, so the findings below follow from that."""
    if dep.format is not Format.SHELL or "\r\n" not in dep.text:
        return []
    line = dep.text.count("\n", 0, dep.text.index("\r\n")) + 1
    return [Finding(kind=Kind.LINE_ENDINGS, severity=Severity.ERROR, unit=dep.units[0].name if dep.units else "",
                    where=Where(line=line), message="the script has Windows (CRLF) line endings",
                    vllm="bash passes each CR on: a `\\` at the end of a line escapes the CR instead of continuing the "
                         "command, so the flags on the next lines never reach vLLM",
                    fix=f"convert it to LF line endings: dos2unix {dep.name} (or sed -i 's/\\r$//' {dep.name})")]


def check_shared_gpus(units: list[Unit], resolved: list[Resolved]) -> list[Finding]:
    """Servers given the same GPU: their --gpu-memory-utilization must add up to what one card holds."""
    out = []
    by_gpu: dict[str, list[tuple[Unit, float, int]]] = {}
    for k, (u, r) in enumerate(zip(units, resolved)):
        if r.engine is None:
            continue
        util = r.engine.gpu_memory_utilization or default_gpu_memory_utilization(r.engine.vllm_version)
        for g in u.gpu_ids:
            by_gpu.setdefault(g, []).append((u, util, k if u.alternative_of is None else u.alternative_of))
    for g, found in sorted(by_gpu.items()):
        # servers in other branches of one `exec` (Unit.alternative_of) never run together: the largest counts
        starts: dict[int, float] = {}
        for _, util, start in found:
            starts[start] = max(util, starts.get(start, 0.0))
        users = [(u, util) for u, util, _ in found]
        total = sum(starts.values())
        if len(starts) > 1 and total > 1.0 - 0.05:
            u, util = users[-1]
            share = round(max(0.05, (0.95 / len(starts))), 2)
            out.append(_f(Kind.GPU_UTILIZATION, Severity.ERROR, u,
                          f"GPU {g} is shared by {', '.join(x.name for x, _ in users)} whose "
                          f"--gpu-memory-utilization add up to {total:.2f}", _flag_where(u, "--gpu-memory-utilization"),
                          vllm="the second server: ValueError: Free memory on device is less than desired GPU memory "
                               "utilization",
                          fix=f"--gpu-memory-utilization {share} for each of the {len(starts)} servers",
                          edits=tuple(Edit(op=Op.SET_FLAG, flag="--gpu-memory-utilization", value=str(share), unit=x)
                                      for x, _ in users)))
    return out

