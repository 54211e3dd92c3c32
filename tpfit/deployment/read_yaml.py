"""Compose files and Kubernetes manifests -> the vLLM servers they start.

YAML is read round-trip (ruamel.yaml) so each value keeps its line and a fix can write the file back with its
comments. Only the paths a deployment uses are visited, so an alias that repeats a big subtree ("billion
laughs") is never expanded. Kinds: Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob, Pod,
LeaderWorkerSet (lws docs), KServe ServingRuntime / ClusterServingRuntime / InferenceService.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tpfit.vllm_facts import CURRENT_VLLM_VERSION
from tpfit.deployment.argv import parse_args, server_start, strip_prefixes
from tpfit.deployment.containers import container_ports, image_version, is_vllm_image, size_or_none, volume_target
from tpfit.limits import MAX_NODES
from tpfit.deployment.facts import (
    KUBERNETES_PROBES, DeploymentFile, EnvVar, Format, Probe, ProbeKind, Runtime, Unit, VllmCommand, Where, Word,
)
from tpfit.deployment.flags import flag_table
from tpfit.deployment.read_shell import units_in
from tpfit.deployment.shell import TextStore, commands
from tpfit.errors import UsageError

POD_PATHS = {
    "Deployment": ("spec", "template", "spec"), "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"), "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"), "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
    "Pod": ("spec",), "ServingRuntime": ("spec",), "ClusterServingRuntime": ("spec",),
}
GPU_RESOURCE = "nvidia.com/gpu"
PRODUCT_LABELS = ("nvidia.com/gpu.product", "cloud.google.com/gke-accelerator", "node.kubernetes.io/instance-type",
                  "karpenter.k8s.aws/instance-gpu-name")
_KUBE_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
PROBE_DEFAULTS = {"periodSeconds": 10, "failureThreshold": 3, "initialDelaySeconds": 0}
"""Kubernetes' probe defaults (core/v1 Probe)."""


@dataclass(slots=True)
class ListStore:
    """A YAML list of words (k8s `args`, compose `command`) that a fix edits item by item."""

    seq: object
    path: str


def _line(node, key) -> int:
    try:
        if isinstance(key, int):
            return node.lc.item(key)[0] + 1
        return node.lc.key(key)[0] + 1
    except (AttributeError, KeyError, IndexError, TypeError):
        return getattr(getattr(node, "lc", None), "line", -1) + 1


def _get(node, *keys):
    for k in keys:
        if not isinstance(node, dict):
            return None
        node = node.get(k)
    return node


def _list(value) -> list:
    """A YAML list, or [] for anything else in its place."""
    return value if isinstance(value, list) else []


def _scalar(value) -> str | None:
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return None


def _list_words(seq, path: str, variables: dict[str, str]) -> list[Word]:
    if not isinstance(seq, list):
        return []
    store = ListStore(seq=seq, path=path)
    out = []
    for i, item in enumerate(seq):
        text = _scalar(item)
        if text is None:
            raise UsageError(f"{path}[{i}] is not a string (a command line holds strings)")
        text = _KUBE_VAR.sub(lambda m: variables.get(m.group(1), m.group(0)), text)
        out.append(Word(text=text, where=Where(line=_line(seq, i), path=f"{path}[{i}]"), span=(i, i + 1), store=store))
    return out


def _string_store(node, key, path: str) -> TextStore:
    return TextStore(text=str(node[key]), first_line=_line(node, key) + (1 if "\n" in str(node[key]) else 0),
                     path=path, node=node, key=key)


def _server(words: list[Word], args_store, image: str | None, variables: dict[str, str],
            entrypoint_given: bool) -> VllmCommand | None:
    """The vLLM server of a container's effective argv (command + args), if it runs one."""
    table = flag_table(image_version(image) or CURRENT_VLLM_VERSION)
    rest, _, _ = strip_prefixes(words)
    if rest:
        found = server_start(rest)
        if found:
            i, positional = found
            return parse_args(rest[i:], table, positional_model=positional, anchor=None, store=args_store,
                              variables=variables)
        prog = rest[0].text.rsplit("/", 1)[-1]
        if prog in ("sh", "bash") and len(rest) >= 3 and rest[1].text.startswith("-") and "c" in rest[1].text:
            w = rest[2]
            seq = w.store.seq
            units = units_in(commands(_string_store(seq, w.span[0], w.where.path)), dict(variables))
            return units[0].command if units else None
    if not entrypoint_given and image and is_vllm_image(image):
        return parse_args(words, table, positional_model=True, anchor=None, store=args_store, variables=variables)
    return None


def _env(items, path: str) -> tuple[list[EnvVar], dict[str, str]]:
    out, literal = [], {}
    if isinstance(items, dict):  # compose mapping form
        for k, v in items.items():
            value = _scalar(v)
            out.append(EnvVar(name=str(k), value=value, where=Where(line=_line(items, k), path=f"{path}.{k}")))
            if value is not None:
                literal[str(k)] = value
    elif isinstance(items, list):
        for i, e in enumerate(items):
            where = Where(line=_line(items, i), path=f"{path}[{i}]")
            if isinstance(e, dict) and "name" in e:  # Kubernetes EnvVar
                value = _scalar(e.get("value")) if "value" in e else None
                out.append(EnvVar(name=str(e["name"]), value=value, where=where))
                if value is not None:
                    literal[str(e["name"])] = value
            elif isinstance(e, str):  # compose list form "K=V" / "K"
                name, has, value = e.partition("=")
                out.append(EnvVar(name=name, value=value if has else None, where=where))
                if has:
                    literal[name] = value
    return out, literal


# ---- Kubernetes ---------------------------------------------------------------------------


def _probes(c, path: str) -> list[Probe]:
    out = []
    for probe_kind in KUBERNETES_PROBES:
        kind = probe_kind.value
        p = c.get(f"{kind}Probe")
        if isinstance(p, dict):
            num = {k: p.get(k, d) for k, d in PROBE_DEFAULTS.items()}
            try:
                out.append(Probe(kind=probe_kind, initial_delay_s=float(num["initialDelaySeconds"]),
                                 period_s=float(num["periodSeconds"]), failure_threshold=int(num["failureThreshold"]),
                                 where=Where(line=_line(c, f"{kind}Probe"), path=f"{path}.{kind}Probe"),
                                 port=_probe_port(c, p)))
            except (TypeError, ValueError, OverflowError):  # OverflowError: int(.inf)
                raise UsageError(f"{path}.{kind}Probe: periodSeconds, failureThreshold and initialDelaySeconds "
                                 "must be numbers") from None
            if not 1 <= out[-1].period_s < float("inf"):  # Kubernetes: "Minimum value is 1"
                raise UsageError(f"{path}.{kind}Probe.periodSeconds {num['periodSeconds']!r}: must be at least 1 "
                                 "(seconds between probes)")
    return out


def _probe_port(c, probe: dict) -> int | None:
    """The port a Kubernetes probe asks: httpGet's or tcpSocket's, a named one (`http`) through the container's
    `ports`; None for an exec probe or a name the container does not list."""
    action = next((probe[k] for k in ("httpGet", "tcpSocket") if isinstance(probe.get(k), dict)), None)
    port = action.get("port") if action is not None else None
    if isinstance(port, str) and not port.isdigit():
        port = next((p.get("containerPort") for p in _list(c.get("ports")) if isinstance(p, dict)
                     and p.get("name") == port), None)
    try:
        return int(port) if port is not None and not isinstance(port, bool) else None
    except (TypeError, ValueError):
        return None


_LOCAL_URL_PORT = re.compile(r"(?:localhost|127\.0\.0\.1|0\.0\.0\.0|\[::1\]):(\d{1,5})\b")


def _healthcheck_port(test) -> int | None:
    """The port of the local URL a compose healthcheck's test asks (`curl -f http://localhost:8000/health`)."""
    text = " ".join(str(x) for x in test) if isinstance(test, list) else str(test or "")
    m = _LOCAL_URL_PORT.search(text)
    return int(m.group(1)) if m else None


def _gpu_product(pod) -> str | None:
    sel = _get(pod, "nodeSelector")
    if isinstance(sel, dict):
        for label in PRODUCT_LABELS:
            if label in sel:
                return str(sel[label])
    terms = _get(pod, "affinity", "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution",
                 "nodeSelectorTerms")
    for term in _list(terms):
        for expr in _list(term.get("matchExpressions")) if isinstance(term, dict) else []:
            if isinstance(expr, dict) and expr.get("key") in PRODUCT_LABELS and _list(expr.get("values")):
                return str(expr["values"][0])
    return None


def _container_unit(c, path: str, pod, pod_path: str, *, nodes: int = 1, model_hint: str | None = None) -> Unit | None:
    if not isinstance(c, dict):
        return None
    image = _scalar(c.get("image"))
    env, literal = _env(c.get("env"), f"{path}.env")
    cmd = _list_words(c.get("command"), f"{path}.command", literal)
    args = _list_words(c.get("args"), f"{path}.args", literal)
    store = ListStore(seq=c["args"], path=f"{path}.args") if isinstance(c.get("args"), list) else (
        ListStore(seq=c["command"], path=f"{path}.command") if isinstance(c.get("command"), list) else None)
    command = _server(cmd + args, store, image, literal, entrypoint_given=bool(cmd))
    if command is None and model_hint and image is None:  # KServe predictor.model: the runtime's server
        command = parse_args(args, flag_table(CURRENT_VLLM_VERSION), positional_model=False, anchor=None,
                             store=store, variables=literal)
    if command is None:
        return None
    if command.model is None and model_hint:
        command = VllmCommand(model=model_hint, model_where=Where(line=_line(c, "args") if "args" in c else 0,
                                                                 path=f"{path}"), args=command.args,
                              anchor=command.anchor, store=command.store)
    limits = _get(c, "resources", "limits") or {}
    requests = _get(c, "resources", "requests") or {}
    gpus, gpus_where = None, Where()
    for part, res in (("limits", limits), ("requests", requests)):
        if isinstance(res, dict) and GPU_RESOURCE in res:
            try:
                gpus = int(str(res[GPU_RESOURCE]))
            except ValueError:
                raise UsageError(f"{path}.resources.{part}.{GPU_RESOURCE} must be a whole number of GPUs, not "
                                 f"{str(res[GPU_RESOURCE])[:40]!r}") from None
            gpus_where = Where(line=_line(res, GPU_RESOURCE), path=f"{path}.resources.{part}.{GPU_RESOURCE}")
            break
    volumes = {str(v.get("name")): v for v in _list(_get(pod, "volumes")) if isinstance(v, dict)}
    mounts, shm = [], None
    for m in _list(c.get("volumeMounts")):
        if not isinstance(m, dict):
            continue
        mounts.append(str(m.get("mountPath", "")))
        if m.get("mountPath") == "/dev/shm":
            vol = volumes.get(str(m.get("name"))) or {}
            empty = vol.get("emptyDir") if isinstance(vol, dict) else None
            if isinstance(empty, dict) and empty.get("medium") == "Memory":
                shm = size_or_none(_scalar(empty.get("sizeLimit"))) or 1 << 40  # no limit: node memory
            elif isinstance(vol, dict) and vol.get("hostPath"):
                shm = 1 << 40
    for e in _list(c.get("envFrom")):
        if isinstance(e, dict):
            env.append(EnvVar(name="*" + str(next(iter(e.keys()), "")), value=None,
                              where=Where(path=f"{path}.envFrom")))
    return Unit(name=str(c.get("name") or image or "vllm"), runtime=Runtime.KUBERNETES, command=command,
                where=Where(line=_line(c, "name" if "name" in c else next(iter(c), "")), path=path), image=image,
                image_where=Where(line=_line(c, "image"), path=f"{path}.image") if image else Where(),
                gpus=gpus, gpus_where=gpus_where, gpu_product=_gpu_product(pod), nodes=nodes,
                ipc_host=bool(_get(pod, "hostIPC")), shm_bytes=shm, env=tuple(env), mounts=tuple(mounts),
                probes=tuple(_probes(c, path)), handle=(c, pod, path, pod_path))


def _pod_units(pod, pod_path: str, *, nodes: int = 1) -> list[Unit]:
    out = []
    containers = _get(pod, "containers")
    for i, c in enumerate(containers if isinstance(containers, list) else []):
        unit = _container_unit(c, f"{pod_path}.containers[{i}]", pod, pod_path, nodes=nodes)
        if unit:
            out.append(unit)
    return out


def _kube_units(doc, index: int) -> tuple[list[Unit], str | None]:
    kind = str(doc.get("kind", ""))
    prefix = f"doc{index}." if index else ""  # documents after the first are named by their index
    if kind in POD_PATHS:
        keys = POD_PATHS[kind]
        return _pod_units(_get(doc, *keys), prefix + ".".join(keys)), None
    if kind == "LeaderWorkerSet":
        tmpl = _get(doc, "spec", "leaderWorkerTemplate")
        tmpl = tmpl if isinstance(tmpl, dict) else {}
        try:
            size = int(tmpl.get("size", 1))
        except (TypeError, ValueError, OverflowError):
            size = 0
        if not 1 <= size <= MAX_NODES:  # LWS requires size >= 1; more nodes than tpfit plans is not a deployment
            raise UsageError(f"spec.leaderWorkerTemplate.size must be a whole number from 1 to {MAX_NODES}") from None
        base = prefix + "spec.leaderWorkerTemplate"
        units = _pod_units(_get(tmpl, "leaderTemplate", "spec"), f"{base}.leaderTemplate.spec", nodes=size)
        if not units:  # some LWS examples start the server in the worker template only
            units = _pod_units(_get(tmpl, "workerTemplate", "spec"), f"{base}.workerTemplate.spec", nodes=size)
        return units, None
    if kind == "InferenceService":
        pred = _get(doc, "spec", "predictor") or {}
        base = prefix + "spec.predictor"
        units = _pod_units(pred, base)
        model = pred.get("model") if isinstance(pred, dict) else None
        if isinstance(model, dict):
            uri = str(model.get("storageUri") or "")
            hint = uri[len("hf://"):] if uri.startswith("hf://") else None
            args = [str(a) for a in _list(model.get("args"))]
            for a in args:
                if a.startswith("--model_id=") or a.startswith("--model-id="):
                    hint = a.split("=", 1)[1]
            unit = _container_unit(model, f"{base}.model", pred, base, model_hint=hint or (uri or None))
            if unit:
                units.append(unit)
        return units, None
    return [], kind or "(no kind)"


# ---- Compose ------------------------------------------------------------------------------


def _compose_words(value, node, key, path: str, variables: dict[str, str]) -> tuple[list[Word], object]:
    if isinstance(value, list):
        return _list_words(value, path, variables), ListStore(seq=value, path=path)
    if isinstance(value, str):
        store = _string_store(node, key, path)
        return [w for cmd in commands(store) for w in cmd], store
    return [], None


def _compose_unit(name: str, svc, path: str, runtime: Runtime) -> Unit | None:
    if not isinstance(svc, dict):
        return None
    image = _scalar(svc.get("image"))
    env, literal = _env(svc.get("environment"), f"{path}.environment")
    entry, _ = _compose_words(svc.get("entrypoint"), svc, "entrypoint", f"{path}.entrypoint", literal)
    cmd, store = _compose_words(svc.get("command"), svc, "command", f"{path}.command", literal)
    if isinstance(store, TextStore) and not entry and image and is_vllm_image(image):
        command = parse_args(cmd, flag_table(image_version(image) or CURRENT_VLLM_VERSION), positional_model=True,
                             anchor=None, store=store, variables=literal)
    elif isinstance(store, TextStore) and entry and entry[-1].text == "-c":
        units = units_in(commands(store), dict(literal))
        command = units[0].command if units else None
    else:
        command = _server(entry + cmd, store, image, literal, entrypoint_given=bool(entry))
    if command is None:
        return None
    gpus, ids, gpus_where = None, (), Where()
    # the GPU device requests: deploy.resources.reservations.devices, or the compose spec's `gpus` (`all` or the
    # same entries, Compose 2.30 on); a count may be written as a string ("2")
    for devices, at in ((_get(svc, "deploy", "resources", "reservations", "devices"),
                         f"{path}.deploy.resources.reservations.devices"), (svc.get("gpus"), f"{path}.gpus")):
        for i, d in enumerate(devices if isinstance(devices, list) else []):
            if not isinstance(d, dict):
                continue
            gpus_where = Where(line=_line(devices, i), path=f"{at}[{i}]")
            count = d.get("count")
            if _list(d.get("device_ids")):
                ids = tuple(str(x) for x in d["device_ids"])
                gpus = len(ids)
            elif isinstance(count, int) and not isinstance(count, bool):
                gpus = count
            elif isinstance(count, str) and count.strip().isdigit():
                gpus = int(count)
    if svc.get("runtime") == "nvidia":
        vis = next((e.value for e in env if e.name == "NVIDIA_VISIBLE_DEVICES" and e.value), None)
        if vis and vis != "all":
            ids = tuple(vis.split(","))
            gpus = len(ids)
    mounts = []
    for v in _list(svc.get("volumes")):
        if isinstance(v, str):
            mounts.append(volume_target(v))
        elif isinstance(v, dict):
            mounts.append(str(v.get("target", "")))
    published: list[int] | None = None
    for port in _list(svc.get("ports")):
        if isinstance(port, dict):  # the long syntax: {target: 8000, published: 8000}
            target = port.get("target")
            found = (int(target),) if isinstance(target, int) or str(target).isdigit() else ()
        else:
            found = container_ports(str(port))
        published = (published or []) + list(found) if found else None  # a variable ($PORT): not known here
        if published is None:
            break
    if svc.get("network_mode") == "host":
        published = None
    probes = []
    hc = svc.get("healthcheck")
    if isinstance(hc, dict):
        try:
            probes.append(Probe(kind=ProbeKind.HEALTHCHECK,
                                initial_delay_s=float(size_or_seconds(hc.get("start_period")) or 0),
                                period_s=float(size_or_seconds(hc.get("interval")) or 30),
                                failure_threshold=int(hc.get("retries", 3) or 3),
                                where=Where(line=_line(svc, "healthcheck"), path=f"{path}.healthcheck"),
                                port=_healthcheck_port(hc.get("test"))))
        except (TypeError, ValueError, OverflowError):
            raise UsageError(f"{path}.healthcheck: retries must be a number, interval and start_period durations "
                             "such as 30s") from None
    return Unit(name=name, runtime=runtime, command=command, where=Where(line=_line(svc, "image") if image else 0,
                                                                           path=path),
                image=image, image_where=Where(line=_line(svc, "image"), path=f"{path}.image") if image else Where(),
                gpus=gpus, gpus_where=gpus_where, ipc_host=svc.get("ipc") == "host",
                published=None if published is None else tuple(published),
                shm_bytes=size_or_none(_scalar(svc.get("shm_size"))), env=tuple(env),
                mounts=tuple(m for m in mounts if m), probes=tuple(probes), gpu_ids=ids, handle=(svc, path))


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s|us|ns)")


def size_or_seconds(text) -> float | None:
    """A compose duration ("1200s", "1m30s", "2h") in seconds."""
    if text is None:
        return None
    if isinstance(text, (int, float)):
        return float(text)
    scale = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
    parts = _DURATION.findall(str(text))
    return sum(float(n) * scale[u] for n, u in parts) if parts else None


def read_yaml_documents(docs: list, name: str, text: str) -> DeploymentFile:
    """Units of a compose file or of Kubernetes manifests already loaded round-trip."""
    mappings = [d for d in docs if isinstance(d, dict)]
    if not mappings:
        raise UsageError("neither a compose file (no services:) nor Kubernetes manifests (no kind:)")
    if any("services" in d for d in mappings):
        runtime = Runtime.PODMAN_COMPOSE if "podman" in name.lower() or any(
            str(k).startswith("x-podman") for d in mappings for k in d) else Runtime.COMPOSE
        units = []
        for d in mappings:
            services = d.get("services")
            if isinstance(services, dict):
                for svc_name, svc in services.items():
                    unit = _compose_unit(str(svc_name), svc, f"services.{svc_name}", runtime)
                    if unit:
                        units.append(unit)
        return DeploymentFile(name=name, format=Format.COMPOSE, units=tuple(units), text=text, documents=docs,
                              notes=() if units else ("no service runs a vLLM server",))
    if not any("kind" in d for d in mappings):
        raise UsageError("neither a compose file (no services:) nor Kubernetes manifests (no kind:)")
    units, skipped = [], []
    for i, d in enumerate(docs):
        if isinstance(d, dict):
            found, other = _kube_units(d, i)
            units.extend(found)
            if other:
                skipped.append(other)
    notes = (f"skipped kinds without a vLLM server: {', '.join(sorted(set(skipped)))}",) if skipped else ()
    return DeploymentFile(name=name, format=Format.KUBERNETES, units=tuple(units), text=text, documents=docs,
                          notes=notes)
