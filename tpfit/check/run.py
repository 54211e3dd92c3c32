"""`tpfit check`: a deployment read back into a model, GPUs and engine flags, then the same rules and memory
model `tpfit plan` uses (shared/DESIGN.md: check is deploy run backwards)."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Callable

import msgspec

from tpfit.check.findings import Finding, Kind, Severity
from tpfit.check.rules import (
    Resolved, check_engine_flags, check_flags, check_gpu_count, check_hf_cache, check_image, check_layout_and_memory,
    check_line_endings, check_model_mount, check_probe_ports, check_probes, check_published_port, check_secrets,
    check_server, check_shared_gpus, check_shared_memory, is_run_time,
)
from tpfit.core.engine import MODELLED_VLLM_VERSIONS, EngineArgs, outside_modelled
from tpfit.kinds import KvCacheDtype, ModelDtype
from tpfit.vllm_facts import CURRENT_VLLM_VERSION, MAX_MODEL_LEN_AUTO_FROM, parse_version
from tpfit.core.layout import Layout
from tpfit.core.plan import Workload, make_plan
from tpfit.deployment.containers import image_version
from tpfit.deployment.facts import DeploymentFile, Unit
from tpfit.deployment.flags import flag_table
from tpfit.errors import TpfitError, UsageError
from tpfit.hardware.catalog import find_gpu, find_gpu_by_nvml_name
from tpfit.hardware.cluster import Cluster
from tpfit.units import parse_size

_HUMAN_INT = re.compile(r"^(\d+(?:\.\d+)?)([kKmMgG]?)$")


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckReport:
    file: DeploymentFile
    findings: tuple[Finding, ...]

    @property
    def exit_code(self) -> int:
        """1 when vLLM would refuse, crash or be killed (an error finding), else 0."""
        return 1 if any(f.severity is Severity.ERROR for f in self.findings) else 0


def human_int(text: str) -> int:
    """vLLM's human-readable ints (`--max-model-len 32k`): k/m/g are powers of 1000, K/M/G of 1024."""
    m = _HUMAN_INT.match(text.strip())
    if not m:
        raise ValueError(text)
    scale = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[m.group(2)]
    value = float(m.group(1)) * scale
    if value != int(value) or value < 1:
        raise ValueError(text)
    return int(value)


def engine_from_flags(unit: Unit, version: str) -> tuple[EngineArgs | None, Layout | None, list[Finding]]:
    """The EngineArgs and Layout the unit's flags give; a FLAG_VALUE finding for each value vLLM's argparse refuses."""
    cmd = unit.command
    bad: list[Finding] = []
    unknown: list[Finding] = []

    def value(name: str, parse, what: str):
        a = cmd.get(name)
        if a is None or a.value is None:
            return None
        if is_run_time(a.value):
            unknown.append(Finding(kind=Kind.NOT_CHECKED, severity=Severity.INFO, unit=unit.name, where=a.where,
                                   message=f"{a.flag} {a.value} is set when it runs: layout and memory not checked"))
            return None
        try:
            return parse(a.value)
        except ValueError:
            bad.append(Finding(kind=Kind.FLAG_VALUE, severity=Severity.ERROR, unit=unit.name, where=a.where,
                               message=f"{a.flag} {a.value}: not {what}",
                               vllm=f"vllm serve: error: argument {name}: invalid {what.split()[-1]} value: "
                                    f"'{a.value}'", fix=f"{name} takes {what}"))
            return None

    def max_len(text: str) -> int | None:
        """`auto` (or -1) where the release takes it: None, the model's maximum, which resolve() fits to memory."""
        if text.strip().lower() in ("auto", "-1") and parse_version(version) >= MAX_MODEL_LEN_AUTO_FROM:
            return None
        return human_int(text)

    config = cmd.get("--config")
    if config is not None:  # vLLM's YAML of flags: any of them (TP, --max-model-len, ...) may be set there
        unknown.append(Finding(kind=Kind.NOT_CHECKED, severity=Severity.INFO, unit=unit.name, where=config.where,
                               message=f"{config.flag} {config.value}: vLLM reads more flags from that file, which "
                                       "tpfit does not: layout and memory not checked (give them on the command line "
                                       "to have them checked)"))
    tp = value("--tensor-parallel-size", int, "an int") or 1
    pp = value("--pipeline-parallel-size", int, "an int") or 1
    dp = value("--data-parallel-size", int, "an int") or 1
    gmu = value("--gpu-memory-utilization", float, "a float")
    kwargs = dict(
        vllm_version=version, gpu_memory_utilization=gmu,
        max_model_len=value("--max-model-len", max_len, "an int"),
        max_num_seqs=value("--max-num-seqs", int, "an int"),
        max_num_batched_tokens=value("--max-num-batched-tokens", human_int, "an int"),
        enforce_eager=cmd.get("--enforce-eager") is not None and cmd.get("--no-enforce-eager") is None,
        language_model_only=cmd.get("--language-model-only") is not None,
        block_size=value("--block-size", int, "an int"),
        kv_cache_memory_bytes=value("--kv-cache-memory-bytes", parse_size, "a size"),
    )
    kv = cmd.get("--kv-cache-dtype")
    if kv is not None and kv.value in set(KvCacheDtype):
        kwargs["kv_cache_dtype"] = kv.value
    q = cmd.get("--quantization")
    if q is not None and q.value == "fp8":
        kwargs["quantization"] = "fp8"
    dtype = cmd.get("--dtype")
    if dtype is not None and dtype.value in set(ModelDtype):
        kwargs["dtype"] = dtype.value
    for n, name in ((tp, "--tensor-parallel-size"), (pp, "--pipeline-parallel-size"), (dp, "--data-parallel-size")):
        if n < 1:
            a = cmd.get(name)
            bad.append(Finding(kind=Kind.FLAG_VALUE, severity=Severity.ERROR, unit=unit.name, where=a.where,
                               message=f"{name} {n}: must be at least 1", vllm=f"{name} must be >= 1",
                               fix=f"{name} 1"))
    if gmu is not None and not 0 < gmu <= 1:
        a = cmd.get("--gpu-memory-utilization")
        bad.append(Finding(kind=Kind.FLAG_VALUE, severity=Severity.ERROR, unit=unit.name, where=a.where,
                           message=f"--gpu-memory-utilization {gmu}: a fraction of the GPU in (0, 1]",
                           vllm="Input should be less than or equal to 1", fix="--gpu-memory-utilization 0.9"))
    if bad or unknown:
        return None, None, bad + unknown
    ep = cmd.get("--enable-expert-parallel") is not None
    try:
        engine = EngineArgs(**kwargs)
    except UsageError as err:  # flags vLLM refuses together (--max-num-seqs above --max-num-batched-tokens)
        a = cmd.get(err.flag or "")
        return None, None, [Finding(kind=Kind.FLAG_VALUE, severity=Severity.ERROR, unit=unit.name,
                                    where=a.where if a is not None else unit.where, message=str(err))]
    return engine, Layout(tp=tp, pp=pp, dp=dp, enable_expert_parallel=ep), bad


def gpu_of_product(product: str):
    """A catalog GPU from a node label: `NVIDIA-H100-80GB-HBM3`, GKE's `nvidia-l4`, `nvidia-tesla-a100`."""
    text = product.strip()
    return (find_gpu_by_nvml_name(text.replace("-", " ")) or find_gpu(text.lower().replace("nvidia-", "")
                                                                          .replace("tesla-", "")))


def cluster_for(unit: Unit, given: Cluster | None) -> Cluster | None:
    """The GPUs the unit's server sees: the container's count of `--gpus` (or the node label's product)."""
    gpu = given.gpu if given is not None else None
    if unit.gpu_product and given is None:
        gpu = gpu_of_product(unit.gpu_product)
    if gpu is None:
        return None
    nnodes = unit.command.get("--nnodes")
    nodes = unit.nodes if unit.nodes > 1 else (int(nnodes.value) if nnodes and (nnodes.value or "").isdigit()
                                               else (given.nodes if given else 1))
    per_node = unit.gpus or (given.gpus_per_node if given else None)
    if per_node is None:
        return None
    free = given.free_bytes if given is not None and per_node == given.gpus_per_node else ()
    return Cluster(gpu=gpu, gpus_per_node=per_node, nodes=max(1, nodes), free_bytes=free,
                   nvlink_pairs=given.nvlink_pairs if free else frozenset(), source=given.source if given else "label")


def intended(unit: Unit, table) -> Unit:
    """The unit as its author meant it: a misspelled flag no release has read as its nearest real flag
    (`--max-model-length 16384` -> `--max-model-len 16384`), so the other checks judge the intended value."""
    args = []
    for a in unit.command.args:
        near = table.closest(a.name) if not table.has(a.name) and table.releases_with(a.name) is None else None
        args.append(replace(a, name=near) if near else a)
    return replace(unit, command=replace(unit.command, args=tuple(args)))


def resolve(unit: Unit, given: Cluster | None, load: Callable, host_driver: str | None,
            memory_model) -> tuple[Resolved, list[Finding]]:
    version = image_version(unit.image) or CURRENT_VLLM_VERSION
    table = flag_table(version)
    engine, layout, bad = engine_from_flags(intended(unit, table), version)
    notes: list[Finding] = list(bad)
    r = Resolved(table=table, engine=engine, layout=layout, gpus_given=unit.gpus, host_driver=host_driver,
                 node_gpus=given.gpus_per_node if given is not None and given.source != "cpu" else None)
    if engine is None or unit.command.get("--headless") is not None:
        return r, notes
    side = outside_modelled(version)
    if side:
        low, high = MODELLED_VLLM_VERSIONS
        notes.append(Finding(kind=Kind.NOT_CHECKED, severity=Severity.INFO, unit=unit.name, where=unit.image_where,
                             message=f"{unit.image} runs vLLM {version}; tpfit models {low} to {high}: flags "
                                     f"checked against vLLM {table.version}'s, " + (
                                         "layout and memory not checked" if side < 0 else
                                         f"layout and memory by {high}'s rules")))
        if side < 0:
            return r, notes
    model = unit.command.model
    if not model or is_run_time(model):
        notes.append(Finding(kind=Kind.NOT_CHECKED, severity=Severity.INFO, unit=unit.name, where=unit.where,
                             message=f"model {model or '(none)'} is not named in the file: layout and memory not "
                                     "checked"))
        return r, notes
    try:
        spec = load(model)
    except TpfitError as err:
        notes.append(Finding(kind=Kind.NOT_CHECKED, severity=Severity.INFO, unit=unit.name,
                             where=unit.command.model_where, message=f"layout and memory not checked: {err}"))
        return r, notes
    cluster = cluster_for(unit, given)
    if cluster is None:
        notes.append(Finding(kind=Kind.NOT_CHECKED, severity=Severity.INFO, unit=unit.name, where=unit.where,
                             message="GPUs unknown: give --gpus (e.g. --gpus 2xH100) to check the layout and memory"))
        return r, notes
    try:
        plan = make_plan(spec, cluster, Workload(concurrency=1), engine, layouts=(layout,), memory_model=memory_model)
        fit = plan.candidates[0].memory
        if engine.max_model_len is None and unit.command.get("--max-model-len") is not None and fit is not None \
                and 0 < fit.max_model_len_fit < fit.max_model_len:
            # --max-model-len auto: vLLM shortens the model's maximum to what the KV cache holds at start
            engine = msgspec.structs.replace(engine, max_model_len=fit.max_model_len_fit)
            r = replace(r, engine=engine)
            plan = make_plan(spec, cluster, Workload(concurrency=1), engine, layouts=(layout,),
                             memory_model=memory_model)
            notes.append(Finding(kind=Kind.CAPACITY, severity=Severity.INFO, unit=unit.name,
                                 where=unit.command.get("--max-model-len").where,
                                 message=f"--max-model-len auto: vLLM fits the model's {fit.max_model_len} tokens to "
                                         f"these GPUs' KV cache, {fit.max_model_len_fit} tokens",
                                 vllm=f"max_model_len auto-fit to {fit.max_model_len_fit}"))
        better = make_plan(spec, cluster, Workload(context=engine.max_model_len), engine, memory_model=memory_model) \
            if plan.candidates[0].violations else None
        eager = make_plan(spec, cluster, Workload(concurrency=1), msgspec.structs.replace(engine, enforce_eager=False),
                          layouts=(layout,), memory_model=memory_model) if engine.enforce_eager else None
        memory = plan.candidates[0].memory
        longest = None
        if memory is not None and memory.max_model_len_fit >= memory.max_model_len:
            # vLLM's "estimated maximum model length" is capped at the configured length: ask at the model's own
            at_max = make_plan(spec, cluster, Workload(concurrency=1),
                               msgspec.structs.replace(engine, max_model_len=None), layouts=(layout,),
                               memory_model=memory_model).candidates[0].memory
            longest = at_max.max_model_len_fit if at_max is not None else None
    except (TpfitError, ValueError) as err:
        refused = unit.command.get(err.flag) if isinstance(err, UsageError) and err.flag else None
        if refused is not None:  # a flag of the file vLLM refuses with this model or these GPUs (--quantization on a
            # quantized checkpoint, --max-num-seqs above the default batch)
            notes.append(Finding(kind=Kind.FLAG_VALUE, severity=Severity.ERROR, unit=unit.name, where=refused.where,
                                 message=str(err)))
        else:
            notes.append(Finding(kind=Kind.NOT_CHECKED, severity=Severity.INFO, unit=unit.name, where=unit.where,
                                 message=f"layout and memory not checked: {err}"))
        return r, notes
    return replace(r, plan=plan, better=better, without_eager=eager, longest_len=longest), notes


def check_deployment(dep: DeploymentFile, *, gpus: Cluster | None = None, load: Callable | None = None,
                     host_driver: str | None = None, memory_model=None) -> CheckReport:
    """Every finding for every vLLM server of the file (`load` and `memory_model` default to tpfit's own)."""
    if load is None:
        from tpfit.model.load import load_model as load
    if memory_model is None:
        from tpfit.data import load_memory_model

        memory_model = load_memory_model()
    findings: list[Finding] = []
    resolved = []
    for unit in dep.units:
        r, notes = resolve(unit, gpus, load, host_driver, memory_model)
        resolved.append(r)
        findings += check_flags(unit, r.table)
        findings += notes
        findings += check_gpu_count(unit, r)
        findings += check_layout_and_memory(unit, r)
        findings += check_shared_memory(unit, r)
        findings += check_probes(unit, r)
        findings += check_probe_ports(unit)
        findings += check_published_port(unit)
        findings += check_image(unit, r)
        findings += check_secrets(unit)
        findings += check_hf_cache(unit)
        findings += check_model_mount(unit)
        findings += check_engine_flags(unit, r)
        findings += check_server(unit, r)
    findings += check_shared_gpus(list(dep.units), resolved)
    findings += check_line_endings(dep)
    order = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}
    findings.sort(key=lambda f: (f.where.line, order[f.severity]))
    return CheckReport(file=dep, findings=tuple(findings))


def check_cluster(gpus: str | None, *, kv_cache_memory_bytes: int | None, workers: int) -> Cluster | None:
    """The GPUs to check against: `--gpus`, else this host's (NVML), else a CPU server's own KV size, else None
    (the manifest's node labels, or "GPUs unknown" findings that say to give --gpus)."""
    if gpus is not None:
        return Cluster.parse(gpus)
    from tpfit.errors import NvmlError
    from tpfit.hardware.detect import detect_cluster

    try:
        return detect_cluster()
    except NvmlError:
        pass
    if kv_cache_memory_bytes:
        from tpfit.units import GIB

        # a server whose KV cache is set in bytes (the CPU build): its size does not depend on the device memory
        return Cluster.cpu(64 * GIB, workers=workers)
    return None
