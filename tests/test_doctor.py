"""tpfit doctor against real captures (shared/fixtures, our own device capture) and captures derived from
them by changing only the fields in each folder's name (tools/derive_host_fixtures.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import msgspec
import pytest

from tests.conftest import ROOT, SHARED
from tpfit.hardware.detect import cluster_from_gpus
from tpfit.hardware.nvml import GpuState
from tpfit.live.doctor import check_host, exit_code
from tpfit.live.host import DockerState
from tpfit.live.read_host import read_docker_capture, snapshot_from_files
from tpfit.units import GIB, MIB
from tpfit.vllm_facts import cuda_of_image

REAL = SHARED / "fixtures" / "gpu-hosts" / "h100x2-nvlink"
OURS = ROOT / "tests" / "data" / "gpu-hosts" / "h100x2-device-2026-11-26"
H200X4 = ROOT / "tests" / "data" / "gpu-hosts" / "h200x4-device-2026-11-26"
DERIVED = ROOT / "tests" / "data" / "gpu-hosts" / "derived"


def findings(folder: Path, **kw):
    h = snapshot_from_files(folder, docker=DockerState(present=True, reachable=True, runtimes=("nvidia", "runc"),
                                                          server_version="28.2.2", ctk_version="1.17.8"))
    return h, {f.check: f for f in check_host(h, **kw)}


@pytest.mark.parametrize("folder", [REAL, OURS], ids=["shared-capture", "our-device-capture"])
def test_real_h100_nvlink_host_is_healthy(folder):
    h, f = findings(folder, plan_gpus=2)
    assert h.driver_version == "580.159.04" and h.cuda_driver_version == "13.0" and len(h.gpus) == 2
    assert h.links == {"0-1": "NV18"} and h.p2p_read == {"0-1": "OK"}
    assert f["link.0-1"].status == "ok" and "NVLink (18 links)" in f["link.0-1"].title
    assert f["gpu0.memory"].status == f["gpu1.memory"].status == "ok"
    # nvidia-smi's total (81559 MiB) minus the 480 MiB reservation is what CUDA (and vLLM) call total
    g = h.gpus[0]
    assert (g.total_bytes, g.reserved_bytes, g.free_bytes) == (81559 * MIB, 480 * MIB, 81079 * MIB)
    assert f["image_cuda"].status == "ok" and "12.9, 13.0" in f["image_cuda"].evidence
    assert exit_code(list(f.values())) == 0


def test_real_4x_h200_all_pairs_nvlink():
    h, f = findings(H200X4, plan_gpus=4)
    assert len(h.gpus) == 4 and {g.name for g in h.gpus} == {"NVIDIA H200"}
    pairs = {f"{a}-{b}" for a in range(4) for b in range(a + 1, 4)}
    assert h.links == {p: "NV18" for p in pairs} and h.p2p_read == {p: "OK" for p in pairs}
    assert all(f[f"link.{p}"].status == "ok" for p in pairs)
    g = h.gpus[0]
    assert (g.total_bytes, g.reserved_bytes, g.free_bytes) == (143771 * MIB, 616 * MIB, 143156 * MIB)
    assert exit_code(list(f.values())) == 0
    # what doctor printed on that host through NVML agrees with what it reads back from the files
    printed = {x["check"]: x for x in json.loads((H200X4 / "doctor.json").read_text())["findings"]}
    assert {k for k in printed if k.startswith("link.")} == {k for k in f if k.startswith("link.")}
    assert all(printed[f"gpu{i}.memory"]["status"] == "ok" for i in range(4))
    # and the catalog's H200 is what CUDA reported there (vLLM logged "Free memory on device (138.3/139.8 GiB)")
    cluster = cluster_from_gpus(tuple(GpuState(index=i, name="NVIDIA H200", total_bytes=143771 * MIB,
                                               free_bytes=143156 * MIB, used_bytes=0) for i in range(4)))
    assert cluster.gpu.id == "h200" and round(cluster.gpu.cuda_total_bytes / GIB, 2) == 139.8


def test_doctor_and_planner_share_the_start_up_check():
    # calibration/vllm-0.26-h200x4/l70-tp4-g99.log: on these idle H200s vLLM refused --gpu-memory-utilization 0.99
    # at TP=4 ("Free memory on device cuda:0 (138.3/139.8 GiB) on startup is less than desired GPU memory
    # utilization (0.99, 138.4 GiB)") and started at 0.98 (l70-tp4-g98.log). Doctor says the same, with the
    # planner's check and figures.
    from tests.conftest import load_config
    from tpfit import EngineArgs, Layout, Workload, make_plan

    _, refused = findings(H200X4, plan_gpus=4, gpu_memory_utilization=0.99)
    _, fine = findings(H200X4, plan_gpus=4, gpu_memory_utilization=0.98)
    m = refused["gpu0.memory"]
    assert m.status == "fail" and "held by others" not in m.title and "--gpu-memory-utilization 0.98" in m.fix
    assert fine["gpu0.memory"].status == "ok"
    cluster = cluster_from_gpus(snapshot_from_files(H200X4).gpus)  # nvidia-smi's XML, read as NVML's values
    plan = make_plan(load_config("meta-llama--Llama-3.1-70B.json"), cluster, Workload(context=8192),
                     EngineArgs(gpu_memory_utilization=0.99), layouts=(Layout(tp=4),))
    (tp4,) = plan.candidates
    assert tp4.memory.vllm_error and tp4.memory.vllm_error in m.evidence


def test_our_capture_shows_the_topology_bug_it_found():
    # doctor.json was printed by the first version on the real host; it had a third "GPU" from "GPU NUMA ID"
    printed = json.loads((OURS / "doctor.json").read_text())
    assert any("0-2" in x["title"] for x in printed["findings"])
    _, f = findings(OURS)
    assert not any("0-2" in k for k in f)


def test_old_driver_fails_for_current_images():
    _, f = findings(DERIVED / "h100x2-nvlink__driver-535.183.01-cuda-12.2")
    assert f["image_cuda"].status == "fail"
    assert "535.183.01 < 575.51.3" in f["image_cuda"].evidence and "VLLM_ENABLE_CUDA_COMPATIBILITY=1" in f["image_cuda"].fix
    _, f13 = findings(REAL, image="vllm/vllm-openai:v0.33.0-cu130")
    assert f13["image_cuda"].status == "ok" and cuda_of_image("vllm/vllm-openai:v0.33.0-cu130") == "13.0"


def test_mig_mode_warns():
    _, f = findings(DERIVED / "h100x2-nvlink__mig-enabled-gpu0")
    assert f["gpu0.mig"].status == "warn" and "nvidia-smi -i 0 -mig 0" in f["gpu0.mig"].fix
    assert "gpu1.mig" not in f


def test_other_process_holding_memory():
    _, f = findings(DERIVED / "h100x2-nvlink__other-process-40960MiB-gpu1")
    m = f["gpu1.memory"]
    assert m.status == "fail" and "pid 4242 python3 40.00 GiB" in m.evidence
    assert "--gpu-memory-utilization" in m.fix
    # `doctor --json` writes the GPUs (Structs inside the snapshot dataclass) as plain objects, processes included
    host = json.loads(json.dumps(snapshot_from_files(DERIVED / "h100x2-nvlink__other-process-40960MiB-gpu1").to_dict()))
    assert host["gpus"][1]["processes"] == [{"pid": 4242, "name": "python3", "used_bytes": 40960 * MIB}]
    # the planner, given these GPUs, predicts vLLM's own start-up refusal
    from tests.conftest import load_config
    from tpfit.core.engine import EngineArgs
    from tpfit import Workload, make_plan

    h = snapshot_from_files(DERIVED / "h100x2-nvlink__other-process-40960MiB-gpu1")
    cluster = cluster_from_gpus(h.gpus)
    plan = make_plan(load_config("meta-llama--Llama-3.1-8B.json"), cluster, Workload(context=8192), EngineArgs())
    best = plan.best  # None when no layout starts
    assert best is None or best.layout.num_gpus == 1
    tp2 = next(c for c in plan.candidates if c.layout.tp == 2)
    # vLLM measures after its own CUDA context and NCCL (1.5 GiB at TP=2): 39.18 - 1.5 GiB free when it checks
    assert tp2.memory.verdict == "refused_at_start" and tp2.memory.vllm_error.startswith("Free memory on device (37.68")


def test_consumer_pcie_without_p2p_gets_nccl_advice():
    h, f = findings(DERIVED / "h100x2-nvlink__rtx4090-name-memory-link-PHB-p2p-CNS")
    link = f["link.0-1"]
    assert link.status == "warn" and "PHB" in link.evidence and "CNS" in link.evidence
    assert "NCCL_P2P_DISABLE=1" in link.fix and "consumer" in link.fix


def test_pcie_width_below_max():
    _, f = findings(DERIVED / "h100x2-nvlink__pcie-width-x8-gpu1")
    assert f["gpu1.pcie"].status == "warn" and "x8/x16" in f["gpu1.pcie"].evidence


def test_container_side():
    h = snapshot_from_files(REAL)
    no_docker = {f.check: f for f in check_host(replace(h, docker=DockerState(present=False, error="docker not found")))}
    assert no_docker["docker"].status == "warn"
    docker_dir = ROOT / "tests" / "data" / "docker-info"
    no_toolkit = read_docker_capture(docker_dir / "dev-machine__ServerVersion-28.2.2-Runtimes-runc.json")
    no_runtime = {f.check: f for f in check_host(replace(h, docker=no_toolkit))}
    assert no_runtime["nvidia_runtime"].status == "fail" and "nvidia-ctk runtime configure" in no_runtime["nvidia_runtime"].fix
    toolkit = read_docker_capture(docker_dir / "dev-machine__ServerVersion-28.2.2-Runtimes-nvidia-runc.json")
    ok = {f.check: f for f in check_host(replace(h, docker=toolkit))}
    assert ok["nvidia_runtime"].status == "ok" and ok["docker"].title == "docker 28.2.2"
    small_shm = {f.check: f for f in check_host(replace(h, shm_bytes=64 * MIB))}
    assert small_shm["shm"].status == "warn" and "--ipc=host" in small_shm["shm"].fix
    hidden = {f.check: f for f in check_host(replace(h, env={"CUDA_VISIBLE_DEVICES": "0"}), plan_gpus=2)}
    assert hidden["cuda_visible_devices"].status == "warn"


def test_nvml_capture_to_cluster_free_memory():
    # shared probe.json holds NVML's own values from the real host
    probe = json.loads((REAL / "probe.json").read_text())["nvml"]
    gpus = tuple(GpuState(index=d["index"], name=d["name"], total_bytes=d["total"], free_bytes=d["free"],
                          used_bytes=d["used"]) for d in probe["devices"])
    cluster = cluster_from_gpus(gpus)
    assert cluster.gpu.id == "h100-sxm" and cluster.gpus_per_node == 2
    assert round(cluster.gpu.cuda_total_bytes / GIB, 2) == 79.18


def test_doctor_never_crashes_without_gpus_docker_or_nvidia_smi():
    # this machine (and CI) has no NVIDIA driver: doctor reports what it could not see, exit 1, no traceback
    result = subprocess.run([sys.executable, "-m", "tpfit", "doctor", "--json"], capture_output=True, text=True,
                            cwd=ROOT)
    if "NVIDIA" in result.stdout and '"gpus": []' not in result.stdout:
        pytest.skip("this machine has GPUs")
    report = json.loads(result.stdout)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    gpus = next(f for f in report["findings"] if f["check"] == "gpus")
    assert gpus["status"] == "fail" and "--gpus 2x3090" in gpus["fix"]
    assert report["host"]["unseen"]


def test_real_docker_capture_daemon_down():
    state = read_docker_capture(ROOT / "tests" / "data" / "docker-info" / "dev-machine-daemon-down.json")
    assert state.present and not state.reachable
    h = replace(snapshot_from_files(REAL), docker=state)
    f = {x.check: x for x in check_host(h)}
    assert f["docker"].status == "warn" and "systemctl start docker" in f["docker"].fix


H200X2 = ROOT / "tests" / "data" / "gpu-hosts" / "h200x2-device-2026-11-30"


def test_detected_h200s_plan_as_the_catalogs():
    """The 2x H200 capture, read as NVML's values, is the catalog's H200 joined by NVLink: a plan on the detected
    GPUs has every figure of a plan on `--gpus 2xH200` (the first reader lost the FP8 peak, the NVLink speed and
    the PCIe generation, and saw no NVLink behind the NVSwitch)."""
    from tests.conftest import load_config
    from tpfit import Workload, make_plan
    from tpfit.hardware.cluster import Cluster
    from tpfit.live.host import parse_topo

    h = snapshot_from_files(H200X2)
    links, _ = parse_topo((H200X2 / "topo.txt").read_text())
    pairs = frozenset(tuple(map(int, p.split("-"))) for p, level in links.items() if level.startswith("NV"))
    assert pairs == {(0, 1)}
    detected = cluster_from_gpus(h.gpus, pairs)
    described = Cluster.parse("2xH200")
    assert detected.gpu.name == "NVIDIA H200"  # the driver's name; every other fact is the catalog's
    assert msgspec.structs.replace(detected.gpu, name=described.gpu.name) == described.gpu
    assert detected.gpu.nvlink_bytes_per_s > 0 and detected.gpu.fp8_flops_per_s > 0
    spec = load_config("meta-llama--Llama-3.1-70B.json")
    ours, theirs = (make_plan(spec, c, Workload(context=8192)) for c in (detected, described))
    assert ours.best.layout == theirs.best.layout
    assert [c.speed for c in ours.candidates] == [c.speed for c in theirs.candidates]
    # what tpfit printed on that host (after the fixes) says NVLink
    printed = json.loads((H200X2 / "plan.txt").read_text().split("\nrc 0\n", 1)[1])
    assert printed["nvlink_pairs"] == [[0, 1]] and printed["gpu"]["nvlink"] is True
    # and without NVLink between them the same GPUs are the PCIe card's speeds: no NVLink bandwidth
    assert cluster_from_gpus(h.gpus).gpu.nvlink_bytes_per_s == 0


def test_a_probe_that_does_not_finish_is_no_answer_not_a_failure():
    """`doctor --probe --image vllm/vllm-openai:...` pulls a ~10 GB image on its first run: the probe had the 20 s of
    every other command, then read as FAIL ('GPU container probe', exit 1) on a healthy host."""
    from tpfit.live.doctor import exit_code, probe_finding
    from tpfit.live.read_host import PROBE_TIMEOUT_S, TIMED_OUT, _run

    assert PROBE_TIMEOUT_S >= 120
    rc, said = _run(["sleep", "5"], timeout_s=0.2)
    assert (rc, said) == (TIMED_OUT, "no answer in 0.2 s")
    slow = probe_finding(None, f"{said}: docker may still be pulling x", image="vllm/vllm-openai:v0.33.0")
    assert slow.status.value == "warn" and slow.fix.startswith("docker pull vllm/vllm-openai:v0.33.0")
    assert exit_code([slow]) == 0 and exit_code([probe_finding(False, "no GPU")]) == 1


def test_doctor_holds_the_nodes_to_the_image_it_is_given():
    """`doctor --image vllm/vllm-openai:v0.19.0 --nodes ...` told every node to run v0.33.0 (the current release),
    and sized the free-memory check by 0.33's default utilization instead of the image's release."""
    from tests.inprocess import tpfit

    out = tpfit("doctor", "--image", "vllm/vllm-openai:v0.19.0", "--nodes", "127.0.0.1,10.255.255.1", "--json")
    found = {f["check"]: f for f in json.loads(out.stdout)["findings"]}
    said = found["nodes.vllm"]["title"] + found["nodes.vllm"]["fix"]
    assert "0.19.0" in said and "0.33" not in said, said
