"""tpfit doctor: findings about a host, each with the evidence read and the command that fixes it.

`check_host` is pure (a HostSnapshot in, Findings out); `tpfit.live.read_host` does the reading.
Rules and thresholds: shared/reference/deploy-conventions.md §1.2, §1.5, §3.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from tpfit.core.engine import semantics_for
from tpfit.core.layout import Layout
from tpfit.core.memory import pre_snapshot_bytes
from tpfit.core.memory_model import MemoryModel
from tpfit.core.startup import check_free_memory, requested_bytes, startable_utilization
from tpfit.data import load_memory_model
from tpfit.kinds import FindingStatus
from tpfit.live.host import HostSnapshot
from tpfit.units import GIB, format_gib
from tpfit.vllm_facts import (
    CURRENT_VLLM_VERSION, GPU_MEMORY_UTILIZATION_DEFAULT, MIN_SHM_BYTES, CudaBuild, cuda_of_image, parse_driver,
)

OK, WARN, FAIL = FindingStatus.OK, FindingStatus.WARN, FindingStatus.FAIL
HELD_BY_OTHERS_BYTES = GIB // 2
"""Used memory that means other processes hold the GPU (NVML's "used" of an idle GPU stays below it)."""
CONSUMER_MARKERS = ("GeForce", "RTX 30", "RTX 40", "RTX 50", "TITAN")
"""GPU names whose PCIe peer-to-peer is disabled by the driver (no NVLink between them)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    check: str
    status: FindingStatus
    title: str
    evidence: str
    fix: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def check_gpus(h: HostSnapshot, gpu_memory_utilization: float, pre_snapshot: int) -> list[Finding]:
    """Driver, GPUs, and whether vLLM's start-up memory check passes on each (core/startup.py, as the planner
    makes it): `pre_snapshot` is what vLLM's own CUDA context and NCCL take before it checks."""
    if not h.gpus:
        why = "; ".join(h.unseen) or "no NVIDIA GPU found"
        return [Finding(check="gpus", status=FAIL, title="no NVIDIA GPU visible", evidence=why,
                        fix="install the NVIDIA driver (nvidia-smi must list the GPUs); in a container run with "
                            "--gpus all; or plan without a GPU: tpfit plan MODEL --gpus 2x3090")]
    out = [Finding(check="driver", status=OK, title=f"driver {h.driver_version}",
                   evidence=f"driver {h.driver_version} supports CUDA up to {h.cuda_driver_version or '?'}; "
                            f"{len(h.gpus)} GPU(s): {', '.join(sorted({g.name for g in h.gpus}))}")]
    sem = semantics_for(CURRENT_VLLM_VERSION)
    for g in h.gpus:
        others = g.used_bytes
        ev = (f"GPU {g.index} {g.name}: {format_gib(g.total_bytes)} GiB total, {format_gib(g.used_bytes)} GiB used, "
              f"{format_gib(g.free_bytes)} GiB free")
        total = g.total_bytes - g.reserved_bytes  # what CUDA reports: vLLM's total
        refusal = check_free_memory(total_bytes=total, other_bytes=total - g.free_bytes, pre_snapshot_bytes=pre_snapshot,
                                    requested_bytes=requested_bytes(total, gpu_memory_utilization, sem),
                                    gpu_memory_utilization=gpu_memory_utilization)
        held = others > HELD_BY_OTHERS_BYTES
        if refusal or held:
            procs = ", ".join(f"pid {p.pid} {p.name} {format_gib(p.used_bytes)} GiB" for p in g.processes) or "unknown processes"
            usable = startable_utilization(g.free_bytes - pre_snapshot, max(total, 1))
            out.append(Finding(
                check=f"gpu{g.index}.memory", status=FAIL if refusal else WARN,
                title=f"GPU {g.index} memory held by others" if held else
                f"GPU {g.index} too full for --gpu-memory-utilization {gpu_memory_utilization}",
                evidence=ev + (f"; {procs}" if held else "") + (f"; vLLM would refuse: {refusal.vllm_error}" if refusal else ""),
                fix=("stop those processes, or " if held else "") + f"start vLLM with --gpu-memory-utilization "
                    f"{usable:.2f} (vLLM refuses to start when free memory, once its own CUDA context exists, is below "
                    f"{gpu_memory_utilization} x total)"))
        else:
            out.append(Finding(check=f"gpu{g.index}.memory", status=OK, title=f"GPU {g.index} free", evidence=ev))
        if g.mig_mode == "Enabled":
            out.append(Finding(check=f"gpu{g.index}.mig", status=WARN, title=f"GPU {g.index} is in MIG mode",
                               evidence=f"MIG mode {g.mig_mode}: vLLM sees MIG instances, each with a slice of the memory",
                               fix=f"nvidia-smi -i {g.index} -mig 0 (then reset the GPU), or plan for the MIG slice size"))
        if g.pcie_gen_max and g.pcie_width_max and (
                (g.pcie_width_current or g.pcie_width_max) < g.pcie_width_max):
            out.append(Finding(check=f"gpu{g.index}.pcie", status=WARN, title=f"GPU {g.index} PCIe link below its maximum",
                               evidence=f"PCIe gen {g.pcie_gen_current}/{g.pcie_gen_max}, width x{g.pcie_width_current}/x{g.pcie_width_max}",
                               fix="reseat the card in a full x16 slot; check BIOS lane bifurcation"))
    eccs = {g.ecc_mode for g in h.gpus}
    out.append(Finding(check="ecc", status=OK, title="ECC", evidence="ECC " + "/".join(sorted(eccs))))
    return out


def check_cuda_image(h: HostSnapshot, image: str | None) -> list[Finding]:
    if not h.driver_version:
        return []
    cuda = cuda_of_image(image)
    need = cuda.min_driver
    have = parse_driver(h.driver_version)
    label = image or f"the default vllm/vllm-openai image (CUDA {cuda})"
    if have >= need:
        newer = [c for c in CudaBuild if have >= c.min_driver]
        return [Finding(check="image_cuda", status=OK, title=f"driver runs {label}",
                        evidence=f"driver {h.driver_version} >= {'.'.join(map(str, need))} needed by CUDA {cuda}; "
                                 f"CUDA builds this driver runs: {', '.join(newer)}")]
    return [Finding(check="image_cuda", status=FAIL, title=f"driver too old for {label}",
                    evidence=f"driver {h.driver_version} < {'.'.join(map(str, need))} needed by CUDA {cuda} "
                             "(CUDA toolkit release notes)",
                    fix="upgrade the NVIDIA driver (e.g. to the 580 series); or on datacenter GPUs run the image with "
                        "-e VLLM_ENABLE_CUDA_COMPATIBILITY=1; or use an older vLLM image built for your driver's CUDA")]


def check_topology(h: HostSnapshot) -> list[Finding]:
    out = []
    consumer = any(m in g.name for g in h.gpus for m in CONSUMER_MARKERS)
    for pair, level in sorted(h.links.items()):
        p2p = h.p2p_read.get(pair, "")
        if level.startswith("NV"):
            out.append(Finding(check=f"link.{pair}", status=OK, title=f"GPUs {pair}: NVLink ({level[2:]} links)",
                               evidence=f"topo {level}" + (f", P2P read {p2p}" if p2p else "")))
            continue
        kind = {"PIX": "one PCIe switch", "PXB": "several PCIe switches", "PHB": "the CPU's PCIe host bridge",
                "NODE": "host bridges within a NUMA node", "SYS": "across CPU sockets"}.get(level, level)
        status = OK if level in ("PIX", "PXB") and p2p in ("OK", "") else WARN
        fix = ""
        if p2p and p2p != "OK":
            fix = ("set NCCL_P2P_DISABLE=1 for vLLM (the driver reports no peer-to-peer"
                   + (" on consumer GPUs" if consumer else "; check IOMMU/ACS in the BIOS or iommu=pt") + ")")
        elif level in ("PHB", "NODE", "SYS"):
            fix = "prefer --pipeline-parallel-size over --tensor-parallel-size across these GPUs"
        out.append(Finding(check=f"link.{pair}", status=status if not fix or status == WARN else WARN,
                           title=f"GPUs {pair}: PCIe via {kind}",
                           evidence=f"topo {level}" + (f", P2P read {p2p}" if p2p else ""), fix=fix))
    if h.iommu_groups and any(v != "OK" for v in h.p2p_read.values()):
        out.append(Finding(check="iommu", status=WARN, title="IOMMU on and P2P blocked",
                           evidence=f"{h.iommu_groups} IOMMU groups; P2P read {sorted(set(h.p2p_read.values()))}",
                           fix="boot with iommu=pt (or disable ACS on the PCIe switches); else NCCL_P2P_DISABLE=1"))
    return out


def check_container(h: HostSnapshot, image: str | None) -> list[Finding]:
    d = h.docker
    if not d.present:
        return [Finding(check="docker", status=WARN, title="docker not found",
                        evidence=d.error or "docker not on PATH",
                        fix="install Docker to use the vllm/vllm-openai image; a local `vllm serve` does not need it")]
    if not d.reachable:
        return [Finding(check="docker", status=WARN, title="docker daemon not reachable", evidence=d.error,
                        fix="sudo systemctl start docker; add your user to the docker group")]
    out = [Finding(check="docker", status=OK, title=f"docker {d.server_version}",
                   evidence=f"runtimes: {', '.join(d.runtimes)}")]
    if "nvidia" not in d.runtimes:
        out.append(Finding(check="nvidia_runtime", status=FAIL, title="NVIDIA runtime not registered with docker",
                           evidence=f"docker runtimes: {', '.join(d.runtimes) or 'none'}",
                           fix="install nvidia-container-toolkit, then: sudo nvidia-ctk runtime configure --runtime=docker "
                               "&& sudo systemctl restart docker"))
    else:
        out.append(Finding(check="nvidia_runtime", status=OK, title="NVIDIA runtime registered",
                           evidence=f"nvidia-ctk {d.ctk_version or '(version unknown)'}"))
    return out


def check_process(h: HostSnapshot, plan_gpus: int | None) -> list[Finding]:
    out = []
    if h.shm_bytes is not None:
        status = OK if h.shm_bytes >= MIN_SHM_BYTES else WARN
        out.append(Finding(check="shm", status=status, title="/dev/shm",
                           evidence=f"{format_gib(h.shm_bytes)} GiB",
                           fix="" if status == OK else "tensor parallelism needs more shared memory: in docker use "
                                                       "--ipc=host or --shm-size 16g"))
    visible = h.env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        count = len([x for x in visible.split(",") if x.strip()])
        status = WARN if plan_gpus and count < plan_gpus else OK
        out.append(Finding(check="cuda_visible_devices", status=status, title="CUDA_VISIBLE_DEVICES",
                           evidence=f"CUDA_VISIBLE_DEVICES={visible} ({count} GPU(s))"
                                    + (f"; the plan needs {plan_gpus}" if plan_gpus else ""),
                           fix="" if status == OK else f"export CUDA_VISIBLE_DEVICES with {plan_gpus} GPU indices"))
    nccl = {k: v for k, v in h.env.items() if k.startswith("NCCL_")}
    if nccl:
        out.append(Finding(check="nccl_env", status=OK, title="NCCL variables",
                           evidence=", ".join(f"{k}={v}" for k, v in sorted(nccl.items()))))
    if h.torch_version or h.vllm_version:
        torch_cuda = h.torch_version.split("+cu")[-1] if "+cu" in h.torch_version else ""
        cuda = f"{torch_cuda[:-1]}.{torch_cuda[-1]}" if torch_cuda else ""
        bad = cuda and h.cuda_driver_version and parse_driver(cuda) > parse_driver(h.cuda_driver_version)
        out.append(Finding(check="python_stack", status=WARN if bad else OK, title="local torch / vLLM",
                           evidence=f"torch {h.torch_version or 'absent'}" + (f" (CUDA {cuda})" if cuda else "")
                                    + f", vllm {h.vllm_version or 'absent'}",
                           fix=f"this torch needs CUDA {cuda}; the driver supports {h.cuda_driver_version}: upgrade the "
                               "driver or install a torch built for an older CUDA" if bad else ""))
    for note in h.unseen:
        out.append(Finding(check="unseen", status=WARN, title="could not read", evidence=note))
    return out


def check_host(h: HostSnapshot, *, image: str | None = None,
               gpu_memory_utilization: float = GPU_MEMORY_UTILIZATION_DEFAULT, plan_gpus: int | None = None,
               memory_model: MemoryModel | None = None) -> list[Finding]:
    """Every finding for a host, in the order a person would fix them (the bundled memory model unless given:
    its CUDA-context figure for `plan_gpus` GPUs, default one)."""
    pre = pre_snapshot_bytes(Layout(tp=plan_gpus or 1), memory_model or load_memory_model())
    return (check_gpus(h, gpu_memory_utilization, pre) + check_cuda_image(h, image) + check_topology(h)
            + check_container(h, image) + check_process(h, plan_gpus))


def probe_finding(ok: bool | None, evidence: str, *, image: str = "") -> Finding:
    """What `docker run --gpus all` of a CUDA image showed (read_host.run_probe); `ok` None: no answer in time."""
    if ok is None:
        return Finding(check="probe", status=WARN, title="GPU container probe did not finish", evidence=evidence,
                       fix=f"docker pull {image}, then run tpfit doctor --probe again")
    return Finding(check="probe", status=OK if ok else FAIL, title="GPU container probe", evidence=evidence,
                   fix="" if ok else "see the docker and nvidia_runtime findings")


def exit_code(findings: list[Finding]) -> int:
    """0 when nothing fails (warnings allowed), 1 otherwise."""
    return 1 if any(f.status == FAIL for f in findings) else 0


def report_dict(h: HostSnapshot, findings: list[Finding]) -> dict:
    return {"schema_version": 1, "host": h.to_dict(), "findings": [f.to_dict() for f in findings],
            "ok": exit_code(findings) == 0}
